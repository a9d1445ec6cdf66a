import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compareRows, publicRow } from '../../src/compare/compare-rows.js';
import { decide, mergeRows, verifyOutcome, type Facts } from '../../src/core/decide.js';
import type { UserRow } from '../../src/map/user-row.js';

const row: UserRow = {
  user_id: 'u1',
  email: 'a@example.com',
  username: null,
  avatar: null,
  password_hash: 'hash',
  current_credits: '10',
  total_credits_used: '0',
  signup_bonus_granted: true,
  current_plan_id: null,
  plan_renew_at: null,
  created_at: '2024-01-01T00:00:00.000000Z',
  last_login: null,
};
const changed: UserRow = { ...row, current_credits: '5' };
/** A row as the ledger's base holds it: the password hash as its sha256. */
const asBase = (r: UserRow) => ({
  ...r,
  password_hash: r.password_hash === null ? null : `sha256:${createHash('sha256').update(r.password_hash).digest('hex')}`,
});
const facts = (over: Partial<Facts>): Facts => ({ expected: row, digest: 'd1', actual: null, emailOwner: null, ledger: null, ...over });

describe('decide (migrate)', () => {
  it.each<[string, Partial<Facts>, object]>([
    ['new user', {}, { action: 'insert' }],
    ['email owned by another user_id', { emailOwner: 'u9' }, { action: 'conflict', reason: 'email_taken' }],
    ['row deleted by the app, Redis unchanged: the app owns it', { ledger: { digest: 'd1', untouched: false } }, { action: 'deleted_by_app' }],
    ['row deleted by the app, Redis changed since', { ledger: { digest: 'd0', untouched: false } }, { action: 'conflict', reason: 'deleted_in_postgres' }],
    [
      'row deleted by the app, someone signed up with the email since: still the app deletion',
      { ledger: { digest: 'd1', untouched: false }, emailOwner: 'u9', owner: { row: { ...row, user_id: 'u9' }, written: false } },
      { action: 'deleted_by_app' },
    ],
    [
      'the app changed the email, someone signed up with the old one: the app change stands',
      { actual: { ...row, email: 'new@example.com' }, ledger: { digest: 'd1', untouched: false }, emailOwner: 'u9' },
      { action: 'kept_app_change' },
    ],
    ['identical, ledger current', { actual: row, ledger: { digest: 'd1', untouched: true } }, { action: 'unchanged', adopt: false }],
    ['identical, no ledger: adopt', { actual: row }, { action: 'unchanged', adopt: true }],
    ['identical after both changed alike: refresh ledger', { actual: row, ledger: { digest: 'd0', untouched: false } }, { action: 'unchanged', adopt: true }],
    ['Redis changed, row untouched: update', { actual: changed, ledger: { digest: 'd0', untouched: true } }, { action: 'update' }],
    ['app changed, Redis did not: keep', { actual: changed, ledger: { digest: 'd1', untouched: false } }, { action: 'kept_app_change' }],
    [
      'app changed, Redis did not, newly whitelisted: the top-up is granted onto the app balance',
      {
        expected: { ...row, current_credits: '100000' },
        topup: 99_990n,
        actual: changed,
        ledger: { digest: 'd1', untouched: false, base: asBase(row) },
      },
      { action: 'grant_topup', amount: 99_990n, diffs: [{ column: 'current_credits', expected: '99995', actual: '5' }] },
    ],
    [
      'app changed, Redis did not, top-up granted before: keep',
      {
        expected: { ...row, current_credits: '100000' },
        topup: 99_990n,
        actual: changed,
        ledger: { digest: 'd1', untouched: false, base: asBase({ ...row, current_credits: '100000' }) },
      },
      { action: 'kept_app_change' },
    ],
    ['both changed: conflict', { actual: changed, ledger: { digest: 'd0', untouched: false } }, { action: 'conflict', reason: 'changed_in_both' }],
    ['row the tool never wrote differs', { actual: changed }, { action: 'conflict', reason: 'row_not_written_by_tool' }],
    // A trigger or default of the table rewrote a value when the tool wrote the row: writing again changes nothing.
    [
      'same record, row as the tool left it, a value the table rewrote',
      { actual: { ...row, created_at: null }, ledger: { digest: 'd1', untouched: true } },
      { action: 'unchanged', adopt: false },
    ],
    [
      'same record, newly whitelisted: the top-up is written',
      { expected: { ...row, current_credits: '100000' }, topup: 99_990n, actual: row, ledger: { digest: 'd1', untouched: true } },
      { action: 'update' },
    ],
    [
      'same record, removed from the whitelist: the top-up stays',
      { expected: { ...row, current_credits: '3' }, actual: row, ledger: { digest: 'd1', untouched: true } },
      { action: 'unchanged', adopt: false },
    ],
  ])('%s', (_name, over, expected) => {
    expect(decide(facts(over))).toMatchObject(expected);
  });
});

