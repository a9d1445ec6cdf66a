import { describe, expect, it } from 'vitest';
import { mapRecord, normaliseEmail, type MapContext } from '../../src/map/map-record.js';
import { parseTimestamp } from '../../src/map/timestamps.js';
import { rowDigest } from '../../src/map/user-row.js';

const ctx: MapContext = { whitelist: new Set(['vip@example.com']), whitelistCredits: 100_000n };
const base = { user_id: 'usr_1', email: 'a@example.com', current_credits: 100 };
const map = (record: unknown, keyEmail = 'a@example.com') => mapRecord(keyEmail, JSON.stringify(record), ctx);

describe('mapRecord: accepted records', () => {
  it('maps a full record with canonical values and the signup flag', () => {
    const result = map({
      ...base,
      username: 'alice',
      avatar: null,
      password_hash: '$2b$12$abc',
      total_credits_used: '7',
      current_plan_id: 'pro',
      plan_renew_at: '2026-01-02T03:04:05.123456+02:00',
      created_at: 1700000000,
      last_login: 1700000000123,
      extra_field: { nested: true },
    });
    expect(result).toEqual({
      ok: true,
      sourceCredits: 100n,
      topup: 0n,
      row: {
        user_id: 'usr_1',
        email: 'a@example.com',
        username: 'alice',
        avatar: null,
        password_hash: '$2b$12$abc',
        current_credits: '100',
        total_credits_used: '7',
        signup_bonus_granted: true,
        current_plan_id: 'pro',
        plan_renew_at: '2026-01-02T01:04:05.123456Z',
        created_at: '2023-11-14T22:13:20.000000Z',
        last_login: '2023-11-14T22:13:20.123000Z',
      },
    });
  });

  it.each([
    ['credits alias', { user_id: 'u', credits: '42' }, 'current_credits', '42'],
    ['credits_used alias', { user_id: 'u', credits_used: 3 }, 'total_credits_used', '3'],
    ['plan_id alias', { user_id: 'u', plan_id: 'basic' }, 'current_plan_id', 'basic'],
    ['plan alias, numeric', { user_id: 'u', plan: 7 }, 'current_plan_id', '7'],
    ['missing credits are 0', { user_id: 'u' }, 'current_credits', '0'],
    ['null credits are 0', { user_id: 'u', current_credits: null }, 'current_credits', '0'],
    ['agreeing aliases', { user_id: 'u', credits: 5, current_credits: '5' }, 'current_credits', '5'],
    ['email from key when body has none', { user_id: 'u' }, 'email', 'a@example.com'],
    ['no offset means UTC', { user_id: 'u', created_at: '2024-05-06T07:08:09' }, 'created_at', '2024-05-06T07:08:09.000000Z'],
    ['space separator, comma fraction', { user_id: 'u', created_at: '2024-05-06 07:08:09,5' }, 'created_at', '2024-05-06T07:08:09.500000Z'],
    ['date only', { user_id: 'u', created_at: '2024-05-06' }, 'created_at', '2024-05-06T00:00:00.000000Z'],
    ['epoch seconds as string', { user_id: 'u', created_at: '1700000000' }, 'created_at', '2023-11-14T22:13:20.000000Z'],
    ['fractional epoch seconds', { user_id: 'u', created_at: 1700000000.25 }, 'created_at', '2023-11-14T22:13:20.250000Z'],
    ['epoch millis', { user_id: 'u', last_login: 1700000000999 }, 'last_login', '2023-11-14T22:13:20.999000Z'],
    ['offset without colon', { user_id: 'u', created_at: '2024-01-01T00:30:00-0130' }, 'created_at', '2024-01-01T02:00:00.000000Z'],
    ['nanoseconds truncated to micros', { user_id: 'u', created_at: '2024-01-01T00:00:00.123456789Z' }, 'created_at', '2024-01-01T00:00:00.123456Z'],
  ])('%s', (_name, record, column, expected) => {
    const result = map(record);
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.row[column as keyof typeof result.row]).toBe(expected);
  });

  it('normalises emails: trim, lower-case, NFC, and compares key and body ignoring case', () => {
    const result = map({ user_id: 'u', email: '  Cafe\u0301@Example.COM ' }, 'CAFÉ@example.com');
    expect(result.ok && result.row.email).toBe('caf\u00e9@example.com');
    expect(normaliseEmail(' A+tag@B.io ')).toBe('a+tag@b.io');
  });

  it('whitelist: max(redis credits, whitelist credits) and the top-up is reported', () => {
    const low = map({ user_id: 'v', email: 'VIP@example.com', credits: 50 }, 'vip@example.com');
    expect(low.ok && [low.row.current_credits, low.sourceCredits, low.topup]).toEqual(['100000', 50n, 99_950n]);
    const high = map({ user_id: 'v', credits: 250_000 }, 'vip@example.com');
    expect(high.ok && [high.row.current_credits, high.topup]).toEqual(['250000', 0n]);
  });

  it('keeps a "__proto__" key from changing anything', () => {
    const result = mapRecord('a@example.com', '{"user_id":"u","__proto__":{"current_credits":999}}', ctx);
    expect(result.ok && result.row.current_credits).toBe('0');
  });
});

