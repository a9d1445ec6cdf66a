import { sql, type Kysely, type RawBuilder } from 'kysely';
import { canonicalJson, COLUMN_LIST, SET_FROM_STAGE } from '../db/canonical.js';
import { triageKind } from '../stage/stage.js';
import { pgCode } from '../errors.js';
import type { UserRow } from '../map/user-row.js';
import type { Sums } from '../results/sums.js';

const UNIQUE_VIOLATION = '23505';

const LEDGER_COLUMNS = sql`(user_id, source_key, source_digest, row_xmin, row_credits, row_used, run_id, base, postgres_owns, granted_credits, source_credits, source_used)`;
/** The Redis side's own balance of staged record `s`, for the ledger (after LEDGER_COLUMNS' granted_credits). */
const SOURCE = sql.raw('s.source_credits, s.total_credits_used');
/** A top-up is granted once: the level granted only ever rises, whatever a later run's whitelist says. */
const LEDGER_UPSERT = sql`
  on conflict (user_id) do update set source_key = excluded.source_key, source_digest = excluded.source_digest,
    row_xmin = excluded.row_xmin, row_credits = excluded.row_credits, row_used = excluded.row_used, run_id = excluded.run_id,
    written_at = now(), base = excluded.base, postgres_owns = excluded.postgres_owns,
    source_credits = excluded.source_credits, source_used = excluded.source_used,
    granted_credits = greatest(migrate_users.ledger.granted_credits, excluded.granted_credits)`;

/**
 * True when users row `u` is still as the tool's last write (ledger entry `l`) left it: the same row version
 * (xmin) and the same balances. xids are reused (wraparound, a cluster restored from a dump): the balances
 * make sure a reused xid can never pass a balance the app changed for the tool's own.
 */
export function untouchedSql(u: string, l: string): RawBuilder<unknown> {
  return sql.raw(`(${u}.xmin = ${l}.row_xmin and ${u}.current_credits = ${l}.row_credits and ${u}.total_credits_used = ${l}.row_used)`);
}

/** The whitelist level a staged record `s` grants (null when the rule added nothing). */
const GRANTED = sql.raw(`case when s.topup > 0 then s.current_credits end`);

/** One staged record to write: its seq, and the row version (xmin) the decision saw. */
export interface WriteRow {
  readonly seq: number;
  readonly observed?: string | null;
}

/** The staged records of `rows`, each with the row version it saw and the ledger's base text. */
function staged(stage: string, rows: readonly WriteRow[]) {
  return sql`
    select st.*, v.observed, ${canonicalJson('st')} as base from ${sql.raw(stage)} st
    join unnest(${rows.map((r) => r.seq)}::bigint[], ${rows.map((r) => r.observed ?? null)}::text[])
      as v(seq, observed) on v.seq = st.seq`;
}

/**
 * The one write path of the tool (migrate, catch-up re-runs and reconcile --apply all use it).
 * Each statement writes users rows and their ledger entries together, and each carries its own guard,
 * so a row the app created or changed meanwhile is skipped (and reported), never overwritten.
 * `from` selects the staged records to insert, each with its ledger base.
 * `guard: 'skip'` (ON CONFLICT) skips a taken row or email and writes the rest; `guard: 'fail'` makes the
 * whole statement fail with unique_violation instead, and writes nothing: about a third cheaper per row
 * (no speculative insertion), for records triage found free.
 */
function insertCtes(from: RawBuilder<unknown>, runId: string, guard: 'skip' | 'fail' = 'skip') {
  const skip = guard === 'skip';
  return sql`
    s as (${from}),
    ins as (
      insert into public.users (${COLUMN_LIST})
      select ${COLUMN_LIST} from s
      ${skip ? sql`on conflict do nothing` : sql``}
      returning user_id, xmin, current_credits, total_credits_used
    ),
    led as (
      insert into migrate_users.ledger ${LEDGER_COLUMNS}
      select ins.user_id, s.key, s.digest, ins.xmin, ins.current_credits, ins.total_credits_used, ${runId}, s.base, false, ${GRANTED}, ${SOURCE}
      from ins join s on s.user_id = ins.user_id
      ${skip ? LEDGER_UPSERT : sql``}
    )`;
}