describe('verifyOutcome: what verify says of each decision', () => {
  const base = { digest: 'd1', untouched: true };
  it.each<[string, Partial<Facts>, string]>([
    ['identical', { actual: row }, 'match'],
    ['identical, ledger current', { actual: row, ledger: base }, 'match'],
    ['never written', {}, 'missing'],
    ['email taken, no row', { emailOwner: 'u9' }, 'not_migratable'],
    ['the tool never wrote this differing row', { actual: changed }, 'mismatch'],
    // The ledger agrees with a row that is not what the tool writes from this record: a forged or wrong write.
    ['row as the tool left it, but not the mapping', { actual: { ...row, username: 'forged' }, ledger: base }, 'mismatch'],
    // Fewer credits than the mapping on a row as the tool left it: the catch-up writes them back (a trigger took
    // them on insert), and until then nothing proves the migration exact.
    ['row as the tool left it, fewer credits than the mapping', { actual: changed, ledger: base }, 'mismatch'],
    [
      'the app changed it, but the tool wrote something else than the mapping from this record',
      { actual: changed, ledger: { digest: 'd1', untouched: false, base: asBase({ ...row, username: 'other' }) } },
      'mismatch',
    ],
    [
      'whitelisted after the app touched the row: a top-up is due',
      {
        expected: { ...row, current_credits: '100000' },
        topup: 99_990n,
        actual: changed,
        ledger: { digest: 'd1', untouched: false, base: asBase(row) },
      },
      'stale',
    ],
    ['the app changed it, Redis unchanged', { actual: changed, ledger: { digest: 'd1', untouched: false } }, 'changed_by_app'],
    ['the app deleted it, Redis unchanged', { ledger: { digest: 'd1', untouched: false } }, 'deleted_by_app'],
    ['Redis changed, row untouched', { actual: changed, ledger: { digest: 'd0', untouched: true } }, 'stale'],
    ['both changed', { actual: changed, ledger: { digest: 'd0', untouched: false } }, 'conflict'],
    ['deleted by the app, Redis changed', { ledger: { digest: 'd0', untouched: false } }, 'conflict'],
  ])('%s: %s', (_name, over, expected) => {
    expect(verifyOutcome(decide(facts(over)))).toBe(expected);
  });
});

describe('compareRows', () => {
  it('never reveals a password hash, only whether each side is set', () => {
    expect(compareRows(row, { ...row, password_hash: 'other' })).toEqual([{ column: 'password_hash', expected: '(set)', actual: '(set)' }]);
    expect(compareRows(row, { ...row, password_hash: null })).toEqual([{ column: 'password_hash', expected: '(set)', actual: null }]);
    expect(publicRow(row).password_hash).toBe('(set)');
  });
});

