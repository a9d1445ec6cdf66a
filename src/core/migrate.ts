import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type pg from 'pg';
import { withSession, type Session } from '../db/database.js';
import { canonicalColumns } from '../db/canonical.js';
import { assertSchema } from '../db/schema.js';
import type { Logger } from '../log.js';
import { mapRecord, type MapContext } from '../map/map-record.js';
import { rowDigest } from '../map/user-row.js';
import { publicRow, rowFromRecord } from '../compare/compare-rows.js';
import { readValues, scanKeys, type RedisReadable } from '../source/redis-reader.js';
import { createStage, finishStage, StageWriter, STAGE_TABLE, type StagedRecord } from '../stage/stage.js';
import { summarise, type MigrateReport, type Mode } from '../report/report.js';
import type { RecordSink } from '../report/ndjson-file.js';
import { forEachBounded } from './bounded.js';
import { processChunk } from './process-chunk.js';

export interface MigrateOptions {
  readonly dryRun: boolean;
  readonly match: string;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly scanCount: number;
  readonly maxValueBytes: number;
  readonly mapContext: MapContext;
}

export interface Progress {
  phase(name: string, total?: number): void;
  advance(count: number): void;
  done(): void;
}

export interface MigrateIo {
  readonly redis: RedisReadable;
  readonly pool: pg.Pool;
  readonly log: Logger;
  /** Receives one entry per record not migrated (rejected or in conflict). */
  readonly rejects?: RecordSink;
  readonly progress?: Progress;
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
    if (!options.dryRun) await recordRunStart(session, runId);
    try {
      await createStage(session);
      const scanned = await stageAll(session, options, io, log);
      log.info({ scanned }, 'read every key; classifying');
      const { scanDuplicates } = await finishStage(session);
      if (options.dryRun) {
        // From here on PostgreSQL itself refuses any write except to this session's TEMP stage.
        await sql`set session characteristics as transaction read only`.execute(session.db);
      }
      await classifyAll(session, options, io, runId, log);
      await listUnmigrated(session, io.rejects);
      const report = await summarise(session.db, { run_id: runId, mode, started, scanDuplicates });
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

async function stageAll(session: Session, options: MigrateOptions, io: MigrateIo, log: Logger): Promise<number> {
  const writer = new StageWriter(session);
  const prefixLength = options.match.length - 1;
  let seq = 0;
  io.progress?.phase('reading Redis');
  await forEachBounded(scanKeys(io.redis, options), options.concurrency, async (keys) => {
    const records = await readValues(io.redis, keys, prefixLength, options.maxValueBytes);
    const staged = records.map((record): StagedRecord => {
      seq += 1;
      if (!record.ok) return { seq, key: record.key, userId: null, reject: record };
      const mapped = mapRecord(record.keyEmail, record.value, options.mapContext);
      if (!mapped.ok) return { seq, key: record.key, userId: mapped.userId ?? null, reject: mapped };
      return { seq, key: record.key, userId: mapped.row.user_id, mapped: { ...mapped, digest: rowDigest(mapped.row) } };
    });
    await writer.write(staged);
    io.progress?.advance(staged.length);
  });
  await writer.end();
  log.debug({ staged: seq }, 'stage loaded');
  return seq;
}

async function classifyAll(session: Session, options: MigrateOptions, io: MigrateIo, runId: string, log: Logger) {
  const { rows } = await sql<{ n: string }>`
    select count(*)::text as n from ${sql.raw(STAGE_TABLE)} where outcome is null`.execute(session.db);
  io.progress?.phase(options.dryRun ? 'comparing' : 'writing', Number(rows[0]?.n ?? 0));
  let afterSeq = 0;
  for (let batch = 1; ; batch++) {
    const result = await processChunk(session.db, {
      afterSeq,
      size: options.batchSize,
      dryRun: options.dryRun,
      runId,
      log: log.child({ batch }),
    });
    if (result.size === 0) return;
    for (const conflict of result.conflicts) await io.rejects?.write(conflict);
    io.progress?.advance(result.size);
    afterSeq = result.lastSeq;
  }
}

/** Streams rejected records and cross-key duplicates (held back before classification) to the rejects sink. */
async function listUnmigrated(session: Session, sink: RecordSink | undefined): Promise<void> {
  if (!sink) return;
  const t = sql.raw(STAGE_TABLE);
  for (let afterSeq = 0; ; ) {
    const { rows } = await sql<Record<string, unknown> & { seq: string; valid: boolean }>`
      select s.seq, s.key, s.reason, s.detail, s.user_id, s.valid, ${canonicalColumns('s', 'e_')}
      from ${t} s
      where s.seq > ${afterSeq} and (s.outcome = 'rejected' or s.reason in ('duplicate_email', 'duplicate_user_id'))
      order by s.seq limit 5000`.execute(session.db);
    for (const row of rows) {
      const entry: Record<string, unknown> = { key: row.key, reason: row.reason, detail: row.detail };
      if (row.user_id !== null) entry.user_id = row.user_id;
      if (row.valid) entry.redis = publicRow(rowFromRecord(row, 'e_'));
      await sink.write(entry);
    }
    const last = rows[rows.length - 1];
    if (!last) return;
    afterSeq = Number(last.seq);
  }
}

async function recordRunStart(session: Session, runId: string): Promise<void> {
  await sql`insert into migrate_users.runs (run_id, command) values (${runId}, 'migrate')`.execute(session.db);
}

async function recordRunEnd(session: Session, runId: string, status: string, counts: object | null): Promise<void> {
  await sql`
    update migrate_users.runs set finished_at = now(), status = ${status}, counts = ${counts === null ? null : JSON.stringify(counts)}::jsonb
    where run_id = ${runId}`.execute(session.db);
}
