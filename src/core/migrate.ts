import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { inOneTransaction, tryAdvisoryLock, withSession, type HeldLock, type Session } from '../db/database.js';
import type { Logger } from '../log.js';
import type { RedisReadable } from '../source/redis-reader.js';
import { createStage, dropStage, finishStage, type Stage } from '../stage/stage.js';
import { configDigest, dropLeftoverStages, findResumable, recordStage, takeOverStage, whitelistDigest, type Resumable } from './checkpoint.js';
import { partialReport, summarise, Tally, type RecordCredits, type MigrateReport, type Mode, type ReportBase, type SourceInfo, type WhitelistInfo } from '../report/report.js';
import type { RecordSink } from '../report/ndjson-file.js';
import { boundByTarget, stageSource, type Progress, type ReadOptions } from './stage-source.js';
import { conflictEntry, presettledKinds, processChunk, type ClassifiedEntry, type Take } from './process-chunk.js';
import type { MergePolicy } from './decide.js';
import type { UserRow } from '../map/user-row.js';
import { heldBackRecords, prepareFacts, recordConflicts, triage, triagedTotals, type TriageKind } from './facts.js';
import { NO_RETRY, RetryCounter, withRetries } from './retry.js';
import { UnfinishedError, UsageError } from '../errors.js';

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
  /** Where the records are read: part of what a resume must match, and named in the report. */
  readonly source?: SourceInfo | undefined;
  /** `reconcile --merge`: early logins are merged into their new-app rows (see decide). */
  readonly merge?: MergePolicy | undefined;
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
  readonly withStage?: ((db: Kysely<unknown>, stage: string, runId: string) => Promise<void>) | undefined;
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

async function runOnce(given: MigrateOptions, io: MigrateIo, retries: RetryCounter): Promise<MigrateReport> {
  const options = await boundByTarget(io.pool, given);
  const started = new Date();
  const runId = `run_${started.toISOString().replace(/\D/g, '').slice(0, 14)}_${randomBytes(3).toString('hex')}`;
  const mode: Mode = options.dryRun ? 'dry-run' : 'apply';
  const log = io.log.child({ run: runId, mode });
  let tally = new Tally();
  const base: ReportBase = {
    run_id: runId,
    mode,
    started,
    scanDuplicates: 0,
    retries,
    status: 'failed',
    resumedFrom: null,
    resumedSkipped: 0,
    source: options.source ?? null,
    whitelist: null,
    unnormalisedEmails: null,
  };

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
    let checkpoint = { lastSeq: 0, savedAt: Date.now(), committed: new Tally() };
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
        await markAbandoned(session.db);
        resumed = options.restart ? undefined : await findResumable(session.db, digest);
        await recordRunStart(session, runId, command, digest, options);
        if (resumed) {
          stage = { table: resumed.stageTable, persistent: true };
          await takeOverStage(session.db, resumed, runId);
          // What the runs before this one decided up to the checkpoint: this run reports the whole job.
          tally = Tally.fromJSON(resumed.jobTally);
          checkpoint = { lastSeq: resumed.lastSeq, savedAt: Date.now(), committed: Tally.fromJSON(resumed.jobTally) };
          lastSeq = resumed.maxSeq;
          base.resumedFrom = resumed.runId;
          base.resumedSkipped = tally.count;
          base.source = resumed.source ?? base.source;
          log.info({ resumedFrom: resumed.runId, afterSeq: resumed.lastSeq }, 'resuming an unfinished run: Redis is not read again');
        } else {
          await dropLeftoverStages(session.db);
          stage = await createStage(session, runId);
          await recordStage(session.db, runId, { table: stage.table });
          const into = stage;
          lastSeq = await inOneTransaction(session, () => stageSource(session, into, options, { ...io, log, retries }));
        }
      }
      if (lastSeq === 0 && !interrupted() && !options.allowEmpty) throw emptySource(options);
      if (!interrupted()) {
        const done = stage;
        const ready = async () => {
          if (!resumed) {
            log.info({ scanned: lastSeq }, 'read every key; classifying');
            base.scanDuplicates = (await finishStage(session, done, { userIdIndex: io.withStage !== undefined })).scanDuplicates;
            log.info({ scanDuplicates: base.scanDuplicates }, 'stage indexed; duplicates across keys marked');
          }
          const prepared = await prepareFacts(session.db, done.table);
          // Reconcile looks at every record in detail; migrate and dry-run let triage settle the obvious ones.
          if (!io.onClassified) await triage(session.db, done.table, checkpoint.lastSeq);
          return prepared;
        };
        const prepared = options.dryRun ? await ready() : await inOneTransaction(session, ready);
        log.info({ grantsKept: prepared.grantsKept, unnormalisedEmails: prepared.unnormalisedEmails }, 'triage done');
        base.whitelist = await whitelistInfo(session.db, options, prepared.grantsKept, done.table);
        base.unnormalisedEmails = prepared.unnormalisedEmails;
        if (stage.persistent && !resumed) await recordStage(session.db, runId, { rows: await stageRows(session.db, stage.table) });
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
          committed: checkpoint.committed,
          presettled: io.onClassified ? [] : presettledKinds(options.dryRun),
        };
        await withLanes(io.pool, session, lanes, log, (dbs) => classifyAll(dbs, run, { from: checkpoint.lastSeq, to: lastSeq, save, lock }));
      }
      if (!interrupted()) await io.withStage?.(session.db, stage.table, runId);
      await listUnmigrated(session, stage.table, io.rejects, runId);
      base.status = interrupted() ? 'interrupted' : 'finished';
      const report = await summarise(session.db, stage.table, base, tally);
      if (!options.dryRun) {
        await saveCheckpointNow(session.db, runId, checkpoint);
        await recordRunEnd(session, runId, report.status, report.counts);
        // A finished run needs no checkpoint: its stage goes. An interrupted one keeps it for the next run.
        if (report.status === 'finished' && stage.persistent) {
          await dropStage(session.db, stage.table);
          await sql`update migrate_users.runs set stage_table = null where run_id = ${runId}`.execute(session.db);
        }
      }
      log.info({ status: report.status, counts: report.counts }, 'run ended');
      return report;
    } catch (error) {
      // On a fresh connection: the session may be the thing that died.
      if (!options.dryRun) await recordRunFailed(io.pool, runId, tally.counts(), checkpoint).catch(() => undefined);
      if (error instanceof RunFailedError || error instanceof UsageError) throw error;
      base.status = 'failed';
      const partial = partialReport(base, tally);
      // Retried by `migrate` if the cause is a lost connection; otherwise reported with what was done.
      throw new RunFailedError(partial, error);
    }
  }
}

