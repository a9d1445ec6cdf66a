import { sql, type Kysely } from 'kysely';
import type { ColumnDiff } from '../compare/compare-rows.js';
import { money } from '../report/report.js';
import type { Difference, Side, VerifyReport } from '../results/verify-report.js';
import { STAGE_TABLE } from '../stage/stage.js';
import { decide, verifyOutcome, type Decision, type VerifyOutcome } from './decide.js';
import type { RecordFacts } from './facts.js';

/** Users and credit sums of one side, in BigInt: credits are money. */
export class Sums {
  users = 0;
  credits = 0n;
  used = 0n;

  add(credits: bigint | string, used: bigint | string): void {
    this.addMany(1, BigInt(credits), BigInt(used));
  }

  addMany(users: number, credits: bigint, used: bigint): void {
    this.users += users;
    this.credits += credits;
    this.used += used;
  }

  side(): Side {
    return { users: this.users, current_credits: money(this.credits), total_credits_used: money(this.used) };
  }
}

type Where = Pick<Difference, 'key' | 'user_id' | 'email'>;

/**
 * verify's counts and credit sums, one record at a time, each outcome read off decide() (the decision migrate
 * and reconcile take): what the tool wrote for every migratable user, what PostgreSQL holds for them, and what
 * the app changed since, so the invariants close on a live system.
 */
export class VerifyTally {
  readonly counts: Record<VerifyOutcome, number> = {
    match: 0,
    changed_by_app: 0,
    deleted_by_app: 0,
    stale: 0,
    conflict: 0,
    mismatch: 0,
    missing: 0,
    not_migratable: 0,
  };
  readonly reasons: Record<string, number> = {};
  /** What the tool writes (wrote) for the migratable users; what PostgreSQL holds for them; held back; kept by merges. */
  readonly expected = new Sums();
  readonly matching = new Sums();
  readonly held = new Sums();
  readonly merged = new Sums();
  /** The app's work since the tool's write: now minus written, and what deleted rows held when written. */
  readonly changed = new Sums();
  readonly deleted = new Sums();
  /** New-app rows of early logins: counted with that user, not as rows only in PostgreSQL. */
  readonly earlyLoginRows = new Set<string>();

  /** Rows triage found identical to their record, counted together. */
  addMatching(users: number, credits: bigint, used: bigint): void {
    this.counts.match += users;
    this.expected.addMany(users, credits, used);
    this.matching.addMany(users, credits, used);
  }

  /** One record: its outcome counted and summed, and its differences to list (none for a match). */
  record(fact: RecordFacts): Difference[] {
    const decision = decide(fact);
    const outcome = verifyOutcome(decision);
    this.counts[outcome]++;
    const { expected, actual } = fact;
    const where: Where = { key: fact.key, user_id: actual?.user_id ?? fact.merged?.userId ?? expected.user_id, email: expected.email };
    if (outcome === 'not_migratable') {
      const reason = decision.action === 'conflict' ? decision.reason : 'email_taken';
      const detail = decision.action === 'conflict' ? decision.detail : `email ${expected.email} belongs to user_id ${fact.emailOwner ?? '?'} in PostgreSQL`;
      this.reasons[reason] = (this.reasons[reason] ?? 0) + 1;
      if (reason === 'early_login' && fact.emailOwner) this.earlyLoginRows.add(fact.emailOwner);
      this.held.add(expected.current_credits, expected.total_credits_used);
      return [{ kind: 'not_migratable', ...where, column: null, expected: 'migratable', actual: reason, reason, detail }];
    }
    // What the tool writes for this user: the mapping; for a merged user the merge it wrote (the ledger's base);
    // for a row the app deleted, what the tool's write left in it (no top-up is granted to a deleted row).
    const base = fact.merged ? fact.ledger?.base : null;
    const written =
      decision.action === 'deleted_by_app'
        ? decision.written
        : base
          ? { current: BigInt(String(base.current_credits)), used: BigInt(String(base.total_credits_used)) }
          : { current: BigInt(expected.current_credits), used: BigInt(expected.total_credits_used) };
    this.expected.add(written.current, written.used);
    if (base) this.merged.add(written.current - BigInt(expected.current_credits), written.used - BigInt(expected.total_credits_used));
    if (actual) this.matching.add(actual.current_credits, actual.total_credits_used);
    if (outcome === 'changed_by_app' && actual) {
      this.changed.add(BigInt(actual.current_credits) - written.current, BigInt(actual.total_credits_used) - written.used);
    }
    if (outcome === 'deleted_by_app') this.deleted.add(written.current, written.used);
    return differences(outcome, decision, where, fact.merged !== null && fact.merged !== undefined);
  }

