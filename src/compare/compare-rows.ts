import { createHash } from 'node:crypto';
import { SECRET_COLUMNS, USER_COLUMNS, type UserColumn, type UserRow } from '../map/user-row.js';

export type CellValue = string | boolean | null;

export interface ColumnDiff {
  readonly column: UserColumn;
  readonly expected: CellValue;
  readonly actual: CellValue;
}

/**
 * The one comparison of the tool: the row migrate would write (from Redis) against the row PostgreSQL
 * holds, both in canonical form. Secret columns are compared but their values never leave this
 * function: a difference shows only whether each side is set.
 */
export function compareRows(expected: UserRow, actual: UserRow): ColumnDiff[] {
  const diffs: ColumnDiff[] = [];
  for (const column of USER_COLUMNS) {
    if (expected[column] === actual[column]) continue;
    diffs.push({ column, expected: shown(column, expected[column]), actual: shown(column, actual[column]) });
  }
  return diffs;
}

/**
 * The row now against the ledger's base (the row as the tool last wrote it, canonical values, the password
 * hash as `sha256:<hex>`): `expected` is what the tool wrote, `actual` what the row holds now. Secrets as in
 * compareRows. A column the base lacks (written by an older version) is not compared.
 */
export function compareWithBase(base: Readonly<Partial<Record<UserColumn, unknown>>>, actual: UserRow): ColumnDiff[] {
  const diffs: ColumnDiff[] = [];
  for (const column of USER_COLUMNS) {
    if (!(column in base)) continue;
    // Bases hold canonical text, booleans and nulls (canonicalJson): anything else is no value the tool wrote.
    const raw = base[column] ?? null;
    const written: CellValue = raw === null || typeof raw === 'boolean' || typeof raw === 'string' ? raw : JSON.stringify(raw);
    const hash = actual.password_hash;
    const now = column === 'password_hash' && hash !== null ? `sha256:${createHash('sha256').update(hash, 'utf8').digest('hex')}` : actual[column];
    if (now === written) continue;
    diffs.push({ column, expected: shown(column, written), actual: shown(column, actual[column]) });
  }
  return diffs;
}

/** A row for reports: secret columns say only whether they are set. */
export function publicRow(row: UserRow): Record<UserColumn, CellValue> {
  const out = {} as Record<UserColumn, CellValue>;
  for (const column of USER_COLUMNS) out[column] = shown(column, row[column]);
  return out;
}

function shown(column: UserColumn, value: CellValue): CellValue {
  if (!SECRET_COLUMNS.has(column) || value === null) return value;
  return '(set)';
}

/** Builds a UserRow from a query result whose columns carry `prefix` (see canonicalColumns). */
export function rowFromRecord(record: Record<string, unknown>, prefix: string): UserRow {
  const get = (column: UserColumn): string | null => {
    const value = record[`${prefix}${column}`];
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- canonicalColumns gives text, and booleans for the boolean column
    return value === null || value === undefined ? null : String(value);
  };
  return {
    user_id: get('user_id') ?? '',
    email: get('email') ?? '',
    username: get('username'),
    avatar: get('avatar'),
    password_hash: get('password_hash'),
    current_credits: get('current_credits') ?? '0',
    total_credits_used: get('total_credits_used') ?? '0',
    signup_bonus_granted: record[`${prefix}signup_bonus_granted`] === true,
    current_plan_id: get('current_plan_id'),
    plan_renew_at: get('plan_renew_at'),
    created_at: get('created_at'),
    last_login: get('last_login'),
  };
}
