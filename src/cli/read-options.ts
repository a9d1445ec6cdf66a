import { Command, Option } from 'commander';
import type { ReadOptions } from '../core/stage-source.js';
import { DEFAULTS, loadWhitelist, Problems, whitelistCredits } from './config.js';
import type { CliContext } from './context.js';
import { addSnapshotOptions } from './snapshot-options.js';

export interface ReadFlags {
  batchSize?: string;
  concurrency?: string;
  scanCount?: string;
  maxValueBytes?: string;
  whitelistFile?: string;
  whitelistCredits?: string;
  maxRate?: string;
  readChunk?: string;
  fastRead?: boolean;
  /** --rdb: a throwaway server has no other client to make way for. */
  rdb?: string[];
  retries?: string;
  retryDelayMs?: string;
  allowEmpty?: boolean;
}

/**
 * Flags that decide what is read and how it is mapped: identical for migrate, dry-run, verify and reconcile
 * (`writes`: see addSnapshotOptions).
 */
export function addReadOptions(command: Command, options: { readonly writes: boolean }): Command {
  return addSnapshotOptions(command, options.writes)
    .addOption(
      new Option('--batch-size <n>', `records per batch: one Redis read; PostgreSQL writes per batch, each statement atomic (default ${DEFAULTS.batchSize})`),
    )
    .addOption(
      new Option(
        '--concurrency <n>',
        `batches read and mapped side by side (default ${DEFAULTS.gentleConcurrency}; ${DEFAULTS.concurrency} with --fast-read or --rdb)`,
      ),
    )
    .addOption(new Option('--scan-count <n>', `SCAN COUNT hint (default ${DEFAULTS.scanCount})`))
    .addOption(new Option('--max-value-bytes <n>', `larger values are rejected unread (default ${DEFAULTS.maxValueBytes})`))
    .addOption(new Option('--whitelist-file <path>', 'whitelisted emails, one per line, # comments (also env WHITELIST_EMAILS, comma-separated)'))
    .addOption(new Option('--whitelist-credits <n>', `credits a whitelisted user gets at least (default ${DEFAULTS.whitelistCredits})`))
    .addOption(new Option('--max-rate <n>', 'read at most n keys per second from Redis (default: no limit)'))
    .addOption(
      new Option(
        '--read-chunk <n>',
        `keys per Redis read command, one command at a time per server: the live app's commands are served between them (default ${DEFAULTS.readChunk})`,
      ),
    )
    .option(
      '--fast-read',
      'one Redis command per batch (--batch-size keys), several at a time: faster, but holds the server longer (docs/performance.md "Redis impact")',
    )
    .addOption(new Option('--retries <n>', 'retries after a lost or unreachable server (default 5)'))
    .addOption(new Option('--retry-delay-ms <n>', 'first retry delay, doubled each time up to 30 s, with jitter (default 500)'))
    .option('--allow-empty', 'no key matching --match is not an error (by default it is: a typo or the wrong server)');
}

export function readOptions(flags: ReadFlags, match: string, ctx: CliContext, problems: Problems): ReadOptions {
  const chunk = readChunk(flags, problems);
  return {
    match,
    batchSize: problems.integer('--batch-size', flags.batchSize, DEFAULTS.batchSize, 1, 50_000),
    // Gentle reads keep fewer batches in flight: the measured tail of another client's latency comes from
    // the CPU the tool takes beside Redis as much as from the commands themselves (docs/performance.md "Redis impact").
    concurrency: problems.integer('--concurrency', flags.concurrency, chunk === undefined ? DEFAULTS.concurrency : DEFAULTS.gentleConcurrency, 1, 64),
    scanCount: problems.integer('--scan-count', flags.scanCount, DEFAULTS.scanCount, 1, 100_000),
    maxValueBytes: problems.integer('--max-value-bytes', flags.maxValueBytes, DEFAULTS.maxValueBytes, 64, 512 * 1024 * 1024),
    maxRate: problems.integer('--max-rate', flags.maxRate, 0, 0, 10_000_000),
    readChunk: chunk,
    retry: {
      retries: problems.integer('--retries', flags.retries, 5, 0, 100),
      baseDelayMs: problems.integer('--retry-delay-ms', flags.retryDelayMs, 500, 1, 60_000),
    },
    allowEmpty: flags.allowEmpty === true,
    mapContext: {
      whitelist: loadWhitelist(flags.whitelistFile, ctx.env.WHITELIST_EMAILS, problems),
      whitelistCredits: whitelistCredits(flags.whitelistCredits, problems),
    },
  };
}

/** Gentle by default: short read commands; --fast-read, or a snapshot (its throwaway server serves no one else), one per batch. */
function readChunk(flags: ReadFlags, problems: Problems): number | undefined {
  if (flags.fastRead && flags.readChunk !== undefined)
    problems.add('--fast-read and --read-chunk exclude each other: --fast-read reads a whole batch per command');
  if (flags.fastRead || (flags.rdb !== undefined && flags.rdb.length > 0 && flags.readChunk === undefined)) return undefined;
  return problems.integer('--read-chunk', flags.readChunk, DEFAULTS.readChunk, 1, 50_000);
}
