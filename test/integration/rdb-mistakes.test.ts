/**
 * --rdb: the operator's mistakes with snapshot files and the environment, each refused with exit 2 before
 * anything is written (most before anything is loaded), and what is not a mistake read as it should be.
 * Real snapshots written by real redis-servers, the real bin/migrate-users as a child process.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MigrateReport } from '../../src/results/migrate-report.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { snapshotOf, throwawayServers } from '../helpers/rdb.js';
import { createTestDatabase, stageRecords, type TestDatabase } from '../helpers/servers.js';

let dir: string;
let one: string;
const databases: TestDatabase[] = [];

const user = (id: string, credits: number) => JSON.stringify({ user_id: id, credits, credits_used: 0 });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mu-rdb-mistakes-'));
  const keys: Record<string, string> = {};
  for (let i = 0; i < 20; i++) keys[`user:email:u${i}@x.test`] = user(`usr_u${i}`, i);
  one = await snapshotOf(keys, join(dir, 'one.rdb'));
}, 60_000);

afterAll(async () => {
  await Promise.all(databases.map((db) => db.drop()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function database(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  databases.push(db);
  return db;
}

/** The run with a report; `report` is null when none was written. */
async function run(args: readonly string[], env: Record<string, string | undefined>): Promise<CliResult & { report: MigrateReport | null }> {
  const report = join(dir, `report-${Math.random().toString(36).slice(2)}.json`);
  const command = args[0] === 'verify' ? ['verify'] : [];
  const result = await runCli([...command, '--no-progress', '--report', report, ...args.slice(command.length)], env);
  let parsed: MigrateReport | null = null;
  try {
    parsed = JSON.parse(readFileSync(report, 'utf8')) as MigrateReport;
  } catch {
    // No report: the run never got going.
  }
  return { ...result, report: parsed };
}

const written = async (db: TestDatabase) => ({
  users: (await db.query<{ n: number }>('select count(*)::int as n from users'))[0]?.n,
  ledger: (await db.query<{ n: number }>('select count(*)::int as n from migrate_users.ledger'))[0]?.n,
  // Records staged (an empty stage stays for the role's next run: see createStage).
  stages: Object.values(await stageRecords(db)).reduce((a, b) => a + b, 0),
});

describe('--rdb ignores the live Redis settings of the environment', () => {
  it('REDIS_URL and REDIS_CA exported in the shell do not stop a snapshot run; the flags --redis-url and --redis-ca are refused', async () => {
    const db = await database();
    // Production's settings, exported in the operator's shell: one unparsable, one naming a CA file that is not here.
    for (const redis of [
      { REDIS_URL: 'not a url' },
      { REDIS_URL: 'rediss://app:Secret-Pw-77@prod.example:6380/0', REDIS_CA: join(dir, 'no-such-ca.pem') },
      { REDIS_URL: 'redis://app:Secret-Pw-77@prod.example:6379/0', REDIS_CA: join(dir, 'no-such-ca.pem') },
    ]) {
      const dry = await run(['--dry-run', '--rdb', one], { DATABASE_URL: db.url, ...redis });
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.report?.counts.scanned).toBe(20);
      expect(dry.report?.source).toMatchObject({ kind: 'rdb', file: one });
      const verify = await run(['verify', '--rdb', one], { DATABASE_URL: db.url, ...redis });
      // Nothing migrated yet: every user is missing, which is a verdict (1), not a configuration error (2).
      expect(verify.code, verify.stderr).toBe(1);
      expect(`${dry.stdout}${dry.stderr}${verify.stdout}${verify.stderr}`).not.toContain('Secret-Pw-77');
    }

    const url = await run(['--dry-run', '--rdb', one, '--redis-url', 'redis://app:Secret-Pw-77@prod.example:6379'], { DATABASE_URL: db.url });
    expect(url.code).toBe(2);
    expect(url.stderr).toContain('--rdb reads a snapshot instead of a live Redis: it cannot go with --redis-url');
    const ca = await run(['--dry-run', '--rdb', one, '--redis-ca', join(dir, 'no-such-ca.pem')], { DATABASE_URL: db.url });
    expect(ca.code).toBe(2);
    expect(ca.stderr).toContain('--rdb cannot go with --redis-ca');
    expect(`${url.stdout}${url.stderr}`).not.toContain('Secret-Pw-77');
    expect(await written(db)).toEqual({ users: 0, ledger: 0, stages: 0 });
  });
});

