import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { createTestDatabase, createTestKeys, REDIS_URL, type TestDatabase, type TestKeys } from '../helpers/servers.js';
import { reviewOf } from '../helpers/review.js';

let db: TestDatabase;
let keys: TestKeys;
let dir: string;

interface ReconcileReport {
  command: string;
  applied: boolean;
  remaining: number;
  counts: Record<string, number>;
  classes: Record<string, { users: number; redis_credits: number; postgres_credits: number }>;
}

const env = () => ({ DATABASE_URL: db.url, REDIS_URL });
const credits = async (userId: string) => (await db.query<{ c: string }>('select current_credits::text as c from users where user_id = $1', [userId]))[0]?.c;

async function reconcile(extra: string[] = []) {
  const reportPath = join(dir, `reconcile-${Math.random()}.json`);
  const result = await runCli(['reconcile', '--match', keys.match, '--report', reportPath, ...extra], env());
  let report: ReconcileReport | undefined;
  try {
    report = JSON.parse(await readFile(reportPath, 'utf8')) as ReconcileReport;
  } catch {
    // no report: failed before running
  }
  return { ...result, report };
}

beforeEach(async () => {
  db = await createTestDatabase();
  keys = await createTestKeys();
  dir = mkdtempSync(join(tmpdir(), 'mu-reconcile-'));
  for (const [id, amount] of [
    ['a', 10],
    ['b', 20],
    ['c', 30],
    ['d', 40],
    ['g', 70],
    ['h', 80],
    ['j', 90],
  ] as const) {
    await keys.putUser(`${id}@example.com`, { user_id: `usr_${id}`, current_credits: amount, username: `user ${id}` });
  }
  expect((await runCli(['--match', keys.match], env())).code).toBe(0);

  // The window after the migration: both apps keep writing.
  await keys.putUser('b@example.com', { user_id: 'usr_b', current_credits: 25, username: 'user b' }); // old app: top-up
  await db.query(`update users set current_credits = 5 where user_id = 'usr_c'`); // new app: spent 25
  await keys.putUser('d@example.com', { user_id: 'usr_d', current_credits: 44, username: '=HYPERLINK("http://evil")' });
  await db.query(`update users set current_credits = 1 where user_id = 'usr_d'`);
  await keys.putUser('e@example.com', { user_id: 'usr_e', current_credits: 50 }); // signed up in the old app
  await db.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values ('usr_f', 'f@example.com', 100, true)`);
  // g: the old app topped it up, the new app deleted the account (a conflict); j: only the new app deleted it.
  await keys.putUser('g@example.com', { user_id: 'usr_g', current_credits: 75, username: 'user g' });
  await db.query(`delete from users where user_id = 'usr_g'`);
  await db.query(`delete from users where user_id = 'usr_j'`);
  await keys.redis.del(keys.userKey('h@example.com'));
  await keys.putUser('i@example.com', '{"user_id": "usr_i", "credits": -1}');
});

afterEach(async () => {
  await keys.cleanup();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('reconcile', () => {
  it('classifies every user, read-only, with credit totals per class', async () => {
    const before = await db.query('select * from users order by user_id');
    const run = await reconcile();
    expect(run.stderr).toBe('');
    expect(run.code).toBe(1);
    expect(run.report?.applied).toBe(false);
    const c = run.report?.classes;
    expect(c?.in_sync).toEqual({ users: 1, redis_credits: 10, postgres_credits: 10 });
    expect(c?.changed_in_redis).toEqual({ users: 1, redis_credits: 25, postgres_credits: 20 });
    expect(c?.changed_in_postgres).toEqual({ users: 1, redis_credits: 30, postgres_credits: 5 });
    expect(c?.changed_in_both).toEqual({ users: 1, redis_credits: 44, postgres_credits: 1 });
    expect(c?.only_in_redis).toEqual({ users: 1, redis_credits: 50, postgres_credits: 0 });
    expect(c?.only_in_postgres).toEqual({ users: 1, redis_credits: 0, postgres_credits: 100 });
    expect(c?.deleted_in_postgres).toEqual({ users: 1, redis_credits: 75, postgres_credits: 0 });
    expect(c?.deleted_by_app).toEqual({ users: 1, redis_credits: 90, postgres_credits: 0 });
    expect(c?.deleted_in_redis).toEqual({ users: 1, redis_credits: 0, postgres_credits: 80 });
    expect(c?.invalid_in_redis?.users).toBe(1);
    // b and e could be applied; d, g, h and i need someone; j's deletion is the app's.
    expect(run.report?.remaining).toBe(6);
    expect(run.stdout).toContain('RECONCILE (read-only: nothing written)');
    expect(run.stdout).toMatch(/usr_d d@example.com {2}current_credits: base 40 \| redis 44 \| postgres 1/);
    expect(await db.query('select * from users order by user_id')).toEqual(before);
  });

  it('--apply brings across exactly the safe set; a balance spent in the new app is never reverted; twice is a no-op', async () => {
    const run = await reconcile(['--apply']);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('RECONCILE --apply');
    expect(run.stdout).toContain('1 inserted, 1 updated');
    expect(run.report?.counts).toMatchObject({ inserted: 1, updated: 1 });
    expect(await credits('usr_b')).toBe('25');
    expect(await credits('usr_e')).toBe('50');
    expect(await credits('usr_c')).toBe('5');
    expect(await credits('usr_d')).toBe('1');
    expect(await credits('usr_g')).toBeUndefined();
    expect(await credits('usr_h')).toBe('80');
    expect(run.report?.remaining).toBe(4);

    const again = await reconcile(['--apply']);
    expect(again.report?.counts).toMatchObject({ inserted: 0, updated: 0 });
    expect(again.report?.classes.in_sync?.users).toBe(3);
    expect(again.report?.remaining).toBe(4);
  });

  it('exports conflicts as CSV that a spreadsheet cannot execute, and as NDJSON', async () => {
    const csvPath = join(dir, 'conflicts.csv');
    await reconcile(['--conflicts', csvPath]);
    const csv = await readFile(csvPath, 'utf8');
    const lines = csv.trim().split('\r\n');
    expect(lines[0]).toBe('class,user_id,email,key,reason,column,base,redis,postgres,detail,redis_digest,row_version');
    expect(csv).toContain(`changed_in_both,usr_d,d@example.com,${keys.userKey('d@example.com')},changed_in_both,current_credits,40,44,1,`);
    expect(csv).toContain(`,username,user d,"'=HYPERLINK(""http://evil"")",user d,`);
    expect(csv).not.toMatch(/,=HYPERLINK|,"=HYPERLINK/);
    expect(lines.filter((l) => l.startsWith('deleted_in_postgres,usr_g'))).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith('deleted_in_redis,usr_h'))).toHaveLength(1);

    const ndjsonPath = join(dir, 'conflicts.ndjson');
    await reconcile(['--conflicts', ndjsonPath]);
    const entries = (await readFile(ndjsonPath, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { class: string; user_id: string });
    expect(entries.map((e) => `${e.class}:${e.user_id}`).sort()).toEqual(['changed_in_both:usr_d', 'deleted_in_postgres:usr_g', 'deleted_in_redis:usr_h']);
  });

  it('--take resolves listed conflicts by side, logs it, and a conflict is otherwise never applied', async () => {
    const review = (ids: string[]) => reviewOf(dir, ids, (conflicts) => reconcile(['--conflicts', conflicts]));
    const takeRedis = await reconcile(['--apply', '--take', 'redis', '--users', await review(['usr_d'])]);
    expect(takeRedis.code).toBe(1);
    expect(await credits('usr_d')).toBe('44');

    const takePostgres = await reconcile(['--apply', '--take', 'postgres', '--users', await review(['usr_g'])]);
    expect(takePostgres.code).toBe(1);
    expect(await credits('usr_g')).toBeUndefined();

    const log = await db.query('select user_id, side, reason from migrate_users.resolutions order by id');
    expect(log).toEqual([
      { user_id: 'usr_d', side: 'redis', reason: 'changed_in_both' },
      { user_id: 'usr_g', side: 'postgres', reason: 'deleted_in_postgres' },
    ]);
    const after = await reconcile();
    expect(after.report?.classes.changed_in_both?.users).toBe(0);
    expect(after.report?.classes.deleted_in_postgres?.users).toBe(0);
    // What is left: h deleted in Redis, i invalid.
    expect(after.report?.remaining).toBe(2);
  });

  it('--take needs --apply and --users', async () => {
    const run = await reconcile(['--take', 'redis']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--take writes: it needs --apply');
    expect(run.stderr).toContain('--take needs --users FILE');
  });
});
