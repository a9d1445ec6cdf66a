import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { EXIT, InterruptedError, UnfinishedError, UsageError, describe, isConnectionFailure, lostServer, pgCode, tlsFailure } from '../errors.js';
import { scrub } from '../redact.js';
import type { CliContext } from './context.js';
import { addLogOptions, addPostgresOptions, addRedisOptions } from './context.js';
import { terminal } from './progress.js';
import { RunFailedError } from '../core/migrate.js';
import { addMigrateOptions, runMigrate } from './migrate-command.js';
import { runSchemaApply, runSchemaCheck, runSchemaClean } from './schema-command.js';
import { runSeed } from './seed-command.js';
import { addVerifyCommand } from './verify-command.js';
import { addReconcileCommand } from './reconcile-command.js';
import { addHelpCommand, explainUnknownOptions, unknownCommand } from './help.js';

/** Last resort for an error no handler caught: report it without secrets and exit 3, never 0 or 1. */
export function crashed(error: unknown): never {
  process.stderr.write(`migrate-users: could not finish (internal error): ${scrub(describe(error))}\n`);
  if (error instanceof Error && error.stack) process.stderr.write(`${scrub(error.stack)}\n`);
  process.exit(EXIT.unfinished);
}

/** The one place that turns errors into exit codes and messages. Returns the exit code; never exits. */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  quietOnClosedPipes();
  const interrupt = onSignals();
  const ctx: CliContext = {
    env,
    out: (text) => process.stdout.write(text),
    signal: interrupt.signal,
    interruptedExitCode: interrupt.exitCode,
  };
  let code: number = EXIT.ok;
  const program = buildProgram((fn) => async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    code = await fn(command.opts<never>(), ctx);
  });
  try {
    await program.parseAsync([...argv]);
    return code;
  } catch (error) {
    return report(error, ctx);
  } finally {
    interrupt.dispose();
  }
}

/** How a command's action reaches its run function: main() binds it to the run's context and exit code. */
export type ActionRunner = (fn: (flags: never, ctx: CliContext) => Promise<number>) => (...args: unknown[]) => Promise<void>;

/**
 * Every command and flag, as main() parses them and `--help` shows them; nothing runs until an action is
 * called. docs/cli.md is generated from it (src/cli/cli-doc.ts), so it cannot drift from the help.
 */
export function buildProgram(run: ActionRunner): Command {
  const program = new Command('migrate-users')
    .description('Move users and credit balances from Redis into PostgreSQL (default command: migrate).')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) })
    .showSuggestionAfterError();
  const migrateCommand = (command: Command) =>
    help(addMigrateOptions(command), MIGRATE_EXAMPLES, MIGRATE_EXITS).action(async (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      if (cmd.args.length > 0) throw unknownCommand(cmd.args[0] as string, program);
      await run(runMigrate)(...args);
    });
  migrateCommand(program);
  program.version(packageVersion(), '--version', 'print the version and exit');
  migrateCommand(
    program.command('migrate').description('the migration (the default command): same flags as without a command').exitOverride().allowExcessArguments(true),
  );

  const schema = program.command('schema').description('manage the PostgreSQL tables').exitOverride();
  help(
    addLogOptions(addPostgresOptions(schema.command('apply').description('create users and the bookkeeping tables (idempotent)'))),
    ['migrate-users schema apply --database-url "$DATABASE_URL"'],
    SCHEMA_EXITS,
  )
    .exitOverride()
    .action(run(runSchemaApply));
  help(
    addLogOptions(addPostgresOptions(schema.command('check').description('show public.users beside what the tool writes; exit 2 if it cannot hold it'))),
    ['migrate-users schema check'],
    SCHEMA_EXITS,
  )
    .exitOverride()
    .action(run(runSchemaCheck));
  help(
    addLogOptions(
      addPostgresOptions(
        schema.command('clean').description('remove the stages of unfinished runs (their records, password hashes included); the next run reads Redis afresh'),
      ),
    ),
    ['migrate-users schema clean'],
    '0 no stage holds records any more; 1 a stage another role owns still does (its owner is named: run it as that role); 2 bad flags or URL; 3 a writing run is in progress, or PostgreSQL went away',
  )
    .exitOverride()
    .action(run(runSchemaClean));
  addHelpCommand(schema);

  addVerifyCommand(program, run);
  addReconcileCommand(program, run);

  help(
    addLogOptions(addRedisOptions(program.command('seed').description('load synthetic demo users (old record format) into Redis'))),
    ['migrate-users seed --redis-url redis://127.0.0.1:6379 --count 5000'],
    '0 seeded; 2 bad flags, keys already there (see --force), a Redis Cluster, or a Redis that cannot be reached; 3 Redis was lost mid-run',
  )
    .addOption(new Option('--count <n>', 'how many users (default 1000)'))
    .addOption(new Option('--seed <n>', 'random seed (default 1)'))
    .option('--force', 'write even where keys matching --match exist: first removes what an earlier seed wrote there, leaves other keys alone')
    .exitOverride()
    .action(run(runSeed));
  addHelpCommand(program);
  for (const command of [program.commands.find((c) => c.name() === 'verify'), program.commands.find((c) => c.name() === 'reconcile')]) {
    if (command)
      help(command, command.name() === 'verify' ? VERIFY_EXAMPLES : RECONCILE_EXAMPLES, command.name() === 'verify' ? VERIFY_EXITS : RECONCILE_EXITS);
  }

  explainUnknownOptions(program);

  // The default command takes no arguments: a word there is a mistyped command, answered in its action.
  // Set last: subcommands copy their parent's settings when made, and must refuse extra words (a stray
  // `apply` for `--apply` would otherwise be ignored).
  program.allowExcessArguments(true);
  return program;
}

