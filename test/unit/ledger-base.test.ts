import { describe, expect, it } from 'vitest';
import { readBase } from '../../src/db/canonical.js';
import { USER_COLUMNS } from '../../src/map/user-row.js';

const ROW = {
  user_id: 'u1',
  email: 'u1@t.test',
  username: null,
  avatar: 'a.png',
  password_hash: 'sha256:00ff',
  current_credits: '100',
  total_credits_used: '0',
  signup_bonus_granted: true,
  current_plan_id: 'pro',
  plan_renew_at: null,
  created_at: '2024-01-01T00:00:00.000000Z',
  last_login: null,
};

describe('the ledger base', () => {
  it('is read from the array in column order that the tool writes now', () => {
    expect(readBase(JSON.stringify(USER_COLUMNS.map((c) => ROW[c])))).toEqual(ROW);
  });

  it('is read from the object earlier versions wrote, so their ledgers keep working', () => {
    expect(readBase(JSON.stringify(ROW))).toEqual(ROW);
    expect(readBase(ROW)).toEqual(ROW);
  });

  it('lacks a column a shorter (older) array did not have, rather than shifting the others', () => {
    const short = readBase(JSON.stringify(USER_COLUMNS.slice(0, 3).map((c) => ROW[c])));
    expect(short).toEqual({ user_id: 'u1', email: 'u1@t.test', username: null });
  });

  it('is null when missing or not JSON', () => {
    expect(readBase(null)).toBeNull();
    expect(readBase('not json')).toBeNull();
    expect(readBase('42')).toBeNull();
  });
});
