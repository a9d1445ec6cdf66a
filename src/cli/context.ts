import { Command, Option } from 'commander';
import { createLogger, type Logger } from '../log.js';
import { connectionConfig, logSettings, Problems, type ConnectionConfig } from './config.js';
import { terminal } from './progress.js';

/** What a command needs from the outside world; tests may pass their own. */
export interface CliContext {
  readonly env: NodeJS.ProcessEnv;
  readonly out: (text: string) => void;
  /** Aborted by the first SIGINT / SIGTERM. */
  readonly signal: AbortSignal;
  /** 130 after SIGINT, 143 after SIGTERM. */
  interruptedExitCode(): number;
  /** --log-level debug or trace: expected errors show their stack trace too. */
  debug?: boolean;
}

export interface ConnectionFlags {
  redisUrl?: string;
  databaseUrl?: string;
  match?: string;
  logLevel?: string;
  logFormat?: string;
  logFile?: string;
  databaseCa?: string;
  redisCa?: string;
  redisCluster?: boolean;
  /** --rdb (the commands that read the source): no live Redis, so REDIS_URL / REDIS_CA are not read. */
  rdb?: string[];
}

/** Where the tool writes: PostgreSQL. */
export function addPostgresOptions(command: Command): Command {
  return command
    .addOption(new Option('--database-url <url>', 'target PostgreSQL (env DATABASE_URL; default postgres://postgres@127.0.0.1:5432/postgres)'))
    .addOption(
      new Option(
        '--database-ca <path>',
        'CA certificate (PEM) to verify PostgreSQL with; implies sslmode=verify-full unless the URL says otherwise (env DATABASE_CA)',
      ),
    );
}

/** What the tool reads: the Redis keys under --match. */
export function addRedisOptions(command: Command): Command {
  return command
    .addOption(new Option('--redis-url <url>', 'source Redis (env REDIS_URL; default redis://127.0.0.1:6379)'))
    .addOption(new Option('--redis-ca <path>', 'CA certificate (PEM) to verify a rediss:// server with (env REDIS_CA)'))
    .addOption(new Option('--redis-cluster', 'the Redis URL names a node of a Redis Cluster (detected anyway): scan every master'))
    .addOption(new Option('--match <pattern>', 'SCAN pattern of user keys: a prefix and one "*" (default user:email:*)'));
}

export function addLogOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--log-level <level>', 'fatal, error, warn, info, debug (stack traces), trace or silent (env LOG_LEVEL; default info, or warn at a terminal)'),
    )
    .addOption(new Option('--log-format <format>', 'json (lines on stderr) or text (sentences); default text at a terminal, else json (env LOG_FORMAT)'))
    .addOption(new Option('--log-file <path>', 'append JSON logs at --log-level here; stderr then shows warnings and errors only'));
}

/** Both servers and the logs: for the commands that read Redis and look at PostgreSQL. */
export function addConnectionOptions(command: Command): Command {
  return addLogOptions(addRedisOptions(addPostgresOptions(command)));
}

/** Validates the shared flags and builds the logger. */
export function setup(flags: ConnectionFlags, ctx: CliContext, problems: Problems): { conn: ConnectionConfig; log: Logger } {
  const conn = connectionConfig(flags, ctx.env, problems);
  const logs = logSettings(flags, ctx.env, terminal.interactive, problems);
  ctx.debug = logs.level === 'debug' || logs.level === 'trace';
  // --log-file is opened only when every flag so far is good: the run stops at throwIfAny() otherwise.
  const log = createLogger({ ...logs, file: problems.none ? logs.file : undefined, screen: terminal });
  for (const [flag, url] of [
    ['--database-url', flags.databaseUrl],
    ['--redis-url', flags.redisUrl],
  ] as const) {
    if (url && hasPassword(url)) {
      log.warn(`${flag} carries a password, which other users of this machine can see in \`ps\`: prefer the environment variable`);
    }
  }
  return { conn, log };
}

function hasPassword(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}
