import type { Kysely } from 'kysely';
import { pinnedTransaction } from '../db/database.js';
import { pgCode } from '../errors.js';
import { publicRow, type CellValue, type ColumnDiff } from '../compare/compare-rows.js';
import {
  adoptRows,
  grantTopups,
  writeCombined,
  type RowWrite,
  insertRows,
  insertTriaged,
  keepPostgres,
  logResolutions,
  mergeInto,
  updateRows,
  type MergeWrite,
  type WriteRow,
} from '../sink/apply-chunk.js';
import type { Sums } from '../results/sums.js';
import type { UserRow } from '../map/user-row.js';
import { decide, describeOnto, type Decision, type MergePolicy } from './decide.js';
import { loadFacts, triagedSums, type RecordFacts, type TriageKind } from './facts.js';
import { sameAsReviewed, type Reviewed } from './take-review.js';
import type { Logger } from '../log.js';

export type Outcome = 'inserted' | 'updated' | 'unchanged' | 'kept_app_change' | 'deleted_by_app' | 'merged' | 'conflict';

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

/** Every classified record of a batch, as decided and as written. */
export interface ClassifiedEntry {
  readonly fact: RecordFacts;
  readonly outcome: Outcome;
  readonly reason: string | null;
  readonly detail: string | null;
  readonly diffs: readonly ColumnDiff[];
  /** Set when an operator's --take decided this record. */
  readonly resolvedBy?: 'redis' | 'postgres';
  /** A whitelist top-up granted onto the app's balance (decide: grant_topup), planned or done. */
  readonly topup?: bigint;
  /** A row written from both sides (`--combine`, `--take redis` over a merge or top-up), planned or done. */
  readonly combined?: UserRow;
  /** For a row the app deleted: the balance the tool's write left. */
  readonly written?: { readonly current: bigint; readonly used: bigint };
  /** For a merge (planned or done): the row merged into, the merged row, and the bonus withheld. */
  readonly merge?: { readonly into: string; readonly row: UserRow; readonly withheld: bigint };
}

/** Records triage settled (see facts.ts), summed per outcome: inserted, or found identical and recorded. */
export interface SettledSums {
  readonly outcome: 'inserted' | 'unchanged';
  readonly sums: Sums;
}

export interface ChunkResult {
  readonly lastSeq: number;
  /** Records decided one by one from their facts. */
  readonly entries: readonly ClassifiedEntry[];
  /** Records triage settled (not with `everyRecord`). */
  readonly settled: readonly SettledSums[];
}

/** An operator's choice of side for the users of a review (`reconcile --take`), each as reviewed. */
export interface Take {
  readonly side: 'redis' | 'postgres';
  readonly users: ReadonlyMap<string, Reviewed>;
}

export interface ChunkOptions {
  /** The stage table of the run. */
  readonly stage: string;
  readonly afterSeq: number;
  readonly size: number;
  readonly dryRun: boolean;
  readonly runId: string;
  readonly log: Logger;
  readonly take?: Take | undefined;
  /** Every record as a ClassifiedEntry with its facts (reconcile lists them all): no triage shortcut. */
  readonly everyRecord?: boolean | undefined;
  /** Triage kinds the caller already counted for the whole stage (see presettledKinds): not counted again. */
  readonly presettled?: readonly TriageKind[] | undefined;
  /** `reconcile --merge`: early logins are merged (see decide). */
  readonly merge?: MergePolicy | undefined;
  /** `reconcile --combine`: balances changed on both sides are added up (see decide: Onto). */
  readonly combine?: boolean | undefined;
  /** Writes in a transaction even when one statement would do: the role's lock_timeout is lifted there. */
  readonly waitForLocks?: boolean | undefined;
}

/** Triage kinds whose decision is known without comparing columns: insert, and unchanged with nothing to record. */
const SETTLED_KINDS: readonly TriageKind[] = ['insert', 'same_current'];