export function emptySource(options: ReadOptions & { source?: SourceInfo | undefined }): UsageError {
  const where = options.source ? ` in ${options.source.url}` : '';
  return new UsageError(
    `no key${where} matches --match "${options.match}": nothing to migrate or check. ` +
      'Check --match and the Redis URL (a typo, another server, another database number); --allow-empty if the source is meant to be empty',
  );
}

/** Under the write lock no other writing run is alive: a run still marked running was killed. */
async function markAbandoned(db: Kysely<unknown>): Promise<void> {
  await sql`update migrate_users.runs set status = 'abandoned', finished_at = coalesce(finished_at, now()) where status = 'running'`.execute(db);
}

/** This run's whitelist, beside the one the last finished writing run used, and its emails no record has. */
async function whitelistInfo(db: Kysely<unknown>, options: MigrateOptions, grantsKept: number, stage: string): Promise<WhitelistInfo> {
  const emails = options.mapContext.whitelist.size;
  const credits = Number(options.mapContext.whitelistCredits);
  // A typo'd VIP gets no top-up: say so. Bounded by the whitelist's size.
  const { rows: lonely } = await sql<{ email: string }>`
    select w.email from unnest(${[...options.mapContext.whitelist]}::text[]) as w(email)
    where not exists (select 1 from ${sql.raw(stage)} s where s.valid and s.email = w.email)
    order by 1`.execute(db);
  const unmatched = lonely.map((r) => r.email);
  // A reader role given only what sql/roles.sql granted before runs was readable: no comparison then.
  const readable = await sql<{ ok: boolean }>`select has_table_privilege('migrate_users.runs', 'select') as ok`.execute(db);
  if (!readable.rows[0]?.ok) return { emails, credits, unmatched, same_as_last_run: null, last_run: null, grants_kept: grantsKept };
  const { rows } = await sql<{ whitelist: { emails: number; credits: number; digest: string } }>`
    select whitelist from migrate_users.runs where status = 'finished' and whitelist is not null
    order by started_at desc limit 1`.execute(db);
  const last = rows[0]?.whitelist;
  return {
    emails,
    credits,
    unmatched,
    same_as_last_run: last ? last.digest === whitelistDigest(options) : null,
    last_run: last ? { emails: last.emails, credits: last.credits } : null,
    grants_kept: grantsKept,
  };
}

interface SavedCheckpoint {
  lastSeq: number;
  savedAt: number;
  /** Counts and sums of every record decided up to lastSeq (with those of the runs this one resumed). */
  readonly committed: Tally;
}

/** Saves how far the committed batches reach, at most every 2 s: a stale checkpoint only costs time. */
async function saveCheckpoint(db: Kysely<unknown>, runId: string, checkpoint: SavedCheckpoint, seq: number) {
  checkpoint.lastSeq = seq;
  if (Date.now() - checkpoint.savedAt < 2000) return;
  checkpoint.savedAt = Date.now();
  await saveCheckpointNow(db, runId, checkpoint);
}

