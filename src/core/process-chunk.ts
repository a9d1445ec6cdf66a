import { sql, type Kysely } from 'kysely';
import { pgCode } from '../errors.js';
import { publicRow, type CellValue, type ColumnDiff } from '../compare/compare-rows.js';
import { adoptRows, insertRows, updateRows } from '../sink/apply-chunk.js';
import { decide, type Decision } from './decide.js';
import { loadFacts, pendingRecords, recordOutcomes } from './facts.js';
import type { Logger } from '../log.js';

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
  if (!options.dryRun) {
    // Locks the existing rows of this batch: the live app waits (briefly) instead of racing our write.
    await sql`select 1 from public.users where user_id in (select user_id from (${pendingRecords(options.afterSeq, options.size)}) p)
      order by user_id for update`.execute(trx);
  }
  const facts = await loadFacts(trx, options.afterSeq, options.size);
  if (facts.length === 0) return { lastSeq: options.afterSeq, size: 0, conflicts: [] };
  const decisions = facts.map((fact) => ({ fact, decision: decide(fact) }));

  const seqsOf = (test: (d: Decision) => boolean) => decisions.filter((x) => test(x.decision)).map((x) => x.fact.seq);
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
  const outcomes = decisions.map(({ fact, decision }) => {
    const seq = fact.seq;
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
        key: fact.key,
        user_id: fact.expected.user_id,
        reason: reason ?? '',
        detail: detail ?? '',
        redis: publicRow(fact.expected),
        postgres: fact.actual ? publicRow(fact.actual) : null,
        differences: decision.action === 'conflict' || decision.action === 'update' ? decision.diffs : [],
      });
    }
    return { seq, outcome, reason, detail };
  });

  await recordOutcomes(trx, outcomes);

  return { lastSeq: facts[facts.length - 1]?.seq ?? options.afterSeq, size: facts.length, conflicts };
}