let pipesWatched = false;

/**
 * `migrate-users help | head -1`: the reader has gone, and Node reports the next write to stdout as an
 * 'error' event (EPIPE), which nothing handled: "internal error", a stack trace, exit 3. A reader that
 * stops reading wants no more output, which is no failure: the rest is dropped, and the command ends with
 * its own exit code (0 for help; a verify that found differences still exits 1).
 */
function quietOnClosedPipes(): void {
  if (pipesWatched) return;
  pipesWatched = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') crashed(error);
    });
  }
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/**
 * First SIGINT / SIGTERM: stop taking new batches, let the ones in flight finish, write the report
 * (marked interrupted) and exit 130 / 143. Second: exit at once; every committed batch is whole either way.
 */
function onSignals() {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const handler = (signal: NodeJS.Signals) => {
    const code = signal === 'SIGINT' ? 130 : 143;
    if (received) {
      process.stderr.write(`migrate-users: ${signal} again: stopping now (exit ${code})\n`);
      process.exit(code);
    }
    received = signal;
    terminal.print(`migrate-users: ${signal}: finishing the batches in flight, then stopping (again to stop at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: controller.signal,
    exitCode: () => (received === 'SIGTERM' ? 143 : 130),
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

function report(error: unknown, ctx: CliContext): number {
  terminal.close();
  const say = (message: string) => {
    process.stderr.write(`migrate-users: ${scrub(message)}\n`);
    // Expected errors are one line; --log-level debug adds where it came from.
    if (ctx.debug && error instanceof Error && error.stack) process.stderr.write(`${scrub(error.stack)}\n`);
  };
  if (error instanceof CommanderError) {
    // commander has already printed its message (or the help text).
    return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (error instanceof UsageError) {
    say(`error: ${error.message}`);
    return EXIT.usage;
  }
  if (error instanceof InterruptedError) {
    say(`interrupted: ${error.message}`);
    return ctx.interruptedExitCode();
  }
  const tls = tlsFailure(error, 'PostgreSQL', '--database-ca');
  if (tls) {
    say(`error: ${tls}`);
    return EXIT.usage;
  }
  const code = pgCode(error);
  if (code === '42501') {
    say(`error: permission denied: ${describe(error)} (see docs/target-table.md "Database roles")`);
    return EXIT.usage;
  }
  if (code === '3D000' || code === '28P01' || code === '28000') {
    say(`error: cannot use the database: ${describe(error)}`);
    return EXIT.usage;
  }
  if (error instanceof UnfinishedError || isConnectionFailure(error)) {
    const server = lostServer(error);
    // Only a writing run whose stage was complete resumes; one that was still reading Redis starts over.
    const next = error instanceof RunFailedError ? (error.partial.resumable ? ': it resumes' : ': it reads Redis again from the start') : '';
    say(
      server
        ? `could not finish: lost the connection to ${server} mid-run (${describe(error)}); run the same command again when it is back${next}`
        : `could not finish: ${describe(error)}`,
    );
    return EXIT.unfinished;
  }
  say(`could not finish: ${describe(error)}`);
  if (!ctx.debug && error instanceof Error && error.stack) process.stderr.write(`${scrub(error.stack)}\n`);
  return EXIT.unfinished;
}

const MIGRATE_EXAMPLES = [
  'migrate-users --dry-run --whitelist-file vip.txt --report dry-run.json',
  'migrate-users --whitelist-file vip.txt --report run.json --rejects rejects.ndjson',
];
const MIGRATE_EXITS =
  '0 every record migrated or unchanged; 1 some records rejected or in conflict (see --rejects); 2 bad flags, ' +
  'files, URLs, table, or a server that cannot be reached; 3 a server went away mid-run; 130 / 143 interrupted. ' +
  'After 3 or 130 / 143 run it again: it resumes, or, if it was still reading Redis (nothing written), reads Redis again from the start';
const SCHEMA_EXITS =
  '0 done, the table can hold what the tool writes; 2 it cannot (the column is named), bad flags or URL, or a PostgreSQL that cannot be reached; 3 PostgreSQL went away';
const VERIFY_EXAMPLES = [
  'migrate-users verify --whitelist-file vip.txt --junit verify.xml --markdown "$GITHUB_STEP_SUMMARY"',
  'migrate-users verify --sample 10000',
];
const VERIFY_EXITS =
  '0 PostgreSQL holds exactly what migrate would write; 1 differences (listed); 2 bad flags, files, URLs, or a server that cannot be reached; 3 a server went away';
const RECONCILE_EXAMPLES = [
  'migrate-users reconcile --whitelist-file vip.txt --conflicts conflicts.csv',
  'migrate-users reconcile --whitelist-file vip.txt --apply --report reconcile.json',
];
const RECONCILE_EXITS =
  '0 nothing left to reconcile; 1 conflicts or rejected records remain; 2 bad flags, files, URLs, or a server that cannot be reached; 3 a server went away';

/** Examples and exit codes below a command's flags. */
function help(command: Command, examples: readonly string[], exits: string): Command {
  return command.addHelpText('after', `\nExamples:\n${examples.map((e) => `  $ ${e}`).join('\n')}\n\nExit codes: ${exits}.\n`);
}
