import type { MigrateReport } from '../results/migrate-report.js';
import { describeSource } from './report.js';

/** Thousands separators for the numbers a person reads (the JSON report keeps plain numbers). */
export function grouped(value: string | number | bigint): string {
  const text = String(value);
  return /^-?\d+$/.test(text) ? BigInt(text).toLocaleString('en-US') : text;
}

function headline(report: MigrateReport): string {
  const c = report.counts;
  const resumed = report.resumed_from ? ` It resumed ${report.resumed_from} (${grouped(c.resumed_skipped)} records were done before).` : '';
  if (report.status === 'interrupted') {
    if (report.mode === 'dry-run') return `DRY RUN interrupted: ${grouped(c.pending)} records not decided yet. Run the same command again to start over.`;
    if (!report.resumable) {
      return `Migration ${report.run_id} INTERRUPTED while reading Redis (${grouped(c.scanned)} keys read): nothing was written; the next run reads Redis again from the start.`;
    }
    return `Migration ${report.run_id} INTERRUPTED: ${grouped(c.pending)} records not decided yet. Run the same command again to resume.${resumed}`;
  }
  if (report.status === 'failed') {
    const next = report.mode === 'apply' && !report.resumable ? ' Nothing was written; the next run reads Redis again from the start.' : '';
    return `Migration ${report.run_id} FAILED with ${grouped(c.pending)} records not decided.${resumed}${next}`;
  }
  return report.mode === 'dry-run' ? 'DRY RUN: nothing was written to PostgreSQL.' : `Migration ${report.run_id} finished.${resumed}`;
}

/** The human summary printed on stdout at the end of a run. */
export function formatSummary(report: MigrateReport): string {
  const c = report.counts;
  const dry = report.mode === 'dry-run';
  const would = (text: string) => (dry ? `would be ${text}` : text);
  const lines: [string, string | number][] = [
    ['keys scanned', c.scanned],
    ['valid records', c.valid],
    ['rejected (invalid)', c.invalid],
    [would('inserted'), c.inserted],
    [would('updated'), c.updated],
    ['already in sync', c.unchanged],
    ['kept app changes', c.kept_app_changes],
    ['deleted by the app (kept)', c.deleted_by_app],
    [would('merged (early logins)'), c.merged],
    ['conflicts (held back)', c.conflicts],
    ['whitelist top-ups', c.whitelist_topups],
  ];
  const cr = report.credits;
  const b = cr.by_outcome;
  const credits: [string, string | number][] = [
    ['credits read from Redis', cr.read.current],
    ['+ whitelist top-ups', cr.whitelist_topup],
    ['+ changed by the new app (kept)', cr.app_difference.current],
    ['+ kept from new-app rows by merges', cr.merge_difference.current],
    [`= ${would('inserted')}`, b.inserted?.current ?? 0],
    [`+ ${would('updated')}`, b.updated?.current ?? 0],
    ['+ already in sync', b.unchanged?.current ?? 0],
    ['+ kept app changes', b.kept_app_change?.current ?? 0],
    ['+ deleted by the app', b.deleted_by_app?.current ?? 0],
    [`+ ${would('merged')}`, b.merged?.current ?? 0],
    ['+ held back (conflicts)', b.conflict?.current ?? 0],
  ];
  const width = Math.max(...[...lines, ...credits].map(([label]) => label.length));
  const render = (rows: [string, string | number][]) => rows.map(([label, value]) => `  ${label.padEnd(width)}  ${grouped(value).padStart(14)}`).join('\n');
  const reasons = Object.entries(report.reasons)
    .sort(([a], [b2]) => a.localeCompare(b2))
    .map(([reason, n]) => `  ${reason.padEnd(width)}  ${grouped(n).padStart(14)}`)
    .join('\n');
  const notes: string[] = [];
  if (report.source) notes.push(`  source: ${describeSource(report.source)}${report.resumed_from ? ` (the stage of ${report.resumed_from}, resumed)` : ''}`);
  const w = report.whitelist;
  if (w?.same_as_last_run === false) {
    notes.push(
      `  note: the whitelist differs from the last finished run's (${grouped(w.emails)} emails at ${grouped(w.credits)} credits, was ${w.last_run?.emails ?? '?'} at ${grouped(w.last_run?.credits ?? '?')}): ` +
        'newly whitelisted users are topped up; no top-up granted before is taken back',
    );
  }
  if (w && w.unmatched.length > 0) {
    const shown = w.unmatched.slice(0, 10).join(', ');
    notes.push(`  note: ${w.unmatched.length} whitelisted emails match no Redis user (no top-up for them): ${shown}${w.unmatched.length > 10 ? ', ...' : ''}`);
  }
  if (w && w.grants_kept > 0) notes.push(`  top-ups granted by earlier runs and kept: ${grouped(w.grants_kept)}`);
  if (report.postgres_unnormalised_emails) {
    notes.push(
      `  note: ${report.postgres_unnormalised_emails} PostgreSQL rows store their email not normalised (case or spaces): ` +
        'they are matched as the same mailbox; the new app may look emails up case-sensitively',
    );
  }
  return [
    headline(report),
    ...(notes.length > 0 ? ['', ...notes] : []),
    '',
    render(lines),
    '',
    render(credits),
    ...(reasons ? ['', '  not migrated, by reason:', reasons] : []),
    '',
    `  time ${report.duration_seconds.toFixed(1)} s, ${grouped(report.users_per_second)} keys/s`,
    '',
  ].join('\n');
}
