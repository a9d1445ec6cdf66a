import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Logger } from '../log.js';
import { unboundedTransaction, type Session } from '../db/database.js';
import { createStage, dropStage, emptyStage, listStages, reuseStage, STAGE_FORMAT, type Stage } from '../stage/stage.js';
import type { Take } from './process-chunk.js';
import type { ReadOptions } from './stage-source.js';
import { Tally } from '../report/report.js';
import type { SourceInfo } from '../results/migrate-report.js';

/**
 * What a resumed run continues from: an interrupted or failed writing run whose stage is complete and
 * intact. Only a run with the same configuration qualifies (the stage holds rows mapped under it).
 */
export interface Resumable {
  readonly runId: string;
  readonly stageTable: string;
  readonly lastSeq: number;
  readonly maxSeq: number;
  /** What the runs before decided up to lastSeq (see Tally.toJSON). */
  readonly jobTally: unknown;
  /** Where its stage was read. */
  readonly source: SourceInfo | null;
}

/**
 * What a resumable stage must have been made with: the same command and mapping, and the same source (a
 * run pointed at the wrong Redis and stopped must never be continued by one pointed at the right one).
 */
export function configDigest(options: ReadOptions & { command: string; take?: Take | undefined; source?: SourceInfo | undefined }): string {
  return createHash('sha256')
    .update(
      JSON.stringify({
        format: STAGE_FORMAT,
        source: sourceIdentity(options.source),
        command: options.command,
        match: options.match,
        maxValueBytes: options.maxValueBytes,
        whitelist: [...options.mapContext.whitelist].sort(),
        whitelistCredits: options.mapContext.whitelistCredits.toString(),
        // The target's limits decide which records the mapping rejects.
        limits: JSON.stringify(options.mapContext.limits ?? null, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)),
        take: options.take
          ? { side: options.take.side, users: [...options.take.users].map(([id, r]) => `${id} ${r.redisDigest ?? ''} ${r.rowVersion ?? ''}`).sort() }
          : null,
      }),
    )
    .digest('hex');
}

/**
 * What makes a stage's source the same one: a live server's address and run_id; a snapshot's content (its
 * sha256), so the same file copied elsewhere is the same source and a different file never is.
 */
function sourceIdentity(source: SourceInfo | undefined): unknown {
  if (source?.kind === 'rdb') return { kind: source.kind, sha256: source.sha256 };
  if (source?.kind === 'rdb-cluster') return { kind: source.kind, sha256: source.files.map((f) => f.sha256).sort() };
  return source ?? null;
}

/** Identifies a whitelist and its credits (compared between runs to say when it changed). */
export function whitelistDigest(options: ReadOptions): string {
  return createHash('sha256')
    .update(JSON.stringify({ emails: [...options.mapContext.whitelist].sort(), credits: options.mapContext.whitelistCredits.toString() }))
    .digest('hex')
    .slice(0, 32);
}

/** Called under the write lock: no other writing run is alive, so any unfinished run is a dead one. */
export async function findResumable(db: Kysely<unknown>, digest: string): Promise<Resumable | undefined> {
  const { rows } = await sql<{
    run_id: string;
    stage_table: string;
    stage_rows: string;
    last_seq: string | null;
    job_tally: unknown;
    source: SourceInfo | null;
  }>`
    select run_id, stage_table, stage_rows::text, last_seq::text, job_tally, source from migrate_users.runs
    where stage_table is not null and stage_rows is not null and status <> 'finished' and config_digest = ${digest}
    order by started_at desc limit 1`.execute(db);
  const run = rows[0];
  if (!run) return undefined;
  // Only a stage this role owns (a run under another role left it; it cannot be read or dropped from here).
  const exists = await sql<{ t: string | null }>`
    select c.oid::regclass::text as t from pg_class c
    where c.oid = to_regclass(${run.stage_table}) and pg_get_userbyid(c.relowner) = current_user`.execute(db);
  if (!exists.rows[0]?.t) return undefined;
  // An UNLOGGED table comes back empty after a PostgreSQL crash: then it is no checkpoint at all.
  const size = await sql<{ n: string; max: string | null }>`
    select count(*)::text as n, max(seq)::text as max from ${sql.raw(run.stage_table)}`.execute(db);
  if (size.rows[0]?.n !== run.stage_rows) return undefined;
  const resumable = { runId: run.run_id, stageTable: run.stage_table, maxSeq: Number(size.rows[0].max ?? 0), source: run.source };
  // The counts saved with the checkpoint must cover exactly the undecided-looking records up to it (the
  // conflicts are recorded in the stage): anything else is no checkpoint, which only costs time.
  const lastSeq = Number(run.last_seq ?? 0);
  const counted = Tally.fromJSON(run.job_tally).count;
  const upTo = await sql<{ n: string }>`
    select count(*)::text as n from ${sql.raw(run.stage_table)} where seq <= ${lastSeq} and outcome is null`.execute(db);
  if (run.job_tally === null || Number(upTo.rows[0]?.n ?? -1) !== counted) return { ...resumable, lastSeq: 0, jobTally: [] };
  return { ...resumable, lastSeq, jobTally: run.job_tally };
}

