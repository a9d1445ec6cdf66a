import { compareRows, type CellValue, type ColumnDiff } from '../compare/compare-rows.js';
import type { ConflictReason } from '../map/reasons.js';
import type { UserRow } from '../map/user-row.js';

/** What PostgreSQL and the tool's ledger say about one valid Redis record. */
export interface Facts {
  readonly expected: UserRow;
  readonly digest: string;
  readonly actual: UserRow | null;
  /** user_id of another row in PostgreSQL that already holds this email. */
  readonly emailOwner: string | null;
  readonly ledger: {
    readonly digest: string;
    readonly untouched: boolean;
    /** An operator chose PostgreSQL for this user (`reconcile --take postgres`). */
    readonly postgresOwns?: boolean;
    /** The row as the tool last wrote it (password hash as a digest). */
    readonly base?: Readonly<Record<string, CellValue>> | null;
  } | null;
}

export type Decision =
  | { readonly action: 'insert' }
  | { readonly action: 'update'; readonly diffs: readonly ColumnDiff[] }
  /** Already identical; `adopt` = the ledger must learn this row's current state. */
  | { readonly action: 'unchanged'; readonly adopt: boolean }
  /** The app changed the row since the tool wrote it and Redis did not change: the app owns it now. */
  | { readonly action: 'kept_app_change'; readonly diffs: readonly ColumnDiff[] }
  | {
      readonly action: 'conflict';
      readonly reason: ConflictReason;
      readonly detail: string;
      readonly diffs: readonly ColumnDiff[];
    };

/**
 * The rules of BRIEF.md as one pure decision: rows the app created or changed are never overwritten;
 * a Redis change is caught up only onto a row nobody else has touched since the tool wrote it.
 */
export function decide(facts: Facts): Decision {
  const { expected, actual, ledger } = facts;
  if (facts.emailOwner !== null) {
    return conflict('email_taken', `email ${expected.email} belongs to user_id ${facts.emailOwner} in PostgreSQL`);
  }
  if (actual === null) {
    if (ledger?.postgresOwns && ledger.digest === facts.digest) return { action: 'kept_app_change', diffs: [] };
    if (ledger) return conflict('deleted_in_postgres', 'the tool wrote this user before; the row has since been deleted');
    return { action: 'insert' };
  }
  const diffs = compareRows(expected, actual);
  if (diffs.length === 0) {
    return { action: 'unchanged', adopt: !ledger || ledger.digest !== facts.digest || !ledger.untouched };
  }
  if (!ledger) return conflict('row_not_written_by_tool', 'a different row with this user_id exists that the tool did not write', diffs);
  if (ledger.untouched) return { action: 'update', diffs };
  if (ledger.digest === facts.digest) return { action: 'kept_app_change', diffs };
  return conflict('changed_in_both', 'Redis changed and the app changed the row since the tool wrote it', diffs);
}

function conflict(reason: ConflictReason, detail: string, diffs: readonly ColumnDiff[] = []): Decision {
  return { action: 'conflict', reason, detail, diffs };
}
