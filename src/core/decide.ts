import { compareRows, compareWithBase, type CellValue, type ColumnDiff } from '../compare/compare-rows.js';
import type { ConflictReason } from '../map/reasons.js';
import type { UserRow } from '../map/user-row.js';

/** What PostgreSQL and the tool's ledger say about one valid Redis record. */
export interface Facts {
  readonly expected: UserRow;
  readonly digest: string;
  /** What the whitelist rule adds to this record's credits (granted now or by an earlier run). */
  readonly topup?: bigint | undefined;
  /** Credits as Redis holds them (before the whitelist rule). */
  readonly sourceCredits?: bigint | undefined;
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
    /** The Redis side's own balance and credits used at that write (null: written by an older version). */
    readonly source?: { readonly credits: bigint; readonly used: bigint } | null;
    /** A whitelist top-up was granted to this user (it is never granted again). */
    readonly granted?: boolean;
  } | null;
}

/** `reconcile --merge`: early logins are merged into their new-app row; `bonus` is the signup bonus it granted. */
export interface MergePolicy {
  readonly bonus: bigint;
}

export type Decision =
  | { readonly action: 'insert' }
  /**
   * A catch-up onto a row as the tool left it: Redis changed (`redis`), a whitelist top-up is due (`topup`), or
   * the row holds fewer credits than the tool wrote from this very record (`restore`: a trigger or someone took
   * them; the row is no proof of an exact migration until written again).
   */
  | { readonly action: 'update'; readonly diffs: readonly ColumnDiff[]; readonly because: 'redis' | 'topup' | 'restore' }
  /**
   * Nothing to write. `adopt`: the ledger must learn this row's current state. `diffs`: what the row, as the
   * tool's own last write left it, holds apart from the mapping (a trigger or default rewrote a value, or the
   * ledger was made to agree with a row it never wrote): writing again would change nothing, and it is no
   * proof of an exact migration.
   */
  | { readonly action: 'unchanged'; readonly adopt: boolean; readonly diffs: readonly ColumnDiff[] }
  /**
   * The app changed the row since the tool wrote it and Redis did not change: the app owns it now.
   * `unexplained`: what the tool wrote then (the ledger's base) is not what it writes from this record now,
   * so the row is no proof of an exact migration (verify: mismatch).
   */
  | { readonly action: 'kept_app_change'; readonly diffs: readonly ColumnDiff[]; readonly unexplained?: readonly ColumnDiff[] }
  /**
   * A whitelist top-up due on a row the app changed since the tool wrote it (the user was whitelisted after):
   * granted as the difference the rule adds, onto the app's balance; nothing else of the row is written.
   */
  | { readonly action: 'grant_topup'; readonly amount: bigint; readonly diffs: readonly ColumnDiff[] }
  /**
   * The tool wrote the row from this very Redis record and the app deleted it since: the app's decision.
   * `written`: the balance the tool's write left (the ledger's base), which the deletion took away.
   */
  | { readonly action: 'deleted_by_app'; readonly detail: string; readonly written: { readonly current: bigint; readonly used: bigint } }
  /** An early login: the Redis account goes into the new app's row (see mergeRows). */
  | { readonly action: 'merge'; readonly into: string; readonly row: UserRow; readonly withheld: bigint; readonly diffs: readonly ColumnDiff[] }
  | {
      readonly action: 'conflict';
      readonly reason: ConflictReason;
      readonly detail: string;
      readonly diffs: readonly ColumnDiff[];
      /** Both sides changed: the Redis side's change since the tool's last write, applied onto PostgreSQL's row. */
      readonly onto?: Onto | undefined;
    };

/**
 * The Redis side's change since the tool's last write, applied onto the row PostgreSQL holds: its balance and
 * credits used moved by what Redis's own moved (never the whitelist rule's result, never a merge again), and,
 * for a user not merged, the other columns Redis changed. `moneyOnly`: Redis changed nothing but the balances
 * (what `reconcile --combine` settles); `notRedisBalance`: the row's balance is no copy of Redis's (a merge or a
 * whitelist top-up), so `--take redis` applies the change rather than Redis's balance.
 */
