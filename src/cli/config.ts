import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { MAX_CREDITS, normaliseEmail } from '../map/map-record.js';

export const DEFAULTS = {
  redisUrl: 'redis://127.0.0.1:6379',
  databaseUrl: 'postgres://postgres@127.0.0.1:5432/postgres',
  match: 'user:email:*',
  batchSize: 1000,
  concurrency: 4,
  scanCount: 1000,
  maxValueBytes: 1_048_576,
  whitelistCredits: 100_000,
} as const;

export interface ConnectionConfig {
  readonly redisUrl: string;
  readonly databaseUrl: string;
  readonly match: string;
}

/** Collects every problem in the flags before failing, so the operator fixes them in one go. */
export class Problems {
  private readonly list: string[] = [];

  add(problem: string): void {
    this.list.push(problem);
  }

  throwIfAny(): void {
    if (this.list.length > 0) throw new UsageError(this.list.join('; '));
  }

  integer(name: string, raw: unknown, fallback: number, min: number, max: number): number {
    if (raw === undefined) return fallback;
    const text = String(raw).trim();
    const value = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
      this.add(`${name} must be a whole number from ${min} to ${max}, got "${String(raw)}"`);
      return fallback;
    }
    return value;
  }
}

export function connectionConfig(
  opts: { redisUrl?: string; databaseUrl?: string; match?: string },
  env: NodeJS.ProcessEnv,
  problems: Problems,
): ConnectionConfig {
  const redisUrl = opts.redisUrl ?? env.REDIS_URL ?? DEFAULTS.redisUrl;
  const databaseUrl = opts.databaseUrl ?? env.DATABASE_URL ?? DEFAULTS.databaseUrl;
  checkUrl('--redis-url / REDIS_URL', redisUrl, ['redis:', 'rediss:'], problems);
  checkUrl('--database-url / DATABASE_URL', databaseUrl, ['postgres:', 'postgresql:'], problems);
  const match = opts.match ?? DEFAULTS.match;
  // The email is what the final `*` matches; any other glob character would make that ambiguous.
  if (!match.endsWith('*') || /[*?[\]\\]/.test(match.slice(0, -1)) || match.length < 2) {
    problems.add(`--match must be a literal prefix followed by one "*" (like "user:email:*"), got "${match}"`);
  }
  return { redisUrl, databaseUrl, match };
}

function checkUrl(name: string, url: string, protocols: readonly string[], problems: Problems): void {
  try {
    const parsed = new URL(url);
    if (!protocols.includes(parsed.protocol)) problems.add(`${name} must start with ${protocols.join(' or ')}//`);
  } catch {
    problems.add(`${name} is not a valid URL`);
  }
}

/** Emails given on the command line or in env, or a whitelist file: one email per line, `#` comments. */
export function loadWhitelist(file: string | undefined, envList: string | undefined, problems: Problems): Set<string> {
  const emails = new Set<string>();
  const take = (raw: string, where: string) => {
    const email = normaliseEmail(raw);
    if (email === '') return;
    if (!/^[^\s@]+@[^\s@]+$/.test(email)) problems.add(`whitelist entry ${where} is not an email: "${raw.trim()}"`);
    else emails.add(email);
  };
  if (file !== undefined) {
    let text: string | undefined;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      problems.add(`cannot read --whitelist-file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
    text?.split(/\r?\n/).forEach((line, i) => {
      const content = line.trim().startsWith('#') ? '' : line.replace(/\s#.*$/, '');
      take(content, `at ${file}:${i + 1}`);
    });
  }
  envList?.split(',').forEach((entry, i) => take(entry, `#${i + 1} of WHITELIST_EMAILS`));
  return emails;
}

export function whitelistCredits(raw: unknown, problems: Problems): bigint {
  return BigInt(problems.integer('--whitelist-credits', raw, DEFAULTS.whitelistCredits, 0, Number(MAX_CREDITS)));
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function logLevel(raw: string | undefined, env: NodeJS.ProcessEnv, problems: Problems): string {
  const level = raw ?? env.LOG_LEVEL ?? 'info';
  if (!LOG_LEVELS.includes(level)) problems.add(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  return LOG_LEVELS.includes(level) ? level : 'info';
}
