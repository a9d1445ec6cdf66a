import type { CellValue } from '../compare/compare-rows.js';
import type { VerifyReport } from '../core/verify.js';
import type { Difference } from '../core/verify-record.js';
import { describeSource } from './report.js';

const cell = (value: CellValue | undefined, max = 48): string => {
  const text = value === null || value === undefined ? '∅' : String(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
};

function headline(report: VerifyReport): string {
  const scope = report.sample
    ? `SAMPLE of ${report.sample.size} of about ${report.sample.keys_in_redis} keys (exact per user; rows only in PostgreSQL not checked)`
    : 'all keys';
  const verdict = report.ok ? 'PostgreSQL matches Redis' : `${failureCount(report)} problems found`;
  return `${report.ok ? 'VERIFY OK' : 'VERIFY FAILED'}: ${verdict} [${scope}]`;
}

function failureCount(report: VerifyReport): number {
  const c = report.counts;
  return c.mismatch + c.missing + c.not_migratable + (c.deleted_in_redis ?? 0) + (report.strict ? c.only_in_postgres ?? 0 : 0);
}

function countRows(report: VerifyReport): [string, string | number][] {
  const c = report.counts;
  return [
    ['keys checked', c.keys_checked],
    ['valid Redis users', c.redis_users],
    ['match', c.match],
    ['differ (users)', c.mismatch],
    ['missing in PostgreSQL', c.missing],
    ['not migratable', c.not_migratable],
    ['written by the tool, gone from Redis (fails)', c.deleted_in_redis === null ? 'not checked (sample)' : c.deleted_in_redis],
    [
      `only in PostgreSQL${report.strict ? ' (fails: --strict)' : ' (allowed)'}`,
      c.only_in_postgres === null ? 'not checked (sample)' : c.only_in_postgres,
    ],
  ];
}

function invariantRows(report: VerifyReport): [string, string, string][] {
  const i = report.invariants;
  return [
    ['users (valid records)', String(i.redis.users), ''],
    ['- not migratable', String(i.not_migratable.users), ''],
    ['= expected users', String(i.expected.users), String(i.postgres_matching.users)],
    ['current_credits', String(i.redis.current_credits), ''],
    ['+ whitelist top-ups', String(i.redis.whitelist_topup), ''],
    ['- not migratable', String(i.not_migratable.current_credits), ''],
    ...(i.merged_from_postgres.users > 0 ? [['+ kept from new-app rows by merges', String(i.merged_from_postgres.current_credits), ''] as [string, string, string]] : []),
    ['= expected current_credits', String(i.expected.current_credits), String(i.postgres_matching.current_credits)],
    ['total_credits_used', String(i.redis.total_credits_used), ''],
    ['- not migratable', String(i.not_migratable.total_credits_used), ''],
    ...(i.merged_from_postgres.users > 0 ? [['+ used in new-app rows, by merges', String(i.merged_from_postgres.total_credits_used), ''] as [string, string, string]] : []),
    ['= expected total_credits_used', String(i.expected.total_credits_used), String(i.postgres_matching.total_credits_used)],
    ['invalid records (no trusted sums)', String(i.redis.invalid_records), ''],
    ['rows only in PostgreSQL', '', i.postgres_only ? `${i.postgres_only.users} (${i.postgres_only.current_credits} credits)` : 'not checked'],
    [
      'rows gone from Redis',
      '',
      i.postgres_deleted_in_redis ? `${i.postgres_deleted_in_redis.users} (${i.postgres_deleted_in_redis.current_credits} credits)` : 'not checked',
    ],
    ['all rows in PostgreSQL', '', `${i.postgres_total.users} (${i.postgres_total.current_credits} credits)`],
  ];
}

const DIFF_HEADER = ['user_id', 'email', 'column', 'expected', 'actual'];

function diffRow(d: Difference): string[] {
  const column = d.column ?? (d.kind === 'not_migratable' ? '(record)' : '(row)');
  const extra = d.kind === 'only_in_postgres' || d.kind === 'deleted_in_redis';
  const expected = d.kind === 'missing' ? 'row present' : extra ? 'no row' : d.expected;
  const actual = d.kind === 'missing' ? 'no row' : extra ? 'row present' : d.actual;
  return [cell(d.user_id ?? d.key), cell(d.email), column, cell(expected), cell(actual)];
}

export function formatVerifyText(report: VerifyReport, first: readonly Difference[]): string {
  const pad = (rows: string[][]) => {
    const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
    return rows.map((r) => `  ${r.map((v, i) => v.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd()).join('\n');
  };
  const i = report.invariants;
  const out = [
    headline(report),
    ...(report.source ? ['', `  source: ${describeSource(report.source)}`] : []),
    '',
    pad(countRows(report).map(([k, v]) => [k, String(v)])),
    '',
    `  invariants: ${i.balanced ? 'balanced (expected users, credits and credits used equal PostgreSQL)' : 'NOT balanced'}`,
    pad([['', 'Redis', 'PostgreSQL'], ...invariantRows(report)]),
  ];
  if (first.length > 0) {
    out.push('', `  first ${first.length} of ${report.counts.differences} differences:`, pad([DIFF_HEADER, ...first.map(diffRow)]));
  }
  out.push('', `  time ${report.duration_seconds.toFixed(1)} s`, '');
  return out.join('\n');
}

const md = (text: string | number) => String(text).replace(/\|/g, '\\|').replace(/[\r\n]+/g, ' ').replace(/`/g, "'");

/** GitHub-flavoured markdown, for `$GITHUB_STEP_SUMMARY` and pull-request comments. */
export function formatVerifyMarkdown(report: VerifyReport, first: readonly Difference[]): string {
  const i = report.invariants;
  const lines = [
    `## ${report.ok ? '✅' : '❌'} migrate-users verify: ${report.ok ? 'PostgreSQL matches Redis' : `${failureCount(report)} problems found`}`,
    '',
    report.sample
      ? `> **Sample**: ${report.sample.size} of about ${report.sample.keys_in_redis} keys, exact per user. Rows only in PostgreSQL are not checked in a sample.`
      : '> Every key checked.',
    ...(report.source ? ['', `> Source: ${md(describeSource(report.source))}`] : []),
    '',
    '| outcome | count |',
    '|---|---:|',
    ...countRows(report).map(([k, v]) => `| ${md(k)} | ${md(v)} |`),
    '',
    `### Invariants ${i.balanced ? '(balanced)' : '(**not balanced**)'}`,
    '',
    '| | Redis | PostgreSQL |',
    '|---|---:|---:|',
    ...invariantRows(report).map(([k, a, b]) => `| ${md(k)} | ${md(a)} | ${md(b)} |`),
  ];
  if (first.length > 0) {
    lines.push(
      '',
      `### First ${first.length} of ${report.counts.differences} differences`,
      '',
      `| ${DIFF_HEADER.join(' | ')} |`,
      `|${DIFF_HEADER.map(() => '---').join('|')}|`,
      ...first.map((d) => `| ${diffRow(d).map(md).join(' | ')} |`),
    );
  }
  return `${lines.join('\n')}\n`;
}

const xml = (text: string | number) =>
  String(text)
    .replace(/[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');

/** JUnit XML: three checks as test cases, so any CI system shows which one failed and why. */
export function formatVerifyJunit(report: VerifyReport, first: readonly Difference[]): string {
  const c = report.counts;
  const listing = first.map((d) => diffRow(d).join(' | ')).join('\n');
  const cases: { name: string; failed: string | null; skipped?: string }[] = [
    {
      name: 'every valid Redis user has an identical row in PostgreSQL',
      failed: c.mismatch + c.missing > 0 ? `${c.mismatch} users differ, ${c.missing} missing\n${listing}` : null,
    },
    { name: 'every Redis record is migratable', failed: c.not_migratable > 0 ? `${c.not_migratable} not migratable: ${JSON.stringify(report.reasons)}` : null },
    {
      name: 'every row the tool wrote still has its Redis record',
      failed: (c.deleted_in_redis ?? 0) > 0 ? `${c.deleted_in_redis} rows the tool wrote have no Redis record any more` : null,
      ...(c.deleted_in_redis === null ? { skipped: 'sample' } : {}),
    },
    {
      name: 'no rows only in PostgreSQL (--strict)',
      failed: report.strict && (c.only_in_postgres ?? 0) > 0 ? `${c.only_in_postgres} rows only in PostgreSQL` : null,
      ...(report.strict && c.only_in_postgres !== null ? {} : { skipped: c.only_in_postgres === null ? 'sample' : 'not --strict' }),
    },
  ];
  const failures = cases.filter((t) => t.failed).length;
  const body = cases
    .map((t) => {
      const inner = t.failed
        ? `<failure message="${xml(t.failed.split('\n')[0] ?? '')}">${xml(t.failed)}</failure>`
        : t.skipped
          ? `<skipped message="${xml(t.skipped)}"/>`
          : '';
      return `    <testcase classname="migrate-users.verify" name="${xml(t.name)}" time="0">${inner}</testcase>`;
    })
    .join('\n');
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="migrate-users verify" tests="${cases.length}" failures="${failures}">`,
    `  <testsuite name="migrate-users verify${report.sample ? ' (sample)' : ''}" tests="${cases.length}" failures="${failures}" time="${report.duration_seconds}">`,
    body,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
