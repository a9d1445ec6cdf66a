import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { inOneTransaction, tryAdvisoryLock, withSession, type HeldLock, type Session } from '../db/database.js';
import { assertSchema } from '../db/schema.js';
import type { Logger } from '../log.js';
import type { RedisReadable } from '../source/redis-reader.js';
import { createStage, dropStage, finishStage, type Stage } from '../stage/stage.js';
import { configDigest, dropLeftoverStages, findResumable, recordStage, takeOverStage, type Resumable } from './checkpoint.js';
import { partialReport, summarise, Tally, type MigrateReport, type Mode } from '../report/report.js';
import type { RecordSink } from '../report/ndjson-file.js';
import { stageSource, type Progress, type ReadOptions } from './stage-source.js';
import { conflictEntry, presettledKinds, processChunk, type ClassifiedEntry, type Take } from './process-chunk.js';
import { heldBackRecords, recordConflicts, triage, triagedTotals, type TriageKind } from './facts.js';
import { NO_RETRY, RetryCounter, withRetries } from './retry.js';
import { UnfinishedError } from '../errors.js';

export interface MigrateOptions extends ReadOptions {
  readonly dryRun: boolean;
  /** reconcile --take: an operator's choice of side for listed users in conflict. */
  readonly take?: Take | undefined;
  /** Recorded in migrate_users.runs. */
  readonly command?: string;
  /** Ignore the checkpoint of an unfinished run and read Redis afresh. */
  readonly restart?: boolean | undefined;
  /**
   * Batches written side by side, each on a PostgreSQL connection of its own (default 1). Only a writing
   * migrate uses more than one: a dry-run's TEMP stage lives in one session, and reconcile lists in order.
   */
  readonly writeConcurrency?: number | undefined;
}

export type { Progress };

export interface MigrateIo {
  readonly redis: RedisReadable;
  readonly pool: pg.Pool;
  readonly log: Logger;
  /** Receives one entry per record not migrated (rejected or in conflict). */
  readonly rejects?: RecordSink;
  readonly progress?: Progress | undefined;
  /** Sees every classified record (reconcile lists them per class). */
  readonly onClassified?: ((entry: ClassifiedEntry) => Promise<void>) | undefined;
  /** Runs after classification, while the stage still exists (reconcile looks for rows Redis lacks). */
  readonly withStage?: ((db: Kysely<unknown>, stage: string) => Promise<void>) | undefined;
  /** Aborted by the first Ctrl-C / SIGTERM: no new batches; what is committed stays committed. */
  readonly signal?: AbortSignal | undefined;
}

/** Raised when a run could not finish; carries what it did, for the report. */
export class RunFailedError extends Error {
  override readonly name = 'RunFailedError';

  constructor(
    readonly partial: MigrateReport,
    cause: unknown,
  ) {
    super('the run could not finish', { cause });
  }
}

const WRITE_LOCK = `hashtext('migrate-users:write')`;

/**
 * migrate and dry-run. Phase 1 streams every key into the session's stage table; phase 2 classifies the
 * stage in batches against PostgreSQL and (unless dry-run) writes each batch atomically. A dry-run is one
 * read-only transaction around a TEMP stage; a lost PostgreSQL session takes it along, so the whole run is
 * retried (every batch is atomic and idempotent). A writing run resumes from its persistent stage.
 */
export async function migrate(options: MigrateOptions, io: MigrateIo): Promise<MigrateReport> {
  const retries = new RetryCounter();
  return withRetries('run', options.retry ?? NO_RETRY, retries, io.log, () => runOnce(options, io, retries), io.signal);
}

