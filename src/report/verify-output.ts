import type { CellValue } from '../compare/compare-rows.js';
import type { AcceptEntry, Difference, VerifyReport } from '../results/verify-report.js';
import { grouped } from './summary.js';
import type { VerifyFindings } from './verify-findings.js';
import { describeSource } from './report.js';

const cell = (value: CellValue | undefined, max = 48): string => {
  const text = value === null || value === undefined ? '∅' : String(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
};

const acceptedTotal = (report: VerifyReport) => Object.values(report.counts.accepted).reduce((a, b) => a + b, 0);

/** The verdict; a sample says so first, as every headline of a sampled run does. */
function verdict(report: VerifyReport): string {
  const accepted = acceptedTotal(report);
  const known = accepted > 0 ? ` (${grouped(accepted)} accepted known ${accepted === 1 ? 'problem' : 'problems'} not counted)` : '';
  if (report.interrupted) return `interrupted before every key was compared${known}`;
  const subject = report.sample ? 'the sample' : 'PostgreSQL';
  const app = report.counts.changed_by_app + report.counts.deleted_by_app;
  const appOwn = app > 0 && !report.strict ? `, apart from the new app's own work since (${grouped(app)} ${app === 1 ? 'user' : 'users'})` : '';
  return report.ok ? `${subject} matches Redis${appOwn}${known}` : `${grouped(report.counts.failing)} problems found${known}`;
}

function headline(report: VerifyReport): string {
  const scope = report.sample
    ? `SAMPLE of ${grouped(report.sample.size)} of about ${grouped(report.sample.keys_in_redis)} keys (exact per user; rows only in PostgreSQL not checked)`
    : report.interrupted
      ? `${grouped(report.counts.keys_checked)} keys read before the interruption, not all`
      : 'all keys';
  return `${report.ok ? 'VERIFY OK' : 'VERIFY FAILED'}${report.sample ? ' (SAMPLE)' : ''}: ${verdict(report)} [${scope}]`;
}

function countRows(report: VerifyReport): [string, string][] {
  const c = report.counts;
  const shown = (value: number | null, kind: keyof VerifyReport['counts']['accepted']) => {
    // Only a run that read every key knows which rows no key has: a sample does not, nor does an interrupted run.
    if (value === null) return `not checked (${report.sample ? 'sample' : 'interrupted'})`;
    const accepted = c.accepted[kind];
    return accepted > 0 ? `${grouped(value)} (${grouped(accepted)} accepted)` : grouped(value);
  };
  return [
    ['keys checked', grouped(c.keys_checked)],
    ['valid Redis users', grouped(c.redis_users)],
    ['match', grouped(c.match)],
    [`changed by the new app since${report.strict ? ' (fails: --strict)' : ' (allowed)'}`, shown(c.changed_by_app, 'changed_by_app')],
    [`deleted by the new app since${report.strict ? ' (fails: --strict)' : ' (allowed)'}`, shown(c.deleted_by_app, 'deleted_by_app')],
    ['stale: changed in Redis since (run migrate again)', shown(c.stale, 'stale')],
    ['changed on both sides (reconcile)', shown(c.conflict, 'conflict')],
    ['differ (users)', shown(c.mismatch, 'mismatch')],
    ['missing in PostgreSQL', shown(c.missing, 'missing')],
    ['not migratable', shown(c.not_migratable, 'not_migratable')],
    ['written by the tool, gone from Redis (fails)', shown(c.deleted_in_redis, 'deleted_in_redis')],
    [`only in PostgreSQL${report.strict ? ' (fails: --strict)' : ' (allowed)'}`, shown(c.only_in_postgres, 'only_in_postgres')],
    ...(report.accepted ? [[`accepted known problems (${report.accepted.file})`, grouped(acceptedTotal(report))] as [string, string]] : []),
  ];
}

function invariantRows(report: VerifyReport): [string, string, string][] {
  const i = report.invariants;
  return rawInvariantRows(i).map(([k, a, b]) => [k, grouped(a), grouped(b)]);
}

function rawInvariantRows(i: VerifyReport['invariants']): [string, string, string][] {
  type Pick = (s: VerifyReport['invariants']['expected']) => string | number;
  const row = (label: string, redis: string | number, postgres: string | number = ''): [string, string, string] => [label, String(redis), String(postgres)];
  // On a live system the app's work since the tool wrote the rows is added up between what the tool wrote
  // and what PostgreSQL holds; when the app has done nothing the table is the plain one.
  const live = i.changed_by_app.users > 0 || i.deleted_by_app.users > 0;
  const total = (name: string, pick: Pick, changes: boolean): [string, string, string][] =>
    live
      ? [
          row('= written by the tool', pick(i.expected)),
          ...(changes ? [row('+ changed by the new app since', pick(i.changed_by_app))] : []),
          row('- deleted by the new app (as written)', pick(i.deleted_by_app)),
          row(`= expected ${name} now`, pick(i.expected_now), pick(i.postgres_matching)),
        ]
      : [row(`= expected ${name}`, pick(i.expected), pick(i.postgres_matching))];
  const merges = i.merged_from_postgres.users > 0;
  const listed = (s: VerifyReport['invariants']['postgres_only']) => (s ? `${grouped(s.users)} (${grouped(s.current_credits)} credits)` : 'not checked');
  return [
    row('users (valid records)', i.redis.users),
    row('- not migratable', i.not_migratable.users),
    ...total('users', (s) => s.users, false),
    row('current_credits', i.redis.current_credits),
    row('+ whitelist top-ups', i.redis.whitelist_topup),
    row('- not migratable', i.not_migratable.current_credits),
    ...(merges ? [row('+ kept from new-app rows by merges', i.merged_from_postgres.current_credits)] : []),
    ...total('current_credits', (s) => s.current_credits, true),
    row('total_credits_used', i.redis.total_credits_used),
    row('- not migratable', i.not_migratable.total_credits_used),
    ...(merges ? [row('+ used in new-app rows, by merges', i.merged_from_postgres.total_credits_used)] : []),
    ...total('total_credits_used', (s) => s.total_credits_used, true),
    row('invalid records (no trusted sums)', i.redis.invalid_records),
    row('rows only in PostgreSQL', '', listed(i.postgres_only)),
    row('rows gone from Redis', '', listed(i.postgres_deleted_in_redis)),
    row('all rows in PostgreSQL', '', listed(i.postgres_total)),
  ];
}

/**
 * "12 users changed by the new app since their migration (-340 credits, +340 credits used), 1 account deleted
 * by it (500 credits when migrated): expected on a live system." Null when the app has done nothing.
 */
export function appWorkSentence(report: VerifyReport): string | null {
  const i = report.invariants;
  const c = report.counts;
  if (c.changed_by_app === 0 && c.deleted_by_app === 0) return null;
  const signed = (v: string | number) => (String(v).startsWith('-') ? grouped(v) : `+${grouped(v)}`);
  const parts: string[] = [];
  if (c.changed_by_app > 0) {
    parts.push(
      `${grouped(c.changed_by_app)} ${c.changed_by_app === 1 ? 'user' : 'users'} changed by the new app since their migration ` +
        `(${signed(i.changed_by_app.current_credits)} credits, ${signed(i.changed_by_app.total_credits_used)} credits used)`,
    );
  }
  if (c.deleted_by_app > 0) {
    parts.push(
      `${grouped(c.deleted_by_app)} ${c.deleted_by_app === 1 ? 'account' : 'accounts'} deleted in the new app ` +
        `(${grouped(i.deleted_by_app.current_credits)} credits when migrated)`,
    );
  }
  const unaccepted = c.changed_by_app + c.deleted_by_app - c.accepted.changed_by_app - c.accepted.deleted_by_app;
  return `${parts.join(', ')}: ${!report.strict ? 'expected on a live system' : unaccepted > 0 ? 'fails with --strict' : 'accepted (--accept)'}.`;
}

/** The app-work sentence as lines after the counts (a blank line first), or none. */
const appWork = (report: VerifyReport): string[] => {
  const said = appWorkSentence(report);
  return said === null ? [] : ['', said];
};

const DIFF_HEADER = ['user_id', 'email', 'column', 'expected', 'actual'];
const ACCEPTED_HEADER = [...DIFF_HEADER, 'accepted because'];
const APP_HEADER = ['user_id', 'email', 'column', 'written by the tool', 'now'];

function diffRow(d: Difference): string[] {
  const column = d.column ?? (d.kind === 'not_migratable' ? '(record)' : '(row)');
  const extra = d.kind === 'only_in_postgres' || d.kind === 'deleted_in_redis';
  // A row the tool wrote that is gone now (deleted by the app, or deleted while Redis changed).
  const gone = d.column === null && (d.kind === 'deleted_by_app' || d.reason === 'deleted_in_postgres');
  const expected = d.kind === 'missing' ? 'row present' : extra ? 'no row' : gone ? 'row (as written)' : d.expected;
  const actual = d.kind === 'missing' || gone ? 'no row' : extra ? 'row present' : d.actual;
  return [cell(d.user_id ?? d.key), cell(d.email), column, cell(expected), cell(actual)];
}

const acceptedRow = (d: Difference) => [...diffRow(d), cell(d.accepted ? `line ${d.accepted.line}: ${d.accepted.reason}` : '', 60)];

const entryText = (e: AcceptEntry) => `line ${e.line}: ${e.key}${e.kind ? ` [${e.kind}${e.detail ? `:${e.detail}` : ''}]` : ''} ${e.reason}`;

/** The tables and lists after the counts: differences, accepted ones, accepted entries that are fine now. */
function sections(report: VerifyReport, findings: VerifyFindings): { title: string; header?: string[]; rows: string[][] }[] {
  const out: { title: string; header?: string[]; rows: string[][] }[] = [];
  const { differences, acceptedDifferences } = findings;
  if (differences.count > 0) {
    out.push({
      title: `first ${grouped(differences.first.length)} of ${grouped(differences.count)} differences`,
      header: DIFF_HEADER,
      rows: differences.first.map(diffRow),
    });
  }
  const app = findings.appDifferences;
  if (app.count > 0) {
    out.push({
      title:
        `the new app's work since the tool wrote these users (${report.strict ? 'failing: --strict' : 'expected on a live system'}): ` +
        `first ${grouped(app.first.length)} of ${grouped(app.count)} changes`,
      header: APP_HEADER,
      rows: app.first.map(diffRow),
    });
  }
  const file = report.accepted?.file ?? '--accept';
  if (acceptedDifferences.count > 0) {
    out.push({
      title: `accepted in ${file} (known problems, not failing): first ${grouped(acceptedDifferences.first.length)} of ${grouped(acceptedDifferences.count)} differences`,
      header: ACCEPTED_HEADER,
      rows: acceptedDifferences.first.map(acceptedRow),
    });
  }
  const fine = report.accepted?.fine_now;
  if (report.accepted && fine === null) {
    out.push({ title: `entries of ${file} that match no problem any more: not known (only some keys were checked: a sample, or interrupted)`, rows: [] });
  }
  if (fine && fine.length > 0) {
    out.push({
      title: `accepted but fine now: ${grouped(fine.length)} of the entries in ${file} matched no problem (remove them)`,
      rows: fine.map((e) => [entryText(e)]),
    });
  }
  return out;
}

export function formatVerifyText(report: VerifyReport, findings: VerifyFindings): string {
  const pad = (rows: string[][]) => {
    const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
    return rows.map((r) => `  ${r.map((v, i) => v.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd()).join('\n');
  };
  const i = report.invariants;
  const out = [
    headline(report),
    ...(report.source ? ['', `  source: ${describeSource(report.source)}`] : []),
    '',
    pad(countRows(report).map(([k, v]) => [k, v])),
    ...appWork(report).map((line) => (line ? `  ${line}` : line)),
    '',
    `  invariants: ${i.balanced ? 'balanced (expected users, credits and credits used equal PostgreSQL)' : 'NOT balanced'}${report.interrupted ? ', of the records compared before the interruption' : ''}`,
    pad([['', 'Redis', 'PostgreSQL'], ...invariantRows(report)]),
  ];
  for (const section of sections(report, findings)) {
    if (section.rows.length === 0) out.push('', `  ${section.title}.`);
    else out.push('', `  ${section.title}:`, pad(section.header ? [section.header, ...section.rows] : section.rows));
  }
  out.push('', `  time ${report.duration_seconds.toFixed(1)} s`, '');
  return out.join('\n');
}

const md = (text: string | number) =>
  String(text)
    .replace(/\|/g, '\\|')
    .replace(/[\r\n]+/g, ' ')
    .replace(/`/g, "'");

/** GitHub-flavoured markdown, for `$GITHUB_STEP_SUMMARY` and pull-request comments. */
export function formatVerifyMarkdown(report: VerifyReport, findings: VerifyFindings): string {
  const i = report.invariants;
  const lines = [
    `## ${report.ok ? '✅' : '❌'} migrate-users verify${report.sample ? ' (sample)' : ''}: ${verdict(report)}`,
    '',
    report.sample
      ? `> **Sample**: ${grouped(report.sample.size)} of about ${grouped(report.sample.keys_in_redis)} keys, exact per user. Rows only in PostgreSQL are not checked in a sample.`
      : report.interrupted
        ? `> **Interrupted**: ${grouped(report.counts.keys_checked)} keys read, not all; rows only in PostgreSQL not checked.`
        : '> Every key checked.',
    ...(report.source ? ['', `> Source: ${md(describeSource(report.source))}`] : []),
    '',
    '| outcome | count |',
    '|---|---:|',
    ...countRows(report).map(([k, v]) => `| ${md(k)} | ${md(v)} |`),
    ...appWork(report).map((line) => md(line)),
    '',
    `### Invariants ${i.balanced ? '(balanced)' : '(**not balanced**)'}`,
    '',
    '| | Redis | PostgreSQL |',
    '|---|---:|---:|',
    ...invariantRows(report).map(([k, a, b]) => `| ${md(k)} | ${md(a)} | ${md(b)} |`),
  ];
  for (const section of sections(report, findings)) {
    const title = `${section.title.charAt(0).toUpperCase()}${section.title.slice(1)}`;
    lines.push('', `### ${md(title)}`, '');
    if (section.header) {
      lines.push(
        `| ${section.header.join(' | ')} |`,
        `|${section.header.map(() => '---').join('|')}|`,
        ...section.rows.map((r) => `| ${r.map(md).join(' | ')} |`),
      );
    } else {
      lines.push(...section.rows.map((r) => `- ${md(r.join(' '))}`));
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The run failed before it could compare: the headline says so, with the error in words. */
export function formatVerifyMarkdownError(message: string, sample: boolean): string {
  return `## ❌ migrate-users verify${sample ? ' (sample)' : ''}: could not finish\n\n${md(message)}\n`;
}