describe('--rdb: a temporary folder that cannot be used is said up front', () => {
  it('TMPDIR missing, a file, or a folder that takes no new folder: exit 2 naming TMPDIR, before connecting or loading anything', async () => {
    // Nothing listens here: a tool that connected first would say so instead.
    const nowhere = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', LOG_LEVEL: 'info' };
    const file = join(dir, 'a-file');
    writeFileSync(file, 'not a folder\n');
    for (const [tmp, why] of [
      [join(dir, 'no-such-folder'), 'which does not exist'],
      [file, 'which is not a folder'],
      ['/proc', 'which takes no new folder ('],
    ] as const) {
      const result = await run(['--dry-run', '--rdb', one], { ...nowhere, TMPDIR: tmp });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain(`--rdb starts its throwaway redis-server in a private folder under TMPDIR (${tmp}), ${why}`);
      expect(result.stderr).toContain('set TMPDIR to a folder this user can write to');
      expect(result.stderr).not.toContain('cannot connect to PostgreSQL');
      expect(throwawayServers(result.stderr)).toEqual([]);
    }
    // And a usable one is used: the server's folder is made there.
    const db = await database();
    const own = mkdtempSync(join(dir, 'tmp-'));
    const used = await run(['--dry-run', '--rdb', one], { DATABASE_URL: db.url, LOG_LEVEL: 'info', TMPDIR: own });
    expect(used.code, used.stderr).toBe(0);
    expect(throwawayServers(used.stderr).map((s) => s.folder.startsWith(`${own}/migrate-users-rdb-`))).toEqual([true]);
  });
});

describe('--rdb: the same snapshot under two names', () => {
  it('is refused (exit 2, both names) before any server is loaded; two files of one size but other contents are read', async () => {
    const db = await database();
    const copy = join(dir, 'copy-of-one.rdb');
    copyFileSync(one, copy);
    const env = { DATABASE_URL: db.url, LOG_LEVEL: 'info' };
    for (const args of [['--dry-run'], [], ['verify']]) {
      const twice = await run([...args, '--rdb', one, '--rdb', copy], env);
      expect(twice.code, twice.stderr).toBe(2);
      expect(twice.stderr).toContain(`--rdb ${copy} is the same snapshot as --rdb ${one} (sha256 `);
      expect(throwawayServers(twice.stderr)).toEqual([]);
    }
    expect(await written(db)).toEqual({ users: 0, ledger: 0, stages: 0 });
    expect(await db.query('select count(*)::int as n from migrate_users.runs')).toEqual([{ n: 0 }]);

    // Two masters' files of the same size (the same layout, other users): hashed first, found different, read.
    const a = await snapshotOf({ 'user:email:a@x.test': user('usr_a', 1) }, join(dir, 'same-size-a.rdb'));
    const b = await snapshotOf({ 'user:email:b@x.test': user('usr_b', 2) }, join(dir, 'same-size-b.rdb'));
    expect(statSync(a).size).toBe(statSync(b).size);
    const both = await run(['--dry-run', '--rdb', a, '--rdb', b], env);
    expect(both.code, both.stderr).toBe(0);
    expect(both.report?.counts).toMatchObject({ scanned: 2, inserted: 2 });
  });
});