  /** Invariants over everything tallied (see computeInvariants). */
  async invariants(db: Kysely<unknown>, only: Sums | null, deletedInRedis: Sums | null): Promise<VerifyReport['invariants']> {
    return computeInvariants(db, this, only, deletedInRedis);
  }
}

/** The differences one record lists: per column where columns differ, else one line for the row. */
function differences(outcome: VerifyOutcome, decision: Decision, where: Where, merged: boolean): Difference[] {
  if (outcome === 'match') return [];
  const reason =
    decision.action === 'conflict'
      ? { reason: decision.reason, detail: decision.detail }
      : decision.action === 'deleted_by_app'
        ? { detail: decision.detail }
        : {};
  // A merged row carries the new app's user_id: that is the merge, not a difference.
  const diffs: readonly ColumnDiff[] = 'diffs' in decision ? decision.diffs.filter((d) => !merged || d.column !== 'user_id') : [];
  if (outcome === 'missing') return [{ kind: 'missing', ...where, column: null, expected: 'row', actual: null }];
  if (diffs.length === 0) {
    return [{ kind: outcome, ...where, column: null, expected: 'row', actual: null, ...reason }];
  }
  return diffs.map((d): Difference => ({ kind: outcome, ...where, ...d, ...reason }));
}

interface SideRow {
  users: string;
  credits: string;
  used: string;
}

/**
 * Credits are money: Redis credits + whitelist top-ups - what is held back as not migratable = what the tool
 * wrote for those users; that + what the app changed since - what the rows it deleted held = what PostgreSQL
 * holds for them. Both close exactly when the migration was exact, however much the app has done since.
 */
async function computeInvariants(db: Kysely<unknown>, tally: VerifyTally, only: Sums | null, deletedInRedis: Sums | null): Promise<VerifyReport['invariants']> {
  const t = sql.raw(STAGE_TABLE);
  const one = async <R>(query: { execute(db: Kysely<unknown>): Promise<{ rows: R[] }> }) => (await query.execute(db)).rows[0] as R;
  const redis = await one(sql<SideRow & { invalid: string; topup: string }>`
    select count(*) filter (where valid)::text as users, count(*) filter (where not valid)::text as invalid,
      coalesce(sum(source_credits), 0)::text as credits, coalesce(sum(topup), 0)::text as topup,
      coalesce(sum(total_credits_used), 0)::text as used
    from ${t}`);
  // Valid records held back before classification (duplicates across keys), whitelist rule applied.
  const duplicates = await one(sql<SideRow>`
    select count(*)::text as users, coalesce(sum(current_credits), 0)::text as credits,
      coalesce(sum(total_credits_used), 0)::text as used
    from ${t} where valid and outcome is not null`);
  const held = new Sums();
  held.addMany(tally.held.users + Number(duplicates.users), tally.held.credits + BigInt(duplicates.credits), tally.held.used + BigInt(duplicates.used));
  const total = await one(sql<SideRow>`
    select count(*)::text as users, coalesce(sum(current_credits), 0)::text as credits,
      coalesce(sum(total_credits_used), 0)::text as used from public.users`);
  const side = (r: SideRow): Side => ({ users: Number(r.users), current_credits: money(BigInt(r.credits)), total_credits_used: money(BigInt(r.used)) });
  const { expected, changed, deleted, matching } = tally;
  const now = new Sums();
  now.addMany(expected.users - deleted.users, expected.credits + changed.credits - deleted.credits, expected.used + changed.used - deleted.used);
  return {
    redis: { ...side(redis), invalid_records: Number(redis.invalid), whitelist_topup: money(BigInt(redis.topup)) },
    not_migratable: held.side(),
    merged_from_postgres: tally.merged.side(),
    expected: expected.side(),
    changed_by_app: changed.side(),
    deleted_by_app: deleted.side(),
    expected_now: now.side(),
    postgres_matching: matching.side(),
    postgres_only: only ? only.side() : null,
    postgres_deleted_in_redis: deletedInRedis ? deletedInRedis.side() : null,
    postgres_total: side(total),
    balanced: now.users === matching.users && now.credits === matching.credits && now.used === matching.used,
  };
}