describe('decide: early logins and merges', () => {
  const early: UserRow = {
    ...row,
    user_id: 'new_1',
    email: 'A@example.com',
    username: 'fresh',
    password_hash: null,
    current_credits: '350',
    total_credits_used: '4',
    created_at: '2026-11-01T00:00:00.000000Z',
    last_login: '2026-11-20T00:00:00.000000Z',
  };
  const redis: UserRow = { ...row, username: 'old', current_credits: '5000', total_credits_used: '10', last_login: '2025-01-01T00:00:00.000000Z' };
  const owned = (over: Partial<Facts> = {}) => facts({ expected: redis, emailOwner: 'new_1', owner: { row: early, written: false }, ...over });
  const bonus = { bonus: 100n };

  it.each<[string, Partial<Facts>, object]>([
    ['an early login, no --merge: its own reason, pointing to the merge', {}, { action: 'conflict', reason: 'early_login' }],
    [
      'the tool wrote that row: not mergeable',
      { owner: { row: early, written: true } },
      { action: 'conflict', reason: 'email_taken', detail: expect.stringContaining('the tool wrote that row') },
    ],
    [
      'no signup bonus on that row: not mergeable',
      { owner: { row: { ...early, signup_bonus_granted: false }, written: false } },
      { action: 'conflict', reason: 'email_taken', detail: expect.stringContaining('signup_bonus_granted = false') },
    ],
    [
      'a row with the Redis user_id exists too',
      { actual: row },
      { action: 'conflict', reason: 'email_taken', detail: expect.stringContaining('Redis user_id exists too') },
    ],
  ])('%s', (_name, over, expected) => {
    expect(decide(owned(over))).toMatchObject(expected);
  });

  it('merges into the new-app row: its user_id, Redis credits plus what it holds beyond the bonus, used summed', () => {
    const decision = decide(owned(), bonus);
    expect(decision).toMatchObject({ action: 'merge', into: 'new_1', withheld: 100n });
    if (decision.action !== 'merge') throw new Error('merge expected');
    expect(decision.row).toEqual({
      ...redis,
      user_id: 'new_1',
      email: 'A@example.com',
      username: 'fresh',
      password_hash: 'hash',
      current_credits: '5250',
      total_credits_used: '14',
      created_at: '2024-01-01T00:00:00.000000Z',
      last_login: '2026-11-20T00:00:00.000000Z',
    });
  });

  it('never leaves the user below the Redis balance when the bonus was partly spent', () => {
    const spent = mergeRows(redis, { ...early, current_credits: '40' }, 100n);
    expect(spent.row.current_credits).toBe('5000');
    expect(spent.withheld).toBe(40n);
  });

  it.each<[string, Partial<Facts>, object]>([
    ['merged, nothing changed since', { ledger: { digest: 'd1', untouched: true } }, { action: 'unchanged', adopt: false }],
    ['merged, the app changed the row since', { ledger: { digest: 'd1', untouched: false } }, { action: 'kept_app_change' }],
    [
      'merged, Redis changed since: never applied over the merge',
      { ledger: { digest: 'd0', untouched: true } },
      { action: 'conflict', reason: 'changed_after_merge' },
    ],
    ['merged, the row deleted by the app since', { actual: null, ledger: { digest: 'd1', untouched: false } }, { action: 'deleted_by_app' }],
    [
      'merged, the row deleted and Redis changed since',
      { actual: null, ledger: { digest: 'd0', untouched: false } },
      { action: 'conflict', reason: 'deleted_in_postgres' },
    ],
    [
      'merged, the app changed the row since: listed against what the merge wrote',
      { ledger: { digest: 'd1', untouched: false, base: { ...early, current_credits: '300', password_hash: null } } },
      { action: 'kept_app_change', diffs: [{ column: 'current_credits', expected: '300', actual: '350' }] },
    ],
    [
      'merged, untouched by its xmin, but not what the merge wrote: a forged write',
      { ledger: { digest: 'd1', untouched: true, base: { ...early, username: 'other', password_hash: null } } },
      { action: 'unchanged', diffs: [{ column: 'username', expected: 'other', actual: 'fresh' }] },
    ],
  ])('%s', (_name, over, expected) => {
    expect(decide(facts({ expected: redis, actual: early, merged: { userId: 'new_1' }, emailOwner: 'new_1', ...over }), bonus)).toMatchObject(expected);
  });
});
