import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import {
  adminQuery,
  asTheToolsOwnWrite,
  createTestDatabase,
  createTestKeys,
  REDIS_URL,
  redisUrlAs,
  uniqueName,
  type TestDatabase,
  type TestKeys,
} from '../helpers/servers.js';

let db: TestDatabase;
let keys: TestKeys;
let dir: string;

interface Difference {
  kind: string;
  user_id: string | null;
  email: string | null;
  column: string | null;
  expected: unknown;
  actual: unknown;
  reason?: string;
}
interface VerifyReport {
  ok: boolean;
  strict: boolean;
  sample: { size: number; keys_in_redis: number } | null;
  differences: Difference[];
  counts: Record<string, number | null>;
  reasons: Record<string, number>;
  invariants: {
    balanced: boolean;
    redis: { users: number; current_credits: number; whitelist_topup: number };
    expected: { users: number; current_credits: number; total_credits_used: number };
    postgres_matching: { users: number; current_credits: number; total_credits_used: number };
    postgres_only: { users: number; current_credits: number } | null;
  };
}

const env = () => ({ DATABASE_URL: db.url, REDIS_URL, WHITELIST_EMAILS: 'vip@example.com' });

async function verify(extra: string[] = [], overrides: Record<string, string> = {}) {
  const reportPath = join(dir, `verify-${Math.random()}.json`);
  const result = await runCli(['verify', '--match', keys.match, '--report', reportPath, ...extra], { ...env(), ...overrides });
  let report: VerifyReport | undefined;
  try {
    report = JSON.parse(await readFile(reportPath, 'utf8')) as VerifyReport;
  } catch {
    // no report when the command failed before running
  }
  return { ...result, report };
}

beforeEach(async () => {
  db = await createTestDatabase();
  keys = await createTestKeys();
  dir = mkdtempSync(join(tmpdir(), 'mu-verify-'));
  for (let i = 0; i < 30; i++) {
    await keys.putUser(`user${i}@example.com`, {
      user_id: `usr_${i}`,
      current_credits: 100 + i,
      credits_used: i,
      password_hash: `hash-secret-${i}`,
      created_at: `2024-01-0${(i % 9) + 1}T10:00:00.123456Z`,
    });
  }
  await keys.putUser('vip@example.com', { user_id: 'usr_vip', credits: 7 });
  const migrated = await runCli(['--match', keys.match], env());
  expect(migrated.code).toBe(0);
});