describe('mapRecord: rejected records', () => {
  it.each([
    ['not JSON', 'not json{', 'not_json'],
    ['empty string', '', 'not_json'],
    ['JSON array', '[1,2]', 'not_object'],
    ['JSON string', '"hello"', 'not_object'],
    ['JSON null', 'null', 'not_object'],
  ])('%s', (_name, raw, reason) => {
    expect(mapRecord('a@example.com', raw, ctx)).toMatchObject({ ok: false, reason });
  });

  it.each([
    ['missing user_id', { email: 'a@example.com' }, 'missing_user_id'],
    ['numeric user_id', { user_id: 42 }, 'invalid_user_id'],
    ['user_id with spaces', { user_id: 'usr 1' }, 'invalid_user_id'],
    ['email mismatch', { user_id: 'u', email: 'b@example.com' }, 'email_mismatch'],
    ['email not a string', { user_id: 'u', email: 5 }, 'invalid_email'],
    ['email without @', { user_id: 'u', email: 'nope' }, 'invalid_email'],
    ['negative credits', { user_id: 'u', credits: -5 }, 'negative_credits'],
    ['negative credits string', { user_id: 'u', current_credits: '-1' }, 'negative_credits'],
    ['fractional credits', { user_id: 'u', credits: 1.5 }, 'invalid_credits'],
    ['credits as word', { user_id: 'u', credits: 'lots' }, 'invalid_credits'],
    ['credits as boolean', { user_id: 'u', credits: true }, 'invalid_credits'],
    ['credits too large', { user_id: 'u', credits: 3_000_000_000 }, 'credits_out_of_range'],
    ['credits beyond 2^53', { user_id: 'u', credits: '99999999999999999999' }, 'credits_out_of_range'],
    ['negative credits used', { user_id: 'u', total_credits_used: -1 }, 'negative_credits'],
    ['aliases disagree', { user_id: 'u', credits: 5, current_credits: 6 }, 'ambiguous_field'],
    ['username not text', { user_id: 'u', username: { a: 1 } }, 'invalid_field'],
    ['NUL in username', { user_id: 'u', username: 'a\u0000b' }, 'invalid_text'],
    ['lone surrogate', { user_id: 'u', avatar: '\ud800' }, 'invalid_text'],
    ['bad date', { user_id: 'u', created_at: '2024-02-30T00:00:00Z' }, 'invalid_timestamp'],
    ['garbage date', { user_id: 'u', last_login: 'yesterday' }, 'invalid_timestamp'],
    ['date before 1970', { user_id: 'u', created_at: '1969-12-31T23:59:59Z' }, 'timestamp_out_of_range'],
    ['date after 2099', { user_id: 'u', plan_renew_at: '2100-01-01T00:00:00Z' }, 'timestamp_out_of_range'],
    ['a year before 100 (Date.UTC would read 0075 as 1975)', { user_id: 'u', created_at: '0075-06-01T00:00:00Z' }, 'timestamp_out_of_range'],
    ['negative epoch', { user_id: 'u', created_at: -1 }, 'invalid_timestamp'],
  ])('%s', (_name, record, reason) => {
    expect(map(record)).toMatchObject({ ok: false, reason });
  });

  it('rejects a key that does not end in an email, and names the user_id when it is known', () => {
    expect(map({ user_id: 'u' }, '')).toMatchObject({ ok: false, reason: 'invalid_key_email', userId: 'u' });
  });

  it('never puts a password hash into a rejection detail', () => {
    const result = map({ user_id: 'u', password_hash: 12345678 });
    expect(result).toMatchObject({ ok: false, reason: 'invalid_field' });
    expect(JSON.stringify(result)).not.toContain('12345678');
  });
});

