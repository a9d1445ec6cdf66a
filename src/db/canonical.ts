import { sql, type RawBuilder } from 'kysely';
import { USER_COLUMNS, type UserColumn } from '../map/user-row.js';

const TIMESTAMP_COLUMNS: ReadonlySet<UserColumn> = new Set(['plan_renew_at', 'created_at', 'last_login']);
const INTEGER_COLUMNS: ReadonlySet<UserColumn> = new Set(['current_credits', 'total_credits_used']);

/**
 * Selects the user columns of `alias` in the canonical text form of `UserRow` (see user-row.ts).
 * `at time zone 'UTC'` makes the output independent of the session's TimeZone setting.
 */
export function canonicalColumns(alias: string, prefix = ''): RawBuilder<unknown> {
  const parts = USER_COLUMNS.map((column) => {
    const ref = `${alias}.${column}`;
    if (TIMESTAMP_COLUMNS.has(column)) {
      return `to_char(${ref} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as ${prefix}${column}`;
    }
    if (INTEGER_COLUMNS.has(column)) return `${ref}::text as ${prefix}${column}`;
    return `${ref} as ${prefix}${column}`;
  });
  return sql.raw(parts.join(', '));
}

export const COLUMN_LIST = sql.raw(USER_COLUMNS.join(', '));
export const SET_FROM_STAGE = sql.raw(
  USER_COLUMNS.filter((c) => c !== 'user_id')
    .map((c) => `${c} = s.${c}`)
    .join(', '),
);