/** Inserts the staged records of `rows`; returns the stage seqs actually written. */
export async function insertRows(db: Kysely<unknown>, stage: string, rows: readonly WriteRow[], runId: string): Promise<Set<number>> {
  if (rows.length === 0) return new Set();
  const result = await sql<{ seq: string }>`
    with ${insertCtes(staged(stage, rows), runId)}
    select s.seq from ins join s on s.user_id = ins.user_id`.execute(db);
  return new Set(result.rows.map((r) => Number(r.seq)));
}

export function sumsSelect(alias: string): RawBuilder<unknown> {
  return sql.raw(`count(*)::int as n, coalesce(sum(${alias}.source_credits), 0)::text as source, coalesce(sum(${alias}.topup), 0)::text as topup,
    coalesce(sum(${alias}.total_credits_used), 0)::text as used, (count(*) filter (where ${alias}.topup > 0))::int as topped`);
}

export function toSums(row: { n: number; source: string; topup: string; used: string; topped: number }): Sums {
  return { n: row.n, source: BigInt(row.source), topup: BigInt(row.topup), used: BigInt(row.used), topped: row.topped };
}

/**
 * Inserts the records of seq range (afterSeq, afterSeq + size] that triage found free (see facts.ts), and
 * returns their sums and the seqs refused because the app took the row or the email meanwhile: no row
 * crosses the wire. First one statement that fails whole on a taken row or email (it runs on its own, not
 * inside a transaction, so the failure writes nothing) and, only then, one that skips what is taken and
 * writes the rest.
 */
export async function insertTriaged(
  db: Kysely<unknown>,
  stage: string,
  afterSeq: number,
  size: number,
  runId: string,
): Promise<{ written: Sums; refused: number[] }> {
  const from = sql`
    select st.*, ${canonicalJson('st')} as base from ${sql.raw(stage)} st
    where st.seq > ${afterSeq} and st.seq <= ${afterSeq + size} and st.outcome is null and ${triageKind('st', stage)} = 'insert'`;
  const insert = (guard: 'skip' | 'fail') =>
    sql<{ n: number; source: string; topup: string; used: string; topped: number; candidates: number; xid: string | null }>`
    with ${insertCtes(from, runId, guard)}
    select ${sumsSelect('w')}, (select count(*)::int from s) as candidates, (select ins.xmin::text from ins limit 1) as xid
    from s w where w.user_id in (select user_id from ins)`.execute(db);
  let result;
  try {
    result = await insert('fail');
  } catch (error) {
    if (pgCode(error) !== UNIQUE_VIOLATION) throw error;
    result = await insert('skip');
  }
  const row = result.rows[0];
  if (!row) throw new Error('the triaged insert returned no summary row');
  if (row.n === row.candidates) return { written: toSums(row), refused: [] };
  // Rare: the app took a row or an email meanwhile, or an earlier statement of this run inserted the row (a
  // batch classified again after a failure: its inserts stay this run's inserts). What this statement wrote
  // carries its transaction's id as xmin, in the ledger too (an xid, compared as one: no timestamp goes
  // through text).
  const rest = await sql<{ ours: boolean; n: number; source: string; topup: string; used: string; topped: number; seqs: string[] }>`
    select l.user_id is not null as ours, ${sumsSelect('st')}, array_agg(st.seq::text) as seqs
    from ${sql.raw(stage)} st
    left join migrate_users.ledger l on l.user_id = st.user_id and l.run_id = ${runId} and l.source_digest = st.digest
    where st.seq > ${afterSeq} and st.seq <= ${afterSeq + size} and st.outcome is null and ${triageKind('st', stage)} = 'insert'
      and not exists (select 1 from migrate_users.ledger w
        where w.user_id = st.user_id and w.run_id = ${runId} and w.row_xmin = ${row.xid}::xid)
    group by 1`.execute(db);
  let written = toSums(row);
  let refused: number[] = [];
  for (const group of rest.rows) {
    if (group.ours) written = addSums(written, toSums(group));
    else refused = group.seqs.map(Number);
  }
  return { written, refused };
}

