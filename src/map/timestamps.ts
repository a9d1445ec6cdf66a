/**
 * Timestamps as the old app versions wrote them: ISO-8601 with or without offset (none = UTC),
 * or epoch seconds / milliseconds (numbers or numeric strings, optionally fractional).
 * Parsed by hand to microseconds because `Date` keeps only milliseconds and PostgreSQL keeps micros.
 */
export type TimestampResult =
  | { readonly ok: true; readonly value: string }
  | { readonly ok: false; readonly reason: 'invalid_timestamp' | 'timestamp_out_of_range'; readonly detail: string };

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;
const EPOCH = /^(\d{1,16})(?:\.(\d{1,9}))?$/;

/** 1e11 seconds is the year 5138 while 1e11 milliseconds is 1973: anything at or above is milliseconds. */
const MILLIS_THRESHOLD = 100_000_000_000;
/**
 * Accepted range: [1970-01-01, 2100-01-01). Anything else is a broken value, not a date to keep.
 * Inside it a microsecond count is a safe integer, so this runs on Number arithmetic: no BigInt and no
 * Date per timestamp (three per record, and they were a tenth of the staging CPU time).
 */
const MAX_MILLIS = Date.UTC(2100, 0, 1);

export function parseTimestamp(input: unknown): TimestampResult {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) return invalid(`not a valid epoch: ${String(input)}`);
    const text = Number.isSafeInteger(input) ? String(input) : numberToPlain(input);
    const epoch = EPOCH.exec(text);
    return epoch ? fromEpoch(text, epoch) : invalid(`not a valid epoch: ${text}`);
  }
  if (typeof input !== 'string') return invalid(`expected a string or number, got ${typeName(input)}`);
  const text = input.trim();
  const epoch = EPOCH.exec(text);
  return epoch ? fromEpoch(text, epoch) : fromIso(text);
}

/** Microseconds since the epoch (0 <= micros < 2100-01-01) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
export function formatMicros(micros: number): string {
  const days = Math.floor(micros / 86_400_000_000);
  let rest = micros - days * 86_400_000_000;
  const hour = Math.floor(rest / 3_600_000_000);
  rest -= hour * 3_600_000_000;
  const minute = Math.floor(rest / 60_000_000);
  rest -= minute * 60_000_000;
  const second = Math.floor(rest / 1_000_000);
  const fraction = rest - second * 1_000_000;
  // Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil, inverted), for days >= 0.
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  return `${year}-${two(month)}-${two(day)}T${two(hour)}:${two(minute)}:${two(second)}.${String(fraction).padStart(6, '0')}Z`;
}

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function fromEpoch(text: string, match: RegExpExecArray): TimestampResult {
  // Up to 16 digits: past 2^53 a Number is inexact, but such a value is far out of range either way.
  const whole = Number(match[1] ?? '0');
  const fraction = match[2] ?? '';
  const millis = whole >= MILLIS_THRESHOLD ? whole : whole * 1000;
  if (millis >= MAX_MILLIS) return outOfRange(text);
  const micros = whole >= MILLIS_THRESHOLD ? whole * 1000 + digits(fraction, 3) : whole * 1_000_000 + digits(fraction, 6);
  return micros >= MAX_MILLIS * 1000 ? outOfRange(text) : { ok: true, value: formatMicros(micros) };
}

/** The first `count` digits of a fraction, right-padded with zeros, as a number ("5" -> 500000 for 6). */
function digits(fraction: string, count: number): number {
  if (fraction === '') return 0;
  return Number(fraction.length >= count ? fraction.slice(0, count) : fraction.padEnd(count, '0'));
}

function fromIso(text: string): TimestampResult {
  const m = ISO.exec(text);
  if (!m) return invalid(`not ISO-8601 or epoch: ${text.slice(0, 64)}`);
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = m[4] === undefined ? 0 : Number(m[4]);
  const minute = m[5] === undefined ? 0 : Number(m[5]);
  const second = m[6] === undefined ? 0 : Number(m[6]);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return invalid(`no such date: ${text}`);
  if (hour > 23 || minute > 59 || second > 59) return invalid(`no such time: ${text}`);
  const offsetMinutes = parseOffset(m[8]);
  if (offsetMinutes === null) return invalid(`bad UTC offset: ${text}`);
  if (offsetMinutes === 0) {
    // UTC (most values): the fields are the answer, valid as checked above; only the range is left.
    if (year < 1970 || year > 2099) return outOfRange(text);
    const fraction = m[7] === undefined ? '000000' : m[7].length >= 6 ? m[7].slice(0, 6) : m[7].padEnd(6, '0');
    return { ok: true, value: `${m[1] ?? ''}-${m[2] ?? ''}-${m[3] ?? ''}T${m[4] ?? '00'}:${m[5] ?? '00'}:${m[6] ?? '00'}.${fraction}Z` };
  }
  // Date.UTC reads years 0..99 as 1900..1999; such years are out of range whatever the offset.
  if (year < 100) return outOfRange(text);
  const millis = Date.UTC(year, month - 1, day, hour, minute, second) - offsetMinutes * 60_000;
  if (millis < 0 || millis >= MAX_MILLIS) return outOfRange(text);
  return { ok: true, value: formatMicros(millis * 1000 + digits(m[7] ?? '', 6)) };
}

function parseOffset(offset: string | undefined): number | null {
  if (offset === undefined || offset === 'Z' || offset === 'z') return 0;
  const sign = offset.startsWith('-') ? -1 : 1;
  const digits = offset.slice(1).replace(':', '');
  const hours = Number(digits.slice(0, 2));
  const minutes = digits.length > 2 ? Number(digits.slice(2)) : 0;
  if (hours > 23 || minutes > 59) return null;
  return sign * (hours * 60 + minutes);
}

function outOfRange(text: string): TimestampResult {
  return { ok: false, reason: 'timestamp_out_of_range', detail: `outside 1970..2099: ${text.slice(0, 64)}` };
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  if (month !== 2) return DAYS_IN_MONTH[month - 1] ?? 0;
  // Proleptic Gregorian, as Date.UTC counts (years 0000..9999 reach here).
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
}

/** `String(1e21)` gives exponent notation; epochs that large are out of range anyway. */
function numberToPlain(value: number): string {
  return value >= 1e16 ? '9999999999999999' : value.toFixed(6).replace(/\.?0+$/, '');
}

function invalid(detail: string): TimestampResult {
  return { ok: false, reason: 'invalid_timestamp', detail };
}

export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}
