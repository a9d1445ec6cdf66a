import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { adminQuery, createTestDatabase, createTestKeys, REDIS_URL, uniqueName, type TestDatabase, type TestKeys } from '../helpers/servers.js';

const ROLES_SQL = readFileSync(fileURLToPath(new URL('../../sql/roles.sql', import.meta.url)), 'utf8');

let db: TestDatabase;
let keys: TestKeys;
let writer: string;
let reader: string;

const as = (role: string) => {
  const url = new URL(db.url);
  url.username = role;
  return { DATABASE_URL: url.toString(), REDIS_URL };
};

beforeEach(async () => {
  db = await createTestDatabase();
  keys = await createTestKeys();
  await db.query(ROLES_SQL);
  writer = uniqueName('mu_writer');
  reader = uniqueName('mu_reader');
  await adminQuery(`create role ${writer} login in role migrate_users_writer`);
  await adminQuery(`create role ${reader} login in role migrate_users_reader`);
  for (let i = 0; i < 20; i++) await keys.putUser(`r${i}@example.com`, { user_id: `usr_${i}`, credits: i });
});

afterEach(async () => {
  await keys.cleanup();
  await db.drop();
  await adminQuery(`drop role if exists ${writer}`);
  await adminQuery(`drop role if exists ${reader}`);
  // The group roles are cluster-wide: only this file uses them, and its database (with their grants) is gone.
  await adminQuery('drop role if exists migrate_users_writer');
  await adminQuery('drop role if exists migrate_users_reader');
});

describe('sql/roles.sql: least privilege', () => {
  it('the writer role migrates and reconciles; the reader role dry-runs, verifies and reconciles read-only', async () => {
    const args = ['--match', keys.match, '--no-progress'];
    const dry = await runCli([...args, '--dry-run'], as(reader));
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);

    const migrate = await runCli(args, as(writer));
    expect(migrate.stderr).toBe('');
    expect(migrate.code).toBe(0);
    expect(await db.query('select count(*)::int as n from users')).toEqual([{ n: 20 }]);

    await keys.putUser('r1@example.com', { user_id: 'usr_1', credits: 99 });
    expect((await runCli(['reconcile', ...args], as(reader))).code).toBe(1);
    const apply = await runCli(['reconcile', ...args, '--apply'], as(writer));
    expect(apply.stderr).toBe('');
    expect(apply.code).toBe(0);

    const verify = await runCli(['verify', ...args], as(reader));
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(0);
  });

  it('with less, a command fails clearly (exit 2), naming the missing privilege', async () => {
    const args = ['--match', keys.match, '--no-progress'];
    const readerWrites = await runCli(args, as(reader));
    expect(readerWrites.code).toBe(2);
    expect(readerWrites.stderr).toMatch(/permission denied for (table|schema) \w+/);
    expect(readerWrites.stderr).toContain('docs/target-table.md "Database roles"');

    const nobody = uniqueName('mu_nobody');
    await adminQuery(`create role ${nobody} login`);
    try {
      const verify = await runCli(['verify', ...args], as(nobody));
      expect(verify.code).toBe(2);
      expect(verify.stderr).toMatch(/permission denied/);
    } finally {
      await adminQuery(`drop role if exists ${nobody}`);
    }
  });
});
