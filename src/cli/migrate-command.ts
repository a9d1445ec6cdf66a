import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { withPool } from '../db/database.js';
import { EXIT } from '../errors.js';
import { migrate } from '../core/migrate.js';
import { NdjsonFile } from '../report/ndjson-file.js';
import { formatSummary } from '../report/summary.js';
import { DEFAULTS, loadWhitelist, Problems, whitelistCredits } from './config.js';
import { withRedis } from './connect.js';
import { addConnectionOptions, setup, type CliContext, type ConnectionFlags } from './context.js';
import { createProgress } from './progress.js';

interface MigrateFlags extends ConnectionFlags {
  dryRun?: boolean;
  batchSize?: string;
  concurrency?: string;
  scanCount?: string;
  maxValueBytes?: string;
  whitelistFile?: string;
  whitelistCredits?: string;
  report?: string;
  rejects?: string;
  progress: boolean;
}

export function addMigrateOptions(command: Command): Command {
  return addConnectionOptions(command)
    .option('--dry-run', 'read, validate, map and compare everything; write nothing to PostgreSQL')
    .addOption(new Option('--batch-size <n>', `records per PostgreSQL transaction (default ${DEFAULTS.batchSize})`))
    .addOption(new Option('--concurrency <n>', `Redis read batches in flight (default ${DEFAULTS.concurrency})`))
    .addOption(new Option('--scan-count <n>', `SCAN COUNT hint (default ${DEFAULTS.scanCount})`))
    .addOption(new Option('--max-value-bytes <n>', `larger values are rejected unread (default ${DEFAULTS.maxValueBytes})`))
    .addOption(new Option('--whitelist-file <path>', 'whitelisted emails, one per line, # comments (also env WHITELIST_EMAILS, comma-separated)'))
    .addOption(new Option('--whitelist-credits <n>', `credits a whitelisted user gets at least (default ${DEFAULTS.whitelistCredits})`))
    .addOption(new Option('--report <path>', 'write the JSON report here'))
    .addOption(new Option('--rejects <path>', 'write one NDJSON line per record not migrated here'))
    .option('--no-progress', 'no progress bar (none is shown when stderr is not a terminal or CI is set)');
}

export async function runMigrate(flags: MigrateFlags, ctx: CliContext): Promise<number> {
  const problems = new Problems();
  const { conn, log } = setup(flags, ctx, problems);
  const options = {
    dryRun: flags.dryRun === true,
    match: conn.match,
    batchSize: problems.integer('--batch-size', flags.batchSize, DEFAULTS.batchSize, 1, 50_000),
    concurrency: problems.integer('--concurrency', flags.concurrency, DEFAULTS.concurrency, 1, 64),
    scanCount: problems.integer('--scan-count', flags.scanCount, DEFAULTS.scanCount, 1, 100_000),
    maxValueBytes: problems.integer('--max-value-bytes', flags.maxValueBytes, DEFAULTS.maxValueBytes, 64, 512 * 1024 * 1024),
    mapContext: {
      whitelist: loadWhitelist(flags.whitelistFile, ctx.env.WHITELIST_EMAILS, problems),
      whitelistCredits: whitelistCredits(flags.whitelistCredits, problems),
    },
  };
  problems.throwIfAny();

  const rejects = flags.rejects ? await NdjsonFile.open(flags.rejects) : undefined;
  try {
    const report = await withRedis(conn.redisUrl, log, (redis) =>
      withPool({ url: conn.databaseUrl, max: 2, log }, (pool) =>
        migrate(options, { redis, pool, log, rejects, progress: createProgress(flags.progress) }),
      ),
    );
    if (flags.report) await writeFile(flags.report, `${JSON.stringify(report, null, 2)}\n`, { mode: 0o600 });
    ctx.out(formatSummary(report));
    return report.counts.invalid + report.counts.conflicts > 0 ? EXIT.differences : EXIT.ok;
  } finally {
    await rejects?.close();
  }
}