async function runOnce(options: MigrateOptions, io: MigrateIo, retries: RetryCounter): Promise<MigrateReport> {
  const started = new Date();
  const runId = `run_${started.toISOString().replace(/\D/g, '').slice(0, 14)}_${randomBytes(3).toString('hex')}`;
  const mode: Mode = options.dryRun ? 'dry-run' : 'apply';
  const log = io.log.child({ run: runId, mode });
  await assertSchema(io.pool);
  const tally = new Tally();
  const base = { run_id: runId, mode, started, scanDuplicates: 0, retries };

  return withSession(io.pool, async (session) => {
    log.info({ match: options.match }, 'run started');
    const lock = options.dryRun ? undefined : await takeWriteLock(io.pool, log);
    try {
      return options.dryRun ? await inOneTransaction(session, () => body(session)) : await body(session, lock);
    } finally {
      await lock?.release();
      io.progress?.done();
    }
  }, log);

  async function body(session: Session, lock?: HeldLock): Promise<MigrateReport> {
    let stage: Stage | undefined;
    const checkpoint = { lastSeq: 0, savedAt: Date.now() };
    try {
      const interrupted = () => io.signal?.aborted === true;
      let lastSeq: number;
      let resumed: Resumable | undefined;
      if (options.dryRun) {
        stage = await createStage(session);
        lastSeq = await stageSource(session, stage, options, { ...io, log, retries });
      } else {
        const command = options.command ?? 'migrate';
        const digest = configDigest({ ...options, command });
        resumed = options.restart ? undefined : await findResumable(session.db, digest);
        await recordRunStart(session, runId, command, digest);
        if (resumed) {
          stage = { table: resumed.stageTable, persistent: true };
          await takeOverStage(session.db, resumed, runId);
          checkpoint.lastSeq = resumed.lastSeq;
          lastSeq = resumed.maxSeq;
          log.info({ resumedFrom: resumed.runId, afterSeq: resumed.lastSeq }, 'resuming an unfinished run: Redis is not read again');
        } else {
          await dropLeftoverStages(session.db);
          stage = await createStage(session, runId);
          await recordStage(session.db, runId, { table: stage.table });
          const into = stage;
          lastSeq = await inOneTransaction(session, () => stageSource(session, into, options, { ...io, log, retries }));
        }
      }
      if (!interrupted()) {
        if (!resumed) {
          log.info({ scanned: lastSeq }, 'read every key; classifying');
          const done = stage;
          const finish = () => finishStage(session, done, { userIdIndex: io.withStage !== undefined });
          base.scanDuplicates = (options.dryRun ? await finish() : await inOneTransaction(session, finish)).scanDuplicates;
          log.info({ scanDuplicates: base.scanDuplicates }, 'stage indexed; duplicates across keys marked');
          if (stage.persistent) await recordStage(session.db, runId, { rows: await stageRows(session.db, stage.table) });
        }
        // Reconcile looks at every record in detail; migrate and dry-run let triage settle the obvious ones.
        if (!io.onClassified) {
          const look = stage;
          const from = checkpoint.lastSeq;
          const run = () => triage(session.db, look.table, from);
          await (options.dryRun ? run() : inOneTransaction(session, run));
          log.info('triage done');
        }
        if (options.dryRun) {
          // From here on PostgreSQL itself refuses any write except to the TEMP stage.
          await sql`set transaction read only`.execute(session.db);
        }
        const save = stage.persistent ? (db: Kysely<unknown>, seq: number) => saveCheckpoint(db, runId, checkpoint, seq) : undefined;
        const lanes = stage.persistent && !io.onClassified ? Math.max(1, options.writeConcurrency ?? 1) : 1;
        const run: ClassifyRun = {
          stage: stage.table,
          options,
          io,
          runId,
          log,
          tally,
          presettled: io.onClassified ? [] : presettledKinds(options.dryRun),
        };
        await withLanes(io.pool, session, lanes, log, (dbs) => classifyAll(dbs, run, { from: checkpoint.lastSeq, to: lastSeq, save, lock }));
      }
      if (!interrupted()) await io.withStage?.(session.db, stage.table);
      await listUnmigrated(session, stage.table, io.rejects, resumed?.lastSeq ?? 0);
      const status = interrupted() ? 'interrupted' : 'finished';
      const report = await summarise(
        session.db,
        stage.table,
        { ...base, status, resumedFrom: resumed?.runId ?? null, resumedSkipped: resumed ? await doneBefore(session.db, stage.table, resumed.lastSeq) : 0 },
        tally,
      );
      if (!options.dryRun) {
        await recordStage(session.db, runId, { lastSeq: checkpoint.lastSeq });
        await recordRunEnd(session, runId, report.status, report.counts);
        // A finished run needs no checkpoint: its stage goes. An interrupted one keeps it for the next run.
        if (status === 'finished' && stage.persistent) {
          await dropStage(session.db, stage.table);
          await sql`update migrate_users.runs set stage_table = null where run_id = ${runId}`.execute(session.db);
        }
      }
      log.info({ status: report.status, counts: report.counts }, 'run ended');
      return report;
    } catch (error) {
      // On a fresh connection: the session may be the thing that died.
      if (!options.dryRun) await recordRunFailed(io.pool, runId, tally.counts(), checkpoint.lastSeq).catch(() => undefined);
      if (error instanceof RunFailedError) throw error;
      const partial = partialReport({ ...base, status: 'failed', resumedFrom: null, resumedSkipped: 0 }, tally);
      // Retried by `migrate` if the cause is a lost connection; otherwise reported with what was done.
      throw new RunFailedError(partial, error);
    }
  }
}