/** The checkpoint and what was decided up to it, in one statement: a resumed run reports the whole job. */
async function saveCheckpointNow(db: Kysely<unknown>, runId: string, checkpoint: SavedCheckpoint) {
  await sql`
    update migrate_users.runs set last_seq = ${checkpoint.lastSeq}, job_tally = ${JSON.stringify(checkpoint.committed)}::jsonb
    where run_id = ${runId}`.execute(db);
}

async function stageRows(db: Kysely<unknown>, stage: string): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*)::text as n from ${sql.raw(stage)}`.execute(db);
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
    select count(*)::text as n from ${sql.raw(stage)} where outcome is null and seq > ${range.from}`.execute(first);
  io.progress?.phase(options.dryRun ? 'comparing' : 'writing', Number(rows[0]?.n ?? 0));
  // What triage settled with nothing to write is counted for the whole stage in one pass; batches go only
  // to the ranges holding anything else. Reconcile, which lists every record, goes through every range.
  let starts: number[] = [];
  const settledRanges: { start: number; tally: Tally }[] = [];
  if (presettled.length > 0) {
    const totals = await triagedTotals(first, stage, options.batchSize, presettled, range.from);
    for (const [start, sums] of totals.byRange) {
      const settled = new Tally();
      for (const [kind, s] of sums) settled.addSums(kind === 'insert' ? 'inserted' : 'unchanged', s);
      tally.merge(settled);
      settledRanges.push({ start, tally: settled });
      io.progress?.advance(settled.count);
    }
    starts = totals.rangesWithOthers;
  } else {
    for (let start = range.from; start < range.to; start += options.batchSize) starts.push(start);
  }
  let next = 0;
  let batch = 0;
  let failure: { error: unknown } | undefined;
  const checkpoint = new Checkpoint(starts, range.to, run.committed, settledRanges.sort((a, b) => a.start - b.start));
  const stop = () => failure !== undefined || io.signal?.aborted === true;

  const lane = async (db: Kysely<unknown>) => {
    while (next < starts.length && !stop()) {
      const start = starts[next] as number;
      const end = Math.min(start + options.batchSize, range.to);
      next += 1;
      batch += 1;
      const batchLog = log.child({ batch });
      const decided = new Tally();
      try {
        // A batch cut short by a statement timeout (see processChunk) leaves the rest of its range to a
        // next call: the range is done when all of it is.
        for (let afterSeq = start; afterSeq < end; ) {
          const lost = range.lock?.lost();
          // Retried as a lost connection: the next attempt takes the lock again before writing anything.
          if (lost) throw new Error('the write lock was lost with its connection', { cause: lost });
          afterSeq = await classifyBatch(db, run, batchLog, afterSeq, end - afterSeq, decided);
        }
      } catch (error) {
        failure ??= { error };
        return;
      }
      const upTo = checkpoint.done(start, decided);
      // On this lane's connection: another lane's may be inside a batch's transaction.
      if (upTo !== undefined) await range.save?.(db, upTo);
    }
  };
  await Promise.all(dbs.map(lane));
  if (failure) throw failure.error;
  if (!stop()) {
    const upTo = checkpoint.finish();
    if (upTo !== undefined) await range.save?.(first, upTo);
  }
}

/**
 * How far every record is decided, as batches finish in any order: up to the start of the first batch
 * not done yet (records between batches needed no batch), or to the end once all are done. What the
 * batches and the settled ranges it passes decided is added to `committed`, so a saved checkpoint carries the
 * counts of everything up to it.
 */
export class Checkpoint {
  private readonly finished = new Map<number, Tally>();
  private first = 0;
  private settled = 0;

  constructor(
    private readonly starts: readonly number[],
    private readonly end: number,
    readonly committed: Tally = new Tally(),
    private readonly settledRanges: readonly { readonly start: number; readonly tally: Tally }[] = [],
  ) {}

  /** Marks the batch starting after `start` done, with what it decided; returns the new checkpoint if it moved. */
  done(start: number, decided: Tally = new Tally()): number | undefined {
    this.finished.set(start, decided);
    const before = this.first;
    for (let at = this.starts[this.first]; at !== undefined && this.finished.has(at); at = this.starts[this.first]) {
      this.committed.merge(this.finished.get(at) as Tally);
      this.finished.delete(at);
      this.first += 1;
    }
    if (this.first === before) return undefined;
    return this.pass(this.starts[this.first] ?? this.end);
  }

  /** Every batch is done: the checkpoint reaches the end (undefined if it is there already). */
  finish(): number | undefined {
    if (this.first < this.starts.length) throw new Error('internal error: checkpoint finished with batches outstanding');
    if (this.settled >= this.settledRanges.length && this.starts.length > 0) return undefined;
    return this.pass(this.end);
  }