export function addSums(a: Sums | undefined, b: Sums): Sums {
  if (!a) return b;
  return { n: a.n + b.n, source: a.source + b.source, topup: a.topup + b.topup, used: a.used + b.used, topped: a.topped + b.topped };
}

/**
 * Updates rows to the Redis values, each only if it is still exactly as the decision saw it:
 * `guard: 'ledger'` (catch-up) needs the row version (xmin) the tool's last write left; `guard: 'observed'`
 * (an operator's `--take redis`) needs the version this batch observed. Under READ COMMITTED an UPDATE that
 * waited for the app's uncommitted write re-checks its WHERE on the new version, whose xmin differs: skipped.
 */
export async function updateRows(
  db: Kysely<unknown>,
  stage: string,
  rows: readonly WriteRow[],
  runId: string,
  guard: 'ledger' | 'observed' = 'ledger',
): Promise<Set<number>> {
  if (rows.length === 0) return new Set();
  const condition =
    guard === 'observed'
      ? sql`u.xmin = s.observed::xid`
      : sql`exists (select 1 from migrate_users.ledger l where l.user_id = s.user_id and ${untouchedSql('u', 'l')})`;
  const result = await sql<{ seq: string }>`
    with s as (${staged(stage, rows)}),
    upd as (
      update public.users u set ${SET_FROM_STAGE}
      from s where u.user_id = s.user_id and ${condition}
      returning u.user_id, u.xmin, u.current_credits, u.total_credits_used, s.seq
    ),
    led as (
      insert into migrate_users.ledger ${LEDGER_COLUMNS}
      select upd.user_id, s.key, s.digest, upd.xmin, upd.current_credits, upd.total_credits_used, ${runId}, s.base, false, ${GRANTED}, ${SOURCE}
      from upd join s on s.seq = upd.seq
      ${LEDGER_UPSERT}
    )
    select seq from upd`.execute(db);
  return new Set(result.rows.map((r) => Number(r.seq)));
}

/** One row to write whole, computed by the decision (a combined balance): its stage seq, the version it saw. */
export interface RowWrite {
  readonly seq: number;
  readonly observed: string | null;
  readonly row: UserRow;
  /** The record was merged into this row before: the ledger keeps the row as written (its base) and its version. */
  readonly merged: boolean;
  /** A whitelist top-up is granted with it: the ledger records the level (granted once). */
  readonly grant: boolean;
}

/**
 * Writes rows computed from both sides (`reconcile --combine`, `--take redis` over a merge or a top-up): PostgreSQL's
 * row with the Redis side's change since the tool's last write applied, only while the row is still the version
 * the decision saw. The ledger takes the Redis record as now: a merged row is recorded as written (base and
 * version: untouched from here); any other row stays the app's (no version), its base the record's mapping, so
 * the app's part of the balance is never caught up and verify shows it as the app's.
 */
export async function writeCombined(db: Kysely<unknown>, stage: string, writes: readonly RowWrite[], runId: string): Promise<Set<number>> {
  if (writes.length === 0) return new Set();
  const rows = JSON.stringify(writes.map((w) => w.row));
  const meta = JSON.stringify(writes.map((w) => ({ seq: w.seq, user_id: w.row.user_id, observed: w.observed, merged: w.merged, topped: w.grant })));
  const result = await sql<{ seq: string }>`
    with p as (select * from jsonb_populate_recordset(null::public.users, ${rows}::jsonb)),
    v as (select * from jsonb_to_recordset(${meta}::jsonb) as v(seq bigint, user_id text, observed text, merged boolean, topped boolean)),
    upd as (
      update public.users u set username = p.username, avatar = p.avatar, password_hash = p.password_hash,
        current_credits = p.current_credits, total_credits_used = p.total_credits_used,
        current_plan_id = p.current_plan_id, plan_renew_at = p.plan_renew_at, created_at = p.created_at, last_login = p.last_login
      from p join v on v.user_id = p.user_id
      where u.user_id = p.user_id and u.xmin = v.observed::xid
      returning u.*, u.xmin as new_xmin, v.seq, v.merged, v.topped
    ),
    led as (
      update migrate_users.ledger l set source_digest = s.digest, run_id = ${runId}, written_at = now(), postgres_owns = false,
        source_credits = s.source_credits, source_used = s.total_credits_used,
        granted_credits = case when upd.topped then greatest(l.granted_credits, s.current_credits) else l.granted_credits end,
        base = case when upd.merged then ${canonicalJson('upd')} else ${canonicalJson('s')} end,
        row_xmin = case when upd.merged then upd.new_xmin end,
        row_credits = case when upd.merged then upd.current_credits end,
        row_used = case when upd.merged then upd.total_credits_used end
      from upd join ${sql.raw(stage)} s on s.seq = upd.seq
      where l.user_id = upd.user_id
    )
    select seq::text from upd`.execute(db);
  return new Set(result.rows.map((r) => Number(r.seq)));
}

