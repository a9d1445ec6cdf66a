import { compareRows, compareWithBase, type CellValue, type ColumnDiff } from '../compare/compare-rows.js';
import type { ConflictReason } from '../map/reasons.js';
import type { UserRow } from '../map/user-row.js';

/** What PostgreSQL and the tool's ledger say about one valid Redis record. */
export interface Facts {
  readonly expected: UserRow;
  readonly digest: string;
  /** What the whitelist rule adds to this record's credits (granted now or by an earlier run). */
  readonly topup?: bigint | undefined;
  /** The row this record lives in: the row with its user_id, or the row it was merged into. */
  readonly actual: UserRow | null;
  /** user_id of another row in PostgreSQL that already holds this email. */
  readonly emailOwner: string | null;
  /** That row, when there is one: what a merge would merge into. */
  readonly owner?: {
    readonly row: UserRow;
    /** The tool wrote (or merged into) that row: it is no early login. */
    readonly written: boolean;
  } | null;
  /** This record was merged into PostgreSQL's row `userId` by an earlier run. */
  readonly merged?: { readonly userId: string } | null;
  readonly ledger: {
    readonly digest: string;
    readonly untouched: boolean;
    /** An operator chose PostgreSQL for this user (`reconcile --take postgres`). */
    readonly postgresOwns?: boolean;
    /** The row as the tool last wrote it (password hash as a digest). */
    readonly base?: Readonly<Record<string, CellValue>> | null;
  } | null;
}

/** `reconcile --merge`: early logins are merged into their new-app row; `bonus` is the signup bonus it granted. */
export interface MergePolicy {
  readonly bonus: bigint;
}

export type Decision =
  | { readonly action: 'insert' }
  /** A catch-up: Redis changed (or a whitelist top-up is due) and the row is as the tool left it. */
  | { readonly action: 'update'; readonly diffs: readonly ColumnDiff[] }
  /**
   * Nothing to write. `adopt`: the ledger must learn this row's current state. `diffs`: what the row, as the
   * tool's own last write left it, holds apart from the mapping (a trigger or default rewrote a value, or the
   * ledger was made to agree with a row it never wrote): writing again would change nothing, and it is no
   * proof of an exact migration.
   */
  | { readonly action: 'unchanged'; readonly adopt: boolean; readonly diffs: readonly ColumnDiff[] }
  /** The app changed the row since the tool wrote it and Redis did not change: the app owns it now. */
  | { readonly action: 'kept_app_change'; readonly diffs: readonly ColumnDiff[] }
  /** The tool wrote the row from this very Redis record and the app deleted it since: the app's decision. */
  | { readonly action: 'deleted_by_app'; readonly detail: string }
  /** An early login: the Redis account goes into the new app's row (see mergeRows). */
  | { readonly action: 'merge'; readonly into: string; readonly row: UserRow; readonly withheld: bigint; readonly diffs: readonly ColumnDiff[] }
  | {
      readonly action: 'conflict';
      readonly reason: ConflictReason;
      readonly detail: string;
      readonly diffs: readonly ColumnDiff[];
    };

/**
 * The rules of BRIEF.md as one pure decision: rows the app created or changed are never overwritten;
 * a Redis change is caught up only onto a row nobody else has touched since the tool wrote it; an early
 * login is merged only when the operator asks (`merge`), and a merged user is never written blindly again.
 */
export function decide(facts: Facts, merge?: MergePolicy): Decision {
  const { expected, actual, ledger } = facts;
  if (facts.merged) return decideMerged(facts, facts.merged.userId);
  // The ledger's history comes before the email index: a user the tool wrote whose row the app deleted, or
  // whose email the app changed, is the app's doing; whoever holds that email now is someone else's row.
  if (actual === null && ledger) {
    if (ledger.digest === facts.digest) return deletedByApp('the tool wrote this user from this Redis record; the new app has deleted the row since');
    return conflict('deleted_in_postgres', 'the tool wrote this user before; the app has since deleted the row, and the Redis record changed');
  }
  const emailMovedByApp = actual !== null && ledger?.digest === facts.digest && !ledger.untouched && actual.email !== expected.email;
  if (facts.emailOwner !== null && !emailMovedByApp) return emailTaken(facts, facts.emailOwner, merge);
  if (actual === null) return { action: 'insert' };
  const diffs = compareRows(expected, actual);
  if (diffs.length === 0) {
    return { action: 'unchanged', adopt: ledger?.digest !== facts.digest || !ledger.untouched, diffs };
  }
  if (!ledger) return conflict('row_not_written_by_tool', 'a different row with this user_id exists that the tool did not write', diffs);
  if (ledger.untouched) {
    // The row is as the tool left it, written from this very Redis record: a difference is the table's own
    // doing (a trigger or default rewrote a value on write), and writing again would change nothing. Only a
    // whitelist top-up granted since (the rule adds credits, and the row holds fewer) is still to be written.
    if (ledger.digest === facts.digest && !((facts.topup ?? 0n) > 0n && diffs.some(isTopUp))) return { action: 'unchanged', adopt: false, diffs };
    return { action: 'update', diffs };
  }
  if (ledger.digest === facts.digest) return { action: 'kept_app_change', diffs };
  return conflict('changed_in_both', 'Redis changed and the app changed the row since the tool wrote it', diffs);
}

