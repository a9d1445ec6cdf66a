/**
 * Timestamps as the old app versions wrote them: ISO-8601 with or without offset (none = UTC),
 * or epoch seconds / milliseconds (numbers or numeric strings, optionally fractional).
 * Parsed by hand to microseconds because `Date` keeps only milliseconds and PostgreSQL keeps micros.
 */
export type TimestampResult =
  | { readonly ok: true; readonly value: string }
  | { readonly ok: false; readonly reason: 'invalid_timestamp' | 'timestamp_out_of_range'; readonly detail: string };

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;
const EPOCH = /^(\d{1,16})(?:\.(\d{1,9}))?$/;

/** 1e11 seconds is the year 5138 while 1e11 milliseconds is 1973: anything at or above is milliseconds. */
const MILLIS_THRESHOLD = 100_000_000_000n;
/** Accepted range: [1970-01-01, 2100-01-01). Anything else is a broken value, not a date to keep. */
const MIN_MICROS = 0n;
const MAX_MICROS = BigInt(Date.UTC(2100, 0, 1)) * 1000n;

export function parseTimestamp(input: unknown): TimestampResult {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) return invalid(`not a valid epoch: ${String(input)}`);
    return fromEpoch(numberToPlain(input));
  }
  if (typeof input !== 'string') return invalid(`expected a string or number, got ${typeName(input)}`);
  const text = input.trim();
  if (EPOCH.test(text)) return fromEpoch(text);
  return fromIso(text);
}

export function formatMicros(micros: bigint): string {
  // Within 1970..2099 a microsecond count is a safe integer: Number arithmetic, not BigInt (once per timestamp).
  const value = Number(micros);
  const millis = Math.floor(value / 1000);
  const rest = value - millis * 1000;
  const iso = new Date(millis).toISOString();
  return `${iso.slice(0, -1)}${rest < 10 ? '00' : rest < 100 ? '0' : ''}${rest}Z`;
}

function fromEpoch(text: string): TimestampResult {
  const match = EPOCH.exec(text);
  if (!match) return invalid(`not a valid epoch: ${text}`);
  const whole = BigInt(match[1] ?? '0');
  const fraction = match[2] ?? '';
  const micros =
    whole >= MILLIS_THRESHOLD
      ? whole * 1000n + BigInt(fraction.padEnd(3, '0').slice(0, 3))
      : whole * 1_000_000n + BigInt(fraction.padEnd(6, '0').slice(0, 6));
  return inRange(micros, text);
}

function fromIso(text: string): TimestampResult {
  const m = ISO.exec(text);
  if (!m) return invalid(`not ISO-8601 or epoch: ${text.slice(0, 64)}`);
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((part) =>
    Number(part ?? '0'),
  ) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return invalid(`no such date: ${text}`);
  if (hour > 23 || minute > 59 || second > 59) return invalid(`no such time: ${text}`);
  const offsetMinutes = parseOffset(m[8]);
  if (offsetMinutes === null) return invalid(`bad UTC offset: ${text}`);
  const millis = Date.UTC(year, month - 1, day, hour, minute, second) - offsetMinutes * 60_000;
  const fraction = BigInt((m[7] ?? '').padEnd(6, '0').slice(0, 6));
  return inRange(BigInt(millis) * 1000n + fraction, text);
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

function inRange(micros: bigint, text: string): TimestampResult {
  if (micros < MIN_MICROS || micros >= MAX_MICROS) {
    return { ok: false, reason: 'timestamp_out_of_range', detail: `outside 1970..2099: ${text.slice(0, 64)}` };
  }
  return { ok: true, value: formatMicros(micros) };
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
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