export type Onto =
  | {
      readonly row: UserRow;
      readonly delta: { readonly current: bigint; readonly used: bigint };
      /** A whitelist top-up granted with it (never granted before). */
      readonly grant: bigint;
      readonly moneyOnly: boolean;
      readonly notRedisBalance: boolean;
    }
  | { readonly refused: string };

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
    if (ledger.digest === facts.digest) return deletedByApp(facts, 'the tool wrote this user from this Redis record; the new app has deleted the row since');
    const onto: Onto | undefined = ledger.granted
      ? { refused: 'the deleted row held a whitelist top-up: re-creating it from Redis would grant the top-up again; --take postgres keeps the deletion' }
      : undefined;
    return conflict('deleted_in_postgres', 'the tool wrote this user before; the app has since deleted the row, and the Redis record changed', [], onto);
  }
  // The app changed this user's email (in the row the tool wrote): whoever signed up with the old one since is someone else.
  const emailMovedByApp = actual !== null && ledger !== null && !ledger.untouched && actual.email !== expected.email;
  if (facts.emailOwner !== null && !emailMovedByApp) return emailTaken(facts, facts.emailOwner, merge);
  if (actual === null) return { action: 'insert' };
  const diffs = compareRows(expected, actual);
  // Both sides moved the balance since the tool's last write and happen to agree now (each spent 50): two
  // movements, not one; adding them up is --combine's (taking them as in sync would lose one).
  if (diffs.length === 0 && ledger && !ledger.untouched && ledger.digest !== facts.digest && bothMovedMoney(facts, actual)) {
    return conflict(
      'changed_in_both',
      'Redis and the app both moved the balance since the tool wrote it (to the same figures)',
      [],
      redisChangeOnto(facts, actual, false),
    );
  }
  if (diffs.length === 0) {
    return { action: 'unchanged', adopt: ledger?.digest !== facts.digest || !ledger.untouched, diffs };
  }
  if (!ledger) return conflict('row_not_written_by_tool', 'a different row with this user_id exists that the tool did not write', diffs);
  if (ledger.untouched) {
    // The row is as the tool left it, written from this very Redis record: a difference is the table's own
    // doing (a trigger or default rewrote a value on write), and writing again would change nothing. Only a
    // whitelist top-up granted since (the rule adds credits, and the row holds fewer) is still to be written.
    if (ledger.digest !== facts.digest) return { action: 'update', diffs, because: 'redis' };
    if (!diffs.some(isTopUp)) return { action: 'unchanged', adopt: false, diffs };
    return { action: 'update', diffs, because: (facts.topup ?? 0n) > 0n ? 'topup' : 'restore' };
  }
  if (ledger.digest === facts.digest) return keptAppChange(facts, actual, diffs);
  return conflict('changed_in_both', 'Redis changed and the app changed the row since the tool wrote it', diffs, redisChangeOnto(facts, actual, false));
}

/**
 * The app changed the row, Redis did not: the app's work, provided the tool's last write (the ledger's base,
 * where it is known) was what the tool writes from this record now. A whitelist top-up due since (the user
 * was whitelisted after the app touched the row) is granted as the difference the rule adds.
 */
function keptAppChange(facts: Facts, actual: UserRow, diffs: readonly ColumnDiff[]): Decision {
  const { ledger } = facts;
  const owed = topUpOwed(facts);
  if (owed > 0n) {
    const granted = (BigInt(actual.current_credits) + owed).toString();
    return { action: 'grant_topup', amount: owed, diffs: [{ column: 'current_credits', expected: granted, actual: actual.current_credits }] };
  }
  // An operator chose PostgreSQL's row (`reconcile --take postgres`): it stands as it is.
  if (!ledger?.base || ledger.postgresOwns) return { action: 'kept_app_change', diffs };
  const sinceWrite = compareWithBase(ledger.base, facts.expected);
  if (sinceWrite.length === 0) return { action: 'kept_app_change', diffs };
  return { action: 'kept_app_change', diffs, unexplained: sinceWrite };
}

/** The whitelist top-up the rule adds to this record and the tool never granted (granted once, never again). */
function topUpOwed(facts: Facts): bigint {
  const topup = facts.topup ?? 0n;
  const base = facts.ledger?.base;
  // A write that already held the level (a version before granted_credits was kept) granted it.
  if (base && BigInt(String(base.current_credits ?? 0)) >= BigInt(facts.expected.current_credits)) return 0n;
  return facts.ledger && !facts.ledger.granted && topup > 0n ? topup : 0n;
}

/** A record merged before: its row is the new app's now; only a Redis change needs a person. */
function decideMerged(facts: Facts, into: string): Decision {
  const { actual, ledger } = facts;
  if (actual === null) {
    if (ledger?.digest === facts.digest) return deletedByApp(facts, `merged into ${into}; the new app has deleted that row since`);
    return conflict('deleted_in_postgres', `merged into ${into}; that row has since been deleted`, [], {
      refused: `it was merged into ${into}, which the app deleted: it is never re-created under its old user_id; --take postgres keeps the deletion`,
    });
  }
  if (ledger?.digest !== facts.digest) {
    return conflict(
      'changed_after_merge',
      `merged into ${into}; the Redis record changed since: its change is applied onto the merged row only on request (--combine, --take)`,
      compareRows(facts.expected, actual),
      redisChangeOnto(facts, actual, true),
    );
  }
  // What the merge wrote is in the ledger's base (when loaded): the row against it, not against Redis.
  const sinceMerge = ledger.base ? compareWithBase(ledger.base, actual) : [];
  if (ledger.untouched || (ledger.base && sinceMerge.length === 0)) return { action: 'unchanged', adopt: false, diffs: sinceMerge };
  return { action: 'kept_app_change', diffs: sinceMerge };
}

