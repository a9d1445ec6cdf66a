import { sql, type Kysely } from 'kysely';
import { COLUMN_LIST, SET_FROM_STAGE } from '../db/canonical.js';
import { STAGE_TABLE } from '../stage/stage.js';

const stage = sql.raw(STAGE_TABLE);

/**
 * The one write path of the tool (migrate, catch-up re-runs and reconcile --apply all use it).
 * Each statement writes users rows and their ledger entries together, and each carries its own guard,
 * so a row the app created or changed meanwhile is skipped (and reported), never overwritten.
 * Returns the stage seqs actually written.
 */
export async function insertRows(db: Kysely<unknown>, seqs: readonly number[], runId: string): Promise<Set<number>> {
  if (seqs.length === 0) return new Set();
  const result = await sql<{ seq: string }>`
    with s as (select * from ${stage} where seq = any(${seqs}::bigint[])),
    ins as (
      insert into public.users (${COLUMN_LIST})
      select ${COLUMN_LIST} from s
      on conflict do nothing
      returning user_id, updated_at
    ),
    led as (
      insert into migrate_users.ledger (user_id, source_key, source_digest, row_updated_at, run_id)
      select ins.user_id, s.key, s.digest, ins.updated_at, ${runId} from ins join s on s.user_id = ins.user_id
      on conflict (user_id) do update set source_key = excluded.source_key, source_digest = excluded.source_digest,
        row_updated_at = excluded.row_updated_at, run_id = excluded.run_id, written_at = now()
    )
    select s.seq from ins join s on s.user_id = ins.user_id`.execute(db);
  return new Set(result.rows.map((r) => Number(r.seq)));
}

/** Updates only rows whose updated_at is still the one the ledger recorded right after the tool's last write. */
export async function updateRows(db: Kysely<unknown>, seqs: readonly number[], runId: string): Promise<Set<number>> {
  if (seqs.length === 0) return new Set();
  const result = await sql<{ seq: string }>`
    with s as (select * from ${stage} where seq = any(${seqs}::bigint[])),
    upd as (
      update public.users u set ${SET_FROM_STAGE}
      from s join migrate_users.ledger l on l.user_id = s.user_id
      where u.user_id = s.user_id and u.updated_at = l.row_updated_at
      returning u.user_id, u.updated_at, s.seq, s.key, s.digest
    ),
    led as (
      update migrate_users.ledger l set source_key = upd.key, source_digest = upd.digest,
        row_updated_at = upd.updated_at, run_id = ${runId}, written_at = now()
      from upd where l.user_id = upd.user_id
    )
    select seq from upd`.execute(db);
  return new Set(result.rows.map((r) => Number(r.seq)));
}

/** Records in the ledger rows found already identical to Redis, so later runs can tell app changes apart. */
export async function adoptRows(db: Kysely<unknown>, seqs: readonly number[], runId: string): Promise<void> {
  if (seqs.length === 0) return;
  await sql`
    insert into migrate_users.ledger (user_id, source_key, source_digest, row_updated_at, run_id)
    select u.user_id, s.key, s.digest, u.updated_at, ${runId}
    from ${stage} s join public.users u on u.user_id = s.user_id
    where s.seq = any(${seqs}::bigint[])
    on conflict (user_id) do update set source_key = excluded.source_key, source_digest = excluded.source_digest,
      row_updated_at = excluded.row_updated_at, run_id = excluded.run_id, written_at = now()`.execute(db);
}
