import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { EXIT } from '../errors.js';
import { reconcile } from '../core/reconcile.js';
import { refuseOlderSnapshot } from '../core/runs.js';
import type { ReconcileClass, ReconcileEntry } from '../results/reconcile-report.js';
import type { Take } from '../core/process-chunk.js';
import { NdjsonFile } from '../report/ndjson-file.js';
import { CONFLICT_CSV_HEADER, conflictCsvLines, formatReconcileText } from '../report/reconcile-output.js';
import { csvRow } from '../report/csv.js';
import { TextFile } from '../report/text-file.js';
import { parseReview } from '../core/take-review.js';
import { Problems, unreadable } from './config.js';
import { withServers } from './connect.js';
import { snapshotPlan, type SnapshotFlags } from './snapshot-options.js';
import { addConnectionOptions, setup, type CliContext, type ConnectionFlags } from './context.js';
import { createProgress } from './progress.js';
import { addReadOptions, readOptions, type ReadFlags } from './read-options.js';

interface ReconcileFlags extends ConnectionFlags, ReadFlags, SnapshotFlags {
  apply?: boolean;
  report?: string;
  rejects?: string;
  conflicts?: string;
  conflictsFormat?: string;
  take?: string;
  users?: string;
  show?: string;
  merge?: boolean;
  combine?: boolean;
  signupCredits?: string;
  progress: boolean;
}

const CONFLICT_CLASSES: ReadonlySet<ReconcileClass> = new Set(['changed_in_both', 'deleted_in_postgres', 'deleted_in_redis', 'other_conflict']);

export function addReconcileCommand(program: Command, run: (fn: typeof runReconcile) => (...args: unknown[]) => Promise<void>): void {
  addReadOptions(
    addConnectionOptions(program.command('reconcile').description('after the cut-over: what drifted on which side; --apply brings across only what is safe')),
    { writes: true },
  )
    .option('--apply', 'write the "changed only in Redis" and "only in Redis" users (nothing else)')
    .addOption(new Option('--report <path>', 'JSON report (migrate\'s format plus "classes" and "remaining")'))
    .addOption(new Option('--rejects <path>', 'NDJSON of every record not migrated'))
    .addOption(new Option('--conflicts <path>', 'export the conflicts for review (NDJSON, or CSV when the path ends in .csv)'))
    .addOption(new Option('--conflicts-format <format>', 'ndjson or csv (default: from the file name)'))
    .addOption(new Option('--take <side>', 'resolve the conflicts of the users in --users by choosing redis or postgres (needs --apply)'))
    .addOption(new Option('--users <path>', 'for --take: the lines of your review (--conflicts NDJSON or CSV) for the users to resolve'))
    .option('--merge', 'early logins (a new-app row created at a first login holds the email): plan their merge; with --apply, merge them')
    .option(
      '--combine',
      "balances changed on both sides since the tool's last write (only balances in Redis): show PostgreSQL's plus Redis's change; with --apply, write it",
    )
    .addOption(new Option('--signup-credits <n>', 'the signup bonus the new app granted those rows: withheld from the merge (default 100)'))
    .addOption(new Option('--show <n>', 'users listed per class in the summary (default 10)'))
    .option('--no-progress', 'no progress bar')
    .exitOverride()
    .action(run(runReconcile));
}

export async function runReconcile(flags: ReconcileFlags, ctx: CliContext): Promise<number> {
  const problems = new Problems();
  const { conn, log } = setup(flags, ctx, problems);
  const snapshot = snapshotPlan(flags, ctx.env, problems);
  const read = readOptions(flags, conn.match, ctx, problems);
  const show = problems.integer('--show', flags.show, 10, 0, 10_000);
  const format = flags.conflictsFormat ?? (flags.conflicts?.toLowerCase().endsWith('.csv') ? 'csv' : 'ndjson');
  if (format !== 'csv' && format !== 'ndjson') problems.add(`--conflicts-format must be ndjson or csv, got "${format}"`);
  const take = parseTake(flags, problems);
  if (flags.signupCredits !== undefined && !flags.merge) problems.add('--signup-credits goes with --merge');
  const merge = flags.merge ? { bonus: BigInt(problems.integer('--signup-credits', flags.signupCredits, 100, 0, 2_147_483_647)) } : undefined;
  problems.outputPath('--report', flags.report);
  problems.outputPath('--rejects', flags.rejects);
  problems.outputPath('--conflicts', flags.conflicts);
  problems.throwIfAny();

  const rejects = flags.rejects ? await NdjsonFile.open(flags.rejects) : undefined;
  const conflicts = flags.conflicts ? await TextFile.open(flags.conflicts) : undefined;
  let reported = false;
  try {
    if (format === 'csv') await conflicts?.write(csvRow(CONFLICT_CSV_HEADER));
    const samples = new Map<ReconcileClass, ReconcileEntry[]>();
    const onEntry = async (entry: ReconcileEntry) => {
      const list = samples.get(entry.class) ?? [];
      if (list.length < show) samples.set(entry.class, [...list, entry]);
      if (conflicts && CONFLICT_CLASSES.has(entry.class) && !entry.resolved_by) {
        await conflicts.write(format === 'csv' ? conflictCsvLines(entry) : `${JSON.stringify(entry)}\n`);
      }
    };
    const report = await withServers(
      { ...conn, snapshot },
      log,
      3,
      async (redis, pool, source) => {
        if (flags.apply) await refuseOlderSnapshot(pool, source, flags.allowOlderSnapshot === true);
        return reconcile(
          { ...read, dryRun: !flags.apply, apply: flags.apply === true, take, merge, combine: flags.combine === true, source },
          { redis, pool, log, rejects, onEntry, progress: createProgress(flags.progress, ctx.signal), signal: ctx.signal },
        );
      },
      ctx.signal,
    );
    if (flags.report) await writeFile(flags.report, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o600 });
    reported = true;
    ctx.out(formatReconcileText(report, samples));
    if (report.status === 'interrupted') return ctx.interruptedExitCode();
    return report.remaining === 0 ? EXIT.ok : EXIT.differences;
  } finally {
    // The files of a run go in place together; a run that did not finish leaves the last ones.
    await (reported ? rejects?.close() : rejects?.discard());
    await (reported ? conflicts?.close() : conflicts?.discard());
  }
}

function parseTake(flags: ReconcileFlags, problems: Problems): Take | undefined {
  if (flags.take === undefined && flags.users === undefined) return undefined;
  if (flags.take !== 'redis' && flags.take !== 'postgres') {
    problems.add(`--take must be redis or postgres, got "${flags.take ?? ''}"`);
    return undefined;
  }
  if (!flags.apply) problems.add('--take writes: it needs --apply');
  if (!flags.users) {
    problems.add('--take needs --users FILE (the lines of your review, `reconcile --conflicts`, for the users to resolve)');
    return undefined;
  }
  let text: string;
  try {
    text = readFileSync(flags.users, 'utf8');
  } catch (error) {
    problems.add(unreadable('review file', flags.users, '--users', error));
    return undefined;
  }
  const review = parseReview(text, flags.users);
  for (const problem of review.problems) problems.add(problem);
  return { side: flags.take, users: review.users };
}
