import { sql, type Kysely } from 'kysely';
import { baseJson, COLUMN_LIST, SET_FROM_STAGE } from '../db/canonical.js';
import { STAGE_TABLE } from '../stage/stage.js';

const stage = sql.raw(STAGE_TABLE);
const LEDGER_COLUMNS = sql`(user_id, source_key, source_digest, row_updated_at, run_id, base, postgres_owns)`;
const LEDGER_UPSERT = sql`
  on conflict (user_id) do update set source_key = excluded.source_key, source_digest = excluded.source_digest,
    row_updated_at = excluded.row_updated_at, run_id = excluded.run_id, written_at = now(),
    base = excluded.base, postgres_owns = excluded.postgres_owns`;

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
      insert into migrate_users.ledger ${LEDGER_COLUMNS}
      select ins.user_id, s.key, s.digest, ins.updated_at, ${runId}, ${baseJson('s')}, false
      from ins join s on s.user_id = ins.user_id
      ${LEDGER_UPSERT}
    )
    select s.seq from ins join s on s.user_id = ins.user_id`.execute(db);
  return new Set(result.rows.map((r) => Number(r.seq)));
}

/**
 * Updates rows to the Redis values. Guarded (the default): only rows whose updated_at is still the one the
 * ledger recorded right after the tool's last write. `operatorChoice`: an operator chose Redis for these
 * users (`reconcile --take redis`); the rows are locked by the caller's transaction, so nothing can change
 * between the look the decision was based on and this write.
 */
export async function updateRows(
  db: Kysely<unknown>,
  seqs: readonly number[],
  runId: string,
  operatorChoice = false,
): Promise<Set<number>> {
  if (seqs.length === 0) return new Set();
  const guard = operatorChoice
    ? sql`u.user_id = s.user_id`
    : sql`u.user_id = s.user_id and u.updated_at = (select l.row_updated_at from migrate_users.ledger l where l.user_id = s.user_id)`;
  const result = await sql<{ seq: string }>`
    with s as (select * from ${stage} where seq = any(${seqs}::bigint[])),
    upd as (
      update public.users u set ${SET_FROM_STAGE}
      from s where ${guard}
      returning u.user_id, u.updated_at, s.seq
    ),
    led as (
      insert into migrate_users.ledger ${LEDGER_COLUMNS}
      select upd.user_id, s.key, s.digest, upd.updated_at, ${runId}, ${baseJson('s')}, false
      from upd join s on s.seq = upd.seq
      ${LEDGER_UPSERT}
    )
    select seq from upd`.execute(db);
  return new Set(result.rows.map((r) => Number(r.seq)));
}

/** Records in the ledger rows found already identical to Redis, so later runs can tell app changes apart. */
export async function adoptRows(db: Kysely<unknown>, seqs: readonly number[], runId: string): Promise<void> {
  if (seqs.length === 0) return;
  await sql`
    insert into migrate_users.ledger ${LEDGER_COLUMNS}
    select u.user_id, s.key, s.digest, u.updated_at, ${runId}, ${baseJson('s')}, false
    from ${stage} s join public.users u on u.user_id = s.user_id
    where s.seq = any(${seqs}::bigint[])
    ${LEDGER_UPSERT}`.execute(db);
}

/**
 * An operator chose PostgreSQL for these users: the ledger takes the current Redis record as seen, and a
 * row_updated_at no row can have, so the app's row (or its deletion) stands until Redis changes again.
 */
export async function keepPostgres(db: Kysely<unknown>, seqs: readonly number[], runId: string): Promise<void> {
  if (seqs.length === 0) return;
  await sql`
    insert into migrate_users.ledger ${LEDGER_COLUMNS}
    select s.user_id, s.key, s.digest, '-infinity'::timestamptz, ${runId}, l.base, true
    from ${stage} s left join migrate_users.ledger l on l.user_id = s.user_id
    where s.seq = any(${seqs}::bigint[])
    on conflict (user_id) do update set source_key = excluded.source_key, source_digest = excluded.source_digest,
      row_updated_at = excluded.row_updated_at, run_id = excluded.run_id, written_at = now(), postgres_owns = true`.execute(db);
}

export async function logResolutions(
  db: Kysely<unknown>,
  entries: readonly { userId: string; side: 'redis' | 'postgres'; reason: string; digest: string }[],
  runId: string,
): Promise<void> {
  if (entries.length === 0) return;
  await sql`
    insert into migrate_users.resolutions (user_id, side, reason, run_id, redis_digest)
    select v.user_id, v.side, v.reason, ${runId}, v.digest
    from unnest(${entries.map((e) => e.userId)}::text[], ${entries.map((e) => e.side)}::text[],
                ${entries.map((e) => e.reason)}::text[], ${entries.map((e) => e.digest)}::text[])
      as v(user_id, side, reason, digest)`.execute(db);
}
