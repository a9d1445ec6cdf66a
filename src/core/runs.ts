import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { tryAdvisoryLock, type HeldLock, type Session } from '../db/database.js';
import { UnfinishedError, UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Tally } from '../report/report.js';
import type { SourceInfo, WhitelistInfo } from '../results/migrate-report.js';
import { whitelistDigest } from './checkpoint.js';
import type { MigrateOptions } from './migrate.js';

/**
 * The bookkeeping of writing runs in `migrate_users.runs`: one run at a time, its start and end, its
 * checkpoint with the counts of what it decided up to there, and the whitelist it used.
 */

const WRITE_LOCK = `hashtext('migrate-users:write')`;

/**
 * One writing run at a time per database (migrate, reconcile --apply): an advisory lock held by an open
 * transaction on a connection of its own, released with it, even if the process dies. Dry-run and verify
 * do not take it.
 */
export async function takeWriteLock(pool: pg.Pool, log: Logger): Promise<HeldLock> {
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

/** Under the write lock no other writing run is alive: a run still marked running was killed. */
export async function markAbandoned(db: Kysely<unknown>): Promise<void> {
  await sql`update migrate_users.runs set status = 'abandoned', finished_at = coalesce(finished_at, now()) where status = 'running'`.execute(db);
}

/** This run's whitelist, beside the one the last finished writing run used, and its emails no record has. */
export async function whitelistInfo(db: Kysely<unknown>, options: MigrateOptions, grantsKept: number, stage: string): Promise<WhitelistInfo> {
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

export interface SavedCheckpoint {
  lastSeq: number;
  savedAt: number;
  /** Counts and sums of every record decided up to lastSeq (with those of the runs this one resumed). */
  readonly committed: Tally;
}

/** Saves how far the committed batches reach, at most every 2 s: a stale checkpoint only costs time. */
export async function saveCheckpoint(db: Kysely<unknown>, runId: string, checkpoint: SavedCheckpoint, seq: number) {
  checkpoint.lastSeq = seq;
  if (Date.now() - checkpoint.savedAt < 2000) return;
  checkpoint.savedAt = Date.now();
  await saveCheckpointNow(db, runId, checkpoint);
}

/** The checkpoint and what was decided up to it, in one statement: a resumed run reports the whole job. */
export async function saveCheckpointNow(db: Kysely<unknown>, runId: string, checkpoint: SavedCheckpoint) {
  await sql`
    update migrate_users.runs set last_seq = ${checkpoint.lastSeq}, job_tally = ${JSON.stringify(checkpoint.committed)}::jsonb
    where run_id = ${runId}`.execute(db);
}

export async function recordRunStart(session: Session, runId: string, command: string, digest: string, options: MigrateOptions): Promise<void> {
  const whitelist = {
    emails: options.mapContext.whitelist.size,
    credits: Number(options.mapContext.whitelistCredits),
    digest: whitelistDigest(options),
  };
  await sql`
    insert into migrate_users.runs (run_id, command, config_digest, source, whitelist)
    values (${runId}, ${command}, ${digest}, ${JSON.stringify(options.source ?? null)}::jsonb, ${JSON.stringify(whitelist)}::jsonb)`.execute(session.db);
}

export async function recordRunEnd(session: Session, runId: string, status: string, counts: object | null): Promise<void> {
  await sql`
    update migrate_users.runs set finished_at = now(), status = ${status}, counts = ${counts === null ? null : JSON.stringify(counts)}::jsonb
    where run_id = ${runId}`.execute(session.db);
}

/**
 * On a fresh connection of the pool, tried a few times: when the server ended the run's sessions, the pool
 * may still hand out an idle connection that died with them before it learns so.
 */
export async function recordRunFailed(pool: pg.Pool, runId: string, counts: object, checkpoint: SavedCheckpoint): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await pool.query(
        `update migrate_users.runs set finished_at = now(), status = 'failed', counts = $2::jsonb, last_seq = $3, job_tally = $4::jsonb where run_id = $1`,
        [runId, JSON.stringify(counts), checkpoint.lastSeq, JSON.stringify(checkpoint.committed)],
      );
      return;
    } catch (error) {
      if (attempt >= 3) throw error;
    }
  }
}

/**
 * A writing run from a snapshot older than what an earlier writing run read would put back older balances
 * (a live catch-up at the cut-over, then the bulk command run again from shell history): refused, exit 2.
 * What a run read is as of its snapshot's time, or, read live, its start. A file both runs read (the same
 * sha256) puts back nothing: re-running or resuming from the same cluster snapshots is never refused. Of
 * the other files, the oldest new one is compared with the newest earlier one. `allow`
 * (--allow-older-snapshot) is for an operator who means it.
 */
export async function refuseOlderSnapshot(pool: Pick<pg.Pool, 'query'>, source: SourceInfo, allow: boolean): Promise<void> {
  const mine = snapshotFiles(source);
  if (allow || !mine) return;
  const { rows } = await pool.query<{ run_id: string; started_at: Date; source: SourceInfo | null }>(
    `select run_id, started_at, source from migrate_users.runs where status <> 'running' order by started_at desc limit 200`,
  );
  for (const run of rows) {
    const theirs = snapshotFiles(run.source);
    const read = theirs?.filter((f) => !mine.some((m) => m.sha256 === f.sha256)).map((f) => Date.parse(f.created)) ?? [run.started_at.getTime()];
    const taken = mine.filter((m) => !theirs?.some((f) => f.sha256 === m.sha256)).map((m) => Date.parse(m.created));
    if (read.length === 0 || taken.length === 0) continue;
    const asOf = Math.max(...read);
    const oldest = Math.min(...taken);
    if (Number.isFinite(oldest) && asOf > oldest) {
      const when = (t: number) => new Date(t).toISOString().replace('.000Z', 'Z');
      throw new UsageError(
        `the snapshot was taken at ${when(oldest)}, before what run ${run.run_id} wrote (read as of ${when(asOf)}): ` +
          'writing from it would put back older balances. Take a newer snapshot, read live, or give --allow-older-snapshot if that is meant',
      );
    }
  }
}

function snapshotFiles(source: SourceInfo | null): readonly { readonly sha256: string; readonly created: string }[] | undefined {
  if (source?.kind === 'rdb') return [source];
  if (source?.kind === 'rdb-cluster') return source.files;
  return undefined;
}
