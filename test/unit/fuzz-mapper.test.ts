import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mapRecord, MAX_CREDITS, type MapContext } from '../../src/map/map-record.js';
import { REJECT_REASONS } from '../../src/map/reasons.js';
import { parseTimestamp } from '../../src/map/timestamps.js';
import { USER_COLUMNS } from '../../src/map/user-row.js';

const ctx: MapContext = { whitelist: new Set(['vip@example.com']), whitelistCredits: 100_000n };
const CANONICAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

/** Every output is either a row PostgreSQL will accept as written, or a rejection with a known reason. */
function assertWellFormed(result: ReturnType<typeof mapRecord>): void {
  if (!result.ok) {
    expect(REJECT_REASONS).toContain(result.reason);
    expect(typeof result.detail).toBe('string');
    return;
  }
  const row = result.row;
  expect(Object.keys(row).sort()).toEqual([...USER_COLUMNS].sort());
  expect(row.signup_bonus_granted).toBe(true);
  for (const column of ['current_credits', 'total_credits_used'] as const) {
    const value = BigInt(row[column]);
    expect(value >= 0n && value <= MAX_CREDITS).toBe(true);
  }
  for (const column of ['plan_renew_at', 'created_at', 'last_login'] as const) {
    const value = row[column];
    if (value !== null) expect(value).toMatch(CANONICAL_TIME);
  }
  for (const value of Object.values(row)) {
    if (typeof value === 'string') {
      expect(value.includes('\u0000')).toBe(false);
      expect(value.isWellFormed()).toBe(true);
    }
  }
  expect(row.email).toBe(row.email.trim().toLowerCase());
}

// Field names the mapper looks at, plus hostile ones, so arbitrary records hit the interesting paths.
const fieldName = fc.oneof(
  fc.constantFrom(
    'user_id',
    'email',
    'username',
    'avatar',
    'password_hash',
    'current_credits',
    'credits',
    'total_credits_used',
    'credits_used',
    'current_plan_id',
    'plan_id',
    'plan',
    'plan_renew_at',
    'created_at',
    'last_login',
    '__proto__',
    'constructor',
    'toString',
  ),
  fc.string(),
);
const value = fc.oneof(
  fc.jsonValue(),
  fc.string({ unit: 'binary' }),
  fc.integer(),
  fc.double(),
  fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  fc.integer({ min: -1, max: 5_000_000_000_000 }),
);
const record = fc.dictionary(fieldName, value, { maxKeys: 12 });

describe('fuzz: decode + map never throw and only ever produce valid rows or reasoned rejections', () => {
  it('arbitrary JSON objects under the mapped field names', () => {
    fc.assert(
      fc.property(record, fc.string(), (rec, keyEmail) => {
        assertWellFormed(mapRecord(keyEmail, JSON.stringify(rec), ctx));
      }),
      { numRuns: 3000 },
    );
  });

  it('arbitrary JSON values and arbitrary text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue().map((v) => JSON.stringify(v)),
          fc.string({ unit: 'binary' }),
        ),
        (text) => {
          assertWellFormed(mapRecord('a@example.com', text, ctx));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('arbitrary bytes decoded as the reader does', () => {
    const utf8 = new TextDecoder('utf-8', { fatal: true });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        let text: string;
        try {
          text = utf8.decode(bytes);
        } catch {
          return; // the reader rejects it as not_utf8 before mapping
        }
        assertWellFormed(mapRecord('a@example.com', text, ctx));
      }),
      { numRuns: 2000 },
    );
  });

  it('valid users with arbitrary extra fields always map', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 5 }), fc.integer({ min: 0, max: 1_000_000 }), (extra, credits) => {
        const clean = Object.fromEntries(
          Object.entries(extra).filter(
            ([k]) =>
              !k.includes('credit') &&
              !k.startsWith('plan') &&
              !['user_id', 'email', 'username', 'avatar', 'password_hash', 'created_at', 'last_login'].includes(k),
          ),
        );
        const result = mapRecord('User@Example.com', JSON.stringify({ ...clean, user_id: 'usr_1', current_credits: credits }), ctx);
        expect(result.ok).toBe(true);
        assertWellFormed(result);
      }),
      { numRuns: 1000 },
    );
  });

  it('timestamps: never throw, and every accepted value is canonical and in range', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.double(), fc.integer(), fc.jsonValue()), (input) => {
        const parsed = parseTimestamp(input);
        if (parsed.ok) {
          expect(parsed.value).toMatch(CANONICAL_TIME);
          expect(parsed.value >= '1970' && parsed.value < '2100').toBe(true);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('timestamps: any instant of 1970..2099, written as ISO (UTC or offset) or as epoch, comes back as that instant', () => {
    const instant = fc.tuple(fc.integer({ min: 0, max: Date.UTC(2100, 0, 1) - 1 }), fc.integer({ min: 0, max: 999 }));
    fc.assert(
      fc.property(instant, fc.integer({ min: -14 * 60, max: 14 * 60 }), ([millis, micros], offset) => {
        const expected = new Date(millis).toISOString().replace('Z', `${String(micros).padStart(3, '0')}Z`);
        const shifted = new Date(millis + offset * 60_000).toISOString().slice(0, 23);
        const sign = offset < 0 ? '-' : '+';
        const hh = String(Math.floor(Math.abs(offset) / 60)).padStart(2, '0');
        const mm = String(Math.abs(offset) % 60).padStart(2, '0');
        const local = `${shifted}${String(micros).padStart(3, '0')}${sign}${hh}:${mm}`;
        expect(parseTimestamp(`${new Date(millis).toISOString().slice(0, 23)}${String(micros).padStart(3, '0')}Z`)).toEqual({ ok: true, value: expected });
        // An offset can carry an instant just inside the range from a local date outside it.
        if (shifted >= '1970' && shifted < '2100') expect(parseTimestamp(local)).toEqual({ ok: true, value: expected });
        // Epochs below 1e11 are seconds, from 1e11 on milliseconds (1e11 s would be the year 5138).
        const seconds = Math.floor(millis / 1000);
        expect(parseTimestamp(seconds)).toEqual({ ok: true, value: new Date(seconds * 1000).toISOString().replace('Z', '000Z') });
        if (millis >= 1e11) expect(parseTimestamp(String(millis))).toEqual({ ok: true, value: expected.replace(/\d{3}Z$/, '000Z') });
      }),
      { numRuns: 5000 },
    );
  });
});