/** Saves how far the committed batches reach, at most every 2 s: a stale checkpoint only costs time. */
async function saveCheckpoint(db: Kysely<unknown>, runId: string, checkpoint: { lastSeq: number; savedAt: number }, seq: number) {
  checkpoint.lastSeq = seq;
  if (Date.now() - checkpoint.savedAt < 2000) return;
  checkpoint.savedAt = Date.now();
  await recordStage(db, runId, { lastSeq: seq });
}

async function stageRows(db: Kysely<unknown>, stage: string): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*)::text as n from ${sql.raw(stage)}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** Records a resumed run skips: decided and committed by the run it resumes. */
async function doneBefore(db: Kysely<unknown>, stage: string, lastSeq: number): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    select count(*)::text as n from ${sql.raw(stage)} where seq <= ${lastSeq} and outcome is null`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/**
 * One writing run at a time per database (migrate, reconcile --apply): an advisory lock held by an open
 * transaction on a connection of its own, released with it, even if the process dies. Dry-run and verify
 * do not take it.
 */
async function takeWriteLock(pool: pg.Pool, log: Logger): Promise<HeldLock> {
  const lock = await tryAdvisoryLock(pool, WRITE_LOCK, log);
  if (lock) return lock;
  const holder = await pool.query<{ pid: number; started: string }>(`
    select a.pid, a.backend_start::text as started
    from pg_locks l join pg_stat_activity a on a.pid = l.pid
    where l.locktype = 'advisory' and l.granted and l.objid = (${WRITE_LOCK}::bigint & 4294967295)::oid
    limit 1`);
  const who = holder.rows[0];
  throw new UnfinishedError(
    `another migrate-users run is writing to this database${who ? ` (PostgreSQL backend pid ${who.pid}, connected since ${who.started})` : ''}: ` +
      'wait for it to finish, or stop it; dry-run and verify may run alongside',
  );
}

/** The session, plus `lanes - 1` connections of their own (released when `fn` is done). */
async function withLanes<T>(pool: pg.Pool, session: Session, lanes: number, log: Logger, fn: (dbs: Kysely<unknown>[]) => Promise<T>): Promise<T> {
  if (lanes <= 1) return fn([session.db]);
  return withSession(pool, (extra) => withLanes(pool, session, lanes - 1, log, (dbs) => fn([...dbs, extra.db])), log);
}

/**
 * Classifies (and writes) seq range (from, to] in batches, one batch at a time on each of `dbs`. Every
 * batch is atomic on its own and batches never share a user (cross-key duplicates are held back), so they
 * may commit in any order; the checkpoint only moves past a batch once every batch before it committed.
 */
async function classifyAll(
  dbs: readonly Kysely<unknown>[],
  run: ClassifyRun,
  range: { from: number; to: number; save?: ((db: Kysely<unknown>, seq: number) => Promise<void>) | undefined; lock?: HeldLock | undefined },
) {
  const { stage, options, io, log, tally, presettled } = run;
  const [first] = dbs;
  if (!first) throw new Error('classifyAll needs a connection');
  const { rows } = await sql<{ n: string }>`
    select count(*)::text as n from ${sql.raw(stage)} where outcome is null`.execute(first);
  io.progress?.phase(options.dryRun ? 'comparing' : 'writing', Number(rows[0]?.n ?? 0));
  // What triage settled with nothing to write is counted for the whole stage in one pass; batches go only
  // to the ranges holding anything else. Reconcile, which lists every record, goes through every range.
  let starts: number[] = [];
  if (presettled.length > 0) {
    const totals = await triagedTotals(first, stage, options.batchSize, presettled, range.from);
    for (const [kind, sums] of totals.byKind) {
      tally.addSums(kind === 'insert' ? 'inserted' : 'unchanged', sums);
      io.progress?.advance(sums.n);
    }
    starts = totals.rangesWithOthers;
  } else {
    for (let start = range.from; start < range.to; start += options.batchSize) starts.push(start);
  }
  let next = 0;
  let batch = 0;
  let failure: { error: unknown } | undefined;
  const checkpoint = new Checkpoint(starts, range.to);
  const stop = () => failure !== undefined || io.signal?.aborted === true;

  const lane = async (db: Kysely<unknown>) => {
    while (next < starts.length && !stop()) {
      const start = starts[next] as number;
      const end = Math.min(start + options.batchSize, range.to);
      next += 1;
      batch += 1;
      const batchLog = log.child({ batch });
      try {
        // A batch cut short by a statement timeout (see processChunk) leaves the rest of its range to a
        // next call: the range is done when all of it is.
        for (let afterSeq = start; afterSeq < end; ) {
          const lost = range.lock?.lost();
          // Retried as a lost connection: the next attempt takes the lock again before writing anything.
          if (lost) throw new Error('the write lock was lost with its connection', { cause: lost });
          afterSeq = await classifyBatch(db, run, batchLog, afterSeq, end - afterSeq);
        }
      } catch (error) {
        failure ??= { error };
        return;
      }
      const upTo = checkpoint.done(start);
      // On this lane's connection: another lane's may be inside a batch's transaction.
      if (upTo !== undefined) await range.save?.(db, upTo);
    }
  };
  await Promise.all(dbs.map(lane));
  if (failure) throw failure.error;
}

/**
 * How far every record is decided, as batches finish in any order: up to the start of the first batch
 * not done yet (records between batches needed no batch), or to the end once all are done.
 */
export class Checkpoint {
  private readonly finished = new Set<number>();
  private first = 0;

  constructor(
    private readonly starts: readonly number[],
    private readonly end: number,
  ) {}

  /** Marks the batch starting after `start` done; returns the new checkpoint if it moved. */
  done(start: number): number | undefined {
    this.finished.add(start);
    const before = this.first;
    while (this.first < this.starts.length && this.finished.has(this.starts[this.first] as number)) {
      this.finished.delete(this.starts[this.first] as number);
      this.first += 1;
    }
    if (this.first === before) return undefined;
    return this.starts[this.first] ?? this.end;
  }
}

/** What every batch of a run shares. */
interface ClassifyRun {
  readonly stage: string;
  readonly options: MigrateOptions;
  readonly io: MigrateIo;
  readonly runId: string;
  readonly log: Logger;
  readonly tally: Tally;
  /** Triage kinds counted for the whole stage before the batches (see presettledKinds). */
  readonly presettled: readonly TriageKind[];
}

/** One batch: classified, written, tallied and listed. Returns the last seq it covered. */
async function classifyBatch(db: Kysely<unknown>, run: ClassifyRun, log: Logger, afterSeq: number, size: number): Promise<number> {
  const { stage, options, io, runId, tally } = run;
  const result = await processChunk(db, {
    stage,
    afterSeq,
    size,
    dryRun: options.dryRun,
    runId,
    log,
    take: options.take,
    withBase: io.onClassified !== undefined,
    everyRecord: io.onClassified !== undefined,
    presettled: run.presettled,
  });
  for (const { outcome, sums } of result.settled) tally.addSums(outcome, sums);
  const conflicts = result.entries.filter((e) => e.outcome === 'conflict');
  await recordConflicts(db, stage, conflicts.map((e) => ({ seq: e.fact.seq, reason: e.reason ?? '', detail: e.detail ?? '' })));
  for (const entry of result.entries) {
    const { fact } = entry;
    // Conflicts are counted from the stage (recorded above), everything else from the tally.
    if (entry.outcome !== 'conflict') {
      tally.add(entry.outcome, entry.reason, fact.sourceCredits, fact.topup, BigInt(fact.expected.total_credits_used));
    } else {
      await io.rejects?.write(conflictEntry(entry));
    }
    await io.onClassified?.(entry);
  }
  io.progress?.advance(result.entries.length + result.settled.reduce((n, s) => n + s.sums.n, 0));
  return result.lastSeq;
}

async function listUnmigrated(session: Session, stage: string, sink: RecordSink | undefined, conflictsUpTo: number): Promise<void> {
  if (!sink) return;
  for await (const entry of heldBackRecords(session.db, stage, conflictsUpTo)) await sink.write(entry);
}

async function recordRunStart(session: Session, runId: string, command: string, digest: string): Promise<void> {
  await sql`insert into migrate_users.runs (run_id, command, config_digest) values (${runId}, ${command}, ${digest})`.execute(session.db);
}

async function recordRunEnd(session: Session, runId: string, status: string, counts: object | null): Promise<void> {
  await sql`
    update migrate_users.runs set finished_at = now(), status = ${status}, counts = ${counts === null ? null : JSON.stringify(counts)}::jsonb
    where run_id = ${runId}`.execute(session.db);
}

async function recordRunFailed(pool: pg.Pool, runId: string, counts: object, lastSeq: number): Promise<void> {
  await pool.query(
    `update migrate_users.runs set finished_at = now(), status = 'failed', counts = $2::jsonb, last_seq = greatest(last_seq, $3) where run_id = $1`,
    [runId, JSON.stringify(counts), lastSeq],
  );
}
