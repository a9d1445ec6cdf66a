import { Command, CommanderError, Option } from 'commander';
import { EXIT, UnfinishedError, UsageError, describe, isConnectionFailure, pgCode } from '../errors.js';
import { Scrubber } from '../redact.js';
import type { CliContext } from './context.js';
import { addConnectionOptions } from './context.js';
import { addMigrateOptions, runMigrate } from './migrate-command.js';
import { runSchemaApply } from './schema-command.js';
import { runSeed } from './seed-command.js';
import { addVerifyCommand } from './verify-command.js';
import { addReconcileCommand } from './reconcile-command.js';

/**
 * The one place that turns errors into exit codes and messages. Returns the exit code; never exits.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const ctx: CliContext = { env, out: (text) => process.stdout.write(text), scrubber: new Scrubber() };
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

  const schema = program.command('schema').description('manage the PostgreSQL tables').exitOverride();
  addConnectionOptions(schema.command('apply').description('create users and the bookkeeping tables (idempotent)'))
    .exitOverride()
    .action(run(runSchemaApply));

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
  }
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