/**
 * Whitelist top-ups owed on rows the app changed since the tool wrote them (decide: grant_topup): the amount
 * is added to the app's balance, nothing else of the row is written, and only while the row is still the
 * version the decision saw. The ledger then holds the record as written with the top-up (its base) and the
 * level granted; the row stays the app's (no row version recorded), so its balance is never caught up.
 */
export async function grantTopups(
  db: Kysely<unknown>,
  stage: string,
  rows: readonly (WriteRow & { readonly amount: bigint })[],
  runId: string,
): Promise<Set<number>> {
  if (rows.length === 0) return new Set();
  const result = await sql<{ seq: string }>`
    with s as (${staged(stage, rows)}),
    g as (select * from unnest(${rows.map((r) => r.seq)}::bigint[], ${rows.map((r) => r.amount.toString())}::bigint[]) as g(seq, amount)),
    upd as (
      update public.users u set current_credits = u.current_credits + g.amount
      from s join g on g.seq = s.seq
      where u.user_id = s.user_id and u.xmin = s.observed::xid
      returning u.user_id, s.seq
    ),
    led as (
      update migrate_users.ledger l set source_digest = s.digest, base = s.base, run_id = ${runId}, written_at = now(),
        row_xmin = null, row_credits = null, row_used = null, source_credits = s.source_credits, source_used = s.total_credits_used,
        granted_credits = greatest(l.granted_credits, s.current_credits)
      from upd join s on s.seq = upd.seq
      where l.user_id = upd.user_id
    )
    select seq from upd`.execute(db);
  return new Set(result.rows.map((r) => Number(r.seq)));
}

/**
 * Records in the ledger rows found already identical to Redis, so later runs can tell app changes apart;
 * only while the row is still as observed (else the app's version would be taken for the tool's).
 */
export async function adoptRows(db: Kysely<unknown>, stage: string, rows: readonly WriteRow[], runId: string): Promise<Set<number>> {
  if (rows.length === 0) return new Set();
  const result = await sql<{ seq: string }>`
    with s as (${staged(stage, rows)}),
    adopted as (
      insert into migrate_users.ledger ${LEDGER_COLUMNS}
      select u.user_id, s.key, s.digest, u.xmin, u.current_credits, u.total_credits_used, ${runId}, s.base, false, ${GRANTED}, ${SOURCE}
      from s join public.users u on u.user_id = s.user_id and u.xmin = s.observed::xid
      ${LEDGER_UPSERT}
      returning user_id
    )
    select s.seq::text from s join adopted a on a.user_id = s.user_id`.execute(db);
  return new Set(result.rows.map((r) => Number(r.seq)));
}

/**
 * An operator chose PostgreSQL for these users: the ledger takes the current Redis record as seen, and no
 * row version (a null row_xmin equals none), so the app's row (or its deletion) stands until Redis changes
 * again.
 */
