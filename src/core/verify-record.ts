import { compareRows, type CellValue, type ColumnDiff } from '../compare/compare-rows.js';
import type { Facts } from './decide.js';

export type VerifyStatus =
  | { readonly status: 'match' }
  | { readonly status: 'missing' }
  | { readonly status: 'mismatch'; readonly diffs: readonly ColumnDiff[] }
  | { readonly status: 'not_migratable'; readonly reason: string; readonly detail: string };

/** Verify's question for one valid Redis record: does PostgreSQL hold exactly the row migrate would write? */
export function verifyRecord(facts: Facts): VerifyStatus {
  if (facts.actual === null) {
    if (facts.emailOwner !== null) {
      return {
        status: 'not_migratable',
        reason: 'email_taken',
        detail: `email ${facts.expected.email} belongs to user_id ${facts.emailOwner} in PostgreSQL`,
      };
    }
    return { status: 'missing' };
  }
  const diffs = compareRows(facts.expected, facts.actual);
  return diffs.length === 0 ? { status: 'match' } : { status: 'mismatch', diffs };
}

/** One line of verify's difference list (README "verify report"). */
export interface Difference {
  readonly kind: 'mismatch' | 'missing' | 'not_migratable' | 'only_in_postgres' | 'deleted_in_redis';
  readonly key: string | null;
  readonly user_id: string | null;
  readonly email: string | null;
  readonly column: string | null;
  readonly expected: CellValue;
  readonly actual: CellValue;
  readonly reason?: string;
  readonly detail?: string;
}
