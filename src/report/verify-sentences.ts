import type { DifferenceKind } from '../results/verify-report.js';
import type { CellValue } from '../compare/compare-rows.js';
import { grouped } from './summary.js';
import type { Finding, Listing } from './verify-findings.js';

/** The checks verify makes, one JUnit test case each; each lists only its own failures. */
export const CHECKS: readonly { readonly kind: DifferenceKind; readonly name: string; readonly problem: (n: number) => string }[] = [
  {
    kind: 'missing',
    name: 'every valid Redis user has a row in PostgreSQL',
    problem: (n) => (n === 1 ? '1 user in Redis has no row in PostgreSQL' : `${grouped(n)} users in Redis have no row in PostgreSQL`),
  },
  {
    kind: 'mismatch',
    name: 'every row holds what migrate would write from its Redis record',
    problem: (n) => `${grouped(n)} ${n === 1 ? 'user differs' : 'users differ'} between Redis and PostgreSQL`,
  },
  {
    kind: 'stale',
    name: 'every Redis change since the tool last wrote the user is migrated',
    problem: (n) =>
      `${grouped(n)} ${n === 1 ? 'user has' : 'users have'} changed in Redis since the tool last wrote ${n === 1 ? 'it' : 'them'}, rows untouched: run migrate again`,
  },
  {
    kind: 'conflict',
    name: 'no user changed in both Redis and PostgreSQL since the tool last wrote it',
    problem: (n) =>
      `${grouped(n)} ${n === 1 ? 'user has' : 'users have'} changed in both Redis and PostgreSQL since the tool last wrote ${n === 1 ? 'it' : 'them'}: reconcile`,
  },
  {
    kind: 'not_migratable',
    name: 'every Redis record can be migrated',
    problem: (n) => `${grouped(n)} Redis ${n === 1 ? 'record cannot' : 'records cannot'} be migrated`,
  },
  {
    kind: 'deleted_in_redis',
    name: 'every row the tool wrote still has its Redis record',
    problem: (n) => `${grouped(n)} ${n === 1 ? 'row the tool wrote has' : 'rows the tool wrote have'} no Redis record any more`,
  },
  {
    kind: 'only_in_postgres',
    name: 'no rows only in PostgreSQL (--strict)',
    problem: (n) => `${grouped(n)} ${n === 1 ? 'row is' : 'rows are'} only in PostgreSQL, with no Redis record (--strict)`,
  },
];

/** A value as a person reads it in a sentence: numbers and timestamps bare, other text quoted, null as none. */
export function spoken(value: CellValue | undefined): string {
  if (value === null || value === undefined) return 'none';
  if (typeof value === 'boolean' || value === '(set)' || /^-?\d+(\.\d+)?$/.test(value) || /^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(value)) return String(value);
  const text = value.replace(/\s+/g, ' ');
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 39)}…` : text);
}

/** One record in a sentence: who it is and what is wrong with it (`brief`: a record's reason without its detail). */
export function describeFinding(finding: Finding, brief = false): string {
  const who = finding.email ?? finding.key ?? finding.user_id ?? '(unknown)';
  const [first] = finding.differences;
  switch (finding.kind) {
    case 'mismatch':
    case 'stale':
    case 'conflict':
    case 'changed_by_app': {
      const [was, now] = finding.kind === 'changed_by_app' ? ['written', 'now'] : ['Redis', 'PostgreSQL'];
      const why = finding.kind === 'conflict' && !brief && first?.reason ? `${first.reason}: ` : '';
      if (first?.column === null) return `${who} (${why}${first.detail ?? 'row gone'})`;
      return `${who} (${why}${finding.differences
        .map((d) => `${d.column ?? '(row)'}: ${was} ${spoken(d.expected)}, ${now} ${spoken(d.actual)}${d.accepted && !finding.accepted ? ' [accepted]' : ''}`)
        .join('; ')})`;
    }
    case 'not_migratable': {
      const detail = brief ? '' : (first?.detail ?? '').replace(/\s+/g, ' ');
      return `${finding.key ?? who} (${first?.reason ?? 'not migratable'}${detail ? `: ${detail.length > 80 ? `${detail.slice(0, 79)}…` : detail}` : ''})`;
    }
    case 'missing':
    case 'deleted_by_app':
    case 'only_in_postgres':
    case 'deleted_in_redis':
      return finding.user_id && finding.user_id !== who ? `${who} (user_id ${finding.user_id})` : who;
  }
}

const acceptedBecause = (finding: Finding): string => {
  const accepted = finding.differences[0]?.accepted;
  return accepted ? ` (accepted, line ${accepted.line}: ${accepted.reason})` : '';
};

/** "3 users differ between Redis and PostgreSQL: a@x.test (…), b@x.test (…), and 1 more." The body's lines have the details. */
export function sentence(headline: string, listing: Listing<Finding>, withReason = false): string {
  const items = listing.first.map((f) => describeFinding(f, true) + (withReason ? acceptedBecause(f) : ''));
  const more = listing.count - listing.first.length;
  if (items.length === 0) return `${headline} (listed in the --report).`;
  return `${headline}: ${items.join(', ')}${more > 0 ? `${items.length > 1 ? ',' : ''} and ${grouped(more)} more` : ''}.`;
}

/** The same as a list, one record a line, for the body of a JUnit failure. */
export function lines(headline: string, listing: Listing<Finding>, withReason = false): string {
  const more = listing.count - listing.first.length;
  return [
    `${headline}:`,
    ...listing.first.map((f) => `  - ${describeFinding(f)}${withReason ? acceptedBecause(f) : ''}`),
    ...(more > 0 ? [`  and ${grouped(more)} more (all of them are in the --report)`] : []),
  ].join('\n');
}
