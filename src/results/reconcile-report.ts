import type { CellValue } from '../compare/compare-rows.js';
import type { MigrateReport } from './migrate-report.js';

export const CLASSES = [
  'in_sync',
  'changed_in_redis',
  'changed_in_postgres',
  'changed_in_both',
  'only_in_redis',
  'only_in_postgres',
  'early_login',
  'deleted_in_postgres',
  'deleted_by_app',
  'deleted_in_redis',
  'other_conflict',
  'invalid_in_redis',
] as const;
export type ReconcileClass = (typeof CLASSES)[number];

/** Classes that --apply brings across; and classes that need nobody's attention. */
export const SAFE_TO_APPLY: ReadonlySet<ReconcileClass> = new Set(['changed_in_redis', 'only_in_redis']);
export const SETTLED: ReadonlySet<ReconcileClass> = new Set(['in_sync', 'changed_in_postgres', 'deleted_by_app', 'only_in_postgres']);

export interface ColumnDrift {
  readonly column: string;
  readonly base: CellValue | undefined;
  readonly redis: CellValue | undefined;
  readonly postgres: CellValue | undefined;
  /** For a merge: the value of the merged row. */
  readonly merged?: CellValue | undefined;
  /** current_credits of a whitelisted user: what the whitelist rule makes of Redis's own balance (`redis`). */
  readonly redis_whitelisted?: CellValue | undefined;
}

export interface ReconcileEntry {
  readonly class: ReconcileClass;
  readonly user_id: string | null;
  readonly email: string | null;
  readonly key: string | null;
  readonly reason: string | null;
  readonly detail: string | null;
  readonly columns: readonly ColumnDrift[];
  readonly applied: boolean;
  readonly resolved_by?: 'redis' | 'postgres';
  /** The state this line shows, for `--take` to apply only over it: the Redis record's digest, the row's xmin (null: none). */
  readonly review: { readonly redis_digest: string | null; readonly row_version: string | null };
}

export interface ClassTotals {
  users: number;
  redis_credits: number | string;
  postgres_credits: number | string;
}

export interface ReconcileReport extends MigrateReport {
  readonly command: 'reconcile';
  readonly applied: boolean;
  readonly classes: Readonly<Record<ReconcileClass, ClassTotals>>;
  /** Users still needing attention: everything but in sync, app-owned, new-app signups and what --apply wrote. */
  readonly remaining: number;
}