/**
 * The stage of a writing run that resumes nothing (called under the write lock: no other writing run is
 * alive). A stage of this role's no run can resume any more is emptied and reused, so a run sends the API no
 * schema reload (see createStage); only the role's first run creates one. Every other leftover stage the role
 * may drop goes (a failed run's records, password hashes included, do not stay); one it may not, holding
 * records, is named in the log with the way to remove it.
 */
export async function stageForRun(session: Session, runId: string, log: Logger): Promise<Stage> {
  const stage = (await unboundedTransaction(session.db, reuseStage)) ?? (await createStage(session, runId));
  for (const left of await listStages(session.db)) {
    if (left.table === stage.table) continue;
    if (left.mayDrop) {
      await removeStage(session.db, left.table);
      log.info({ stage: left.table, owner: left.owner, run: left.run?.id }, 'removed the stage of a run that can no longer be resumed');
    } else if (left.holdsRecords) {
      log.warn(
        { stage: left.table, owner: left.owner, run: left.run?.id },
        `the stage of an unfinished run of role ${left.owner} holds its records (password hashes included), and this role may not remove it: ` +
          `run \`migrate-users schema clean\` as ${left.owner}`,
      );
    }
  }
  await sql`update migrate_users.runs set stage_table = null where stage_table = ${stage.table}`.execute(session.db);
  return stage;
}

/** Drops a stage, and every run's claim on it, together (schema clean, and a run's leftovers). */
export async function removeStage(db: Kysely<unknown>, table: string): Promise<void> {
  await unboundedTransaction(db, async (trx) => {
    await dropStage(trx, table);
    await sql`update migrate_users.runs set stage_table = null where stage_table = ${table}`.execute(trx);
  });
}

/**
 * What a writing run leaves of its stage. Nothing to resume (`resumableAfter` undefined: it finished, or there
 * is nothing to continue): the stage is emptied, and kept for the role's next run. Otherwise its records stay
 * for the run that resumes it, but not the password hash of one the checkpoint has passed (written, or found
 * in sync): a resume needs only the rest.
 */
export async function leaveStage(db: Kysely<unknown>, table: string, runId: string, resumableAfter?: number): Promise<void> {
  await unboundedTransaction(db, async (trx) => {
    if (resumableAfter === undefined) {
      await emptyStage(trx, table);
      await sql`update migrate_users.runs set stage_table = null where run_id = ${runId}`.execute(trx);
      return;
    }
    // Conflicts keep theirs: the run that resumes lists them as the run before found them.
    await sql`
      update ${sql.raw(table)} set password_hash = null
      where seq <= ${resumableAfter} and outcome is null and password_hash is not null`.execute(trx);
  });
}

export async function recordStage(db: Kysely<unknown>, runId: string, values: { table?: string; rows?: number; lastSeq?: number; resumedFrom?: string }) {
  await sql`
    update migrate_users.runs set
      stage_table = coalesce(${values.table ?? null}, stage_table),
      stage_rows = coalesce(${values.rows ?? null}::bigint, stage_rows),
      last_seq = coalesce(${values.lastSeq ?? null}::bigint, last_seq),
      resumed_from = coalesce(${values.resumedFrom ?? null}, resumed_from)
    where run_id = ${runId}`.execute(db);
}

/** Hands an interrupted run's stage to the run resuming it. */
export async function takeOverStage(db: Kysely<unknown>, from: Resumable, runId: string): Promise<void> {
  await sql`update migrate_users.runs set stage_table = null where run_id = ${from.runId}`.execute(db);
  const { rows } = await sql<{ n: string }>`select count(*)::text as n from ${sql.raw(from.stageTable)}`.execute(db);
  await recordStage(db, runId, { table: from.stageTable, rows: Number(rows[0]?.n ?? 0), lastSeq: from.lastSeq, resumedFrom: from.runId });
  await sql`update migrate_users.runs set job_tally = ${JSON.stringify(from.jobTally)}::jsonb where run_id = ${runId}`.execute(db);
}
