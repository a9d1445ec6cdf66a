import { sql, type Kysely } from 'kysely';
import { canonicalColumns } from '../db/canonical.js';
import { publicRow, rowFromRecord, type CellValue } from '../compare/compare-rows.js';
import { STAGE_TABLE } from '../stage/stage.js';
import type { Facts } from './decide.js';

const stage = sql.raw(STAGE_TABLE);

export interface RecordFacts extends Facts {
  readonly seq: number;
  readonly key: string;
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
  base: Record<string, CellValue> | null;
}

/** The next `size` staged records still waiting for a decision, by seq. */
export function pendingRecords(afterSeq: number, size: number) {
  return sql`select * from ${stage} where seq > ${afterSeq} and outcome is null order by seq limit ${size}`;
}

/**
 * What PostgreSQL and the ledger hold for the next batch of staged records, both rows in canonical form.
 * migrate, dry-run and verify all decide from these facts.
 */
export async function loadFacts(db: Kysely<unknown>, afterSeq: number, size: number): Promise<RecordFacts[]> {
  const { rows } = await sql<FactRow>`
    with s as (${pendingRecords(afterSeq, size)})
    select s.seq, s.key, s.digest, ${canonicalColumns('s', 'e_')}, ${canonicalColumns('u', 'a_')},
      u.user_id is not null as has_row, l.user_id is not null as has_ledger, l.source_digest as ledger_digest, l.postgres_owns, l.base,
      u.updated_at = l.row_updated_at as untouched,
      (select e.user_id from public.users e where e.email = s.email and e.user_id <> s.user_id limit 1) as email_owner
    from s
    left join public.users u on u.user_id = s.user_id
    left join migrate_users.ledger l on l.user_id = s.user_id
    order by s.seq`.execute(db);
  return rows.map((row) => ({
    seq: Number(row.seq),
    key: row.key,
    digest: row.digest,
    expected: rowFromRecord(row, 'e_'),
    actual: row.has_row ? rowFromRecord(row, 'a_') : null,
    emailOwner: row.email_owner,
    ledger: row.has_ledger
      ? { digest: row.ledger_digest ?? '', untouched: row.untouched === true, postgresOwns: row.postgres_owns === true, base: row.base }
      : null,
  }));
}

/** Records the outcome of each staged record; the report is computed from these. */
export async function recordOutcomes(
  db: Kysely<unknown>,
  outcomes: readonly { seq: number; outcome: string; reason: string | null; detail: string | null }[],
): Promise<void> {
  if (outcomes.length === 0) return;
  await sql`
    update ${stage} s set outcome = v.outcome, reason = v.reason, detail = v.detail
    from unnest(${outcomes.map((o) => o.seq)}::bigint[], ${outcomes.map((o) => o.outcome)}::text[],
                ${outcomes.map((o) => o.reason)}::text[], ${outcomes.map((o) => o.detail)}::text[])
      as v(seq, outcome, reason, detail)
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

/** Records held back before classification: rejected as invalid, or claimed by another key. */
export async function* heldBackRecords(db: Kysely<unknown>): AsyncGenerator<HeldBackEntry> {
  for (let afterSeq = 0; ; ) {
    const { rows } = await sql<Record<string, unknown> & { seq: string; key: string; reason: string; detail: string; user_id: string | null; valid: boolean }>`
      select s.seq, s.key, s.reason, s.detail, s.user_id, s.valid, ${canonicalColumns('s', 'e_')}
      from ${stage} s
      where s.seq > ${afterSeq} and (s.outcome = 'rejected' or s.reason in ('duplicate_email', 'duplicate_user_id'))
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
