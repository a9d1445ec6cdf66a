import { parseTimestamp, typeName } from './timestamps.js';
import type { RejectReason } from './reasons.js';
import type { UserColumn, UserRow } from './user-row.js';
import type { ColumnLimits } from '../db/target.js';

export interface MapContext {
  /** Normalised emails of whitelisted users. */
  readonly whitelist: ReadonlySet<string>;
  readonly whitelistCredits: bigint;
  /** What the target's columns can hold (see db/target.ts): a value beyond is a reject, not a failed batch. */
  readonly limits?: ColumnLimits | undefined;
}

export interface Mapped {
  readonly ok: true;
  readonly row: UserRow;
  /** Credits as Redis held them, before the whitelist rule. */
  readonly sourceCredits: bigint;
  readonly topup: bigint;
}

export interface Rejected {
  readonly ok: false;
  readonly reason: RejectReason;
  readonly detail: string;
  readonly userId?: string;
}

export type MapResult = Mapped | Rejected;

/** The column credits live in is int8, but no real balance comes near int4's top: past it a value is broken. */
export const MAX_CREDITS = 2_147_483_647n;
const USER_ID = /^[\x21-\x7e]{1,128}$/;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

/** Trim, Unicode NFC, lower-case: how emails are compared and stored (the unique index is case-sensitive). */
export function normaliseEmail(email: string): string {
  return email.trim().normalize('NFC').toLowerCase();
}

class Reject extends Error {
  constructor(
    readonly reason: RejectReason,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/**
 * Maps one Redis value (the JSON of the old app's `User`) to the row migrate writes.
 * Pure: the same input always gives the same row or the same rejection.
 */
export function mapRecord(keyEmail: string, value: string, ctx: MapContext): MapResult {
  let userId: string | undefined;
  try {
    const record = parseObject(value);
    userId = readUserId(record);
    const email = readEmail(record, keyEmail);
    const sourceCredits = readCredits(record, ['current_credits', 'credits']);
    const whitelisted = ctx.whitelist.has(email) && ctx.whitelistCredits > sourceCredits;
    const credits = whitelisted ? ctx.whitelistCredits : sourceCredits;
    const row: UserRow = {
      user_id: userId,
      email,
      username: readText(record, ['username']),
      avatar: readText(record, ['avatar']),
      password_hash: readText(record, ['password_hash']),
      current_credits: credits.toString(),
      total_credits_used: readCredits(record, ['total_credits_used', 'credits_used']).toString(),
      signup_bonus_granted: true,
      current_plan_id: readPlan(record),
      plan_renew_at: readTimestamp(record, 'plan_renew_at'),
      created_at: readTimestamp(record, 'created_at'),
      last_login: readTimestamp(record, 'last_login'),
    };
    if (ctx.limits) checkLimits(row, ctx.limits);
    return { ok: true, row, sourceCredits, topup: credits - sourceCredits };
  } catch (error) {
    if (!(error instanceof Reject)) throw error;
    return userId === undefined ? { ok: false, reason: error.reason, detail: error.detail } : { ok: false, reason: error.reason, detail: error.detail, userId };
  }
}

/** The row as written must fit the target's columns: varchar(n) counts characters (code points). */
function checkLimits(row: UserRow, limits: ColumnLimits): void {
  for (const column of limits.required ?? []) {
    if (row[column] === null) throw new Reject('value_missing', `${column} is missing, and the column is NOT NULL`);
  }
  for (const [column, limit] of Object.entries(limits.length) as [UserColumn, number][]) {
    const value = row[column];
    if (typeof value !== 'string' || value.length <= limit) continue;
    // eslint-disable-next-line @typescript-eslint/no-misused-spread -- code points are what varchar(n) counts, not graphemes
    const characters = [...value].length;
    if (characters > limit) throw new Reject('value_too_long', `${column} is ${characters} characters > varchar(${limit})`);
  }
  for (const [column, max] of Object.entries(limits.max) as [UserColumn, bigint][]) {
    const value = row[column];
    if (typeof value === 'string' && BigInt(value) > max) throw new Reject('value_out_of_range', `${column} ${value} > ${max}, the most its column holds`);
  }
}

function parseObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new Reject('not_json', `value is not JSON (${value.length} chars)`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Reject('not_object', `value is JSON ${typeName(parsed)}, not an object`);
  }
  return parsed as Record<string, unknown>;
}

/** Reads a field under any of its aliases; present-but-null counts as absent. Aliases that disagree are refused. */
function pick(record: Record<string, unknown>, names: readonly string[]): { name: string; value: unknown } | undefined {
  let found: { name: string; value: unknown } | undefined;
  for (const name of names) {
    // Own properties only: JSON.parse keeps "__proto__" as an own key, and nothing is copied from the record.
    if (!Object.hasOwn(record, name)) continue;
    const value = record[name];
    if (value === null || value === undefined) continue;
    // Compared as text, so 5 and "5" agree (and so do 5 and [5], or any two objects): the first alias found is
    // the one the field's own check reads.
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- on purpose, as said above
    if (found && String(found.value) !== String(value)) {
      throw new Reject('ambiguous_field', `${found.name}=${short(found.value)} but ${name}=${short(value)}`);
    }
    found ??= { name, value };
  }
  return found;
}

function readUserId(record: Record<string, unknown>): string {
  const field = pick(record, ['user_id']);
  if (!field) throw new Reject('missing_user_id', 'no user_id in record');
  if (typeof field.value !== 'string' || !USER_ID.test(field.value)) {
    throw new Reject('invalid_user_id', `user_id must be 1-128 printable ASCII characters, got ${short(field.value)}`);
  }
  return field.value;
}

function readEmail(record: Record<string, unknown>, keyEmail: string): string {
  const fromKey = normaliseEmail(keyEmail);
  if (!isEmail(fromKey)) throw new Reject('invalid_key_email', `key does not end in an email: ${short(keyEmail)}`);
  const field = pick(record, ['email']);
  if (!field) return fromKey;
  if (typeof field.value !== 'string') throw new Reject('invalid_email', `email is ${typeName(field.value)}`);
  const fromBody = normaliseEmail(field.value);
  if (!isEmail(fromBody)) throw new Reject('invalid_email', `not an email: ${short(field.value)}`);
  if (fromBody !== fromKey) throw new Reject('email_mismatch', `key says ${fromKey}, record says ${fromBody}`);
  return fromBody;
}

function isEmail(email: string): boolean {
  return email.length <= 254 && EMAIL.test(email) && isCleanText(email);
}

function readCredits(record: Record<string, unknown>, names: readonly string[]): bigint {
  const field = pick(record, names);
  if (!field) return 0n;
  const { name, value } = field;
  let credits: bigint;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Reject('invalid_credits', `${name} is not an integer: ${value}`);
    if (!Number.isSafeInteger(value)) throw new Reject('credits_out_of_range', `${name} too large: ${value}`);
    credits = BigInt(value);
  } else if (typeof value === 'string' && /^\s*[+-]?\d{1,30}\s*$/.test(value)) {
    credits = BigInt(value.trim());
  } else {
    throw new Reject('invalid_credits', `${name} is not an integer: ${short(value)}`);
  }
  if (credits < 0n) throw new Reject('negative_credits', `${name} is negative: ${credits}`);
  if (credits > MAX_CREDITS) throw new Reject('credits_out_of_range', `${name} above ${MAX_CREDITS}: ${credits}`);
  return credits;
}

