import { sql, type Kysely } from 'kysely';
import { canonicalColumns } from '../db/canonical.js';
import { pgCode } from '../errors.js';
import { publicRow, rowFromRecord, type CellValue, type ColumnDiff } from '../compare/compare-rows.js';
import { STAGE_TABLE } from '../stage/stage.js';
import { adoptRows, insertRows, updateRows } from '../sink/apply-chunk.js';
import { decide, type Decision } from './decide.js';
import type { Logger } from '../log.js';

const stage = sql.raw(STAGE_TABLE);

export type Outcome = 'inserted' | 'updated' | 'unchanged' | 'kept_app_change' | 'conflict';

/** A record that was not migrated, with both sides shown (secrets reduced to "(set)"). */
export interface ConflictEntry {
  readonly key: string;
  readonly user_id: string;
  readonly reason: string;
  readonly detail: string;
  readonly redis: Record<string, CellValue>;
  readonly postgres: Record<string, CellValue> | null;
  readonly differences: readonly ColumnDiff[];
}

export interface ChunkResult {
  readonly lastSeq: number;
  readonly size: number;
  readonly conflicts: readonly ConflictEntry[];
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
}

/** Errors where the right move is to classify the chunk again: someone else wrote meanwhile. */
const RETRYABLE = new Set(['23505', '40P01', '40001']);
const ATTEMPTS = 4;

/**
 * Classifies the next `size` pending staged records against PostgreSQL and, unless `dryRun`, writes them,
 * all in one transaction: the rows' users entries and ledger entries commit together or not at all.
 */
export async function processChunk(
  db: Kysely<unknown>,
  options: { afterSeq: number; size: number; dryRun: boolean; runId: string; log: Logger },
): Promise<ChunkResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction().execute((trx) => classifyAndWrite(trx, options));
    } catch (error) {
      const code = pgCode(error);
      if (!code || !RETRYABLE.has(code) || attempt >= ATTEMPTS) {
        throw new Error(`processing records after seq ${options.afterSeq}`, { cause: error });
      }
      options.log.warn({ code, attempt, afterSeq: options.afterSeq }, 'concurrent write detected; classifying the batch again');
    }
  }
}

async function classifyAndWrite(
  trx: Kysely<unknown>,
  options: { afterSeq: number; size: number; dryRun: boolean; runId: string },
): Promise<ChunkResult> {
  const pending = sql`select * from ${stage} where seq > ${options.afterSeq} and outcome is null order by seq limit ${options.size}`;
  if (!options.dryRun) {
    // Locks the existing rows of this batch: the live app waits (briefly) instead of racing our write.
    await sql`select 1 from public.users where user_id in (select user_id from (${pending}) p) order by user_id for update`.execute(trx);
  }
  const facts = await sql<FactRow>`
    with s as (${pending})
    select s.seq, s.key, s.digest, ${canonicalColumns('s', 'e_')}, ${canonicalColumns('u', 'a_')},
      u.user_id is not null as has_row, l.user_id is not null as has_ledger, l.source_digest as ledger_digest,
      u.updated_at = l.row_updated_at as untouched,
      (select e.user_id from public.users e where e.email = s.email and e.user_id <> s.user_id limit 1) as email_owner
    from s
    left join public.users u on u.user_id = s.user_id
    left join migrate_users.ledger l on l.user_id = s.user_id
    order by s.seq`.execute(trx);
  const rows = facts.rows;
  if (rows.length === 0) return { lastSeq: options.afterSeq, size: 0, conflicts: [] };

  const decisions = rows.map((row) => {
    const decision = decide({
      expected: rowFromRecord(row, 'e_'),
      digest: row.digest,
      actual: row.has_row ? rowFromRecord(row, 'a_') : null,
      emailOwner: row.email_owner,
      ledger: row.has_ledger ? { digest: row.ledger_digest ?? '', untouched: row.untouched === true } : null,
    });
    return { row, decision };
  });

  const seqsOf = (test: (d: Decision) => boolean) => decisions.filter((x) => test(x.decision)).map((x) => Number(x.row.seq));
  const toInsert = seqsOf((d) => d.action === 'insert');
  const toUpdate = seqsOf((d) => d.action === 'update');
  let inserted = new Set(toInsert);
  let updated = new Set(toUpdate);
  if (!options.dryRun) {
    inserted = await insertRows(trx, toInsert, options.runId);
    updated = await updateRows(trx, toUpdate, options.runId);
    await adoptRows(trx, seqsOf((d) => d.action === 'unchanged' && d.adopt), options.runId);
  }

  const conflicts: ConflictEntry[] = [];
  const outcomes = decisions.map(({ row, decision }) => {
    const seq = Number(row.seq);
    let outcome: Outcome;
    let reason: string | null = null;
    let detail: string | null = null;
    if (decision.action === 'insert' || decision.action === 'update') {
      const done = decision.action === 'insert' ? inserted.has(seq) : updated.has(seq);
      outcome = decision.action === 'insert' ? 'inserted' : 'updated';
      if (!done) {
        outcome = 'conflict';
        reason = 'changed_during_run';
        detail = 'the app created or changed this row while the tool was writing it; left as the app wrote it';
      }
    } else if (decision.action === 'conflict') {
      outcome = 'conflict';
      reason = decision.reason;
      detail = decision.detail;
    } else {
      outcome = decision.action;
    }
    if (outcome === 'conflict') {
      conflicts.push({
        key: row.key,
        user_id: String(row.e_user_id),
        reason: reason ?? '',
        detail: detail ?? '',
        redis: publicRow(rowFromRecord(row, 'e_')),
        postgres: row.has_row ? publicRow(rowFromRecord(row, 'a_')) : null,
        differences: decision.action === 'conflict' || decision.action === 'update' ? decision.diffs : [],
      });
    }
    return { seq, outcome, reason, detail };
  });

  await sql`
    update ${stage} s set outcome = v.outcome, reason = v.reason, detail = v.detail
    from unnest(${outcomes.map((o) => o.seq)}::bigint[], ${outcomes.map((o) => o.outcome)}::text[],
                ${outcomes.map((o) => o.reason)}::text[], ${outcomes.map((o) => o.detail)}::text[])
      as v(seq, outcome, reason, detail)
    where s.seq = v.seq`.execute(trx);

  return { lastSeq: Number(rows[rows.length - 1]?.seq ?? options.afterSeq), size: rows.length, conflicts };
}