  private pass(upTo: number): number {
    for (let range = this.settledRanges[this.settled]; range !== undefined && range.start < upTo; range = this.settledRanges[this.settled]) {
      this.committed.merge(range.tally);
      this.settled += 1;
    }
    return upTo;
  }
}

/** What every batch of a run shares. */
interface ClassifyRun {
  readonly stage: string;
  readonly options: MigrateOptions;
  readonly io: MigrateIo;
  readonly runId: string;
  readonly log: Logger;
  /** Every record decided, for the report (with what the runs this one resumed decided). */
  readonly tally: Tally;
  /** What is decided up to the checkpoint (see Checkpoint). */
  readonly committed: Tally;
  /** Triage kinds counted for the whole stage before the batches (see presettledKinds). */
  readonly presettled: readonly TriageKind[];
}

/** One batch: classified, written, tallied (into the run's tally and `decided`) and listed. Returns the last seq it covered. */
async function classifyBatch(db: Kysely<unknown>, run: ClassifyRun, log: Logger, afterSeq: number, size: number, decided: Tally): Promise<number> {
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
    merge: options.merge,
  });
  const batch = new Tally();
  for (const { outcome, sums } of result.settled) batch.addSums(outcome, sums);
  const conflicts = result.entries.filter((e) => e.outcome === 'conflict');
  await recordConflicts(db, stage, runId, conflicts.map((e) => ({ seq: e.fact.seq, reason: e.reason ?? '', detail: e.detail ?? '' })));
  for (const entry of result.entries) {
    const { fact } = entry;
    // Conflicts are counted from the stage (recorded above), everything else from the tally.
    if (entry.outcome !== 'conflict') {
      batch.add(entry.outcome, entry.reason, recordCredits(entry));
    } else {
      await io.rejects?.write(conflictEntry(entry));
    }
    await io.onClassified?.(entry);
  }
  tally.merge(batch);
  decided.merge(batch);
  io.progress?.advance(result.entries.length + result.settled.reduce((n, s) => n + s.sums.n, 0));
  return result.lastSeq;
}

/** What one decided record adds to the report: Redis's figures, and PostgreSQL's where its row differs. */
function recordCredits(entry: ClassifiedEntry): RecordCredits {
  const { fact } = entry;
  const redis = { source: fact.sourceCredits, topup: fact.topup, used: BigInt(fact.expected.total_credits_used) };
  const held = (row: UserRow) => ({ current: BigInt(row.current_credits), used: BigInt(row.total_credits_used) });
  if (entry.merge) {
    const before = fact.owner ? held(fact.owner.row) : undefined;
    return { ...redis, postgres: held(entry.merge.row), merged: { before, withheld: entry.merge.withheld } };
  }
  // A row merged before, or one the app changed, holds what it holds: PostgreSQL's balance is the user's.
  if (fact.merged && fact.actual) return { ...redis, postgres: held(fact.actual), merged: {} };
  if (entry.outcome === 'kept_app_change' && fact.actual) return { ...redis, postgres: held(fact.actual) };
  return redis;
}

/** Records held back before classification, and the conflicts the runs this one resumed found. */
async function listUnmigrated(session: Session, stage: string, sink: RecordSink | undefined, runId: string): Promise<void> {
  if (!sink) return;
  for await (const entry of heldBackRecords(session.db, stage, runId)) await sink.write(entry);
}

async function recordRunStart(session: Session, runId: string, command: string, digest: string, options: MigrateOptions): Promise<void> {
  const whitelist = {
    emails: options.mapContext.whitelist.size,
    credits: Number(options.mapContext.whitelistCredits),
    digest: whitelistDigest(options),
  };
  await sql`
    insert into migrate_users.runs (run_id, command, config_digest, source, whitelist)
    values (${runId}, ${command}, ${digest}, ${JSON.stringify(options.source ?? null)}::jsonb, ${JSON.stringify(whitelist)}::jsonb)`.execute(session.db);
}

async function recordRunEnd(session: Session, runId: string, status: string, counts: object | null): Promise<void> {
  await sql`
    update migrate_users.runs set finished_at = now(), status = ${status}, counts = ${counts === null ? null : JSON.stringify(counts)}::jsonb
    where run_id = ${runId}`.execute(session.db);
}

async function recordRunFailed(pool: pg.Pool, runId: string, counts: object, checkpoint: SavedCheckpoint): Promise<void> {
  await pool.query(
    `update migrate_users.runs set finished_at = now(), status = 'failed', counts = $2::jsonb, last_seq = $3, job_tally = $4::jsonb where run_id = $1`,
    [runId, JSON.stringify(counts), checkpoint.lastSeq, JSON.stringify(checkpoint.committed)],
  );
}