export async function keepPostgres(db: Kysely<unknown>, stage: string, seqs: readonly number[], runId: string): Promise<void> {
  if (seqs.length === 0) return;
  await sql`
    insert into migrate_users.ledger ${LEDGER_COLUMNS}
    select coalesce(m.user_id, s.user_id), s.key, s.digest, null, null, null, ${runId}, l.base, true, l.granted_credits, ${SOURCE}
    from ${sql.raw(stage)} s
    -- A merged user's ledger entry is the row it was merged into.
    left join migrate_users.merges m on m.old_user_id = s.user_id
    left join migrate_users.ledger l on l.user_id = coalesce(m.user_id, s.user_id)
    where s.seq = any(${seqs}::bigint[])
    on conflict (user_id) do update set source_key = excluded.source_key, source_digest = excluded.source_digest,
      row_xmin = null, row_credits = null, row_used = null, run_id = excluded.run_id, written_at = now(), postgres_owns = true,
      source_credits = excluded.source_credits, source_used = excluded.source_used`.execute(db);
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

/** One early login to merge: its stage seq, the merged row, and the version of the new-app row it saw. */
export interface MergeWrite {
  readonly seq: number;
  readonly observed: string | null;
  readonly row: UserRow;
  readonly withheld: bigint;
  /** The new-app row before the merge. */
  readonly before: UserRow | null;
}

/**
 * Merges Redis accounts into the new app's rows (see decide: mergeRows), each only while that row is still
 * the version the decision saw, and, in the same statement, the ledger entry (the row now carries this Redis
 * key) and the merge's bookkeeping row: a merge is whole or not at all, and never done twice (old_user_id is
 * the merges table's key). Returns the seqs merged.
 */
export async function mergeInto(db: Kysely<unknown>, stage: string, merges: readonly MergeWrite[], runId: string): Promise<Set<number>> {
  if (merges.length === 0) return new Set();
  const rows = JSON.stringify(merges.map((m) => m.row));
  const meta = JSON.stringify(
    merges.map((m) => ({
      seq: m.seq,
      user_id: m.row.user_id,
      observed: m.observed,
      withheld: m.withheld.toString(),
      pg_credits: m.before?.current_credits ?? '0',
      pg_used: m.before?.total_credits_used ?? '0',
    })),
  );
  const result = await sql<{ seq: string }>`
    with p as (select * from jsonb_populate_recordset(null::public.users, ${rows}::jsonb)),
    v as (
      select * from jsonb_to_recordset(${meta}::jsonb)
        as v(seq bigint, user_id text, observed text, withheld bigint, pg_credits bigint, pg_used bigint)
    ),
    upd as (
      update public.users u set username = p.username, avatar = p.avatar, password_hash = p.password_hash,
        current_credits = p.current_credits, total_credits_used = p.total_credits_used, signup_bonus_granted = true,
        current_plan_id = p.current_plan_id, plan_renew_at = p.plan_renew_at, created_at = p.created_at, last_login = p.last_login
      from p join v on v.user_id = p.user_id
      where u.user_id = p.user_id and u.xmin = v.observed::xid
      returning u.*, u.xmin as new_xmin, v.seq, v.withheld, v.pg_credits, v.pg_used
    ),
    led as (
      insert into migrate_users.ledger (user_id, source_key, source_digest, row_xmin, row_credits, row_used, run_id, base, postgres_owns,
        granted_credits, source_credits, source_used, merged_from)
      select upd.user_id, s.key, s.digest, upd.new_xmin, upd.current_credits, upd.total_credits_used, ${runId}, ${canonicalJson('upd')}, false,
        ${GRANTED}, ${SOURCE}, s.user_id
      from upd join ${sql.raw(stage)} s on s.seq = upd.seq
      on conflict (user_id) do update set source_key = excluded.source_key, source_digest = excluded.source_digest,
        row_xmin = excluded.row_xmin, row_credits = excluded.row_credits, row_used = excluded.row_used, run_id = excluded.run_id,
        written_at = now(), base = excluded.base, postgres_owns = false, granted_credits = excluded.granted_credits, merged_from = excluded.merged_from,
        source_credits = excluded.source_credits, source_used = excluded.source_used
    ),
    mer as (
      insert into migrate_users.merges (old_user_id, user_id, redis_key, redis_credits, redis_used, postgres_credits, postgres_used,
        bonus_withheld, merged_credits, merged_used, run_id)
      select s.user_id, upd.user_id, s.key, s.current_credits, s.total_credits_used, upd.pg_credits, upd.pg_used,
        upd.withheld, upd.current_credits, upd.total_credits_used, ${runId}
      from upd join ${sql.raw(stage)} s on s.seq = upd.seq
    )
    select seq::text from upd`.execute(db);
  return new Set(result.rows.map((r) => Number(r.seq)));
}
