import { createHash } from 'node:crypto';
import { compareRows, type ColumnDiff } from '../compare/compare-rows.js';
import { SECRET_COLUMNS, USER_COLUMNS } from '../map/user-row.js';
import { decide, type Facts } from './decide.js';

export type VerifyStatus =
  | { readonly status: 'match' }
  | { readonly status: 'missing' }
  | { readonly status: 'mismatch'; readonly diffs: readonly ColumnDiff[] }
  | { readonly status: 'not_migratable'; readonly reason: string; readonly detail: string };

/**
 * Verify's question for one valid Redis record: does PostgreSQL hold exactly the row migrate would write?
 * For a record merged into a new-app row: is that row still exactly the merge the tool wrote, from this very
 * Redis record?
 */
export function verifyRecord(facts: Facts): VerifyStatus {
  if (facts.merged) return verifyMerged(facts);
  // Another row holds this mailbox (with or without a row of this user: two accounts for one mailbox are
  // never a pass). The same words as migrate: an early login (mergeable) or an email taken.
  if (facts.emailOwner !== null) {
    const decision = decide(facts);
    return decision.action === 'conflict'
      ? { status: 'not_migratable', reason: decision.reason, detail: decision.detail }
      : { status: 'not_migratable', reason: 'email_taken', detail: `email ${facts.expected.email} belongs to user_id ${facts.emailOwner} in PostgreSQL` };
  }
  if (facts.actual === null) return { status: 'missing' };
  const diffs = compareRows(facts.expected, facts.actual);
  return diffs.length === 0 ? { status: 'match' } : { status: 'mismatch', diffs };
}

function verifyMerged(facts: Facts): VerifyStatus {
  const { actual, ledger } = facts;
  if (actual === null) return { status: 'missing' };
  const base = ledger?.base;
  if (!ledger || !base) return { status: 'mismatch', diffs: compareRows(facts.expected, actual) };
  if (ledger.digest !== facts.digest) {
    // The Redis record changed since the merge: what would be merged now differs from what was.
    return { status: 'mismatch', diffs: compareRows(facts.expected, actual).filter((d) => d.column !== 'user_id') };
  }
  const diffs: ColumnDiff[] = [];
  for (const column of USER_COLUMNS) {
    const now = column === 'password_hash' && actual.password_hash !== null ? `sha256:${sha256(actual.password_hash)}` : actual[column];
    const written = base[column];
    if (String(now) === String(written)) continue;
    const secret = SECRET_COLUMNS.has(column);
    diffs.push({ column, expected: secret && written !== null ? '(set)' : (written ?? null), actual: secret && now !== null ? '(set)' : now });
  }
  return diffs.length === 0 ? { status: 'match' } : { status: 'mismatch', diffs };
}

/** The merged row as the tool wrote it (the ledger's base), as credits: what verify expects for it. */
export function mergedCredits(facts: Facts): { current: string; used: string } | null {
  const base = facts.merged ? facts.ledger?.base : null;
  if (!base) return null;
  return { current: String(base.current_credits), used: String(base.total_credits_used) };
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}