const MONEY: ReadonlySet<string> = new Set(['current_credits', 'total_credits_used']);

function redisChangeOnto(facts: Facts, actual: UserRow, merged: boolean): Onto {
  const { ledger, expected } = facts;
  const base = ledger?.base;
  const source = redisAtLastWrite(facts);
  if (!ledger || !base || !source || facts.sourceCredits === undefined) {
    return { refused: "the Redis side's balance at the tool's last write is not known (written by an older version): choose a side with --take" };
  }
  const delta = { current: facts.sourceCredits - source.credits, used: BigInt(expected.total_credits_used) - source.used };
  // A whitelist top-up the rule adds now and never granted is granted with it, once.
  const grant = merged ? 0n : topUpOwed(facts);
  const current = BigInt(actual.current_credits) + delta.current + grant;
  const used = BigInt(actual.total_credits_used) + delta.used;
  if (current < 0n || used < 0n)
    return { refused: `adding Redis's change (${signed(delta.current)} credits) leaves a negative balance: choose a side with --take` };
  // A merged row holds the new app's other values by the merge rule; Redis's own are not known column by column,
  // so a merged user is never combined on request (--combine), only by --take redis, which says so.
  const others = merged ? [] : compareWithBase(base, expected).filter((d) => !MONEY.has(d.column));
  const changed = new Set(others.map((d) => d.column));
  const pick = <C extends keyof UserRow>(column: C): UserRow[C] => (changed.has(column) ? expected[column] : actual[column]);
  const row: UserRow = {
    ...actual,
    username: pick('username'),
    avatar: pick('avatar'),
    password_hash: pick('password_hash'),
    current_plan_id: pick('current_plan_id'),
    plan_renew_at: pick('plan_renew_at'),
    created_at: pick('created_at'),
    last_login: pick('last_login'),
    current_credits: current.toString(),
    total_credits_used: used.toString(),
  };
  return { row, delta, grant, moneyOnly: !merged && others.length === 0, notRedisBalance: merged || ledger.granted === true };
}

/**
 * The Redis side's own balance and credits used at the tool's last write: recorded in the ledger; for a user
 * written by an older version and never topped up, the base (then a copy of Redis's own).
 */
function redisAtLastWrite(facts: Facts): { credits: bigint; used: bigint } | null {
  const { ledger } = facts;
  if (ledger?.source) return ledger.source;
  const base = ledger?.base;
  if (!base || ledger.granted || facts.merged) return null;
  return { credits: BigInt(String(base.current_credits ?? 0)), used: BigInt(String(base.total_credits_used ?? 0)) };
}

function bothMovedMoney(facts: Facts, actual: UserRow): boolean {
  const source = redisAtLastWrite(facts);
  const base = facts.ledger?.base;
  if (!source || !base || facts.sourceCredits === undefined) return false;
  const redisMoved = facts.sourceCredits !== source.credits || BigInt(facts.expected.total_credits_used) !== source.used;
  const appMoved = actual.current_credits !== String(base.current_credits) || actual.total_credits_used !== String(base.total_credits_used);
  return redisMoved && appMoved;
}

const signed = (n: bigint) => (n < 0n ? n.toString() : `+${n}`);

/** The arithmetic of a combined balance, for reports: "PostgreSQL 450 + Redis's change +200 = 650 (credits used 50 + 0 = 50)". */
export function describeOnto(actual: UserRow, onto: Extract<Onto, { row: UserRow }>): string {
  return (
    `PostgreSQL ${actual.current_credits} ${signed(onto.delta.current)} (Redis's change since the tool's last write)` +
    `${onto.grant > 0n ? ` +${onto.grant} (the whitelist top-up, granted once)` : ''} = ${onto.row.current_credits} credits; ` +
    `credits used ${actual.total_credits_used} ${signed(onto.delta.used)} = ${onto.row.total_credits_used}`
  );
}

/** verify's outcome for a record, read off its decision (docs/verify-in-ci.md "Verify"). */
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
      return decision.because === 'restore' ? 'mismatch' : 'stale';
    case 'unchanged':
      return decision.diffs.length === 0 ? 'match' : 'mismatch';
    case 'kept_app_change':
      return decision.unexplained?.length ? 'mismatch' : 'changed_by_app';
    case 'grant_topup':
      return 'stale';
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

function deletedByApp(facts: Facts, detail: string): Decision {
  const base = facts.ledger?.base;
  const current = BigInt(String(base?.current_credits ?? facts.expected.current_credits));
  const used = BigInt(String(base?.total_credits_used ?? facts.expected.total_credits_used));
  return { action: 'deleted_by_app', detail, written: { current, used } };
}

function conflict(reason: ConflictReason, detail: string, diffs: readonly ColumnDiff[] = [], onto?: Onto): Decision {
  return { action: 'conflict', reason, detail, diffs, ...(onto ? { onto } : {}) };
}