/**
 * The settled kinds that need no write in this mode (unchanged; and insert in a dry-run): a run may count
 * them for the whole stage at once and send batches only where there is something else.
 */
export function presettledKinds(dryRun: boolean): readonly TriageKind[] {
  return dryRun ? SETTLED_KINDS : ['same_current'];
}

/** Conflicts an operator may settle by choosing a side; the others need the data fixed at its source. */
const RESOLVABLE = new Set(['changed_in_both', 'row_not_written_by_tool', 'deleted_in_postgres', 'changed_after_merge']);
/** Errors where the right move is to classify the chunk again: someone else wrote meanwhile. */
const RETRYABLE = new Set(['23505', '40P01', '40001']);
const ATTEMPTS = 4;

/**
 * What a value the app's table cannot take raises: too long, out of range, a date or character it refuses.
 * Other data exceptions (an invalid text representation, say) come from the tool's own SQL: a bug, which
 * must stop the run rather than hold back every record.
 */
const VALUE_REFUSALS = new Set(['22001', '22003', '22007', '22008', '22021', '22026', '22P05']);

/**
 * PostgreSQL refusing a row for what it holds: a value its column cannot take, an integrity rule other than
 * uniqueness (a check, not-null, foreign-key or exclusion constraint), or an app trigger raising (class P0).
 * Never a bug or a lost server: those stop the run.
 */
export function isRefusal(error: unknown): boolean {
  const code = pgCode(error);
  return code !== undefined && (VALUE_REFUSALS.has(code) || code.startsWith('P0') || (code.startsWith('23') && code !== '23505'));
}

/**
 * Classifies the next `size` pending staged records against PostgreSQL and, unless `dryRun`, writes them,
 * all in one transaction: the rows' users entries and ledger entries commit together or not at all.
 */
export async function processChunk(db: Kysely<unknown>, options: ChunkOptions): Promise<ChunkResult> {
  let size = options.size;
  let lockWait = false;
  for (let attempt = 1; ; attempt++) {
    try {
      return await classifyAndWrite(db, { ...options, size, waitForLocks: lockWait });
    } catch (error) {
      const code = pgCode(error);
      // A role's lock_timeout ended a single-statement batch's wait behind an app's row lock: it goes again in
      // a transaction of its own, where the tool lifts lock_timeout (see PIN_TRANSACTION), and waits its turn.
      if (code === '55P03' && !lockWait) {
        lockWait = true;
        options.log.info({ afterSeq: options.afterSeq }, "a batch waited on an app's row lock longer than the role's lock_timeout; waiting in a transaction");
        attempt--;
        continue;
      }
      // A server-side statement_timeout (Supabase sets them per role) cut a batch: nothing of it was
      // written; smaller batches go on, and only a single record that still times out fails the run.
      if (code === '57014' && size > 1) {
        size = Math.max(1, Math.floor(size / 2));
        options.log.warn({ afterSeq: options.afterSeq, size }, 'a batch hit the statement timeout; trying it in smaller batches');
        attempt--;
        continue;
      }
      // A row PostgreSQL refuses fails its whole batch: halve the batch until the refused records stand
      // alone (as pgloader does); each is then held back with the server's reason, and the rest is written.
      if (isRefusal(error) && !options.dryRun) {
        if (size > 1) {
          size = Math.max(1, Math.floor(size / 2));
          options.log.info({ afterSeq: options.afterSeq, size, code }, 'PostgreSQL refused a row of this batch; isolating it');
          attempt--;
          continue;
        }
        return await heldBackAsRefused(db, options, error);
      }
      if (!code || !RETRYABLE.has(code) || attempt >= ATTEMPTS) {
        throw new Error(`processing records after seq ${options.afterSeq}`, { cause: error });
      }
      options.log.warn({ code, attempt, afterSeq: options.afterSeq }, 'concurrent write detected; classifying the batch again');
    }
  }
}

