import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { withSession, type Session } from '../db/database.js';
import { assertSchema } from '../db/schema.js';
import type { Logger } from '../log.js';
import type { RedisReadable } from '../source/redis-reader.js';
import { createStage, finishStage, STAGE_TABLE } from '../stage/stage.js';
import { summarise, Tally, type MigrateReport, type Mode } from '../report/report.js';
import type { RecordSink } from '../report/ndjson-file.js';
import { stageSource, type Progress, type ReadOptions } from './stage-source.js';
import { conflictEntry, processChunk, type ClassifiedEntry, type Take } from './process-chunk.js';
import { heldBackRecords } from './facts.js';

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
}

/**
 * migrate and dry-run. Phase 1 streams every key into the session's stage table; phase 2 classifies the
 * stage in batches against PostgreSQL and (unless dry-run) writes each batch atomically.
 */
export async function migrate(options: MigrateOptions, io: MigrateIo): Promise<MigrateReport> {
  const started = new Date();
  const runId = `run_${started.toISOString().replace(/\D/g, '').slice(0, 14)}_${randomBytes(3).toString('hex')}`;
  const mode: Mode = options.dryRun ? 'dry-run' : 'apply';
  const log = io.log.child({ run: runId, mode });
  await assertSchema(io.pool);

  return withSession(io.pool, async (session) => {
    log.info({ match: options.match }, 'run started');
    if (!options.dryRun) await recordRunStart(session, runId, options.command ?? 'migrate');
    try {
      await createStage(session);
      const scanned = await stageSource(session, options, { ...io, log });
      log.info({ scanned }, 'read every key; classifying');
      const { scanDuplicates } = await finishStage(session);
      log.info({ scanDuplicates }, 'stage indexed; duplicates across keys marked');
      if (options.dryRun) {
        // From here on PostgreSQL itself refuses any write except to this session's TEMP stage.
        await sql`set session characteristics as transaction read only`.execute(session.db);
      }
      const tally = new Tally();
      await classifyAll(session, options, io, runId, log, tally, scanned);
      await io.withStage?.(session.db);
      await listUnmigrated(session, io.rejects);
      const report = await summarise(session.db, { run_id: runId, mode, started, scanDuplicates }, tally);
      if (!options.dryRun) await recordRunEnd(session, runId, 'finished', report.counts);
      log.info({ counts: report.counts }, 'run finished');
      return report;
    } catch (error) {
      if (!options.dryRun) await recordRunEnd(session, runId, 'failed', null).catch(() => undefined);
      throw error;
    } finally {
      io.progress?.done();
    }
  });
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
  for (let afterSeq = 0, batch = 1; afterSeq < lastSeq; batch++) {
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
