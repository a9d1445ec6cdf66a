import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { withSession, type Session } from '../db/database.js';
import { assertSchema } from '../db/schema.js';
import type { Logger } from '../log.js';
import type { RedisReadable } from '../source/redis-reader.js';
import { createStage, finishStage, STAGE_TABLE } from '../stage/stage.js';
import { partialReport, summarise, Tally, type MigrateReport, type Mode } from '../report/report.js';
import type { RecordSink } from '../report/ndjson-file.js';
import { stageSource, type Progress, type ReadOptions } from './stage-source.js';
import { conflictEntry, processChunk, type ClassifiedEntry, type Take } from './process-chunk.js';
import { heldBackRecords } from './facts.js';
import { NO_RETRY, RetryCounter, withRetries } from './retry.js';
import { UnfinishedError } from '../errors.js';

export interface MigrateOptions extends ReadOptions {
  readonly dryRun: boolean;
  /** reconcile --take: an operator's choice of side for listed users in conflict. */
  readonly take?: Take | undefined;
  /** Recorded in migrate_users.runs. */
  readonly command?: string;
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
  readonly withStage?: ((db: Kysely<unknown>) => Promise<void>) | undefined;
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

const WRITE_LOCK = sql`hashtext('migrate-users:write')`;

/**
 * migrate and dry-run. Phase 1 streams every key into the session's stage table; phase 2 classifies the
 * stage in batches against PostgreSQL and (unless dry-run) writes each batch atomically. A lost PostgreSQL
 * session takes the TEMP stage with it, so the whole run is retried (every batch is atomic and idempotent).
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
    if (!options.dryRun) await takeWriteLock(session);
    try {
      if (!options.dryRun) await recordRunStart(session, runId, options.command ?? 'migrate');
      await createStage(session);
      const scanned = await stageSource(session, options, { ...io, log, retries });
      const interrupted = () => io.signal?.aborted === true;
      if (!interrupted()) {
        log.info({ scanned }, 'read every key; classifying');
        base.scanDuplicates = (await finishStage(session)).scanDuplicates;
        log.info({ scanDuplicates: base.scanDuplicates }, 'stage indexed; duplicates across keys marked');
        if (options.dryRun) {
          // From here on PostgreSQL itself refuses any write except to this session's TEMP stage.
          await sql`set session characteristics as transaction read only`.execute(session.db);
        }
        await classifyAll(session, options, io, runId, log, tally, scanned);
      }
      if (!interrupted()) await io.withStage?.(session.db);
      await listUnmigrated(session, io.rejects);
      const report = await summarise(session.db, { ...base, status: interrupted() ? 'interrupted' : 'finished' }, tally);
      if (!options.dryRun) await recordRunEnd(session, runId, report.status, report.counts);
      log.info({ status: report.status, counts: report.counts }, 'run ended');
      return report;
    } catch (error) {
      // On a fresh connection: the session may be the thing that died.
      if (!options.dryRun) await recordRunFailed(io.pool, runId, tally.counts()).catch(() => undefined);
      if (error instanceof RunFailedError) throw error;
      const partial = partialReport({ ...base, status: 'failed' }, tally);
      // Retried by `migrate` if the cause is a lost connection; otherwise reported with what was done.
      throw new RunFailedError(partial, error);
    } finally {
      if (!options.dryRun) await sql`select pg_advisory_unlock(${WRITE_LOCK})`.execute(session.db).catch(() => undefined);
      io.progress?.done();
    }
  }, log);
}

/**
 * One writing run at a time per database (migrate, reconcile --apply): a session-level advisory lock, held
 * by this run's own session and released with it, even if the process dies. Dry-run and verify do not take it.
 */
async function takeWriteLock(session: Session): Promise<void> {
  const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_lock(${WRITE_LOCK}) as locked`.execute(session.db);
  if (rows[0]?.locked) return;
  const holder = await sql<{ pid: number; started: string; app: string }>`
    select a.pid, a.backend_start::text as started, a.application_name as app
    from pg_locks l join pg_stat_activity a on a.pid = l.pid
    where l.locktype = 'advisory' and l.granted and l.objid = (${WRITE_LOCK}::bigint & 4294967295)::oid
    limit 1`.execute(session.db);
  const who = holder.rows[0];
  throw new UnfinishedError(
    `another migrate-users run is writing to this database${who ? ` (PostgreSQL backend pid ${who.pid}, connected since ${who.started})` : ''}: ` +
      'wait for it to finish, or stop it; dry-run and verify may run alongside',
  );
}

async function classifyAll(
  session: Session,
  options: MigrateOptions,
  io: MigrateIo,
  runId: string,
  log: Logger,
  tally: Tally,
  lastSeq: number,
) {
  const { rows } = await sql<{ n: string }>`
    select count(*)::text as n from ${sql.raw(STAGE_TABLE)} where outcome is null`.execute(session.db);
  io.progress?.phase(options.dryRun ? 'comparing' : 'writing', Number(rows[0]?.n ?? 0));
  for (let afterSeq = 0, batch = 1; afterSeq < lastSeq && !io.signal?.aborted; batch++) {
    const result = await processChunk(session.db, {
      afterSeq,
      size: options.batchSize,
      dryRun: options.dryRun,
      runId,
      log: log.child({ batch }),
      take: options.take,
      withBase: io.onClassified !== undefined,
    });
    for (const entry of result.entries) {
      const { fact } = entry;
      tally.add(entry.outcome, entry.reason, fact.sourceCredits, fact.topup, BigInt(fact.expected.total_credits_used));
      if (entry.outcome === 'conflict') await io.rejects?.write(conflictEntry(entry));
      await io.onClassified?.(entry);
    }
    io.progress?.advance(result.entries.length);
    afterSeq = result.lastSeq;
  }
}

async function listUnmigrated(session: Session, sink: RecordSink | undefined): Promise<void> {
  if (!sink) return;
  for await (const entry of heldBackRecords(session.db)) await sink.write(entry);
}

async function recordRunStart(session: Session, runId: string, command: string): Promise<void> {
  await sql`insert into migrate_users.runs (run_id, command) values (${runId}, ${command})`.execute(session.db);
}

async function recordRunEnd(session: Session, runId: string, status: string, counts: object | null): Promise<void> {
  await sql`
    update migrate_users.runs set finished_at = now(), status = ${status}, counts = ${counts === null ? null : JSON.stringify(counts)}::jsonb
    where run_id = ${runId}`.execute(session.db);
}

async function recordRunFailed(pool: pg.Pool, runId: string, counts: object): Promise<void> {
  await pool.query(`update migrate_users.runs set finished_at = now(), status = 'failed', counts = $2::jsonb where run_id = $1`, [
    runId,
    JSON.stringify(counts),
  ]);
}