/** The one record at options.afterSeq + 1, which PostgreSQL refuses: held back, with the server's words. */
async function heldBackAsRefused(db: Kysely<unknown>, options: ChunkOptions, error: unknown): Promise<ChunkResult> {
  const lastSeq = options.afterSeq + 1;
  const facts = await loadFacts(db, options.stage, options.afterSeq, 1);
  // The message only (never error.detail: PostgreSQL puts the failing row, password hash included, there).
  const message = error instanceof Error ? serverMessage(error) : String(error);
  options.log.warn({ seq: lastSeq, code: pgCode(error) }, 'PostgreSQL refused a record; held back as refused_by_database');
  const entries = facts.map((fact): ClassifiedEntry => ({
    fact,
    outcome: 'conflict',
    reason: 'refused_by_database',
    detail: `PostgreSQL refused the row: ${message}`,
    diffs: [],
  }));
  return { lastSeq, entries, settled: [] };
}

function serverMessage(error: Error): string {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if ((e as { code?: unknown }).code !== undefined && pgCode(e) !== undefined) return e.message;
  }
  return error.message;
}

/**
 * Runs the batch's write statements: each one writes users rows together with their ledger entries, so
 * a single statement is atomic on its own; several share one transaction. Over a slow link every round
 * trip counts, and a batch that only inserts (a fresh run) needs just this one.
 */
async function inTransactionIfNeeded(db: Kysely<unknown>, steps: readonly ((db: Kysely<unknown>) => Promise<void>)[], always = false): Promise<void> {
  const [only] = steps;
  if (steps.length === 1 && only && !always) return only(db);
  if (steps.length === 0) return;
  await pinnedTransaction(db, async (trx) => {
    for (const step of steps) await step(trx);
  });
}

/**
 * `review_stale`: listed for --take, but either side changed since the review: skipped, and said so.
 * `combine`: Redis's change since the tool's last write applied onto PostgreSQL's row (`--combine`, or
 * `--take redis` over a balance that is no copy of Redis's: `combine_take`); `onto_refused`: that cannot be done.
 */
type Plan =
  | 'insert'
  | 'update'
  | 'force_insert'
  | 'force_update'
  | 'keep_postgres'
  | 'adopt'
  | 'merge'
  | 'grant'
  | 'combine'
  | 'combine_take'
  | 'onto_refused'
  | 'review_stale'
  | 'email_blocked'
  | 'none';

function plan(fact: RecordFacts, decision: Decision, take: Take | undefined, combine: boolean): Plan {
  if (decision.action === 'insert') return 'insert';
  if (decision.action === 'merge') return 'merge';
  if (decision.action === 'update') return 'update';
  if (decision.action === 'grant_topup') return 'grant';
  if (decision.action === 'unchanged') return decision.adopt ? 'adopt' : 'none';
  if (decision.action !== 'conflict') return 'none';
  const onto = decision.onto;
  const reviewed = take?.users.get(fact.expected.user_id);
  if (take && reviewed && RESOLVABLE.has(decision.reason)) {
    if (!sameAsReviewed(reviewed, { redisDigest: fact.digest, rowVersion: fact.observedVersion })) return 'review_stale';
    if (take.side === 'postgres') return 'keep_postgres';
    // A merged row, or a balance holding a whitelist top-up: Redis's balance is not the user's, its change is
    // (taking Redis's balance would undo the merge, or grant the top-up again).
    const notRedisBalance = decision.reason === 'changed_after_merge' || Boolean(fact.merged) || fact.ledger?.granted === true;
    if (notRedisBalance || (onto && 'row' in onto && onto.notRedisBalance)) {
      return onto && 'row' in onto ? 'combine_take' : 'onto_refused';
    }
    // Writing the Redis record would take an email another row holds now (someone signed up with it).
    if (fact.emailOwner !== null) return 'email_blocked';
    return fact.actual === null ? 'force_insert' : 'force_update';
  }
  if (combine && onto) return 'row' in onto && onto.moneyOnly ? 'combine' : 'onto_refused';
  return 'none';
}

