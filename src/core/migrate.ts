import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { inOneTransaction, unboundedTransaction, withSession, type HeldLock, type Session } from '../db/database.js';
import type { Logger } from '../log.js';
import type { RedisSource } from '../source/redis-reader.js';
import { createStage, finishStage, type Stage } from '../stage/stage.js';
import { configDigest, findResumable, leaveStage, recordStage, stageForRun, takeOverStage, type Resumable } from './checkpoint.js';
import { partialReport, summarise, Tally, type ReportBase } from '../report/report.js';
import type { MigrateReport, Mode, SourceInfo } from '../results/migrate-report.js';
import type { RecordSink } from '../report/ndjson-file.js';
import { boundByTarget, emptySource, stageSource, type Progress, type ReadOptions } from './stage-source.js';
import { classifyAll, withLanes, type ClassifyRun } from './classify.js';
import { markAbandoned, recordRunEnd, recordRunFailed, recordRunStart, saveCheckpoint, saveCheckpointNow, takeWriteLock, whitelistInfo } from './runs.js';
import { presettledKinds, type ClassifiedEntry, type Take } from './process-chunk.js';
import type { MergePolicy } from './decide.js';
import { heldBackRecords, prepareFacts, triage } from './facts.js';
import { NO_RETRY, RetryCounter, withRetries } from './retry.js';
import { UsageError } from '../errors.js';

export interface MigrateOptions extends ReadOptions {
  readonly dryRun: boolean;
  /** reconcile --take: an operator's choice of side for listed users in conflict. */
  readonly take?: Take | undefined;
  /** Recorded in migrate_users.runs. */
  readonly command?: string;
  /** Ignore the checkpoint of an unfinished run and read Redis afresh. */
  readonly restart?: boolean | undefined;
  /** reconcile: every run classifies every user itself, so no run resumes another's stage (implies restart). */
  readonly neverResumes?: boolean | undefined;
  /**
   * Batches written side by side, each on a PostgreSQL connection of its own (default 1). Only a writing
   * migrate uses more than one: a dry-run's TEMP stage lives in one session, and reconcile lists in order.
   */
  readonly writeConcurrency?: number | undefined;
  /** Where the records are read: part of what a resume must match, and named in the report. */
  readonly source?: SourceInfo | undefined;
  /** `reconcile --merge`: early logins are merged into their new-app rows (see decide). */
  readonly merge?: MergePolicy | undefined;
  /** `reconcile --combine`: a balance changed on both sides gets PostgreSQL's plus Redis's change (see decide: Onto). */
  readonly combine?: boolean | undefined;
}

export type { Progress };

