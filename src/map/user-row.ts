import * as crypto from 'node:crypto';

/** One-shot hashing (Node >= 20.12) is about twice as fast as createHash() for a short text: once per record. */
const sha256hex: (text: string) => string =
  typeof crypto.hash === 'function' ? (text) => crypto.hash('sha256', text, 'hex') : (text) => crypto.createHash('sha256').update(text).digest('hex');

/**
 * A `users` row in canonical text form: credits as decimal strings (int8 arrives from node-postgres
 * as a string, and money is never a float), timestamps as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds,
 * UTC, the precision PostgreSQL keeps). Redis-side rows and PostgreSQL-side rows use the same form,
 * so one comparison serves migrate, dry-run and verify.
 */
export interface UserRow {
  readonly user_id: string;
  readonly email: string;
  readonly username: string | null;
  readonly avatar: string | null;
  readonly password_hash: string | null;
  readonly current_credits: string;
  readonly total_credits_used: string;
  readonly signup_bonus_granted: boolean;
  readonly current_plan_id: string | null;
  readonly plan_renew_at: string | null;
  readonly created_at: string | null;
  readonly last_login: string | null;
}

export type UserColumn = keyof UserRow;

/** Every column the migration owns, in table order. `updated_at` and any other column belong to the app. */
export const USER_COLUMNS: readonly UserColumn[] = [
  'user_id',
  'email',
  'username',
  'avatar',
  'password_hash',
  'current_credits',
  'total_credits_used',
  'signup_bonus_granted',
  'current_plan_id',
  'plan_renew_at',
  'created_at',
  'last_login',
];

export const SECRET_COLUMNS: ReadonlySet<UserColumn> = new Set<UserColumn>(['password_hash']);

/**
 * Stable fingerprint of a Redis record as mapped: lets a re-run tell "Redis changed since we wrote it" without
 * keeping values. `sourceCredits` (the balance as Redis holds it) stands for current_credits, so a change of
 * the tool's whitelist is never taken for a change of the record.
 */
export function rowDigest(row: UserRow, sourceCredits: bigint | string = row.current_credits): string {
  let text = '';
  for (const column of USER_COLUMNS) {
    const value = column === 'current_credits' ? sourceCredits : row[column];
    text += value === null ? '\u0000N\u0002' : `\u0001${String(value)}\u0002`;
  }
  return sha256hex(text).slice(0, 32);
}