async function classifyAndWrite(db: Kysely<unknown>, options: ChunkOptions): Promise<ChunkResult> {
  // No row locks: every write below is guarded by the state its decision saw, row by row, so a row the app
  // changes in between is skipped (and reported) instead of overwritten, and a re-run that changes nothing
  // writes nothing (FOR UPDATE would write a lock to every row).
  const { stage, afterSeq, size } = options;
  const lastSeq = afterSeq + size;
  if (options.everyRecord) {
    const facts = await loadFacts(db, stage, afterSeq, size);
    return { lastSeq, entries: await decideAndWrite(db, options, facts), settled: [] };
  }
  const { byKind, others } = await triagedSums(db, stage, afterSeq, size, SETTLED_KINDS);
  const settled: SettledSums[] = [];
  const counted = new Set(options.presettled ?? []);
  const unchanged = byKind.get('same_current');
  if (unchanged && !counted.has('same_current')) settled.push({ outcome: 'unchanged', sums: unchanged });
  let refused: number[] = [];
  const inserts = byKind.get('insert');
  if (inserts && options.dryRun && !counted.has('insert')) settled.push({ outcome: 'inserted', sums: inserts });
  if (inserts && !options.dryRun) {
    // After a role's lock_timeout ended it (see processChunk): in a transaction of its own, which lifts it.
    const result = options.waitForLocks
      ? await pinnedTransaction(db, (trx) => insertTriaged(trx, stage, afterSeq, size, options.runId))
      : await insertTriaged(db, stage, afterSeq, size, options.runId);
    if (result.written.n > 0) settled.push({ outcome: 'inserted', sums: result.written });
    refused = result.refused;
  }
  // Inserts triage expected to be free that found the row or the email taken (the app wrote meanwhile) are
  // decided again from what PostgreSQL holds now, with the others, in one transaction: a batch classified
  // again after a failure finds nothing of that transaction written.
  const facts = others > 0 ? await loadFacts(db, stage, afterSeq, size, { skip: SETTLED_KINDS }) : [];
  if (refused.length > 0) facts.push(...(await loadFacts(db, stage, afterSeq, size, { only: refused })));
  const entries = facts.length > 0 ? await decideAndWrite(db, options, facts) : [];
  return { lastSeq, entries, settled };
}