/** A record merged before: its row is the new app's now; only a Redis change needs a person. */
function decideMerged(facts: Facts, into: string): Decision {
  const { actual, ledger } = facts;
  if (actual === null) {
    if (ledger?.digest === facts.digest) return deletedByApp(`merged into ${into}; the new app has deleted that row since`);
    return conflict('deleted_in_postgres', `merged into ${into}; that row has since been deleted`);
  }
  if (ledger?.digest !== facts.digest) {
    return conflict(
      'changed_after_merge',
      `merged into ${into}; the Redis record changed since: nothing is applied over a merge`,
      compareRows(facts.expected, actual),
    );
  }
  // What the merge wrote is in the ledger's base (when loaded): the row against it, not against Redis.
  const sinceMerge = ledger.base ? compareWithBase(ledger.base, actual) : [];
  if (ledger.untouched || (ledger.base && sinceMerge.length === 0)) return { action: 'unchanged', adopt: false, diffs: sinceMerge };
  return { action: 'kept_app_change', diffs: sinceMerge };
}

/** verify's outcome for a record, read off its decision (README "Verify"). */
export type VerifyOutcome = 'match' | 'changed_by_app' | 'deleted_by_app' | 'stale' | 'conflict' | 'mismatch' | 'missing' | 'not_migratable';

/**
 * What verify says of a decision: the row is what migrate writes (`match`), or the tool's last write was
 * exactly that and only the app wrote the row since (`changed_by_app`, `deleted_by_app`); a catch-up is due
 * (`stale`), both sides changed (`conflict`), or nothing explains the row (`mismatch`, `missing`).
 */
export function verifyOutcome(decision: Decision): VerifyOutcome {
  switch (decision.action) {
    case 'insert':
      return 'missing';
    case 'update':
      return 'stale';
    case 'unchanged':
      return decision.diffs.length === 0 ? 'match' : 'mismatch';
    case 'kept_app_change':
      return 'changed_by_app';
    case 'deleted_by_app':
      return 'deleted_by_app';
    case 'merge':
      return 'not_migratable';
    case 'conflict':
      return CONFLICT_OUTCOME[decision.reason] ?? 'not_migratable';
  }
}

const CONFLICT_OUTCOME: Partial<Record<ConflictReason, VerifyOutcome>> = {
  changed_in_both: 'conflict',
  deleted_in_postgres: 'conflict',
  changed_after_merge: 'conflict',
  row_not_written_by_tool: 'mismatch',
};

/** Someone else's row holds the email: an early login if the new app created that row for this person. */
function emailTaken(facts: Facts, ownerId: string, merge: MergePolicy | undefined): Decision {
  const taken = `email ${facts.expected.email} belongs to user_id ${ownerId} in PostgreSQL`;
  const owner = facts.owner;
  const why =
    facts.actual !== null
      ? 'a row with the Redis user_id exists too'
      : !owner
        ? 'that row is gone'
        : owner.written
          ? 'the tool wrote that row'
          : !owner.row.signup_bonus_granted
            ? 'that row has signup_bonus_granted = false'
            : null;
  if (why !== null || !owner) return conflict('email_taken', `${taken}; not mergeable: ${why ?? 'no row'}`);
  if (!merge) return conflict('early_login', `${taken}, created by the new app at a first login: \`reconcile --merge\` shows the merge`);
  const { row, withheld } = mergeRows(facts.expected, owner.row, merge.bonus);
  return { action: 'merge', into: owner.row.user_id, row, withheld, diffs: compareRows(row, owner.row) };
}

/**
 * The merged row (BRIEF.md): PostgreSQL's user_id; credits = Redis's (whitelist rule applied) + what the
 * new-app row holds beyond the signup bonus it granted (never below zero); credits used summed; the earlier
 * created_at, the later last_login; PostgreSQL's other values where set, else Redis's.
 */
export function mergeRows(redis: UserRow, postgres: UserRow, bonus: bigint): { row: UserRow; withheld: bigint } {
  const pg = BigInt(postgres.current_credits);
  const kept = pg > bonus ? pg - bonus : 0n;
  const earlier = (a: string | null, b: string | null) => (a === null ? b : b === null ? a : a < b ? a : b);
  const later = (a: string | null, b: string | null) => (a === null ? b : b === null ? a : a > b ? a : b);
  return {
    withheld: pg - kept,
    row: {
      user_id: postgres.user_id,
      email: postgres.email,
      username: postgres.username ?? redis.username,
      avatar: postgres.avatar ?? redis.avatar,
      password_hash: postgres.password_hash ?? redis.password_hash,
      current_credits: (BigInt(redis.current_credits) + kept).toString(),
      total_credits_used: (BigInt(redis.total_credits_used) + BigInt(postgres.total_credits_used)).toString(),
      signup_bonus_granted: true,
      current_plan_id: postgres.current_plan_id ?? redis.current_plan_id,
      plan_renew_at: postgres.plan_renew_at ?? redis.plan_renew_at,
      created_at: earlier(redis.created_at, postgres.created_at),
      last_login: later(redis.last_login, postgres.last_login),
    },
  };
}

function isTopUp(diff: ColumnDiff): boolean {
  return diff.column === 'current_credits' && BigInt(String(diff.expected)) > BigInt(String(diff.actual));
}

function deletedByApp(detail: string): Decision {
  return { action: 'deleted_by_app', detail };
}

function conflict(reason: ConflictReason, detail: string, diffs: readonly ColumnDiff[] = []): Decision {
  return { action: 'conflict', reason, detail, diffs };
}
