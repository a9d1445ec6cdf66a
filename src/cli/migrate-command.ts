import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { EXIT } from '../errors.js';
import { scrub } from '../redact.js';
import { migrate, RunFailedError } from '../core/migrate.js';
import { refuseOlderSnapshot } from '../core/runs.js';
import type { MigrateReport } from '../results/migrate-report.js';
import { NdjsonFile } from '../report/ndjson-file.js';
import { formatSummary } from '../report/summary.js';
import { DEFAULTS, Problems } from './config.js';
import { withServers } from './connect.js';
import { snapshotPlan, type SnapshotFlags } from './snapshot-options.js';
import { addConnectionOptions, setup, type CliContext, type ConnectionFlags } from './context.js';
import { createProgress } from './progress.js';
import { addReadOptions, readOptions, type ReadFlags } from './read-options.js';

interface MigrateFlags extends ConnectionFlags, ReadFlags, SnapshotFlags {
  dryRun?: boolean;
  restart?: boolean;
  writeConcurrency?: string;
  report?: string;
  rejects?: string;
  progress: boolean;
}

export function addMigrateOptions(command: Command): Command {
  return addReadOptions(addConnectionOptions(command).option('--dry-run', 'read, validate, map and compare everything; write nothing to PostgreSQL'), {
    writes: true,
  })
    .option('--restart', 'ignore the checkpoint of an interrupted run: read Redis afresh')
    .addOption(
      new Option(
        '--write-concurrency <n>',
        `batches written side by side, each on a PostgreSQL connection of its own (default ${DEFAULTS.writeConcurrency}; a dry-run uses one)`,
      ),
    )
    .addOption(new Option('--report <path>', 'write the JSON report here'))
    .addOption(new Option('--rejects <path>', 'write one NDJSON line per record not migrated here'))
    .option('--no-progress', 'no progress bar (none is shown when stderr is not a terminal or CI is set)');
}

export async function runMigrate(flags: MigrateFlags, ctx: CliContext): Promise<number> {
  const problems = new Problems();
  const { conn, log } = setup(flags, ctx, problems);
  const snapshot = snapshotPlan(flags, ctx.env, problems);
  const options = {
    ...readOptions(flags, conn.match, ctx, problems),
    dryRun: flags.dryRun === true,
    restart: flags.restart === true,
    writeConcurrency: problems.integer('--write-concurrency', flags.writeConcurrency, DEFAULTS.writeConcurrency, 1, 16),
  };
  problems.outputPath('--report', flags.report);
  problems.outputPath('--rejects', flags.rejects);
  problems.throwIfAny();

  const rejects = flags.rejects ? await NdjsonFile.open(flags.rejects) : undefined;
  let reported = false;
  const writeReport = async (report: MigrateReport) => {
    if (flags.report) await writeFile(flags.report, `${scrub(JSON.stringify(report, null, 2))}\n`, { mode: 0o600 });
    reported = true;
  };
  try {
    // The session, the write lock's connection, one per extra write lane, and one to record a failure.
    const report = await withServers(
      { ...conn, snapshot },
      log,
      2 + options.writeConcurrency,
      async (redis, pool, source) => {
        if (!options.dryRun) await refuseOlderSnapshot(pool, source, flags.allowOlderSnapshot === true);
        return migrate({ ...options, source }, { redis, pool, log, rejects, progress: createProgress(flags.progress, ctx.signal), signal: ctx.signal });
      },
      ctx.signal,
    );
    await writeReport(report);
    ctx.out(formatSummary(report));
    if (report.status === 'interrupted') return ctx.interruptedExitCode();
    return report.counts.invalid + report.counts.conflicts > 0 ? EXIT.differences : EXIT.ok;
  } catch (error) {
    if (error instanceof RunFailedError) await writeReport(error.partial);
    throw error;
  } finally {
    // The rejects of a run go in place with its report; a run that never got going leaves the last ones.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- writeReport sets it, which TS's narrowing of a let does not see
    await (reported ? rejects?.close() : rejects?.discard());
  }
}