/** decide() for each record of `facts`, then (unless dry-run) their writes, in one transaction. */
async function decideAndWrite(db: Kysely<unknown>, options: ChunkOptions, facts: readonly RecordFacts[]): Promise<ClassifiedEntry[]> {
  const planned = facts.map((fact) => {
    const decision = decide(fact, options.merge);
    return { fact, decision, plan: plan(fact, decision, options.take, options.combine === true) };
  });
  const rows = (...kinds: Plan[]): WriteRow[] =>
    planned.filter((p) => kinds.includes(p.plan)).map((p) => ({ seq: p.fact.seq, observed: p.fact.observedVersion }));
  const seqs = (...kinds: Plan[]) => planned.filter((p) => kinds.includes(p.plan)).map((p) => p.fact.seq);

  let written = new Set(seqs('insert', 'update', 'force_insert', 'force_update', 'keep_postgres', 'merge', 'adopt', 'grant', 'combine', 'combine_take'));
  if (!options.dryRun) {
    const { runId, stage } = options;
    const resolutions = planned
      .filter((p) => p.plan.startsWith('force') || p.plan === 'keep_postgres' || p.plan === 'combine_take')
      .map((p) => ({
        seq: p.fact.seq,
        userId: p.fact.expected.user_id,
        side: p.plan === 'keep_postgres' ? ('postgres' as const) : ('redis' as const),
        reason: p.decision.action === 'conflict' ? p.decision.reason : '',
        digest: p.fact.digest,
      }));
    const done = new Set<number>();
    const collect = (seqsWritten: Iterable<number>) => {
      for (const seq of seqsWritten) done.add(seq);
    };
    const inserts = rows('insert', 'force_insert');
    const updates = rows('update');
    const forced = rows('force_update');
    const adopts = rows('adopt');
    const grants = planned.flatMap((p) =>
      p.decision.action === 'grant_topup' && p.plan === 'grant' ? [{ seq: p.fact.seq, observed: p.fact.observedVersion, amount: p.decision.amount }] : [],
    );
    const kept = seqs('keep_postgres');
    const merges = planned.flatMap((p): MergeWrite[] =>
      p.decision.action === 'merge' && p.plan === 'merge'
        ? [{ seq: p.fact.seq, observed: p.fact.ownerVersion, row: p.decision.row, withheld: p.decision.withheld, before: p.fact.owner?.row ?? null }]
        : [],
    );
    const steps: ((db: Kysely<unknown>) => Promise<void>)[] = [];
    if (inserts.length > 0) steps.push(async (d) => collect(await insertRows(d, stage, inserts, runId)));
    if (updates.length > 0) steps.push(async (d) => collect(await updateRows(d, stage, updates, runId, 'ledger')));
    if (forced.length > 0) steps.push(async (d) => collect(await updateRows(d, stage, forced, runId, 'observed')));
    if (kept.length > 0) steps.push(async (d) => collect((await keepPostgres(d, stage, kept, runId), kept)));
    if (adopts.length > 0) steps.push(async (d) => collect(await adoptRows(d, stage, adopts, runId)));
    if (grants.length > 0) steps.push(async (d) => collect(await grantTopups(d, stage, grants, runId)));
    const combined = planned.flatMap((p): RowWrite[] => {
      const onto = p.decision.action === 'conflict' ? p.decision.onto : undefined;
      if ((p.plan !== 'combine' && p.plan !== 'combine_take') || !onto || !('row' in onto)) return [];
      return [
        {
          seq: p.fact.seq,
          observed: p.fact.observedVersion,
          row: onto.row,
          merged: p.fact.merged !== null && p.fact.merged !== undefined,
          grant: onto.grant > 0n,
        },
      ];
    });
    if (combined.length > 0) steps.push(async (d) => collect(await writeCombined(d, stage, combined, runId)));
    if (merges.length > 0) steps.push(async (d) => collect(await mergeInto(d, stage, merges, runId)));
    // Logged in the same transaction as the writes it describes, and only for what was written.
    if (resolutions.length > 0)
      steps.push((d) =>
        logResolutions(
          d,
          resolutions.filter((r) => done.has(r.seq)),
          runId,
        ),
      );
    await inTransactionIfNeeded(db, steps, options.waitForLocks);
    written = done;
  }

  const entries = planned.map(({ fact, decision, plan: p }): ClassifiedEntry => {
    const diffs =
      decision.action === 'conflict' || decision.action === 'update' || decision.action === 'kept_app_change' || decision.action === 'grant_topup'
        ? decision.diffs
        : [];
    const resolvedBy = p.startsWith('force') || p === 'combine_take' ? ('redis' as const) : p === 'keep_postgres' ? ('postgres' as const) : undefined;
    if (decision.action === 'conflict' && (p === 'combine' || p === 'combine_take') && decision.onto && 'row' in decision.onto && fact.actual) {
      const onto = decision.onto;
      const overMerge = fact.merged ? "; Redis's other columns are not applied over a merge (the merged row keeps the new app's)" : '';
      const detail = `combined: ${describeOnto(fact.actual, onto)}${overMerge}`;
      if (written.has(fact.seq)) {
        const granted = onto.grant > 0n ? { topup: onto.grant } : {};
        return { fact, outcome: 'updated', reason: null, detail, diffs, combined: onto.row, ...granted, ...(resolvedBy ? { resolvedBy } : {}) };
      }
      return {
        fact,
        outcome: 'conflict',
        reason: 'changed_during_run',
        detail: 'the app changed this row while the tool was adding up both sides; left as the app wrote it',
        diffs,
      };
    }
    if (decision.action === 'conflict' && p === 'onto_refused') {
      const why = decision.onto && 'refused' in decision.onto ? decision.onto.refused : 'Redis changed more than the balances: choose a side with --take';
      return { fact, outcome: 'conflict', reason: decision.reason, detail: `${decision.detail}; not combined: ${why}`, diffs };
    }
    if (p === 'insert' || p === 'update' || p === 'force_insert' || p === 'force_update') {
      const outcome: Outcome = p.endsWith('insert') ? 'inserted' : 'updated';
      if (written.has(fact.seq)) return { fact, outcome, reason: null, detail: null, diffs, ...(resolvedBy ? { resolvedBy } : {}) };
      return {
        fact,
        outcome: 'conflict',
        reason: 'changed_during_run',
        detail: 'the app created or changed this row while the tool was writing it; left as the app wrote it',
        diffs,
      };
    }
    if (p === 'keep_postgres') return { fact, outcome: 'kept_app_change', reason: null, detail: null, diffs, resolvedBy: 'postgres' };
    if (p === 'adopt' && !written.has(fact.seq)) {
      return {
        fact,
        outcome: 'conflict',
        reason: 'changed_during_run',
        detail: 'the app changed this row while the tool was recording it as identical; left as the app wrote it',
        diffs,
      };
    }
    if (decision.action === 'merge') {
      const merge = { into: decision.into, row: decision.row, withheld: decision.withheld };
      if (written.has(fact.seq)) return { fact, outcome: 'merged', reason: null, detail: `merged into ${decision.into}`, diffs: decision.diffs, merge };
      return {
        fact,
        outcome: 'conflict',
        reason: 'changed_during_run',
        detail: `the app changed ${decision.into} while the tool was merging into it; left as the app wrote it (a later run merges it)`,
        diffs: decision.diffs,
      };
    }
    if (decision.action === 'grant_topup') {
      const detail = `whitelisted after the app changed the row: a top-up of ${decision.amount} credits onto the app's balance`;
      if (written.has(fact.seq)) return { fact, outcome: 'updated', reason: null, detail, diffs, topup: decision.amount };
      return {
        fact,
        outcome: 'conflict',
        reason: 'changed_during_run',
        detail: 'the app changed this row while the tool was granting its top-up; left as the app wrote it (a later run grants it)',
        diffs,
      };
    }
    if (decision.action === 'conflict' && p === 'email_blocked') {
      const detail = `${decision.detail}; --take redis cannot write it: its email belongs to user_id ${fact.emailOwner ?? '?'} now (--take postgres keeps PostgreSQL's side)`;
      return { fact, outcome: 'conflict', reason: decision.reason, detail, diffs };
    }
    if (decision.action === 'conflict' && p === 'review_stale') {
      const detail = `${decision.detail}; changed since your review (--take skipped it): look again`;
      return { fact, outcome: 'conflict', reason: decision.reason, detail, diffs };
    }
    if (decision.action === 'conflict') return { fact, outcome: 'conflict', reason: decision.reason, detail: decision.detail, diffs };
    if (decision.action === 'insert' || decision.action === 'update') throw new Error('unreachable: planned writes handled above');
    if (decision.action === 'deleted_by_app')
      return { fact, outcome: 'deleted_by_app', reason: null, detail: decision.detail, diffs, written: decision.written };
    return { fact, outcome: decision.action, reason: null, detail: null, diffs };
  });

  return entries;
}

export function conflictEntry(entry: ClassifiedEntry): ConflictEntry {
  return {
    key: entry.fact.key,
    user_id: entry.fact.expected.user_id,
    reason: entry.reason ?? '',
    detail: entry.detail ?? '',
    redis: publicRow(entry.fact.expected),
    postgres: entry.fact.actual ? publicRow(entry.fact.actual) : null,
    differences: entry.diffs,
  };
}