afterEach(async () => {
  await keys.cleanup();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('verify', () => {
  it('a clean migration verifies clean, with balanced invariants that include the whitelist top-up', async () => {
    const run = await verify();
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('VERIFY OK');
    expect(run.report).toMatchObject({ ok: true, differences: [], counts: { match: 31, mismatch: 0, missing: 0, not_migratable: 0, only_in_postgres: 0 } });
    const inv = run.report?.invariants;
    const redisCredits = 30 * 100 + (29 * 30) / 2 + 7;
    expect(inv?.redis).toMatchObject({ users: 31, current_credits: redisCredits, whitelist_topup: 100_000 - 7 });
    expect(inv?.expected.current_credits).toBe(redisCredits + 100_000 - 7);
    expect(inv?.postgres_matching).toEqual(inv?.expected);
    expect(inv?.balanced).toBe(true);
  });

  it.each([
    [
      'a changed balance',
      `update users set current_credits = 5 where user_id = 'usr_3'`,
      { kind: 'mismatch', user_id: 'usr_3', column: 'current_credits', expected: '103', actual: '5' },
    ],
    [
      'a changed email',
      `update users set email = 'changed@example.com' where user_id = 'usr_4'`,
      { kind: 'mismatch', user_id: 'usr_4', column: 'email', expected: 'user4@example.com', actual: 'changed@example.com' },
    ],
    ['a missing row', `delete from users where user_id = 'usr_5'`, { kind: 'missing', user_id: 'usr_5', email: 'user5@example.com' }],
    [
      'a flipped signup_bonus_granted',
      `update users set signup_bonus_granted = false where user_id = 'usr_6'`,
      { kind: 'mismatch', user_id: 'usr_6', column: 'signup_bonus_granted', expected: true, actual: false },
    ],
    [
      'a timestamp off by one microsecond',
      `update users set created_at = created_at + interval '1 microsecond' where user_id = 'usr_7'`,
      { kind: 'mismatch', user_id: 'usr_7', column: 'created_at', expected: '2024-01-08T10:00:00.123456Z', actual: '2024-01-08T10:00:00.123457Z' },
    ],
    [
      'a whitelist top-up taken away',
      `update users set current_credits = 7 where user_id = 'usr_vip'`,
      // The row as the tool's last write, short of the top-up the whitelist rule grants: migrate writes it.
      { kind: 'stale', user_id: 'usr_vip', column: 'current_credits', expected: '100000', actual: '7' },
    ],
  ])('catches %s written by the tool, names it, and exits 1', async (_name, tamper, expected) => {
    await db.query(tamper);
    await asTheToolsOwnWrite(db);
    const run = await verify();
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('VERIFY FAILED');
    expect(run.report?.ok).toBe(false);
    expect(run.report?.differences).toEqual([expect.objectContaining(expected)]);
    expect(run.stdout).toContain(expected.user_id);
  });

  it('a changed password hash is caught without showing the hash', async () => {
    await db.query(`update users set password_hash = 'other-secret' where user_id = 'usr_8'`);
    await asTheToolsOwnWrite(db);
    const run = await verify();
    expect(run.code).toBe(1);
    expect(run.report?.differences).toEqual([expect.objectContaining({ column: 'password_hash', expected: '(set)', actual: '(set)' })]);
    expect(JSON.stringify(run.report) + run.stdout).not.toMatch(/secret/);
  });

  it('a record added to Redis after the migration is missing; a broken one is not migratable', async () => {
    await keys.putUser('late@example.com', { user_id: 'usr_late', credits: 1 });
    await keys.putUser('broken@example.com', '{"user_id": "usr_broken", "credits": -3}');
    const run = await verify();
    expect(run.code).toBe(1);
    expect(run.report?.counts).toMatchObject({ missing: 1, not_migratable: 1 });
    expect(run.report?.differences).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'missing', user_id: 'usr_late' }),
        expect.objectContaining({ kind: 'not_migratable', user_id: 'usr_broken', reason: 'negative_credits' }),
      ]),
    );
    expect(run.report?.invariants.balanced).toBe(false);
  });

  it('an extra row in PostgreSQL is listed but passes, unless --strict', async () => {
    await db.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values ('usr_new_app', 'new@example.com', 100, true)`);
    const lenient = await verify();
    expect(lenient.code).toBe(0);
    expect(lenient.report?.counts.only_in_postgres).toBe(1);
    expect(lenient.report?.differences).toEqual([expect.objectContaining({ kind: 'only_in_postgres', user_id: 'usr_new_app' })]);
    expect(lenient.report?.invariants.postgres_only).toMatchObject({ users: 1, current_credits: 100 });
    expect(lenient.report?.invariants.balanced).toBe(true);

    const strict = await verify(['--strict']);
    expect(strict.code).toBe(1);
    expect(strict.report?.ok).toBe(false);
  });

  it('--sample checks an exact random subset and says so in every output', async () => {
    await db.query(`update users set current_credits = 0`);
    await asTheToolsOwnWrite(db);
    const markdown = join(dir, 'summary.md');
    const run = await verify(['--sample', '5', '--markdown', markdown]);
    expect(run.code).toBe(1);
    expect(run.report?.sample).toEqual({ size: 5, keys_in_redis: 31 });
    expect(run.report?.counts).toMatchObject({ keys_checked: 5, only_in_postgres: null });
    // Every sampled user fails; the whitelisted one as stale (its top-up is written again by migrate).
    expect(Number(run.report?.counts.mismatch) + Number(run.report?.counts.stale)).toBe(5);
    expect(run.stdout).toContain('SAMPLE of 5 of about 31 keys');
    expect(await readFile(markdown, 'utf8')).toContain('**Sample**: 5 of about 31 keys');
  });

  it('markdown for a CI step summary (appended), and JUnit XML', async () => {
    await db.query(`update users set username = 'pipe | and\nnewline' where user_id = 'usr_9'`);
    await asTheToolsOwnWrite(db);
    const markdown = join(dir, 'step-summary.md');
    const junit = join(dir, 'junit.xml');
    const run = await verify(['--format', 'markdown', '--markdown', markdown, '--junit', junit]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^## ❌ migrate-users verify: 1 problems found/);
    expect(run.stdout).toContain('| usr_9 | user9@example.com | username | ∅ | pipe \\| and newline |');
    const again = await verify(['--markdown', markdown]);
    expect(again.code).toBe(1);
    expect((await readFile(markdown, 'utf8')).match(/## ❌/g)).toHaveLength(2);
    const xml = await readFile(junit, 'utf8');
    expect(xml).toContain('<testsuites name="migrate-users verify" tests="10" failures="1" errors="0" skipped="1">');
    expect(xml).toContain(
      '<failure message="1 user differs between Redis and PostgreSQL: user9@example.com (username: Redis none, PostgreSQL &quot;pipe | and newline&quot;).">',
    );
  });

  it('runs read-only: a SELECT-only database role and a read-only Redis ACL user', async () => {
    const role = uniqueName('mu_verify_ro');
    const acl = uniqueName('mu_verify_reader');
    await adminQuery(`create role ${role} login`);
    await db.query(`grant usage on schema migrate_users to ${role}`);
    await db.query(`grant select on public.users, migrate_users.ledger, migrate_users.merges to ${role}`);
    await keys.redis.call(
      'ACL',
      'SETUSER',
      acl,
      'on',
      '>pw',
      'resetkeys',
      `~${keys.prefix}user:email:*`,
      '-@all',
      '+@read',
      '+@connection',
      '+info',
      '+client',
    );
    try {
      const url = new URL(db.url);
      url.username = role;
      const run = await verify([], { DATABASE_URL: url.toString(), REDIS_URL: redisUrlAs(acl, 'pw') });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
    } finally {
      await keys.redis.call('ACL', 'DELUSER', acl);
      await db.drop();
      db = await createTestDatabase();
      await adminQuery(`drop role if exists ${role}`);
    }
  });

  it('exit 2 for a bad flag, and for a PostgreSQL that cannot be reached', async () => {
    expect((await verify(['--format', 'html'])).code).toBe(2);
    expect((await verify(['--sample', '0'])).code).toBe(2);
    const down = await verify([], { DATABASE_URL: 'postgres://u:pw-never-shown@127.0.0.1:1/x' });
    expect(down.code).toBe(2);
    expect(down.stderr).toContain('cannot connect to PostgreSQL');
    expect(down.stderr + down.stdout).not.toContain('pw-never-shown');
  });
});