function readText(record: Record<string, unknown>, names: readonly string[]): string | null {
  const field = pick(record, names);
  if (!field) return null;
  if (typeof field.value !== 'string') throw new Reject('invalid_field', `${field.name} is ${typeName(field.value)}`);
  if (!isCleanText(field.value)) {
    throw new Reject('invalid_text', `${field.name} holds a NUL byte or broken Unicode (PostgreSQL text refuses it)`);
  }
  return field.value;
}

function readPlan(record: Record<string, unknown>): string | null {
  const field = pick(record, ['current_plan_id', 'plan_id', 'plan']);
  if (field && typeof field.value === 'number' && Number.isSafeInteger(field.value)) return String(field.value);
  return field ? readText(record, [field.name]) : null;
}

function readTimestamp(record: Record<string, unknown>, name: string): string | null {
  const field = pick(record, [name]);
  if (!field) return null;
  const parsed = parseTimestamp(field.value);
  if (!parsed.ok) throw new Reject(parsed.reason, `${name}: ${parsed.detail}`);
  return parsed.value;
}

function isCleanText(text: string): boolean {
  return !text.includes('\u0000') && text.isWellFormed();
}

function short(value: unknown): string {
  // JSON.stringify returns undefined for undefined and functions, which its type does not say.
  const text = typeof value === 'string' ? JSON.stringify(value) : ((JSON.stringify(value) as string | undefined) ?? typeName(value));
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
