import { CONFLICT_REASONS, REJECT_REASONS } from '../map/reasons.js';
import { USER_COLUMNS } from '../map/user-row.js';
import { COLUMN_KINDS, type AcceptEntry, type Difference, type DifferenceKind } from '../results/verify-report.js';

export const DIFFERENCE_KINDS: readonly DifferenceKind[] = [
  'mismatch',
  'stale',
  'conflict',
  'changed_by_app',
  'deleted_by_app',
  'missing',
  'not_migratable',
  'deleted_in_redis',
  'only_in_postgres',
];

const MISSING_REASON = 'has no reason: write the key, optionally [kind], then why the problem is accepted';

/**
 * The accept file (docs/verify-in-ci.md "Accepting known problems"): one entry a line, `#` starts a comment line.
 *
 *     <key or user_id>  [kind[:column or reason]]  reason text
 *
 * A key with spaces is written as a JSON string. Returns every problem with its line number.
 */
export function parseAcceptList(text: string): { entries: AcceptEntry[]; problems: string[] } {
  const entries: AcceptEntry[] = [];
  const problems: string[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    const content = raw.trim();
    if (content === '' || content.startsWith('#')) return;
    const parsed = parseLine(content);
    if (typeof parsed === 'string') {
      problems.push(`line ${line}: ${parsed}`);
      return;
    }
    const id = `${parsed.key}\u0000${parsed.kind ?? ''}\u0000${parsed.detail ?? ''}`;
    const earlier = seen.get(id);
    if (earlier !== undefined) {
      problems.push(`line ${line}: repeats line ${earlier}`);
      return;
    }
    seen.set(id, line);
    entries.push({ line, ...parsed });
  });
  return { entries, problems };
}

function parseLine(content: string): Omit<AcceptEntry, 'line'> | string {
  let key: string;
  let rest: string;
  if (content.startsWith('"')) {
    const end = closingQuote(content);
    if (end < 0) return 'the quoted key has no closing quote';
    try {
      key = JSON.parse(content.slice(0, end + 1)) as string;
    } catch {
      return `the quoted key ${content.slice(0, end + 1)} is not a valid JSON string`;
    }
    rest = content.slice(end + 1);
    if (rest !== '' && !/^\s/.test(rest)) return 'the quoted key must be followed by a space';
  } else {
    key = content.split(/\s/, 1)[0] ?? '';
    rest = content.slice(key.length);
  }
  rest = rest.trim();
  if (key === '') return 'the key is empty';
  let kind: DifferenceKind | undefined;
  let detail: string | undefined;
  const bracket = /^\[([^\]]*)\]/.exec(rest);
  if (bracket) {
    const inside = bracket[1] ?? '';
    const [name = '', sub] = inside.trim().split(':', 2);
    if (!DIFFERENCE_KINDS.includes(name as DifferenceKind)) return `[${inside}]: the kind must be one of ${DIFFERENCE_KINDS.join(', ')}`;
    kind = name as DifferenceKind;
    if (sub !== undefined) {
      const problem = checkDetail(kind, sub);
      if (problem) return `[${inside}]: ${problem}`;
      detail = sub;
    }
    rest = rest.slice(bracket[0].length).trim();
  }
  if (rest === '') return `"${key}" ${MISSING_REASON}`;
  return { key, kind, detail, reason: rest };
}

function checkDetail(kind: DifferenceKind, detail: string): string | undefined {
  if (COLUMN_KINDS.has(kind))
    return (USER_COLUMNS as readonly string[]).includes(detail) ? undefined : `"${detail}" is not a column (${USER_COLUMNS.join(', ')})`;
  if (kind === 'not_migratable') {
    const reasons: readonly string[] = [...REJECT_REASONS, ...CONFLICT_REASONS];
    return reasons.includes(detail) ? undefined : `"${detail}" is not a reason code (see docs/reports.md "Records not migrated")`;
  }
  return `${kind} takes no column or reason`;
}

function closingQuote(text: string): number {
  for (let i = 1; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return -1;
}

/** Entries by key and by user_id, so each difference is matched in constant time. */
export class AcceptList {
  private readonly byId = new Map<string, AcceptEntry[]>();

  constructor(
    /** As given on the command line; named in the outputs. */
    readonly file: string,
    readonly entries: readonly AcceptEntry[],
  ) {
    for (const entry of entries) {
      const list = this.byId.get(entry.key);
      if (list) list.push(entry);
      else this.byId.set(entry.key, [entry]);
    }
  }

  /**
   * The entries that accept this difference (same key or user_id; same kind, column or reason where given),
   * the most specific first: its reason is the one shown.
   */
  matches(difference: Difference): AcceptEntry[] {
    const candidates = [
      ...(difference.key === null ? [] : (this.byId.get(difference.key) ?? [])),
      ...(difference.user_id === null || difference.user_id === difference.key ? [] : (this.byId.get(difference.user_id) ?? [])),
    ];
    const detail = COLUMN_KINDS.has(difference.kind) ? difference.column : difference.kind === 'not_migratable' ? (difference.reason ?? null) : null;
    return candidates
      .filter((entry) => (entry.kind === undefined || entry.kind === difference.kind) && (entry.detail === undefined || entry.detail === detail))
      .sort((a, b) => specificity(b) - specificity(a));
  }
}

const specificity = (entry: AcceptEntry) => (entry.detail !== undefined ? 2 : entry.kind !== undefined ? 1 : 0);