describe('parseTimestamp', () => {
  it('rejects non-string non-number values', () => {
    expect(parseTimestamp(true)).toMatchObject({ ok: false, reason: 'invalid_timestamp' });
  });
});

describe('rowDigest', () => {
  // The ledger keeps the digest of every row the tool wrote, and a later run (maybe of a later version)
  // compares it with the digest of the Redis record now: the value for a given row must never change.
  it('is pinned: the same row gives the digest earlier versions stored', () => {
    const row = {
      user_id: 'usr_1',
      email: 'a@example.com',
      username: 'Ann',
      avatar: null,
      password_hash: '$2b$12$x',
      current_credits: '100',
      total_credits_used: '0',
      signup_bonus_granted: true,
      current_plan_id: null,
      plan_renew_at: null,
      created_at: '2024-01-01T00:00:00.000000Z',
      last_login: null,
    };
    expect(rowDigest(row)).toBe('7fb47a3bf83db18ef39e593f21d105cd');
    expect(rowDigest({ ...row, username: null })).not.toBe(rowDigest({ ...row, username: '' }));
  });
});

describe("mapRecord: the target columns' limits", () => {
  const limited: MapContext = {
    ...ctx,
    limits: { length: { username: 5, user_id: 10 }, max: { current_credits: 32_767n, total_credits_used: 32_767n } },
  };
  const mapLimited = (record: unknown, keyEmail = 'a@example.com') => mapRecord(keyEmail, JSON.stringify(record), limited);

  it('rejects a value longer than its varchar(n), naming the column and the limit', () => {
    expect(mapLimited({ ...base, username: 'abcdef' })).toMatchObject({
      ok: false,
      reason: 'value_too_long',
      detail: 'username is 6 characters > varchar(5)',
      userId: 'usr_1',
    });
  });

  it('counts characters as PostgreSQL does, not UTF-16 units', () => {
    // Five characters, ten UTF-16 units: fits varchar(5).
    expect(mapLimited({ ...base, username: '😀😀😀😀😀' })).toMatchObject({ ok: true });
    expect(mapLimited({ ...base, username: '😀😀😀😀😀😀' })).toMatchObject({ ok: false, reason: 'value_too_long' });
  });

  it('rejects credits above what the column type holds, after the whitelist rule', () => {
    expect(mapLimited({ ...base, current_credits: 32_768 })).toMatchObject({ ok: false, reason: 'value_out_of_range' });
    expect(mapLimited({ ...base, current_credits: 32_767 })).toMatchObject({ ok: true });
    // Whitelisted: max(100, 100000) does not fit a smallint.
    expect(mapLimited({ ...base, email: 'vip@example.com' }, 'vip@example.com')).toMatchObject({
      ok: false,
      reason: 'value_out_of_range',
      detail: 'current_credits 100000 > 32767, the most its column holds',
    });
  });

  it('rejects a missing value for a column the table declares NOT NULL', () => {
    const strict: MapContext = { ...ctx, limits: { length: {}, max: {}, required: ['username'] } };
    expect(mapRecord('a@example.com', JSON.stringify(base), strict)).toMatchObject({
      ok: false,
      reason: 'value_missing',
      detail: 'username is missing, and the column is NOT NULL',
    });
    expect(mapRecord('a@example.com', JSON.stringify({ ...base, username: 'x' }), strict)).toMatchObject({ ok: true });
  });

  it('without limits (the shipped table) the same values pass', () => {
    expect(map({ ...base, username: 'abcdef', current_credits: 32_768 })).toMatchObject({ ok: true });
  });
});

describe('rowDigest: the Redis record, not the whitelist rule', () => {
  it('is the same for a whitelisted and a plain mapping of one record', () => {
    const plain = mapRecord('vip@example.com', JSON.stringify({ ...base, email: 'vip@example.com' }), { ...ctx, whitelist: new Set() });
    const topped = mapRecord('vip@example.com', JSON.stringify({ ...base, email: 'vip@example.com' }), ctx);
    if (!plain.ok || !topped.ok) throw new Error('both map');
    expect(topped.row.current_credits).toBe('100000');
    expect(rowDigest(topped.row, topped.sourceCredits)).toBe(rowDigest(plain.row, plain.sourceCredits));
    expect(rowDigest(topped.row)).not.toBe(rowDigest(plain.row));
  });
});
