import { readFile, writeFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MigrateReport } from '../../src/results/migrate-report.js';
import { runCli } from '../helpers/cli.js';
import { expectReportAddsUp } from '../helpers/reports.js';
import { reviewOf } from '../helpers/review.js';
import { createTestDatabase, createTestKeys, REDIS_URL, type TestDatabase, type TestKeys } from '../helpers/servers.js';

/*
 * Days after go-live (issue 28): the new app deletes accounts, changes emails, people sign up again with an old
 * address, users are whitelisted after the app touched their row, and operators take sides only over what they
 * reviewed. Every state ends with reconcile exit 0 and verify exit 0, and no credit is created or lost. Each
 * test has its own database and Redis key prefix.
 */

let db: TestDatabase;
let keys: TestKeys;
let dir: string;

beforeEach(async () => {
  db = await createTestDatabase();
  keys = await createTestKeys();
  dir = mkdtempSync(join(tmpdir(), 'mu-golive-'));
});

afterEach(async () => {
  await keys.cleanup();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

type Report = MigrateReport & {
  remaining?: number;
  counts: Record<string, number>;
  invariants?: { balanced: boolean };
  classes?: Record<string, { users: number }>;
};

async function cli(args: string[], env: Record<string, string> = {}) {
  const path = join(dir, `report-${Math.random()}.json`);
  const rejects = join(dir, `rejects-${Math.random()}.ndjson`);
  const withRejects = args[0] === 'verify' ? [] : ['--rejects', rejects];
  const run = await runCli([...args, '--match', keys.match, '--no-progress', '--report', path, ...withRejects], { DATABASE_URL: db.url, REDIS_URL, ...env });
  const report = JSON.parse(await readFile(path, 'utf8')) as Report;
  const rejected =
    args[0] === 'verify'
      ? []
      : (await readFile(rejects, 'utf8'))
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { user_id: string; reason: string; detail: string });
  return { ...run, report, rejected };
}
const migrate = (...extra: string[]) => cli(extra);
const reconcile = (...extra: string[]) => cli(['reconcile', ...extra]);
const verify = (...extra: string[]) => cli(['verify', ...extra]);
const review = (ids: string[]) => reviewOf(dir, ids, (conflicts) => reconcile('--conflicts', conflicts));
const put = (email: string, userId: string, credits: number, used = 0) =>
  keys.putUser(email, { user_id: userId, email, current_credits: credits, total_credits_used: used });
const credits = async (userId: string) =>
  (await db.query<{ c: number; u: number }>('select current_credits::int as c, total_credits_used::int as u from users where user_id = $1', [userId]))[0];

describe('after go-live: every state has a way out, and no credit is created or lost', () => {
  it('an account deleted in the new app, then a signup with the same email: never merged into, never re-inserted', async () => {
    await put('a@x.test', 'u1', 500);
    expect((await migrate()).code).toBe(0);
    await db.query("update users set current_credits = 100, total_credits_used = 400 where user_id = 'u1'");
    await db.query("delete from users where user_id = 'u1'");
    await db.query("insert into users (user_id, email, current_credits, signup_bonus_granted) values ('n1', 'a@x.test', 100, true)");
    const merged = await reconcile('--apply', '--merge');
    expect(merged.code, merged.stdout).toBe(0);
    expect(merged.report.counts).toMatchObject({ merged: 0, deleted_by_app: 1, conflicts: 0 });
    expect(await credits('n1')).toEqual({ c: 100, u: 0 });
    expect(await credits('u1')).toBeUndefined();
    const proven = await verify();
    expect(proven.code, proven.stdout).toBe(0);
    expect(proven.report.counts).toMatchObject({ deleted_by_app: 1, only_in_postgres: 1, missing: 0, not_migratable: 0 });
  });

  it('an email the app changed, then reused by a signup: the app change stands; with a Redis change too, --take settles it', async () => {
    await put('a@x.test', 'u1', 500);
    await put('b@x.test', 'u2', 300);
    expect((await migrate()).code).toBe(0);
    await db.query("update users set email = 'a.new@x.test' where user_id = 'u1'");
    await db.query("update users set email = 'b.new@x.test' where user_id = 'u2'");
    await db.query(
      "insert into users (user_id, email, current_credits, signup_bonus_granted) values ('n1', 'a@x.test', 100, true), ('n2', 'b@x.test', 100, true)",
    );
    const rec = await reconcile();
    expect(rec.code, rec.stdout).toBe(0);
    expect((await verify()).code).toBe(0);
    // The old app sells u2 200 credits: both sides changed since the tool's write.
    await put('b@x.test', 'u2', 500);
    const both = await reconcile();
    expect(both.code).toBe(1);
    expect(both.rejected).toEqual([expect.objectContaining({ user_id: 'u2', reason: 'changed_in_both' })]);
    // Redis's record would take n2's email: refused, with the way out named.
    const blocked = await reconcile('--apply', '--take', 'redis', '--users', await review(['u2']));
    expect(blocked.code).toBe(1);
    expect(blocked.rejected[0]?.detail).toContain('its email belongs to user_id n2 now');
    expect(await credits('u2')).toEqual({ c: 300, u: 0 });
    const kept = await reconcile('--apply', '--take', 'postgres', '--users', await review(['u2']));
    expect(kept.code, kept.stdout).toBe(0);
    expect((await verify()).code).toBe(0);
  });

  it('whitelisted after the app touched the row: the top-up is granted onto the app balance, once, and counted only when written', async () => {
    await put('v@x.test', 'v1', 500);
    await put('w@x.test', 'w1', 500);
    expect((await migrate()).code).toBe(0);
    await db.query("update users set last_login = now(), current_credits = 480, total_credits_used = 20 where user_id = 'v1'"); // a login, a task
    const env = { WHITELIST_EMAILS: 'v@x.test,w@x.test' };
    const dry = await cli(['--dry-run'], env);
    expect(dry.report.counts).toMatchObject({ updated: 2, whitelist_topups: 2 });
    const run = await cli([], env);
    expect(run.code, run.stdout).toBe(0);
    expect(run.report.counts).toMatchObject({ updated: 2, whitelist_topups: 2, conflicts: 0 });
    expectReportAddsUp(run.report);
    expect(run.report.credits.app_difference).toEqual({ current: -20, used: 20 });
    expect(await credits('v1')).toEqual({ c: 99_980, u: 20 });
    expect(await credits('w1')).toEqual({ c: 100_000, u: 0 });
    expect((await db.query<{ n: string }>('select count(*)::text as n from users where current_credits >= 99980'))[0]?.n).toBe('2');
    // Granted once: the next run writes nothing, reconcile and verify agree.
    const again = await cli([], env);
    expect(again.report.counts).toMatchObject({ updated: 0, inserted: 0, kept_app_changes: 1, unchanged: 1 });
    expect(await credits('v1')).toEqual({ c: 99_980, u: 20 });
    expect((await cli(['reconcile'], env)).code).toBe(0);
    const proven = await cli(['verify'], env);
    expect(proven.code, proven.stdout).toBe(0);
    expect(proven.report.counts).toMatchObject({ changed_by_app: 1, match: 1 });
    // Before the grant, verify and reconcile said the same: a top-up due (stale), safe to apply.
    await put('x@x.test', 'x1', 10);
    expect((await migrate()).code).toBe(0);
    await db.query("update users set last_login = now() where user_id = 'x1'");
    const due = { WHITELIST_EMAILS: 'v@x.test,w@x.test,x@x.test' };
    const stale = await cli(['verify'], due);
    expect(stale.code).toBe(1);
    expect(stale.report.counts).toMatchObject({ stale: 1 });
    const applied = await cli(['reconcile', '--apply'], due);
    expect(applied.code, applied.stdout).toBe(0);
    expect(await credits('x1')).toEqual({ c: 100_000, u: 0 });
    expect((await cli(['verify'], due)).code).toBe(0);
  });

  it('--take applies only over the reviewed state: a bare list is refused, a user changed since the review is skipped and named', async () => {
    await put('a@x.test', 'u1', 500);
    await put('b@x.test', 'u2', 500);
    expect((await migrate()).code).toBe(0);
    await db.query('update users set current_credits = 450, total_credits_used = 50');
    await put('a@x.test', 'u1', 501);
    await put('b@x.test', 'u2', 501);
    const bare = join(dir, 'bare.txt');
    await writeFile(bare, 'u1\n');
    const refused = await runCli(['reconcile', '--apply', '--take', 'redis', '--users', bare, '--match', keys.match], { DATABASE_URL: db.url, REDIS_URL });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('is a bare list of user_ids: --take applies only the state you reviewed');
    const redisSide = await review(['u1']);
    const postgresSide = await review(['u2']);
    // After the review: u1 buys 1000 in the new app, u2 buys 1000 in the old app.
    await db.query("update users set current_credits = current_credits + 1000 where user_id = 'u1'");
    await put('b@x.test', 'u2', 1501);
    const r = await reconcile('--apply', '--take', 'redis', '--users', redisSide);
    const p = await reconcile('--apply', '--take', 'postgres', '--users', postgresSide);
    for (const taken of [r, p]) {
      expect(taken.code).toBe(1);
      expect(taken.rejected.map((x) => x.detail).join('\n')).toContain('changed since your review (--take skipped it): look again');
    }
    expect(await credits('u1')).toEqual({ c: 1450, u: 50 });
    expect(await db.query('select user_id from migrate_users.resolutions')).toEqual([]);
    // Reviewed again, taken: settled.
    expect((await reconcile('--apply', '--take', 'redis', '--users', await review(['u1']))).code).toBe(1);
    expect(await credits('u1')).toEqual({ c: 501, u: 0 });
    expect((await reconcile('--apply', '--take', 'postgres', '--users', await review(['u2']))).code).toBe(0);
    expect((await verify()).code).toBe(0);
  });

  it('a kept deletion (--take postgres) is reported as the app deletion it is, and verify passes it', async () => {
    await put('a@x.test', 'u1', 500);
    expect((await migrate()).code).toBe(0);
    await db.query("delete from users where user_id = 'u1'");
    await put('a@x.test', 'u1', 600);
    expect((await migrate()).code).toBe(1);
    expect((await reconcile('--apply', '--take', 'postgres', '--users', await review(['u1']))).code).toBe(0);
    const rerun = await migrate();
    expect(rerun.code).toBe(0);
    expect(rerun.report.counts).toMatchObject({ deleted_by_app: 1, kept_app_changes: 0 });
    expect(rerun.report.credits.by_outcome.deleted_by_app).toEqual({ current: 0, used: 0 });
    expect(rerun.report.credits.app_difference).toEqual({ current: -600, used: 0 });
    expectReportAddsUp(rerun.report);
    const proven = await verify();
    expect(proven.code, proven.stdout).toBe(0);
    expect(proven.report.counts).toMatchObject({ deleted_by_app: 1, missing: 0 });
  });

  it('credits a trigger took on insert from a row nobody touched since are written back by the catch-up', async () => {
    await db.query(`create function public.t_floor() returns trigger language plpgsql as $$ begin new.current_credits := 100; return new; end $$;
      create trigger t_floor before insert on public.users for each row execute function public.t_floor()`);
    await put('a@x.test', 'u1', 500);
    expect((await migrate()).code).toBe(0);
    expect(await credits('u1')).toEqual({ c: 100, u: 0 });
    const rerun = await migrate();
    expect(rerun.report.counts).toMatchObject({ updated: 1 });
    expect(await credits('u1')).toEqual({ c: 500, u: 0 });
    expect((await verify()).code).toBe(0);
  });

  it('--combine adds up a balance changed on both sides: PostgreSQL now + what Redis changed; never more than the balances', async () => {
    await put('a@x.test', 'u1', 500);
    await put('b@x.test', 'u2', 500);
    expect((await migrate()).code).toBe(0);
    await db.query("update users set current_credits = 450, total_credits_used = 50 where user_id in ('u1', 'u2')"); // the new app: a task
    await put('a@x.test', 'u1', 700); // the old app: a purchase of 200
    await keys.putUser('b@x.test', { user_id: 'u2', email: 'b@x.test', current_credits: 700, total_credits_used: 0, username: 'renamed' });
    const plan = await reconcile('--combine');
    expect(plan.code).toBe(1);
    expect(await credits('u1')).toEqual({ c: 450, u: 50 });
    expect(plan.stdout).toContain("combined: PostgreSQL 450 +200 (Redis's change since the tool's last write) = 650 credits; credits used 50 +0 = 50");
    const applied = await reconcile('--apply', '--combine');
    expect(applied.code).toBe(1);
    expect(await credits('u1')).toEqual({ c: 650, u: 50 });
    expectReportAddsUp(applied.report);
    // u2's Redis record changed more than its balance: a person chooses (--take), nothing is combined.
    expect(applied.rejected).toEqual([expect.objectContaining({ user_id: 'u2', reason: 'changed_in_both', detail: expect.stringContaining('not combined') })]);
    expect(await credits('u2')).toEqual({ c: 450, u: 50 });
    expect((await reconcile('--apply', '--take', 'postgres', '--users', await review(['u2']))).code).toBe(0);
    const rerun = await migrate();
    expect(rerun.report.counts).toMatchObject({ updated: 0, inserted: 0, conflicts: 0, kept_app_changes: 2 });
    const proven = await verify();
    expect(proven.code, proven.stdout).toBe(0);
    expect(proven.report.counts).toMatchObject({ changed_by_app: 2 });
    expect(proven.report.invariants).toMatchObject({ balanced: true });
  });

  it('after a merge the old app adds 200 in Redis: --take redis carries the +200 onto the merged row, and everything settles', async () => {
    await put('a@x.test', 'o1', 500);
    await db.query("insert into users (user_id, email, current_credits, signup_bonus_granted) values ('n1', 'a@x.test', 100, true)");
    expect((await reconcile('--apply', '--merge')).code).toBe(0);
    expect(await credits('n1')).toEqual({ c: 500, u: 0 });
    await put('a@x.test', 'o1', 700);
    const stuck = await reconcile();
    expect(stuck.code).toBe(1);
    expect(stuck.report.classes?.changed_in_both?.users).toBe(1);
    const taken = await reconcile('--apply', '--take', 'redis', '--users', await review(['o1']));
    expect(taken.code, taken.stdout).toBe(0);
    expect(await credits('n1')).toEqual({ c: 700, u: 0 });
    expect(await credits('o1')).toBeUndefined();
    expect(await db.query('select user_id, side, reason from migrate_users.resolutions')).toEqual([
      { user_id: 'o1', side: 'redis', reason: 'changed_after_merge' },
    ]);
    expect((await migrate()).report.counts).toMatchObject({ unchanged: 1, conflicts: 0, updated: 0 });
    expect((await reconcile()).code).toBe(0);
    const proven = await verify();
    expect(proven.code, proven.stdout).toBe(0);
    expect(proven.report.counts).toMatchObject({ match: 1 });
  });

  it('a whitelisted user who spent the top-up, then an old-app purchase: the review shows Redis 500 -> 700, --take redis never grants the top-up again', async () => {
    const env = { WHITELIST_EMAILS: 'v@x.test' };
    await put('v@x.test', 'v1', 500);
    expect((await cli([], env)).code).toBe(0);
    await db.query("update users set current_credits = 40000, total_credits_used = 60000 where user_id = 'v1'");
    await put('v@x.test', 'v1', 700);
    const csvPath = join(dir, 'review.csv');
    expect((await cli(['reconcile', '--conflicts', csvPath], env)).code).toBe(1);
    const csv = await readFile(csvPath, 'utf8');
    expect(csv).toMatch(/changed_in_both,v1,v@x\.test,[^,]*,changed_in_both,current_credits,100000,700,40000,/);
    // The CSV itself is the review --take reads back.
    const taken = await cli(['reconcile', '--apply', '--take', 'redis', '--users', csvPath], env);
    expect(taken.code, taken.stdout).toBe(0);
    expect(await credits('v1')).toEqual({ c: 40_200, u: 60_000 });
    expectReportAddsUp(taken.report);
    expect((await cli([], env)).report.counts).toMatchObject({ updated: 0, conflicts: 0 });
    const proven = await cli(['verify'], env);
    expect(proven.code, proven.stdout).toBe(0);
    expect(proven.report.counts).toMatchObject({ changed_by_app: 1 });
  });
});

describe('after go-live: what no command may do', () => {
  it('a merged row the app deleted, then a Redis change: --take redis never re-creates the old user_id; --take postgres settles it', async () => {
    await put('a@x.test', 'o1', 500);
    await db.query("insert into users (user_id, email, current_credits, signup_bonus_granted) values ('n1', 'a@x.test', 100, true)");
    expect((await reconcile('--apply', '--merge')).code).toBe(0);
    await db.query("delete from users where user_id = 'n1'");
    await put('a@x.test', 'o1', 700);
    const refused = await reconcile('--apply', '--take', 'redis', '--users', await review(['o1']));
    expect(refused.code).toBe(1);
    expect(refused.rejected[0]?.detail).toContain('it is never re-created under its old user_id');
    expect(await db.query('select user_id from users')).toEqual([]);
    expect((await reconcile('--apply', '--take', 'postgres', '--users', await review(['o1']))).code).toBe(0);
    expect(await db.query('select user_id from users')).toEqual([]);
    expect((await verify()).code).toBe(0);
  });

  it('a deleted row that held a top-up is never re-created from Redis (the top-up would be granted twice)', async () => {
    const env = { WHITELIST_EMAILS: 'v@x.test' };
    await put('v@x.test', 'v1', 500);
    expect((await cli([], env)).code).toBe(0);
    await db.query("delete from users where user_id = 'v1'");
    await put('v@x.test', 'v1', 700);
    const refused = await cli(
      ['reconcile', '--apply', '--take', 'redis', '--users', await reviewOf(dir, ['v1'], (c) => cli(['reconcile', '--conflicts', c], env))],
      env,
    );
    expect(refused.code).toBe(1);
    expect(refused.rejected[0]?.detail).toContain('would grant the top-up again');
    expect(await credits('v1')).toBeUndefined();
  });

  it('both sides spent 50 and agree by chance: two movements, not one; --combine writes 400 / 100', async () => {
    await put('a@x.test', 'u1', 500);
    expect((await migrate()).code).toBe(0);
    await db.query("update users set current_credits = 450, total_credits_used = 50 where user_id = 'u1'");
    await put('a@x.test', 'u1', 450, 50);
    const seen = await reconcile();
    expect(seen.code).toBe(1);
    expect(seen.report.classes?.changed_in_both?.users).toBe(1);
    expect((await verify()).report.counts).toMatchObject({ conflict: 1 });
    expect((await reconcile('--apply', '--combine')).code).toBe(0);
    expect(await credits('u1')).toEqual({ c: 400, u: 100 });
    expect((await verify()).code).toBe(0);
  });

  it('--combine on a user whitelisted after the app touched the row grants the top-up with it, once, and counts it', async () => {
    await put('v@x.test', 'v1', 500);
    expect((await migrate()).code).toBe(0);
    await db.query("update users set current_credits = 450, total_credits_used = 50 where user_id = 'v1'");
    await put('v@x.test', 'v1', 700);
    const env = { WHITELIST_EMAILS: 'v@x.test' };
    const combined = await cli(['reconcile', '--apply', '--combine'], env);
    expect(combined.code, combined.stdout).toBe(0);
    expect(await credits('v1')).toEqual({ c: 450 + 200 + 99_300, u: 50 });
    expect(combined.report.counts).toMatchObject({ whitelist_topups: 1 });
    expectReportAddsUp(combined.report);
    expect((await cli([], env)).report.counts).toMatchObject({ updated: 0, conflicts: 0 });
    expect(await credits('v1')).toEqual({ c: 99_950, u: 50 });
    expect((await cli(['verify'], env)).code).toBe(0);
    expect((await cli(['reconcile'], env)).code).toBe(0);
  });

  it("a merged user is never combined on request (Redis's other columns are not known), only by --take redis", async () => {
    await put('a@x.test', 'o1', 500);
    await db.query("insert into users (user_id, email, current_credits, signup_bonus_granted) values ('n1', 'a@x.test', 100, true)");
    expect((await reconcile('--apply', '--merge')).code).toBe(0);
    await put('a@x.test', 'o1', 700);
    const combine = await reconcile('--apply', '--combine');
    expect(combine.code).toBe(1);
    expect(combine.rejected[0]?.detail).toContain('not combined');
    expect(await credits('n1')).toEqual({ c: 500, u: 0 });
  });
});

describe('days of operation after go-live', () => {
  it('migrate, app activity, old-app edits, catch-up, reconcile --apply / --merge / --combine / --take, verify: twice over, green, and the credits add up', async () => {
    for (let i = 0; i < 12; i++) await put(`u${i}@x.test`, `u${i}`, 1000 + i);
    const first = await migrate();
    expect(first.code).toBe(0);
    expectReportAddsUp(first.report);
    for (const day of [1, 2]) {
      const d = (i: number) => `u${i + (day - 1) * 6}`;
      // The new app: tasks, a purchase, a rename, a deleted account, a signup, and an early login of a user
      // the old app signed up today.
      await db.query('update users set current_credits = current_credits - 10, total_credits_used = total_credits_used + 10 where user_id = any($1)', [
        [d(0), d(1), d(2)],
      ]);
      await db.query('update users set current_credits = current_credits + 300 where user_id = $1', [d(3)]);
      await db.query("update users set username = 'renamed in the app' where user_id = $1", [d(4)]);
      await db.query('delete from users where user_id = $1', [d(5)]);
      await db.query('insert into users (user_id, email, current_credits, signup_bonus_granted) values ($1, $2, 100, true)', [
        `app_new${day}`,
        `new${day}@x.test`,
      ]);
      await put(`early${day}@x.test`, `early${day}`, 777);
      await db.query('insert into users (user_id, email, current_credits, total_credits_used, signup_bonus_granted) values ($1, $2, 90, 10, true)', [
        `app_early${day}`,
        `early${day}@x.test`,
      ]);
      // The old app: a purchase on a user the new app also spent on (both balances moved), a rename on another
      // (both changed, not only balances), a purchase on an untouched user, and a new signup.
      const row = async (id: string) => (await db.query<{ c: number }>('select current_credits::int as c from users where user_id = $1', [id]))[0]?.c;
      const redisOwn = (i: number) => 1000 + i + (day - 1) * 6;
      await put(`${d(0)}@x.test`, d(0), redisOwn(0) + 200);
      await keys.putUser(`${d(1)}@x.test`, { user_id: d(1), email: `${d(1)}@x.test`, current_credits: redisOwn(1), username: 'renamed in Redis' });
      await put(`u${day === 1 ? 10 : 1}@x.test`, `u${day === 1 ? 10 : 1}`, 5000);
      await put(`late${day}@x.test`, `late${day}`, 40);

      const catchUp = await migrate();
      expect(catchUp.code).toBe(1);
      expectReportAddsUp(catchUp.report);
      const applied = await reconcile('--apply');
      expectReportAddsUp(applied.report);
      const merged = await reconcile('--apply', '--merge');
      expectReportAddsUp(merged.report);
      expect(await row(`app_early${day}`)).toBe(777);
      const combined = await reconcile('--apply', '--combine');
      expectReportAddsUp(combined.report);
      expect(await row(d(0))).toBe(redisOwn(0) - 10 + 200);
      // d(1): both sides changed more than the balance: the operator takes Redis's record, as reviewed.
      const taken = await reconcile('--apply', '--take', 'redis', '--users', await review([d(1)]));
      expectReportAddsUp(taken.report);
      expect(taken.code, taken.stdout).toBe(0);
      expect(await row(d(1))).toBe(redisOwn(1));

      const settled = await reconcile();
      expect(settled.code, settled.stdout).toBe(0);
      const rerun = await migrate();
      expect(rerun.code, rerun.stdout).toBe(0);
      expect(rerun.report.counts).toMatchObject({ inserted: 0, updated: 0, conflicts: 0 });
      expectReportAddsUp(rerun.report);
      const proven = await verify();
      expect(proven.code, proven.stdout).toBe(0);
      expect(proven.report.invariants).toMatchObject({ balanced: true });
      expect(proven.report.counts).toMatchObject({ stale: 0, conflict: 0, mismatch: 0, missing: 0, not_migratable: 0 });
    }
    // Every balance, worked out by hand: Redis's, plus what the new app did, plus what the operator chose.
    const table = await db.query<{ user_id: string; c: number }>('select user_id, current_credits::int as c from users order by user_id');
    expect(Object.fromEntries(table.map((r) => [r.user_id, r.c]))).toEqual({
      u0: 1000 - 10 + 200, // combined
      u1: 5000, // taken from Redis on day 1, caught up on day 2
      u2: 1002 - 10,
      u3: 1003 + 300,
      u4: 1004,
      u6: 1006 - 10 + 200,
      u7: 1007, // taken from Redis: the app's task undone, by the operator's choice
      u8: 1008 - 10,
      u9: 1009 + 300,
      u10: 5000,
      app_new1: 100,
      app_new2: 100,
      late1: 40,
      late2: 40,
      app_early1: 777, // 777 + max(90 - 100, 0)
      app_early2: 777,
    });
  });
});
