import type { DifferenceKind, VerifyReport } from '../results/verify-report.js';
import type { VerifyFindings } from './verify-findings.js';
import { grouped } from './summary.js';
import { CHECKS, lines, sentence } from './verify-sentences.js';
import { appWorkSentence } from './verify-output.js';

interface TestCase {
  readonly name: string;
  readonly failure?: { readonly message: string; readonly body: string } | undefined;
  readonly skipped?: string | undefined;
  readonly note?: string | undefined;
}

const xml = (text: string | number) =>
  String(text)
    .replace(/[^\t\n\r\x20-\ud7ff\ue000-\ufffd]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');

const RAN = 'verification ran';

function accepted(kind: DifferenceKind, findings: VerifyFindings, file: string): string | undefined {
  const listing = findings.accepted(kind);
  if (listing.count === 0) return undefined;
  return lines(`${grouped(listing.count)} accepted in ${file}, not failing`, listing, true);
}

/** JUnit XML: one test case per check, so any CI system shows which one failed and on which users. */
export function formatVerifyJunit(report: VerifyReport, findings: VerifyFindings): string {
  const c = report.counts;
  const file = report.accepted?.file ?? '--accept';
  const cases: TestCase[] = [
    report.interrupted
      ? { name: RAN, failure: { message: 'interrupted before every key was compared: run it again', body: 'stopped by a signal (SIGINT or SIGTERM)' } }
      : { name: RAN },
  ];
  for (const check of CHECKS) {
    const failing = findings.failing(check.kind);
    const note = accepted(check.kind, findings, file);
    const notChecked = (check.kind === 'deleted_in_redis' || check.kind === 'only_in_postgres') && c[check.kind] === null;
    if (notChecked) {
      cases.push({ name: check.name, skipped: report.sample ? 'not checked in a sample' : 'not checked: interrupted before every key was read' });
    } else if (check.kind === 'only_in_postgres' && !report.strict) {
      cases.push({
        name: check.name,
        skipped: `not --strict${failing.count > 0 ? `: ${sentence(check.problem(failing.count).replace(' (--strict)', ''), failing)}` : ''}`,
      });
    } else if (failing.count > 0) {
      const headline = check.problem(failing.count);
      cases.push({ name: check.name, failure: { message: sentence(headline, failing), body: [lines(headline, failing), note].filter(Boolean).join('\n\n') } });
    } else {
      cases.push({ name: check.name, note });
    }
  }
  cases.push(appWorkCase(report, findings));
  cases.push(invariantsCase(report));
  if (report.accepted) cases.push(fineNowCase(report.accepted));
  return junit(cases, report.sample !== null, report.duration_seconds);
}

/** The credit equation (docs/verify-in-ci.md "Verify"): what the tool wrote + the app's changes since = what PostgreSQL holds. */
function invariantsCase(report: VerifyReport): TestCase {
  const name = "the credits add up: what the tool wrote + the new app's changes since = PostgreSQL (invariants)";
  if (report.interrupted) return { name, skipped: 'not known: interrupted before every key was compared' };
  const i = report.invariants;
  const line = (label: string, pick: (s: VerifyReport['invariants']['expected']) => number | string, changes: boolean) =>
    `${label}: written ${grouped(pick(i.expected))}${changes ? ` + changed by the app ${grouped(pick(i.changed_by_app))}` : ''}` +
    ` - deleted by the app ${grouped(pick(i.deleted_by_app))} = ${grouped(pick(i.expected_now))}, PostgreSQL holds ${grouped(pick(i.postgres_matching))}`;
  const body = [
    line('users', (s) => s.users, false),
    line('current_credits', (s) => s.current_credits, true),
    line('total_credits_used', (s) => s.total_credits_used, true),
  ].join('\n');
  if (i.balanced) return { name, note: body };
  // Off only by problems --accept covers: said, not failed (the exit code is 0).
  if (report.ok) return { name, note: `not balanced, by the accepted problems only:\n${body}` };
  return { name, failure: { message: 'the credits do not add up: PostgreSQL holds other balances than the tool wrote plus what the app changed since', body } };
}

/** The new app's own work since the tool wrote the rows: shown and added up; a failure only with --strict. */
function appWorkCase(report: VerifyReport, findings: VerifyFindings): TestCase {
  const name = `changes by the new app since the migration are the app's own${report.strict ? ' (--strict: none allowed)' : ''}`;
  const said = appWorkSentence(report);
  if (said === null) return { name };
  const changed = findings.failing('changed_by_app');
  const deleted = findings.failing('deleted_by_app');
  const body = [
    said,
    ...(changed.count > 0 ? [lines('changed by the new app', changed)] : []),
    ...(deleted.count > 0 ? [lines('deleted by the new app', deleted)] : []),
    accepted('changed_by_app', findings, report.accepted?.file ?? '--accept'),
    accepted('deleted_by_app', findings, report.accepted?.file ?? '--accept'),
  ]
    .filter(Boolean)
    .join('\n\n');
  // Under --strict only what --accept does not cover fails, as in every other check.
  return report.strict && changed.count + deleted.count > 0 ? { name, failure: { message: said, body } } : { name, note: body };
}

function fineNowCase(accept: NonNullable<VerifyReport['accepted']>): TestCase {
  const name = 'every accepted problem still exists (--accept)';
  if (accept.fine_now === null) return { name, skipped: 'not known: not every key was checked (a sample, or interrupted)' };
  if (accept.fine_now.length === 0) return { name };
  const listed = accept.fine_now.slice(0, 20).map((e) => `${e.key}${e.kind ? ` [${e.kind}${e.detail ? `:${e.detail}` : ''}]` : ''} (line ${e.line})`);
  const more = accept.fine_now.length - listed.length;
  const n = accept.fine_now.length;
  return {
    name,
    skipped:
      `${grouped(n)} ${n === 1 ? 'entry' : 'entries'} of ${accept.file} ${n === 1 ? 'has' : 'have'} no problem any more, accepted but fine now ` +
      `(remove ${n === 1 ? 'it' : 'them'}): ${listed.join(', ')}${more > 0 ? `, and ${grouped(more)} more` : ''}.`,
  };
}

/** The run failed before it could compare (a server unreachable, the schema missing): one failing check saying so. */
export function formatVerifyJunitError(message: string, sample: boolean): string {
  return junit([{ name: RAN, failure: { message, body: message } }], sample, 0);
}

function junit(cases: readonly TestCase[], sample: boolean, seconds: number): string {
  const suffix = sample ? ' (sample)' : '';
  const failures = cases.filter((t) => t.failure).length;
  const skipped = cases.filter((t) => t.skipped !== undefined).length;
  const body = cases.map((t) => {
    const inner = [
      t.failure ? `<failure message="${xml(t.failure.message)}">${xml(t.failure.body)}</failure>` : '',
      t.skipped !== undefined ? `<skipped message="${xml(t.skipped)}"/>` : '',
      t.note ? `<system-out>${xml(t.note)}</system-out>` : '',
    ].join('');
    return `    <testcase classname="migrate-users.verify" name="${xml(t.name + suffix)}" time="0">${inner}</testcase>`;
  });
  const totals = `tests="${cases.length}" failures="${failures}" errors="0" skipped="${skipped}"`;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="migrate-users verify${suffix}" ${totals}>`,
    `  <testsuite name="migrate-users verify${suffix}" ${totals} time="${seconds}">`,
    ...body,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