export interface MigrateIo {
  readonly redis: RedisSource;
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
    resumable: false,
    source: options.source ?? null,
    whitelist: null,
    unnormalisedEmails: null,
  };

  return withSession(
    io.pool,
    async (session) => {
      log.info({ match: options.match }, 'run started');
      const lock = options.dryRun ? undefined : await takeWriteLock(io.pool, log);
      try {
        return options.dryRun ? await inOneTransaction(session, () => body(session)) : await body(session, lock);
      } finally {
        await lock?.release();
        io.progress?.done();
      }
    },
    log,
  );

  async function body(session: Session, lock?: HeldLock): Promise<MigrateReport> {
    let stage: Stage | undefined;
    let checkpoint = { lastSeq: 0, savedAt: Date.now(), committed: new Tally() };
    try {
      const interrupted = () => io.signal?.aborted === true;
      // A writing run's stage-wide statements run in a transaction of their own with the statement timeout
      // lifted (SET LOCAL): a role's statement_timeout (Supabase sets them) is for the app's queries, and would
      // cut them on every resume alike. A dry-run is one such transaction already.
      const unbounded = <T>(fn: () => Promise<T>): Promise<T> => (options.dryRun ? fn() : inOneTransaction(session, fn));
      let lastSeq: number;
      let resumed: Resumable | undefined;
      if (options.dryRun) {
        stage = await createStage(session);
        lastSeq = await stageSource(session, stage, options, { ...io, log, retries });
      } else {
        const command = options.command ?? 'migrate';
        const digest = configDigest({ ...options, command });
        await markAbandoned(session.db);
        resumed = options.restart || options.neverResumes ? undefined : await unboundedTransaction(session.db, (trx) => findResumable(trx, digest));
        await recordRunStart(session, runId, command, digest, options);
        if (resumed) {
          stage = { table: resumed.stageTable, persistent: true };
          const from = resumed;
          await unboundedTransaction(session.db, (trx) => takeOverStage(trx, from, runId));
          // What the runs before this one decided up to the checkpoint: this run reports the whole job.
          tally = Tally.fromJSON(resumed.jobTally);
          checkpoint = { lastSeq: resumed.lastSeq, savedAt: Date.now(), committed: Tally.fromJSON(resumed.jobTally) };
          lastSeq = resumed.maxSeq;
          base.resumedFrom = resumed.runId;
          base.resumable = true;
          base.resumedSkipped = tally.count;
          base.source = resumed.source ?? base.source;
          log.info({ resumedFrom: resumed.runId, afterSeq: resumed.lastSeq }, 'resuming an unfinished run: Redis is not read again');
        } else {
          stage = await stageForRun(session, runId, log);
          await recordStage(session.db, runId, { table: stage.table });
          const into = stage;
          lastSeq = await inOneTransaction(session, () => stageSource(session, into, options, { ...io, log, retries }));
          // A run whose lock went while it read may have a successor by now, which reuses this stage.
          assertLockHeld(lock);
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
          if (!io.onClassified) await triage(session.db, done.table, checkpoint.lastSeq, prepared);
          return prepared;
        };
        io.progress?.step(resumed ? 'preparing' : 'indexing, triage');
        const prepared = options.dryRun ? await ready() : await inOneTransaction(session, ready);
        log.info({ grantsKept: prepared.grantsKept, unnormalisedEmails: prepared.unnormalisedEmails }, 'triage done');
        base.whitelist = await unbounded(() => whitelistInfo(session.db, options, prepared.grantsKept, done.table));
        base.unnormalisedEmails = prepared.unnormalisedEmails;
        if (stage.persistent && !resumed) {
          await recordStage(session.db, runId, { rows: await unbounded(() => stageRows(session.db, done.table)) });
          // From here on the next run continues this one's stage; before, it reads Redis again (findResumable).
          base.resumable = options.neverResumes !== true;
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
          committed: checkpoint.committed,
          presettled: io.onClassified ? [] : presettledKinds(options.dryRun),
        };
        await withLanes(io.pool, session, lanes, log, (dbs) => classifyAll(dbs, run, { from: checkpoint.lastSeq, to: lastSeq, save, lock }));
      }
      const table = stage.table;
      if (!interrupted()) await unbounded(async () => io.withStage?.(session.db, table, runId));
      await unbounded(() => listUnmigrated(session, table, io.rejects, runId));
      base.status = interrupted() ? 'interrupted' : 'finished';
      const report = await unbounded(() => summarise(session.db, table, base, tally));
      if (!options.dryRun) {
        await saveCheckpointNow(session.db, runId, checkpoint);
        await recordRunEnd(session, runId, report.status, report.counts);
        // A stage the next run will not continue (finished, or not read whole) keeps no record; one this run lost
        // the lock for is left alone (another run may be using it).
        if (stage.persistent && !lock?.lost())
          await leaveStage(session.db, stage.table, runId, report.status === 'finished' || !base.resumable ? undefined : checkpoint.lastSeq);
      }
      log.info({ status: report.status, counts: report.counts }, 'run ended');
      return report;
    } catch (error) {
      // On a fresh connection: the session may be the thing that died.
      // The checkpoint saved: only then may the hashes of records it has passed be cleared (see leaveStage).
      const saved =
        !options.dryRun &&
        (await recordRunFailed(io.pool, runId, tally.counts(), checkpoint).then(
          () => true,
          () => false,
        ));
      // Never a stage this run no longer holds the lock for: another run may be using it.
      const left = stage?.persistent && saved && !lock?.lost() ? stage.table : undefined;
      // A usage error leaves nothing to resume (an empty source, a refused snapshot), nor does a stage not read whole.
      const resumable = error instanceof UsageError || !base.resumable ? undefined : checkpoint.lastSeq;
      if (left) await withSession(io.pool, (s) => leaveStage(s.db, left, runId, resumable)).catch(() => undefined);
      if (error instanceof RunFailedError || error instanceof UsageError) throw error;
      base.status = 'failed';
      const partial = partialReport(base, tally);
      // Retried by `migrate` if the cause is a lost connection; otherwise reported with what was done.
      throw new RunFailedError(partial, error);
    }
  }
}

async function stageRows(db: Kysely<unknown>, stage: string): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*)::text as n from ${sql.raw(stage)}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** Records held back before classification, and the conflicts the runs this one resumed found. */
async function listUnmigrated(session: Session, stage: string, sink: RecordSink | undefined, runId: string): Promise<void> {
  if (!sink) return;
  for await (const entry of heldBackRecords(session.db, stage, runId)) await sink.write(entry);
}

/** Stops a writing run that lost its write lock (retried as a lost connection: the next attempt takes it again). */
function assertLockHeld(lock: HeldLock | undefined): void {
  const lost = lock?.lost();
  if (lost) throw new Error('the write lock was lost with its connection', { cause: lost });
}
