import { sql, type Kysely } from 'kysely';
import { canonicalColumns, readBase, sameRow } from '../db/canonical.js';
import { publicRow, rowFromRecord, type CellValue } from '../compare/compare-rows.js';
import type { Facts } from './decide.js';
import { emailsTable, triageKind, triageTable } from '../stage/stage.js';
import { addSums, sumsSelect, toSums, untouchedSql } from '../sink/apply-chunk.js';
import type { Sums } from '../results/sums.js';

export interface RecordFacts extends Facts {
  readonly seq: number;
  readonly key: string;
  /** Credits as Redis held them, and what the whitelist rule added. */
  readonly sourceCredits: bigint;
  readonly topup: bigint;
  /** The row version (xmin) this batch saw: writes based on this look are guarded by it. */
  readonly observedVersion: string | null;
  /** The version of the email owner's row (what a merge writes into) this batch saw. */
  readonly ownerVersion: string | null;
}

interface FactRow extends Record<string, unknown> {
  seq: string;
  key: string;
  digest: string;
  has_row: boolean;
  has_ledger: boolean;
  ledger_digest: string | null;
  untouched: boolean | null;
  email_owner: string | null;
  postgres_owns: boolean | null;
  source_credits: string | null;
  source_used: string | null;
  granted: boolean | null;
  base: string | Record<string, CellValue> | null;
  s_source_credits: string;
  topup: string;
  a_xmin: string | null;
  merged_into: string | null;
  o_user_id: string | null;
  o_xmin: string | null;
  owner_written: boolean;
}

/**
 * Staged records of seq range (afterSeq, afterSeq + size] still waiting for a decision. Seqs are dense
 * (1..N as read), so a range is one primary-key range scan; "order by seq limit n" over the remaining rows
 * made PostgreSQL scan and sort everything left for every batch.
 */
export function pendingRecords(stage: string, afterSeq: number, size: number, pick: Pick = {}) {
  const only = pick.only ? sql` and st.seq = any(${pick.only}::bigint[])` : sql``;
  const skip = pick.skip?.length ? sql` and coalesce(${triageKind('st', stage)}, '') <> all(${pick.skip}::text[])` : sql``;
  return sql`select * from ${sql.raw(stage)} st where st.seq > ${afterSeq} and st.seq <= ${afterSeq + size} and st.outcome is null${only}${skip}`;
}

/** Narrows a batch: only these seqs, or all but the records triage settled as one of these kinds. */
export interface Pick {
  readonly only?: readonly number[] | undefined;
  readonly skip?: readonly TriageKind[] | undefined;
}

/**
 * What one set-based pass over the stage found, for the records whose outcome needs no row comparison
 * detail (the great majority of a run):
 * - `insert`: nothing in PostgreSQL for this user (no row, no ledger entry, email not taken): decide()
 *   says insert;
 * - `same_current`: the row equals the record, and the ledger says the tool wrote it from this very Redis
 *   record and nobody changed it since: decide() says unchanged, nothing to write;
 * - `same`: the row equals the record (verify's "match"), unless both sides changed since the tool's write
 *   (then decide() looks: both may have moved the balance).
 * Every other record goes through loadFacts and decide() / verifyRecord. A triage is a look taken once, at
 * the start of classification: writes stay guarded by the state they find (an insert by ON CONFLICT DO
 * NOTHING), and an insert that finds the row taken is decided again from fresh facts.
 */
export type TriageKind = 'insert' | 'same_current' | 'same';

/** What prepareFacts found: grants kept from earlier runs, and app rows whose email is not normalised. */
export interface Prepared {
  readonly grantsKept: number;
  readonly unnormalisedEmails: number;
}

/**
 * Readies a finished stage for decisions, in every command alike:
 * - a whitelist top-up the ledger says was granted stands, whatever this run's whitelist says (a top-up is
 *   granted once, never taken back by a later run): such records expect the granted balance;
 * - the app may store an email as typed (`Bob@X.test`): such rows are listed, normalised as the tool
 *   normalises, so the email-taken check finds them by index like every other row.
 */
