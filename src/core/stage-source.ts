import type pg from 'pg';
import { UsageError } from '../errors.js';
import { describeSource } from '../report/report.js';
import type { SourceInfo } from '../results/migrate-report.js';
import type { Session } from '../db/database.js';
import { assertWritable, columnLimits, readTarget } from '../db/target.js';
import type { Logger } from '../log.js';
import { mapRecord, type MapContext } from '../map/map-record.js';
import { rowDigest } from '../map/user-row.js';
import { keyCount, scanKeys, scanTargets, ServerGroup, ValueReader, type RedisReadable, type RedisSource, type SourceRecord } from '../source/redis-reader.js';
import { SharedKeys } from '../source/shared-keys.js';
import { copySafe, StageWriter, type Stage, type StagedRecord } from '../stage/stage.js';
import { forEachBounded } from './bounded.js';
import { NO_RETRY, RetryCounter, withRetries, type RetryPolicy } from './retry.js';

/** How the source is read: shared by migrate, dry-run and verify. */
export interface ReadOptions {
  readonly match: string;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly scanCount: number;
  readonly maxValueBytes: number;
  readonly mapContext: MapContext;
  /** Keys per Redis read command (a batch is read in chunks of this many, one after another); undefined:
   * the whole batch in one command (--fast-read). */
  readonly readChunk?: number | undefined;
  /** Keys per second at most (0 = no limit): how gentle to be with production Redis. */
  readonly maxRate?: number | undefined;
  readonly retry?: RetryPolicy | undefined;
  /** No key matching `match` is expected (--allow-empty): otherwise an empty source is an error. */
  readonly allowEmpty?: boolean | undefined;
}

export interface Progress {
  /** A phase that counts records; `estimate`: the total is a guess (the source's key count), not exact. */
  phase(name: string, total?: number, estimate?: boolean): void;
  /** A phase with nothing to count (indexing the stage, triage): its name and the time it takes. */
  step(name: string): void;
  advance(count: number): void;
  done(): void;
}

export interface SourceIo {
  readonly redis: RedisSource;
  readonly log: Logger;
  readonly progress?: Progress | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly retries?: RetryCounter | undefined;
}

/**
 * Reads the target table (exit 2 if the tool cannot write it) and returns `options` with the mapping
 * bounded by its columns: a value a column cannot hold is rejected at mapping, in a dry-run too.
 */
export async function boundByTarget<T extends ReadOptions>(pool: Pick<pg.Pool, 'query'>, options: T): Promise<T> {
  const target = await readTarget(pool);
  assertWritable(target);
  return { ...options, mapContext: { ...options.mapContext, limits: columnLimits(target) } };
}

export function emptySource(options: ReadOptions & { source?: SourceInfo | undefined }): UsageError {
  const where = options.source ? ` in ${describeSource(options.source)}` : '';
  const check =
    options.source?.kind === 'rdb' || options.source?.kind === 'rdb-cluster'
      ? "Check --match and the snapshot (another server's, or the users are in a database other than 0)"
      : 'Check --match and the Redis URL (a typo, another server, another database number)';
  return new UsageError(
    `no key${where} matches --match "${options.match}": nothing to migrate or check. ${check}; --allow-empty if the source is meant to be empty`,
  );
}

/** A batch of keys, and the client their values are read through. */
export interface KeyBatch {
  readonly keys: Buffer[];
  readonly reader: RedisReadable;
}

/**
 * SCAN over the whole keyspace (every master of a cluster, one after another), started over from cursor 0
 * on a server that is lost and comes back.
 */
export async function* scanSource(options: ReadOptions, io: SourceIo): AsyncGenerator<KeyBatch> {
  for (const { node, reader } of scanTargets(io.redis)) {
    for await (const keys of scanNode(node, options, io)) yield { keys, reader };
  }
}

async function* scanNode(node: RedisReadable, options: ReadOptions, io: SourceIo): AsyncGenerator<Buffer[]> {
  const counter = io.retries ?? new RetryCounter();
  // A cluster's node connections open lazily: connect first, so that opening is not taken for a reconnect.
  await withRetries('PING', options.retry ?? NO_RETRY, counter, io.log, () => node.callBuffer('PING'), io.signal);
  let epoch = 0;
  const onReady = () => epoch++;
  node.on('ready', onReady);
  try {
    yield* scanKeys(
      node,
      {
        ...options,
        connectionEpoch: () => epoch,
        onRestart: () => {
          counter.count++;
          io.log.warn('Redis connection was lost mid-scan: scanning again from the start');
        },
      },
      (what, fn) => withRetries(what, options.retry ?? NO_RETRY, counter, io.log, fn, io.signal),
    );
  } finally {
    node.off('ready', onReady);
  }
}

/**
 * Reads every key batch from `keys` (all of SCAN by default), maps each value with the one mapping, and
 * streams the results into the session's stage. Returns how many records were staged.
 */
