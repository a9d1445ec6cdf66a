import { grouped } from './summary.js';
import {
  CLASSES,
  SAFE_TO_APPLY,
  SETTLED,
  type ColumnDrift,
  type ReconcileClass,
  type ReconcileEntry,
  type ReconcileReport,
} from '../results/reconcile-report.js';

type Cell = ColumnDrift['redis'];
import { csvRow } from './csv.js';
import { describeSource } from './report.js';

export const CLASS_LABELS: Record<ReconcileClass, string> = {
  in_sync: 'in sync',
  changed_in_redis: 'changed only in Redis',
  changed_in_postgres: 'changed only in PostgreSQL',
  changed_in_both: 'changed on both sides',
  only_in_redis: 'only in Redis',
  only_in_postgres: 'only in PostgreSQL',
  early_login: 'early logins (merge)',
  deleted_in_postgres: 'deleted in PostgreSQL',
  deleted_by_app: 'deleted by the new app (the app owns it)',
  deleted_in_redis: 'deleted in Redis',
  other_conflict: 'other conflicts',
  invalid_in_redis: 'invalid in Redis',
};

function action(cls: ReconcileClass, applied: boolean): string {
  if (cls === 'in_sync') return '';
  if (SAFE_TO_APPLY.has(cls)) return applied ? 'applied' : 'safe to apply (--apply)';
  if (SETTLED.has(cls)) return cls === 'only_in_postgres' ? 'new-app signups: left alone' : 'the app owns it: left alone';
  if (cls === 'invalid_in_redis') return 'fix in Redis (see --rejects)';
  if (cls === 'other_conflict') return 'fix the data (see --rejects)';
  if (cls === 'early_login') return applied ? 'merged (--merge)' : 'merge: reconcile --merge (plan), --apply --merge';
  return 'conflict: review --conflicts, then --take';
}

const short = (v: Cell) => {
  const text = v === null ? '∅' : v === undefined ? '?' : String(v);
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
};

export function formatReconcileText(report: ReconcileReport, samples: ReadonlyMap<ReconcileClass, readonly ReconcileEntry[]>): string {
  const merged = report.counts.merged > 0 ? `, ${report.counts.merged} merged` : '';
  const head = report.applied
    ? `RECONCILE --apply (${report.run_id}): ${report.counts.inserted} inserted, ${report.counts.updated} updated${merged}; nothing else written.`
    : `RECONCILE (read-only: nothing written${merged ? `; would merge ${report.counts.merged}` : ''}).`;
  const rows = [['class', 'users', 'credits in Redis', 'credits in PostgreSQL', 'action']];
  for (const cls of CLASSES) {
    const t = report.classes[cls];
    rows.push([CLASS_LABELS[cls], grouped(t.users), grouped(t.redis_credits), grouped(t.postgres_credits), action(cls, report.applied)]);
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  const table = rows.map((r) => `  ${r.map((v, i) => (i === 0 || i === 4 ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0))).join('  ')}`.trimEnd());
  const out = [head, ...(report.source ? ['', `  source: ${describeSource(report.source)}`] : []), '', ...table, ''];
  for (const cls of CLASSES) {
    const list = samples.get(cls) ?? [];
    if (list.length === 0) continue;
    out.push(`  ${CLASS_LABELS[cls]} (first ${list.length} of ${report.classes[cls].users}):`);
    for (const e of list) {
      const who = `    ${e.user_id ?? e.key ?? '?'} ${e.email ?? ''}`.trimEnd();
      // A conflict says why (and what --combine or --take did with it), beside its columns.
      if (e.columns.length === 0 || cls === 'changed_in_both') out.push(`${who}  ${e.detail ?? e.reason ?? ''}`);
      for (const c of e.columns) {
        const base = c.base === undefined ? '' : `base ${short(c.base)} | `;
        const merged = c.merged === undefined ? '' : ` -> merged ${short(c.merged)}`;
        out.push(`${who}  ${c.column}: ${base}redis ${short(c.redis)} | postgres ${short(c.postgres)}${merged}`);
      }
    }
    out.push('');
  }
  const m = report.credits.merges;
  if (report.counts.merged > 0) {
    out.push(
      `  merges: Redis ${m.redis} + new-app rows ${m.postgres} - signup bonus withheld ${m.bonus_withheld} = ${m.result} credits` +
        ` (credits used: ${m.used_redis} + ${m.used_postgres})`,
      '',
    );
  }
  out.push(
    report.remaining === 0 ? '  nothing left to reconcile.' : `  ${report.remaining} users left to reconcile.`,
    `  time ${report.duration_seconds.toFixed(1)} s`,
    '',
  );
  return out.join('\n');
}

/** Conflicts for review: one CSV line per differing column (or one per user when no column applies). */
export const CONFLICT_CSV_HEADER = [
  'class',
  'user_id',
  'email',
  'key',
  'reason',
  'column',
  'base',
  'redis',
  'postgres',
  'detail',
  'redis_digest',
  'row_version',
];

export function conflictCsvLines(entry: ReconcileEntry): string {
  const common = [entry.class, entry.user_id, entry.email, entry.key, entry.reason];
  // The reviewed state, last: --take reads it back (see take-review.ts).
  const review = [entry.review.redis_digest, entry.review.row_version];
  if (entry.columns.length === 0) return csvRow([...common, null, null, null, null, entry.detail, ...review]);
  return entry.columns.map((c) => csvRow([...common, c.column, cellText(c.base), cellText(c.redis), cellText(c.postgres), entry.detail, ...review])).join('');
}

function cellText(value: Cell): string | null {
  return value === undefined || value === null ? null : String(value);
}