describe("--rdb: a key in two cluster masters' files", () => {
  it('is refused (exit 2) before anything is written, naming the keys and both files, whether the values differ or not', async () => {
    const db = await database();
    const a = await snapshotOf(
      {
        'user:email:a1@x.test': user('usr_a1', 1),
        'user:email:a2@x.test': user('usr_a2', 2),
        'user:email:twin@x.test': user('usr_twin', 10),
        'user:email:same@x.test': user('usr_same', 5),
      },
      join(dir, 'master-a.rdb'),
    );
    // Another master's file holding two of them: one with another balance, one byte for byte the same.
    const b = await snapshotOf(
      { 'user:email:b1@x.test': user('usr_b1', 3), 'user:email:twin@x.test': user('usr_twin', 999), 'user:email:same@x.test': user('usr_same', 5) },
      join(dir, 'master-b.rdb'),
    );
    // Only identical values in common (a replica's file, or the same master's again, would look like this).
    const c = await snapshotOf({ 'user:email:c1@x.test': user('usr_c1', 4), 'user:email:a1@x.test': user('usr_a1', 1) }, join(dir, 'master-c.rdb'));
    const d = await snapshotOf({ 'user:email:d1@x.test': user('usr_d1', 6) }, join(dir, 'master-d.rdb'));
    const env = { DATABASE_URL: db.url };

    for (const args of [[], ['--dry-run'], ['verify']]) {
      const refused = await run([...args, '--rdb', a, '--rdb', b], env);
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toContain('the --rdb files share keys, but a Redis Cluster keeps each key on one master only');
      expect(refused.stderr).toContain(
        `${a} and ${b} both hold 2 keys: 1 with different values (user:email:twin@x.test); 1 with the same value (user:email:same@x.test)`,
      );
      expect(refused.stderr).toContain('nothing was written');
    }
    const identical = await run(['--rdb', a, '--rdb', c], env);
    expect(identical.code, identical.stderr).toBe(2);
    expect(identical.stderr).toContain(`${a} and ${c} both hold 1 key: 1 with the same value (user:email:a1@x.test)`);
    // Not one row, ledger entry or staged record; the refused runs are on record as failed.
    expect(await written(db)).toEqual({ users: 0, ledger: 0, stages: 0 });
    expect(await db.query(`select distinct status from migrate_users.runs`)).toEqual([{ status: 'failed' }]);

    // The right files: read and written as usual.
    const right = await run(['--rdb', a, '--rdb', d], env);
    expect(right.code, right.stderr).toBe(0);
    expect(right.report?.counts).toMatchObject({ scanned: 5, inserted: 5, scan_duplicates: 0 });
  });
});

describe("--rdb: a cluster's snapshots, taken seconds apart, written from again", () => {
  it('the same files again are not "older" than themselves (exit 0); an older file of one master still is (exit 2)', async () => {
    const db = await database();
    // An RDB's time has whole seconds: each file is taken in a later one.
    const taken = async (keys: Record<string, string>, name: string) => {
      const file = await snapshotOf(keys, join(dir, name));
      await new Promise((resolve) => setTimeout(resolve, 1100));
      return file;
    };
    const older = await taken({ 'user:email:p1@x.test': user('usr_p1', 1) }, 'p-master-1-older.rdb');
    const m1 = await taken({ 'user:email:p1@x.test': user('usr_p1', 2) }, 'p-master-1.rdb');
    const m2 = await taken({ 'user:email:p2@x.test': user('usr_p2', 3) }, 'p-master-2.rdb');
    const env = { DATABASE_URL: db.url };
    const first = await run(['--rdb', m1, '--rdb', m2], env);
    expect(first.code, first.stderr).toBe(0);
    // Run again (as after an exit 3, or to be sure): the first run read exactly these files.
    const again = await run(['--rdb', m2, '--rdb', m1], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.report?.counts).toMatchObject({ scanned: 2, unchanged: 2 });
    const back = await run(['--rdb', older, '--rdb', m2], env);
    expect(back.code, back.stderr).toBe(2);
    expect(back.stderr).toContain('writing from it would put back older balances');
    expect(await db.query(`select current_credits::int as c from users where user_id = 'usr_p1'`)).toEqual([{ c: 2 }]);
  });
});