export async function stageSource(session: Session, stage: Stage, options: ReadOptions, io: SourceIo, keys?: AsyncIterable<KeyBatch>): Promise<number> {
  const writer = new StageWriter(session, stage);
  const prefixLength = options.match.length - 1;
  let seq = 0;
  // One per client: each remembers whether its server allows the script.
  const readers = new Map<RedisReadable, ValueReader>();
  const readerOf = (client: RedisReadable) => {
    let reader = readers.get(client);
    if (!reader) {
      reader = new ValueReader(
        client,
        (reason) => io.log.info({ reason }, 'EVAL_RO not available: reading with TYPE + GETRANGE pipelines instead'),
        options.readChunk ?? Infinity,
      );
      readers.set(client, reader);
    }
    return reader;
  };
  const read = (client: RedisReadable, batch: readonly Buffer[]) => readerOf(client).read(batch, prefixLength, options.maxValueBytes);
  // A cluster's snapshots: a key in two files means a wrong file (see SharedKeys), found before any write.
  const shared = io.redis instanceof ServerGroup && io.redis.servers.length > 1 ? new SharedKeys(io.redis, read) : undefined;
  // A whole SCAN is measured against the database's key count; a sample (given keys) has no total.
  if (io.progress) io.progress.phase('reading Redis', keys ? undefined : await keyCount(io.redis), true);
  const limiter = new RateLimiter(options.maxRate ?? 0);
  const counter = io.retries ?? new RetryCounter();
  const source = stopOnAbort(keys ?? scanSource(options, io), io.signal);
  try {
    await forEachBounded(source, options.concurrency, async ({ keys: batch, reader }) => {
      // Each chunk is mapped and staged as soon as it arrives: with one read command at a time per server,
      // the server then reads the next chunk (another batch's) while this one is mapped, instead of waiting
      // for the whole batch to be mapped. A failed chunk is read again alone, never the chunks staged before it.
      const chunk = Math.min(options.readChunk ?? batch.length, batch.length);
      for (let i = 0; i < batch.length; i += chunk) {
        const part = batch.slice(i, i + chunk);
        await limiter.take(part.length);
        const records = await withRetries('reading values', options.retry ?? NO_RETRY, counter, io.log, () => read(reader, part));
        await shared?.check(reader, part, records);
        const staged = records.map((record) => stagedRecord((seq += 1), record, options.mapContext));
        await writer.write(staged);
        io.progress?.advance(staged.length);
      }
    });
  } catch (error) {
    await writer.abort(error);
    throw error;
  }
  await writer.end();
  // Also when interrupted: a file found wrong is said now, not after a resume that would not read again.
  const refused = shared?.problem();
  if (refused) throw refused;
  io.log.debug({ staged: seq }, 'stage loaded');
  return seq;
}

/**
 * A uniform random sample of `size` keys (reservoir sampling over one full SCAN of key names only):
 * memory holds `size` keys, whatever the keyspace.
 */
export async function* sampleKeys(
  redis: RedisSource,
  options: ReadOptions,
  size: number,
  stats: { seen: number } = { seen: 0 },
  random: () => number = Math.random,
): AsyncGenerator<KeyBatch> {
  const targets = scanTargets(redis);
  const reservoir: { key: Buffer; id: string; target: number }[] = [];
  const seen = new Set<string>();
  let n = 0;
  for (const [target, { node }] of targets.entries()) {
    await node.callBuffer('PING');
    for await (const batch of scanKeys(node, options)) {
      for (const key of batch) {
        // SCAN may repeat a key; a repeat inside the reservoir must not count twice. The same key name on
        // two servers of a group is two records.
        const id = `${target}:${key.toString('base64')}`;
        if (seen.has(id)) continue;
        n += 1;
        stats.seen = n;
        if (reservoir.length < size) {
          reservoir.push({ key, id, target });
          seen.add(id);
          continue;
        }
        const slot = Math.floor(random() * n);
        const replaced = reservoir[slot];
        if (replaced) {
          seen.delete(replaced.id);
          reservoir[slot] = { key, id, target };
          seen.add(id);
        }
      }
    }
  }
  for (const [target, { reader }] of targets.entries()) {
    const keys = reservoir.filter((entry) => entry.target === target).map((entry) => entry.key);
    for (let i = 0; i < keys.length; i += options.batchSize) yield { keys: keys.slice(i, i + options.batchSize), reader };
  }
}

/** Stops pulling batches once the run is interrupted: batches already read still finish. */
async function* stopOnAbort<T>(source: AsyncIterable<T>, signal: AbortSignal | undefined): AsyncGenerator<T> {
  for await (const item of source) {
    if (signal?.aborted) return;
    yield item;
  }
}

/** At most `perSecond` keys per second, averaged from the start (0 = unlimited). */
class RateLimiter {
  private readonly started = Date.now();
  private taken = 0;

  constructor(private readonly perSecond: number) {}

  async take(count: number): Promise<void> {
    if (this.perSecond <= 0) return;
    this.taken += count;
    const due = this.started + (this.taken / this.perSecond) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/**
 * One record as the stage takes it: mapped (with its digest) or rejected with the reason. The per-record work
 * of every command's read, in one place (`npm run bench:map` measures it, with the COPY line the stage writes).
 */
export function stagedRecord(seq: number, record: SourceRecord, mapContext: MapContext): StagedRecord {
  if (!record.ok) return { seq, key: record.key, userId: null, reject: record };
  const mapped = mapRecord(record.keyEmail, record.value, mapContext);
  if (!mapped.ok) return { seq, key: record.key, userId: mapped.userId ?? null, reject: mapped };
  const { row, sourceCredits, topup } = mapped;
  const digest = rowDigest(row, sourceCredits);
  return { seq, key: record.key, userId: row.user_id, mapped: { row, sourceCredits, topup, digest }, copySafe: copySafe(record.key, record.value) };
}
