import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { EXIT, InterruptedError, UnfinishedError, UsageError, describe, isConnectionFailure, pgCode, tlsFailure } from '../errors.js';
import { Scrubber } from '../redact.js';
import type { CliContext } from './context.js';
import { addConnectionOptions } from './context.js';
import { addMigrateOptions, runMigrate } from './migrate-command.js';
import { runSchemaApply, runSchemaCheck } from './schema-command.js';
import { runSeed } from './seed-command.js';
import { addVerifyCommand } from './verify-command.js';
import { addReconcileCommand } from './reconcile-command.js';

/**
 * The one place that turns errors into exit codes and messages. Returns the exit code; never exits.
 */
/** Scrubs the URLs main() saw; used by `crashed` too. */
const scrubber = new Scrubber();

/** Last resort for an error no handler caught: report it without secrets and exit 3, never 0 or 1. */
export function crashed(error: unknown): never {
  process.stderr.write(`migrate-users: could not finish (internal error): ${scrubber.scrub(describe(error))}\n`);
  if (error instanceof Error && error.stack) process.stderr.write(`${scrubber.scrub(error.stack)}\n`);
  process.exit(EXIT.unfinished);
}

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const interrupt = onSignals();
  const ctx: CliContext = {
    env,
    out: (text) => process.stdout.write(text),
    scrubber,
    signal: interrupt.signal,
    interruptedExitCode: interrupt.exitCode,
  };
  let code: number = EXIT.ok;
  const run = (fn: (flags: never, ctx: CliContext) => Promise<number>) => async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    code = await fn(command.opts() as never, ctx);
  };

  const program = new Command('migrate-users')
    .description('Move users and credit balances from Redis into PostgreSQL (default command: migrate).')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) })
    .showSuggestionAfterError();
  addMigrateOptions(program).action(run(runMigrate));
  program.version(packageVersion(), '--version', 'print the version and exit');
  addMigrateOptions(program.command('migrate').description('the migration (the default command): same flags as without a command'))
    .exitOverride()
    .action(run(runMigrate));

  const schema = program.command('schema').description('manage the PostgreSQL tables').exitOverride();
  addConnectionOptions(schema.command('apply').description('create users and the bookkeeping tables (idempotent)'))
    .exitOverride()
    .action(run(runSchemaApply));
  addConnectionOptions(schema.command('check').description('show public.users beside what the tool writes; exit 2 if it cannot hold it'))
    .exitOverride()
    .action(run(runSchemaCheck));

  addVerifyCommand(program, run);
  addReconcileCommand(program, run);

  addConnectionOptions(program.command('seed').description('load synthetic demo users (old record format) into Redis'))
    .addOption(new Option('--count <n>', 'how many users (default 1000)'))
    .addOption(new Option('--seed <n>', 'random seed (default 1)'))
    .option('--force', 'write even where keys matching --match already exist')
    .exitOverride()
    .action(run(runSeed));

  try {
    await program.parseAsync([...argv]);
    return code;
  } catch (error) {
    return report(error, ctx);
  } finally {
    interrupt.dispose();
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
    process.stderr.write(`migrate-users: ${signal}: finishing the batches in flight, then stopping (again to stop at once)\n`);
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
  const say = (message: string) => process.stderr.write(`migrate-users: ${ctx.scrubber.scrub(message)}\n`);
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
    say(`error: permission denied: ${describe(error)} (see README "Database roles")`);
    return EXIT.usage;
  }
  if (code === '3D000' || code === '28P01' || code === '28000') {
    say(`error: cannot use the database: ${describe(error)}`);
    return EXIT.usage;
  }
  if (error instanceof UnfinishedError || isConnectionFailure(error)) {
    say(`could not finish: ${describe(error)}`);
    return EXIT.unfinished;
  }
  say(`could not finish: ${describe(error)}`);
  if (error instanceof Error && error.stack) process.stderr.write(`${ctx.scrubber.scrub(error.stack)}\n`);
  return EXIT.unfinished;
}
