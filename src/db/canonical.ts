import { sql, type RawBuilder } from 'kysely';
import { USER_COLUMNS, type UserColumn } from '../map/user-row.js';

const TIMESTAMP_COLUMNS: ReadonlySet<UserColumn> = new Set(['plan_renew_at', 'created_at', 'last_login']);
const INTEGER_COLUMNS: ReadonlySet<UserColumn> = new Set(['current_credits', 'total_credits_used']);

/**
 * One column of `alias` in the canonical text form of `UserRow` (see user-row.ts).
 * `at time zone 'UTC'` makes the output independent of the session's TimeZone setting.
 */
function canonical(alias: string, column: UserColumn): string {
  const ref = `${alias}.${column}`;
  if (TIMESTAMP_COLUMNS.has(column)) return `to_char(${ref} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
  if (INTEGER_COLUMNS.has(column)) return `${ref}::text`;
  return ref;
}

/** Selects the user columns of `alias` in canonical text form, each named `prefix` + column. */
export function canonicalColumns(alias: string, prefix = ''): RawBuilder<unknown> {
  return sql.raw(USER_COLUMNS.map((column) => `${canonical(alias, column)} as ${prefix}${column}`).join(', '));
}

export const COLUMN_LIST = sql.raw(USER_COLUMNS.join(', '));
export const SET_FROM_STAGE = sql.raw(
  USER_COLUMNS.filter((c) => c !== 'user_id')
    .map((c) => `${c} = s.${c}`)
    .join(', '),
);

const TEXT_COLUMNS: ReadonlySet<UserColumn> = new Set(['user_id', 'email', 'username', 'avatar', 'password_hash', 'current_plan_id']);

/**
 * The ledger's `base` (the row as the tool wrote it) as JSON text: canonical values in USER_COLUMNS order
 * (a column added later goes at the end: bases written before simply lack it), the password hash only as
 * `sha256:<hex>`. An array, not an object: the column names were half of every ledger row's bytes, and
 * writing them cost a fresh run about 3 s a million rows. Bases written as objects by earlier versions are
 * read too (see readBase). Built by PostgreSQL from the row written, so no row travels back and forth for it.
 */
export function canonicalJson(alias: string): RawBuilder<unknown> {
  const parts = USER_COLUMNS.map((column) =>
    column === 'password_hash' ? `'sha256:' || encode(sha256(convert_to(${alias}.${column}, 'UTF8')), 'hex')` : canonical(alias, column),
  );
  return sql.raw(`json_build_array(${parts.join(', ')})::text`);
}

/** A ledger base as written by canonicalJson (an array), or by earlier versions (an object keyed by column). */
export function readBase(base: unknown): Partial<Record<UserColumn, unknown>> | null {
  let parsed: unknown = base;
  if (typeof base === 'string') {
    try {
      parsed = JSON.parse(base);
    } catch {
      return null;
    }
  }
  if (Array.isArray(parsed)) return Object.fromEntries(USER_COLUMNS.flatMap((column, i) => (i < parsed.length ? [[column, parsed[i]]] : [])));
  return parsed !== null && typeof parsed === 'object' ? parsed : null;
}

/**
 * True when rows `a` and `b` hold the same value in every column the migration owns. Equal values have
 * equal canonical forms, so this never calls equal what `compareRows` would call different (text is
 * compared byte by byte: COLLATE "C"). It only picks out rows that need no comparison detail.
 */
export function sameRow(a: string, b: string): RawBuilder<unknown> {
  return sql.raw(
    USER_COLUMNS.map((c) => (TEXT_COLUMNS.has(c) ? `${a}.${c} collate "C" is not distinct from ${b}.${c}` : `${a}.${c} is not distinct from ${b}.${c}`)).join(
      ' and ',
    ),
  );
}