export async function prepareFacts(db: Kysely<unknown>, stage: string): Promise<Prepared> {
  const grants = await sql`
    update ${sql.raw(stage)} s set current_credits = l.granted_credits, topup = l.granted_credits - s.source_credits
    from migrate_users.ledger l
    where l.user_id = s.user_id and s.valid and l.granted_credits is not null and l.granted_credits > s.current_credits`.execute(db);
  const emails = sql.raw(emailsTable(stage));
  // Made with the stage (see createStage); a resumed run fills it afresh.
  await sql`truncate ${emails}`.execute(db);
  // The normalisation of normaliseEmail (map-record.ts): trim, NFC, lower-case.
  await sql`
    insert into ${emails} (user_id, email)
    select user_id, n.email from (
      -- Lower-case ASCII letters, digits and . _ @ + - alone (spelled out: no range a regex reads by locale) are normalised already (no upper case, no
      -- space, nothing NFC would change): only other emails are normalised. OFFSET 0 keeps this test first:
      -- PostgreSQL otherwise ran the full normalisation on every row, 1.8 s at a million rows.
      -- As text under "C": a citext column's own ~ ignores case, and would let 'Bob@X.test' through.
      select u.user_id, u.email::text as email from public.users u
      where u.email::text collate "C" ~ '[^abcdefghijklmnopqrstuvwxyz0123456789._@+-]' offset 0
    ) u, lateral (select lower(normalize(regexp_replace(u.email, '^[[:space:]]+|[[:space:]]+$', '', 'g'), NFC)) as email) n
    where u.email is distinct from n.email`.execute(db);
  await sql`analyze ${emails}`.execute(db);
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${emails}`.execute(db);
  return { grantsKept: Number(grants.numAffectedRows ?? 0n), unnormalisedEmails: rows[0]?.n ?? 0 };
}

/**
 * user_id of a row, other than `userId`, holding the email `email` (SQL expressions): one index probe on
 * users, one on the rows whose email the app stored unnormalised.
 */
function emailOwner(stage: string, email: string, userId?: string) {
  const other = (alias: string) => (userId ? ` and ${alias}.user_id <> ${userId}` : '');
  return sql.raw(`coalesce(
    (select e.user_id from public.users e where e.email = ${email}${other('e')} limit 1),
    (select o.user_id from ${emailsTable(stage)} o where o.email = ${email}${other('o')} limit 1))`);
}

/**
 * Builds the stage's triage with hash joins over users and the ledger: about 1-2 µs a record, where the
 * per-batch facts query pays three index probes per record.
 */
export async function triage(db: Kysely<unknown>, stage: string, afterSeq: number, prepared?: Prepared): Promise<void> {
  // Most tables hold no unnormalised email: then the per-record probe of that list is left out.
  const odd = prepared?.unnormalisedEmails !== 0;
  const table = sql.raw(triageTable(stage));
  // Made with the stage (see createStage); a resumed run builds it afresh.
  await sql`truncate ${table}`.execute(db);
  await sql`
    insert into ${table} (seq, kind)
    select seq, kind from (
      select s.seq,
        case
          -- No row: free if the tool never wrote one and no other user holds the email. One index probe,
          -- and only here: a scalar subquery with LIMIT is never turned into a hash of every user.
          -- A record merged into a new-app row is decided one by one (decide: decideMerged), never inserted.
          when m.old_user_id is not null then null
          when u.user_id is null then
            case when l.user_id is null and ${odd ? emailOwner(stage, 's.email') : sql`(select e.user_id from public.users e where e.email = s.email limit 1)`} is null
              then 'insert' end
          -- A row equal to the record holds the record's email, and emails are unique: no one else has it
          -- exactly; only a row the app stored unnormalised (a short list, probed by index) can be a second
          -- account of the same mailbox, which is decided one by one.
          when ${sameRow('s', 'u')} ${
            odd
              ? sql`and not exists (
            select 1 from ${sql.raw(emailsTable(stage))} o where o.email = s.email and o.user_id <> s.user_id)`
              : sql``
          } then
            case when l.source_digest = s.digest and ${untouchedSql('u', 'l')} then 'same_current'
              -- Both sides changed since the tool's write and agree now: decide() looks (both may have moved the balance).
              when l.user_id is null or l.source_digest = s.digest or ${untouchedSql('u', 'l')} then 'same' end
        end as kind
      from ${sql.raw(stage)} s
      left join public.users u on u.user_id = s.user_id
      left join migrate_users.ledger l on l.user_id = s.user_id
      left join migrate_users.merges m on m.old_user_id = s.user_id
      where s.valid and s.outcome is null and s.seq > ${afterSeq}
    ) k
    where kind is not null`.execute(db);
  // Fresh tables have no statistics: without them the batches' CTEs are planned as one row each, and
  // joined with nested loops (quadratic in the batch size).
  await sql`analyze ${table}`.execute(db);
}

/**
 * For seq range (afterSeq, afterSeq + size]: the sums of the pending records triage settled as each of
 * `kinds`, and how many other pending records the range holds (those need loadFacts). One row per kind
 * crosses the wire, not one per record.
 */
export async function triagedSums(
  db: Kysely<unknown>,
  stage: string,
  afterSeq: number,
  size: number,
  kinds: readonly TriageKind[],
): Promise<{ byKind: Map<TriageKind, Sums>; others: number }> {
  const { rows } = await sql<{ kind: TriageKind | null; n: number; source: string; topup: string; used: string; topped: number }>`
    select case when s.kind = any(${kinds}::text[]) then s.kind end as kind, ${sumsSelect('s')}
    from (select st.*, ${triageKind('st', stage)} as kind from ${sql.raw(stage)} st
          where st.seq > ${afterSeq} and st.seq <= ${afterSeq + size} and st.outcome is null) s
    group by 1`.execute(db);
  const byKind = new Map<TriageKind, Sums>();
  let others = 0;
  for (const row of rows) {
    if (row.kind === null) others += row.n;
    else byKind.set(row.kind, toSums(row));
  }
  return { byKind, others };
}

/** The sums of the records triage settled as each kind, for one range of seqs. */
export type RangeSums = ReadonlyMap<TriageKind, Sums>;

/**
 * triagedSums for the whole stage after `afterSeq` at once: per range of `size` seqs (each keyed by the
 * afterSeq it starts after, counted from `afterSeq`), the sums of the pending records triage settled as each
 * of `kinds`; and the ranges holding any other pending record. One pass, where a batch loop pays a query per
 * range even when every record in it is settled. Per range, so a checkpoint can count what it passes.
 */
export async function triagedTotals(
  db: Kysely<unknown>,
  stage: string,
  size: number,
  kinds: readonly TriageKind[],
  afterSeq = 0,
): Promise<{ byKind: Map<TriageKind, Sums>; byRange: Map<number, RangeSums>; rangesWithOthers: number[] }> {
  const { rows } = await sql<{ range: number; kind: TriageKind | null; n: number; source: string; topup: string; used: string; topped: number }>`
    select ((st.seq - ${afterSeq}::bigint - 1) / ${size}::bigint)::int as range,
      case when t.kind = any(${kinds}::text[]) then t.kind end as kind, ${sumsSelect('st')}
    from ${sql.raw(stage)} st left join ${sql.raw(triageTable(stage))} t on t.seq = st.seq
    where st.outcome is null and st.seq > ${afterSeq}
    group by 1, 2`.execute(db);
  const byKind = new Map<TriageKind, Sums>();
  const byRange = new Map<number, Map<TriageKind, Sums>>();
  const ranges = new Set<number>();
  for (const row of rows) {
    const start = afterSeq + row.range * size;
    if (row.kind === null) {
      ranges.add(start);
      continue;
    }
    const sums = toSums(row);
    byKind.set(row.kind, addSums(byKind.get(row.kind), sums));
    const range = byRange.get(start) ?? new Map<TriageKind, Sums>();
    range.set(row.kind, sums);
    byRange.set(start, range);
  }
  return { byKind, byRange, rangesWithOthers: [...ranges].sort((a, b) => a - b) };
}

/**
 * What PostgreSQL and the ledger hold for the next batch of staged records, both rows in canonical form.
 * migrate, dry-run and verify all decide from these facts.
 */
export async function loadFacts(db: Kysely<unknown>, stage: string, afterSeq: number, size: number, options: Pick = {}): Promise<RecordFacts[]> {
  if (options.only?.length === 0) return [];
  const { rows } = await sql<FactRow>`
    with s as (${pendingRecords(stage, afterSeq, size, options)})
    select s.seq, s.key, s.digest, s.source_credits::text as s_source_credits, s.topup::text, u.xmin::text as a_xmin,
      ${canonicalColumns('s', 'e_')}, ${canonicalColumns('u', 'a_')},
      u.user_id is not null as has_row, l.user_id is not null as has_ledger, l.source_digest as ledger_digest, l.postgres_owns,
      l.base, l.source_credits::text, l.source_used::text, l.granted_credits is not null as granted,
      coalesce(${untouchedSql('u', 'l')}, false) as untouched,
      m.user_id as merged_into, eo.email_owner,
      ${canonicalColumns('o', 'o_')}, o.xmin::text as o_xmin, ol.user_id is not null or om.user_id is not null as owner_written
    from s
    -- A record merged before lives in the row it was merged into.
    left join migrate_users.merges m on m.old_user_id = s.user_id
    left join public.users u on u.user_id = coalesce(m.user_id, s.user_id)
    left join migrate_users.ledger l on l.user_id = coalesce(m.user_id, s.user_id)
    cross join lateral (select ${emailOwner(stage, 's.email', 's.user_id')} as email_owner) eo
    left join public.users o on o.user_id = eo.email_owner
    left join migrate_users.ledger ol on ol.user_id = eo.email_owner
    left join lateral (select mo.user_id from migrate_users.merges mo where mo.user_id = eo.email_owner limit 1) om on true
    order by s.seq`.execute(db);
  return rows.map((row) => ({
    seq: Number(row.seq),
    key: row.key,
    digest: row.digest,
    sourceCredits: BigInt(row.s_source_credits),
    topup: BigInt(row.topup),
    observedVersion: row.a_xmin,
    expected: rowFromRecord(row, 'e_'),
    actual: row.has_row ? rowFromRecord(row, 'a_') : null,
    emailOwner: row.email_owner,
    owner: row.o_user_id === null ? null : { row: rowFromRecord(row, 'o_'), written: row.owner_written },
    ownerVersion: row.o_xmin,
    merged: row.merged_into === null ? null : { userId: row.merged_into },
    ledger: row.has_ledger
      ? {
          digest: row.ledger_digest ?? '',
          untouched: row.untouched === true,
          postgresOwns: row.postgres_owns === true,
          base: parseBase(row.base),
          granted: row.granted === true,
          source: row.source_credits === null || row.source_used === null ? null : { credits: BigInt(row.source_credits), used: BigInt(row.source_used) },
        }
      : null,
  }));
}

function parseBase(base: string | Record<string, CellValue> | null): Record<string, CellValue> | null {
  return readBase(base) as Record<string, CellValue> | null;
}

/**
 * Records conflict outcomes in the stage. Only conflicts (rare): the report counts them from the stage, so a
 * run that resumes an interrupted one still reports the conflicts the interrupted run found.
 */
export async function recordConflicts(
  db: Kysely<unknown>,
  stage: string,
  runId: string,
  conflicts: readonly { seq: number; reason: string; detail: string }[],
): Promise<void> {
  if (conflicts.length === 0) return;
  await sql`
    update ${sql.raw(stage)} s set outcome = 'conflict', reason = v.reason, detail = v.detail, decided_by = ${runId}
    from unnest(${conflicts.map((c) => c.seq)}::bigint[], ${conflicts.map((c) => c.reason)}::text[], ${conflicts.map((c) => c.detail)}::text[])
      as v(seq, reason, detail)
    where s.seq = v.seq`.execute(db);
}

export interface HeldBackEntry {
  readonly key: string;
  readonly reason: string;
  readonly detail: string;
  readonly user_id?: string;
  /** The row migrate would write, for valid records held back as cross-key duplicates. */
  readonly redis?: Record<string, CellValue>;
}

/**
 * Records held back before classification: rejected as invalid, or claimed by another key; and, for a run
 * resuming an interrupted one, the conflicts the runs before it found (`runId`: the run listing them, whose
 * own conflicts were listed as it found them).
 */
export async function* heldBackRecords(db: Kysely<unknown>, stage: string, runId?: string): AsyncGenerator<HeldBackEntry> {
  for (let afterSeq = 0; ;) {
    const { rows } = await sql<Record<string, unknown> & { seq: string; key: string; reason: string; detail: string; user_id: string | null; valid: boolean }>`
      select s.seq, s.key, s.reason, s.detail, s.user_id, s.valid, ${canonicalColumns('s', 'e_')}
      from ${sql.raw(stage)} s
      where s.seq > ${afterSeq}
        and (s.outcome = 'rejected' or s.reason in ('duplicate_email', 'duplicate_user_id')
          or (s.outcome = 'conflict' and s.decided_by is distinct from ${runId ?? null}::text and ${runId !== undefined}))
      order by s.seq limit 5000`.execute(db);
    for (const row of rows) {
      yield {
        key: row.key,
        reason: row.reason,
        detail: row.detail,
        ...(row.user_id === null ? {} : { user_id: row.user_id }),
        ...(row.valid ? { redis: publicRow(rowFromRecord(row, 'e_')) } : {}),
      };
    }
    const last = rows[rows.length - 1];
    if (!last) return;
    afterSeq = Number(last.seq);
  }
}
