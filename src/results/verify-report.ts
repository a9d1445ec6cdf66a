import type { CellValue } from '../compare/compare-rows.js';
import type { SourceInfo } from './migrate-report.js';

type Amount = number | string;

export interface Side {
  readonly users: number;
  readonly current_credits: Amount;
  readonly total_credits_used: Amount;
}

export interface VerifyReport {
  readonly run_id: string;
  readonly command: 'verify';
  readonly ok: boolean;
  /** Stopped by a signal before every key was compared: never ok. */
  readonly interrupted: boolean;
  readonly strict: boolean;
  readonly source: SourceInfo | null;
  readonly sample: { readonly size: number; readonly keys_in_redis: number } | null;
  readonly started_at: string;
  readonly finished_at: string;
  readonly duration_seconds: number;
  readonly counts: {
    readonly keys_checked: number;
    readonly redis_users: number;
    readonly match: number;
    /** The tool's last write equals today's mapping and only others wrote the row since: the app's work (fails with --strict). */
    readonly changed_by_app: number;
    /** The tool wrote the row from this unchanged Redis record and the app deleted it since (fails with --strict). */
    readonly deleted_by_app: number;
    /** Redis changed since the tool's last write and the row is untouched: run migrate again. */
    readonly stale: number;
    /** Both Redis and the row changed since the tool's last write: reconcile. */
    readonly conflict: number;
    /** The row differs from the mapping and the ledger does not explain it. */
    readonly mismatch: number;
    readonly missing: number;
    readonly not_migratable: number;
    /** null in sample mode: it cannot be known from a sample. */
    readonly only_in_postgres: number | null;
    /** Rows the ledger says the tool wrote from a key the source no longer has; null in sample mode. */
    readonly deleted_in_redis: number | null;
    readonly differences: number;
    /** Records whose every difference is accepted (--accept), by kind: included in the counts above, but not failing. */
    readonly accepted: Readonly<Record<DifferenceKind, number>>;
    /** Records that fail verification: what `ok` is about. */
    readonly failing: number;
  };
  /** With --accept: the file, how many entries it has, and those that matched no problem (null when not every key was checked). */
  readonly accepted: {
    readonly file: string;
    readonly entries: number;
    readonly fine_now: readonly AcceptEntry[] | null;
  } | null;
  readonly reasons: Readonly<Record<string, number>>;
  readonly invariants: {
    /** Valid Redis records as read (credits before the whitelist rule). */
    readonly redis: Side & { readonly invalid_records: number; readonly whitelist_topup: Amount };
    /** Valid records that cannot be migrated (duplicates, email taken), credits after the whitelist rule. */
    readonly not_migratable: Side;
    /** Merged users: what their merges kept of the new-app rows (merged balance minus Redis's). */
    readonly merged_from_postgres: Side;
    /** redis + whitelist_topup - not_migratable + merged_from_postgres: what the tool writes (wrote) for the migratable users. */
    readonly expected: Side;
    /** Rows changed by the app since the tool's write: their number, and now minus what the tool wrote (credits, credits used). */
    readonly changed_by_app: Side;
    /** Rows the app deleted since the tool's write: their number, and what they held when the tool wrote them. */
    readonly deleted_by_app: Side;
    /** expected + changed_by_app - deleted_by_app: what PostgreSQL must hold for those users now. */
    readonly expected_now: Side;
    /** What PostgreSQL holds for the migratable users (their rows, or the rows they were merged into). */
    readonly postgres_matching: Side;
    readonly postgres_only: Side | null;
    /** Rows the tool wrote whose Redis record is gone (they fail verification). */
    readonly postgres_deleted_in_redis: Side | null;
    readonly postgres_total: Side;
    /** expected_now equals postgres_matching exactly (users, credits, credits used): true on a live system where the migration was exact. */
    readonly balanced: boolean;
  };
}

/** One line of verify's difference list (docs/verify-in-ci.md "Verify": the `--report` flag). */
export interface Difference {
  readonly kind:
    'mismatch' | 'stale' | 'conflict' | 'changed_by_app' | 'deleted_by_app' | 'missing' | 'not_migratable' | 'only_in_postgres' | 'deleted_in_redis';
  readonly key: string | null;
  readonly user_id: string | null;
  readonly email: string | null;
  readonly column: string | null;
  readonly expected: CellValue;
  readonly actual: CellValue;
  readonly reason?: string;
  readonly detail?: string;
  /** A known problem the team accepted (--accept): the entry's line and reason. */
  readonly accepted?: { readonly line: number; readonly reason: string };
}

export type DifferenceKind = Difference['kind'];

/** Kinds listed one difference per column (`column` set; `expected` is Redis's mapping, or for changed_by_app what the tool wrote). */
export const COLUMN_KINDS: ReadonlySet<DifferenceKind> = new Set(['mismatch', 'stale', 'conflict', 'changed_by_app']);

/** Kinds that are the app's own work: listed and added up, failing only with --strict. */
export const APP_KINDS: ReadonlySet<DifferenceKind> = new Set(['changed_by_app', 'deleted_by_app']);

/** One line of an accept file (--accept): a record whose known problem the team has accepted, and why. */
export interface AcceptEntry {
  readonly line: number;
  /** A Redis key (the report's `key`) or a user_id (for a row with no Redis key). */
  readonly key: string;
  /** Only this kind of difference is accepted; with `detail`, only this column (mismatch) or reason (not_migratable). */
  readonly kind?: DifferenceKind | undefined;
  readonly detail?: string | undefined;
  readonly reason: string;
}
