/**
 * Early logins (BRIEF.md "An old user who logged in to the new app first is merged"): the new app created a
 * fresh row for an old user before the migration reached them; `reconcile --merge` plans folding the Redis
 * account into that row, `reconcile --apply --merge` does it. Every test has its own database and Redis key
 * prefix, runs the real bin/migrate-users, and makes every race deterministic: the "app" holds a row lock on
 * a pg client, the test polls pg_stat_activity until the tool waits on it, and only then commits or kills.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ReconcileReport } from '../../src/results/reconcile-report.js';
import type { VerifyReport } from '../../src/results/verify-report.js';
import { createRaceWorld, type App, type RaceWorld, type Reject, type Running } from '../helpers/races.js';
import { expectReportAddsUp } from '../helpers/reports.js';
import type { TestDatabase, TestKeys } from '../helpers/servers.js';

let world: RaceWorld;
let db: TestDatabase;
let keys: TestKeys;

beforeEach(async () => {
  world = await createRaceWorld('merge');
  ({ db, keys } = world);
});

afterEach(async () => {
  await world.close();
});

const start = (args: readonly string[], env: Record<string, string> = {}) => world.start(args, env);
const migrate = (args: readonly string[] = [], env: Record<string, string> = {}) => start(args, env).finished();
const reconcile = (args: readonly string[] = [], env: Record<string, string> = {}) => start(['reconcile', ...args], env).finished<ReconcileReport>();
const verify = (extra: string[] = []) => start(['verify', ...extra]).finished<VerifyReport>();

/** Until the tool's backend waits on a lock held by the app, in its merge statement. */
async function toolWaitsInMerge(tool: Running, app: App): Promise<void> {
  // pg_stat_activity keeps the first 1 kB of the statement: mergeInto's opens with the merged rows.
  await world.toolBlockedBy(tool, [app], (query) => query.includes('jsonb_populate_recordset(null::public.users'));
}

interface AppRow {
  readonly credits: number;
  readonly used?: number;
  readonly bonus?: boolean;
  readonly username?: string;
  readonly avatar?: string;
  readonly password_hash?: string;
  readonly plan?: string;
  readonly renew?: string;
  readonly created?: string;
  readonly login?: string;
}

/** A row the new app created at a first login (the tool never wrote it). */
async function appRow(userId: string, email: string, r: AppRow): Promise<void> {
  await db.query(
    `insert into users (user_id, email, username, avatar, password_hash, current_credits, total_credits_used, signup_bonus_granted,
       current_plan_id, plan_renew_at, created_at, last_login)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
    [
      userId,
      email,
      r.username ?? null,
      r.avatar ?? null,
      r.password_hash ?? null,
      r.credits,
      r.used ?? 0,
      r.bonus ?? true,
      r.plan ?? null,
      r.renew ?? null,
      r.created ?? '2025-06-01T00:00:00Z',
      r.login ?? '2025-06-01T00:00:00Z',
    ],
  );
}

const UTC = (column: string) => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS')`;

async function row(userId: string): Promise<Record<string, unknown> | undefined> {
  const [found] = await db.query(
    `select user_id, email, username, avatar, password_hash, current_credits::int as credits, total_credits_used::int as used,
       signup_bonus_granted as bonus, current_plan_id as plan, ${UTC('plan_renew_at')} as renew, ${UTC('created_at')} as created,
       ${UTC('last_login')} as login
     from users where user_id = $1`,
    [userId],
  );
  return found;
}

async function merges(): Promise<Record<string, unknown>[]> {
  return db.query(
    `select old_user_id, user_id, redis_key, redis_credits::int, redis_used::int, postgres_credits::int, postgres_used::int,
       bonus_withheld::int, merged_credits::int, merged_used::int, run_id
     from migrate_users.merges order by old_user_id`,
  );
}

interface Snapshot {
  readonly users: Record<string, unknown>[];
  readonly ledger: Record<string, unknown>[];
  readonly merges: Record<string, unknown>[];
  readonly resolutions: Record<string, unknown>[];
}

/** Everything the tool could write, with each row's version: equal snapshots mean nothing was written. */
async function snapshot(): Promise<Snapshot> {
  return {
    users: await db.query('select u.*, u.xmin::text as version from users u order by user_id'),
    ledger: await db.query('select l.*, l.xmin::text as version from migrate_users.ledger l order by user_id'),
    merges: await db.query('select m.*, m.xmin::text as version from migrate_users.merges m order by old_user_id'),
    resolutions: await db.query('select * from migrate_users.resolutions order by id'),
  };
}

/** The per-column lines `reconcile` prints for the early logins: `user email  column: redis X | postgres Y -> merged Z`. */
function mergeLines(stdout: string): string[] {
  return stdout
    .split('\n')
    .filter((line) => line.includes(' -> merged '))
    .map((line) => line.trim())
    .sort();
}

describe('merge: early logins', () => {
  it('merges each early login into its new-app row: bonus withheld, purchases kept, never below Redis, fields by precedence', async () => {
    // Only the signup bonus in the new app; every other value taken from Redis.
    await keys.putUser('a@x.test', {
      user_id: 'usr_a',
      credits: 5000,
      credits_used: 7,
      username: 'old_a',
      avatar: 'https://old/a.png',
      password_hash: '$2b$12$old_hash_a',
      plan: 'basic',
      plan_renew_at: '2025-01-01T00:00:00Z',
      created_at: '2020-01-01T00:00:00Z',
      last_login: '2024-05-01T00:00:00Z',
    });
    await appRow('app_a', 'a@x.test', { credits: 100, created: '2025-06-01T00:00:00Z', login: '2025-06-02T00:00:00Z' });
    // Bought 250 and used 3 in the new app, which set every field; Redis has the later login and no created_at.
    await keys.putUser('b@x.test', {
      user_id: 'usr_b',
      credits: '5000',
      total_credits_used: 10,
      username: 'old_b',
      avatar: 'https://old/b.png',
      password_hash: '$2b$12$old_hash_b',
      current_plan_id: 'basic',
      plan_renew_at: '2025-02-01T00:00:00Z',
      last_login: '2025-07-01T00:00:00Z',
    });
    await appRow('app_b', 'b@x.test', {
      credits: 350,
      used: 3,
      username: 'new_b',
      avatar: 'https://new/b.png',
      password_hash: '$2b$12$new_hash_b',
      plan: 'pro',
      renew: '2026-01-01T00:00:00Z',
      created: '2025-06-03T00:00:00Z',
      login: '2025-06-05T00:00:00Z',
    });
    // Spent 60 of the bonus: the merge never goes below the Redis balance.
    await keys.putUser('c@x.test', { user_id: 'usr_c', credits: 5000, created_at: '2021-01-01T00:00:00Z' });
    await appRow('app_c', 'c@x.test', { credits: 40, used: 60 });
    // Whitelisted: the Redis side is max(500, 100000).
    await keys.putUser('w@x.test', { user_id: 'usr_w', credits: 500 });
    await appRow('app_w', 'w@x.test', { credits: 100 });
    // No early login: an ordinary insert in the same runs.
    await keys.putUser('n@x.test', { user_id: 'usr_n', credits: 70, credits_used: 2 });
    const whitelist = { WHITELIST_EMAILS: 'w@x.test' };

    // migrate without --merge: each early login is a conflict of its own reason, naming the row and the command.
    const before = await snapshot();
    const plain = await migrate([], whitelist);
    expect(plain.code, plain.stderr).toBe(1);
    expect(plain.report.counts).toMatchObject({ inserted: 1, merged: 0, conflicts: 4 });
    expect(plain.report.reasons).toEqual({ early_login: 4 });
    const early = plain.rejects.filter((r) => r.reason === 'early_login').sort((x, y) => String(x.user_id).localeCompare(String(y.user_id)));
    expect(early.map((r) => r.user_id)).toEqual(['usr_a', 'usr_b', 'usr_c', 'usr_w']);
    for (const r of early) {
      expect(r.detail).toContain(`user_id app_${String(r.user_id).slice(4)}`);
      expect(r.detail).toContain('reconcile --merge');
    }
    expect((await snapshot()).users.filter((u) => String(u.user_id).startsWith('app_'))).toEqual(before.users);
    expectReportAddsUp(plain.report);

    const applied = await reconcile(['--apply', '--merge'], whitelist);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.report.counts).toMatchObject({ merged: 4, inserted: 0, unchanged: 1, conflicts: 0 });
    expect(applied.report.remaining).toBe(0);
    // Redis's side with the whitelist rule applied; the new-app rows' balances before.
    expect(applied.report.classes.early_login).toEqual({ users: 4, redis_credits: 115000, postgres_credits: 590 });
    expect(applied.report.credits.merges).toEqual({
      redis: 115000,
      postgres: 590,
      bonus_withheld: 340,
      result: 115250,
      used_redis: 17,
      used_postgres: 63,
    });
    expect(applied.report.credits.merge_difference).toEqual({ current: 250, used: 63 });
    expect(applied.report.credits.by_outcome.merged).toEqual({ current: 115250, used: 80 });
    expectReportAddsUp(applied.report);

    expect(await row('app_a')).toEqual({
      user_id: 'app_a',
      email: 'a@x.test',
      username: 'old_a',
      avatar: 'https://old/a.png',
      password_hash: '$2b$12$old_hash_a',
      credits: 5000,
      used: 7,
      bonus: true,
      plan: 'basic',
      renew: '2025-01-01 00:00:00',
      created: '2020-01-01 00:00:00',
      login: '2025-06-02 00:00:00',
    });
    expect(await row('app_b')).toEqual({
      user_id: 'app_b',
      email: 'b@x.test',
      username: 'new_b',
      avatar: 'https://new/b.png',
      password_hash: '$2b$12$new_hash_b',
      credits: 5250,
      used: 13,
      bonus: true,
      plan: 'pro',
      renew: '2026-01-01 00:00:00',
      created: '2025-06-03 00:00:00',
      login: '2025-07-01 00:00:00',
    });
    expect(await row('app_c')).toMatchObject({ credits: 5000, used: 60, created: '2021-01-01 00:00:00', login: '2025-06-01 00:00:00' });
    expect(await row('app_w')).toMatchObject({ credits: 100000, used: 0 });
    expect(await row('usr_n')).toMatchObject({ credits: 70, used: 2 });
    // No row was created for the old user_ids: the new app's user_id is the one kept.
    expect(await db.query(`select user_id from users where user_id in ('usr_a', 'usr_b', 'usr_c', 'usr_w')`)).toEqual([]);

    const runId = applied.report.run_id;
    expect(await merges()).toEqual([
      {
        old_user_id: 'usr_a',
        user_id: 'app_a',
        redis_key: keys.userKey('a@x.test'),
        redis_credits: 5000,
        redis_used: 7,
        postgres_credits: 100,
        postgres_used: 0,
        bonus_withheld: 100,
        merged_credits: 5000,
        merged_used: 7,
        run_id: runId,
      },
      {
        old_user_id: 'usr_b',
        user_id: 'app_b',
        redis_key: keys.userKey('b@x.test'),
        redis_credits: 5000,
        redis_used: 10,
        postgres_credits: 350,
        postgres_used: 3,
        bonus_withheld: 100,
        merged_credits: 5250,
        merged_used: 13,
        run_id: runId,
      },
      {
        old_user_id: 'usr_c',
        user_id: 'app_c',
        redis_key: keys.userKey('c@x.test'),
        redis_credits: 5000,
        redis_used: 0,
        postgres_credits: 40,
        postgres_used: 60,
        bonus_withheld: 40,
        merged_credits: 5000,
        merged_used: 60,
        run_id: runId,
      },
      {
        old_user_id: 'usr_w',
        user_id: 'app_w',
        redis_key: keys.userKey('w@x.test'),
        redis_credits: 100000,
        redis_used: 0,
        postgres_credits: 100,
        postgres_used: 0,
        bonus_withheld: 100,
        merged_credits: 100000,
        merged_used: 0,
        run_id: runId,
      },
    ]);
    // The re-key map other tables need.
    expect(await db.query('select old_user_id, user_id from migrate_users.merges order by old_user_id')).toEqual([
      { old_user_id: 'usr_a', user_id: 'app_a' },
      { old_user_id: 'usr_b', user_id: 'app_b' },
      { old_user_id: 'usr_c', user_id: 'app_c' },
      { old_user_id: 'usr_w', user_id: 'app_w' },
    ]);
    // The ledger entry is the new-app row's, carrying the Redis key and the old user_id.
    expect(await db.query(`select user_id, source_key, merged_from from migrate_users.ledger where merged_from is not null order by user_id`)).toEqual(
      ['a', 'b', 'c', 'w'].map((x) => ({ user_id: `app_${x}`, source_key: keys.userKey(`${x}@x.test`), merged_from: `usr_${x}` })),
    );
    // The summary names no password hash.
    expect(applied.stdout + applied.stderr).not.toContain('hash_');

    // Done once: a second --apply --merge merges nothing and writes nothing.
    const settled = await snapshot();
    const again = await reconcile(['--apply', '--merge'], whitelist);
    expect(again.code, again.stderr).toBe(0);
    expect(again.report.counts).toMatchObject({ merged: 0, unchanged: 5, conflicts: 0 });
    expect(again.report.classes.in_sync.users).toBe(5);
    expect(await snapshot()).toEqual(settled);
    // A top-up is granted once: a migrate run without the whitelist leaves the merged 100000 alone.
    const noWhitelist = await migrate();
    expect(noWhitelist.code, noWhitelist.stderr).toBe(0);
    expect(noWhitelist.report.counts).toMatchObject({ unchanged: 5, conflicts: 0, merged: 0 });
    expectReportAddsUp(noWhitelist.report);
    expect(await snapshot()).toEqual(settled);
  });

  it('does not merge what is no early login, and says why: bonus not granted, a row the tool wrote, the Redis user_id taken, duplicate emails', async () => {
    // The tool migrated usr_t; the app then changed that row's email to y@, which an old Redis account holds.
    await keys.putUser('t@x.test', { user_id: 'usr_t', credits: 10 });
    const first = await migrate();
    expect(first.code, first.stderr).toBe(0);
    await db.query(`update users set email = 'y@x.test' where user_id = 'usr_t'`);
    await keys.putUser('y@x.test', { user_id: 'usr_y', credits: 20 });
    // A row holding the email that the new app did not grant a signup bonus.
    await keys.putUser('f@x.test', { user_id: 'usr_f', credits: 30 });
    await appRow('app_f', 'f@x.test', { credits: 100, bonus: false });
    // An early-login row, but a row with the Redis user_id exists too.
    await keys.putUser('r@x.test', { user_id: 'usr_r', credits: 40 });
    await appRow('app_r', 'r@x.test', { credits: 100 });
    await appRow('usr_r', 'r-elsewhere@x.test', { credits: 7, bonus: false });
    // Two Redis keys, one mailbox (emails differ only by case), and an early-login row for it.
    await keys.putUser('Dup@x.test', { user_id: 'usr_d1', email: 'Dup@x.test', credits: 50 });
    await keys.putUser('dup@x.test', { user_id: 'usr_d2', credits: 60 });
    await appRow('app_d', 'dup@x.test', { credits: 100 });
    // A real early login in the same runs: merged.
    await keys.putUser('m@x.test', { user_id: 'usr_m', credits: 1000 });
    await appRow('app_m', 'm@x.test', { credits: 100 });

    const why = (rejects: readonly Reject[]) => Object.fromEntries(rejects.map((r) => [r.user_id ?? '', `${r.reason}: ${r.detail}`] as const));
    const plain = await migrate();
    expect(plain.code, plain.stderr).toBe(1);
    expect(plain.report.reasons).toEqual({ email_taken: 3, duplicate_email: 2, early_login: 1 });
    const planned = await reconcile(['--merge']);
    expect(planned.report.counts.merged).toBe(1);
    expect(planned.report.reasons).toEqual({ email_taken: 3, duplicate_email: 2 });
    const untouched = await db.query(`select u.*, u.xmin::text as version from users u where user_id <> 'app_m' order by user_id`);

    const applied = await reconcile(['--apply', '--merge']);
    expect(applied.code, applied.stderr).toBe(1);
    expect(applied.report.counts).toMatchObject({ merged: 1, conflicts: 5 });
    expect(applied.report.reasons).toEqual({ email_taken: 3, duplicate_email: 2 });
    for (const rejects of [plain.rejects, applied.rejects]) {
      const given = why(rejects);
      expect(given.usr_y).toMatch(/^email_taken: email y@x\.test belongs to user_id usr_t in PostgreSQL; not mergeable: the tool wrote that row$/);
      expect(given.usr_f).toMatch(/^email_taken: .*app_f.*not mergeable: that row has signup_bonus_granted = false$/);
      expect(given.usr_r).toMatch(/^email_taken: .*app_r.*not mergeable: a row with the Redis user_id exists too$/);
      expect(given.usr_d1).toMatch(/^duplicate_email: /);
      expect(given.usr_d2).toMatch(/^duplicate_email: /);
    }
    expect(why(plain.rejects).usr_m).toMatch(/^early_login: .*app_m/);
    // Only the early login was merged; every other row is as it was (same version: not even rewritten).
    expect(await db.query('select old_user_id, user_id from migrate_users.merges')).toEqual([{ old_user_id: 'usr_m', user_id: 'app_m' }]);
    expect(await row('app_m')).toMatchObject({ credits: 1000 });
    expect(await db.query(`select u.*, u.xmin::text as version from users u where user_id <> 'app_m' order by user_id`)).toEqual(untouched);
    expect(await db.query(`select user_id from users where user_id in ('usr_y', 'usr_f', 'usr_d1', 'usr_d2')`)).toEqual([]);
    expectReportAddsUp(applied.report);
  });

  it('the plan (reconcile --merge) is what --apply --merge then does, and the plan writes nothing', async () => {
    await keys.putUser('a@x.test', { user_id: 'usr_a', credits: 5000, credits_used: 4, username: 'old_a', created_at: '2020-01-01T00:00:00Z' });
    await appRow('app_a', 'a@x.test', { credits: 100, used: 1, avatar: 'https://new/a.png' });
    await keys.putUser('b@x.test', { user_id: 'usr_b', credits: 300, credits_used: 9 });
    await appRow('app_b', 'b@x.test', { credits: 30, used: 20, username: 'new_b' });
    const args = ['--merge', '--signup-credits', '50'];

    const before = await snapshot();
    const plan = await reconcile(args);
    expect(plan.code, plan.stderr).toBe(1);
    expect(plan.report.applied).toBe(false);
    expect(plan.stdout).toContain('would merge 2');
    expect(await snapshot()).toEqual(before);
    expect(await merges()).toEqual([]);
    expect(await db.query('select * from migrate_users.ledger')).toEqual([]);

    const applied = await reconcile(['--apply', ...args]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.report.counts.merged).toBe(plan.report.counts.merged);
    expect(applied.report.credits.merges).toEqual(plan.report.credits.merges);
    // --signup-credits 50: a keeps 100 - 50; b's 30 is all bonus, withheld whole.
    expect(applied.report.credits.merges).toEqual({ redis: 5300, postgres: 130, bonus_withheld: 80, result: 5350, used_redis: 13, used_postgres: 21 });
    expect(applied.report.classes.early_login).toEqual(plan.report.classes.early_login);
    expect(applied.report.credits.by_outcome).toEqual(plan.report.credits.by_outcome);
    // Per user, column by column: the plan's lines are the applied run's lines, and the rows hold the merged values.
    const lines = mergeLines(plan.stdout);
    expect(lines).toEqual(mergeLines(applied.stdout));
    expect(lines).toEqual([
      'usr_a a@x.test  created_at: redis 2020-01-01T00:00:00.000000Z | postgres 2025-06-01T00:00:00.000000Z -> merged 2020-01-01T00:00:00.000000Z',
      'usr_a a@x.test  current_credits: redis 5000 | postgres 100 -> merged 5050',
      'usr_a a@x.test  total_credits_used: redis 4 | postgres 1 -> merged 5',
      'usr_a a@x.test  username: redis old_a | postgres ∅ -> merged old_a',
      'usr_b b@x.test  current_credits: redis 300 | postgres 30 -> merged 300',
      'usr_b b@x.test  total_credits_used: redis 9 | postgres 20 -> merged 29',
    ]);
    expect(plan.stdout).toContain('merges: Redis 5300 + new-app rows 130 - signup bonus withheld 80 = 5350 credits (credits used: 13 + 21)');
    expect(await row('app_a')).toMatchObject({ username: 'old_a', avatar: 'https://new/a.png', credits: 5050, used: 5, created: '2020-01-01 00:00:00' });
    expect(await row('app_b')).toMatchObject({ username: 'new_b', credits: 300, used: 29 });
    expect((await merges()).map((m) => [m.old_user_id, m.bonus_withheld, m.merged_credits])).toEqual([
      ['usr_a', 50, 5050],
      ['usr_b', 30, 300],
    ]);
    expectReportAddsUp(plan.report);
    expectReportAddsUp(applied.report);
    // The bonus to withhold only means something to a merge.
    const misuse = start(['reconcile', '--signup-credits', '50']);
    expect(await misuse.exit, misuse.output()).toBe(2);
    expect(misuse.output()).toContain('--signup-credits goes with --merge');
  });

  it('the plan classes each new-app row once: an early login\'s row is not also "only in PostgreSQL"', async () => {
    // The row holding an early login's email has a Redis record: it is the early login's PostgreSQL side.
    await keys.putUser('a@x.test', { user_id: 'usr_a', credits: 5000 });
    await appRow('app_a', 'a@x.test', { credits: 350 });
    await appRow('app_signup', 'new@x.test', { credits: 100 });
    const plan = await reconcile(['--merge']);
    const applied = await reconcile(['--apply', '--merge']);
    expect(applied.report.classes.only_in_postgres).toEqual({ users: 1, redis_credits: 0, postgres_credits: 100 });
    expect(plan.report.classes.only_in_postgres).toEqual(applied.report.classes.only_in_postgres);
    expect(plan.stdout).not.toMatch(/app_a a@x\.test {2}no Redis record/);
  });

  it('an app spending on the row during --apply --merge wins: the merge is skipped (changed_during_run), a later run merges the new balance', async () => {
    await keys.putUser('a@x.test', { user_id: 'usr_a', credits: 5000, credits_used: 5 });
    await appRow('app_a', 'a@x.test', { credits: 350, used: 2 });
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`update users set current_credits = current_credits - 30, total_credits_used = total_credits_used + 30 where user_id = 'app_a'`);
    const tool = start(['reconcile', '--apply', '--merge']);
    await toolWaitsInMerge(tool, app);
    await app.client.query('commit');
    const raced = await tool.finished<ReconcileReport>();
    expect(raced.code, raced.stderr).toBe(1);
    expect(raced.report.counts).toMatchObject({ merged: 0, conflicts: 1 });
    expect(raced.report.reasons).toEqual({ changed_during_run: 1 });
    expect(raced.rejects).toEqual([expect.objectContaining({ user_id: 'usr_a', reason: 'changed_during_run', detail: expect.stringContaining('app_a') })]);
    expect(await row('app_a')).toMatchObject({ credits: 320, used: 32 });
    expect(await merges()).toEqual([]);
    expect(await db.query('select * from migrate_users.ledger')).toEqual([]);
    expectReportAddsUp(raced.report);

    const later = await reconcile(['--apply', '--merge']);
    expect(later.code, later.stderr).toBe(0);
    expect(later.report.counts).toMatchObject({ merged: 1, conflicts: 0 });
    // 5000 + (320 - 100); credits used 5 + 32.
    expect(await row('app_a')).toMatchObject({ credits: 5220, used: 37 });
    expect(await merges()).toEqual([
      expect.objectContaining({ old_user_id: 'usr_a', postgres_credits: 320, postgres_used: 32, bonus_withheld: 100, merged_credits: 5220, merged_used: 37 }),
    ]);
  });

  /**
   * kill -9 of the tool while its merge statement waits on the app's row lock; the app then lets go
   * (rollback: the row is as it was). `endBackend`: PostgreSQL ends the dead client's backend before that (as
   * client_connection_check_interval or a pooler would); else the backend, which has not noticed its client is
   * gone, runs the statement to its end when the lock is released.
   */
  async function killDuringMerge(endBackend: boolean): Promise<{ killedRun: string; before: Snapshot }> {
    await keys.putUser('a@x.test', { user_id: 'usr_a', credits: 5000, credits_used: 5 });
    await appRow('app_a', 'a@x.test', { credits: 350, used: 2 });
    const before = await snapshot();
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`select 1 from users where user_id = 'app_a' for update`);
    const killed = start(['reconcile', '--apply', '--merge']);
    await toolWaitsInMerge(killed, app);
    const [running] = await db.query<{ run_id: string }>(`select run_id from migrate_users.runs where status = 'running'`);
    killed.child.kill('SIGKILL');
    await killed.exit;
    if (endBackend) {
      await db.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name = 'migrate-users'`, [db.name]);
    }
    await app.client.query('rollback');
    await world.toolSessionsGone();
    return { killedRun: running?.run_id ?? '', before };
  }

  /** Re-runs after the kill: together they leave exactly one merge; the last run changes nothing. */
  async function expectMergedOnce(mergedByRerun: number): Promise<void> {
    const rerun = await reconcile(['--apply', '--merge']);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.report.counts).toMatchObject({ merged: mergedByRerun, unchanged: 1 - mergedByRerun, conflicts: 0 });
    expect(await row('app_a')).toMatchObject({ credits: 5250, used: 7 });
    const done = await snapshot();
    const third = await reconcile(['--apply', '--merge']);
    expect(third.code, third.stderr).toBe(0);
    expect(third.report.counts).toMatchObject({ merged: 0, unchanged: 1, conflicts: 0 });
    expect(await merges()).toEqual([expect.objectContaining({ old_user_id: 'usr_a', user_id: 'app_a', merged_credits: 5250, merged_used: 7 })]);
    expect(await snapshot()).toEqual(done);
  }

  it('kill -9 while the merge waits on the row, its backend ended: nothing of the merge commits; the re-run merges exactly once', async () => {
    const { before } = await killDuringMerge(true);
    expect(await merges()).toEqual([]);
    expect(await snapshot()).toEqual(before);
    await expectMergedOnce(1);
  });

  it('kill -9 while the merge waits on the row, lock released: the orphaned statement merges whole (row, ledger, merges together), once', async () => {
    const { killedRun, before } = await killDuringMerge(false);
    // The backend does not notice its client died while it waits on a lock (client_connection_check_interval
    // is off), and the merge is one statement outside any transaction of the client's: once released it runs
    // to its end and commits. The merge lands whole, under the killed run's id.
    expect(killedRun).toMatch(/^run_/);
    expect(await merges()).toEqual([
      expect.objectContaining({ old_user_id: 'usr_a', user_id: 'app_a', postgres_credits: 350, merged_credits: 5250, run_id: killedRun }),
    ]);
    expect(await db.query('select user_id, merged_from, run_id from migrate_users.ledger')).toEqual([
      { user_id: 'app_a', merged_from: 'usr_a', run_id: killedRun },
    ]);
    expect(await row('app_a')).toMatchObject({ credits: 5250, used: 7 });
    expect(await snapshot()).not.toEqual(before);
    await expectMergedOnce(0);
  });

  it('a merged user whose new-app row is deleted, or whose email moves, is never inserted again under the old user_id', async () => {
    await keys.putUser('bob@x.test', { user_id: 'usr_bob', credits: 5000 });
    await appRow('app_bob', 'bob@x.test', { credits: 100, used: 0 });
    await keys.putUser('amy@x.test', { user_id: 'usr_amy', credits: 7000 });
    await appRow('app_amy', 'amy@x.test', { credits: 100, used: 0 });
    expect((await reconcile(['--apply', '--merge'])).report.counts).toMatchObject({ merged: 2 });
    // Bob deletes his account in the new app; Amy changes her email there.
    await db.query(`delete from users where user_id = 'app_bob'`);
    await db.query(`update users set email = 'amy.new@x.test' where user_id = 'app_amy'`);

    // Both are the app's decisions: Bob's deletion stands (no conflict on every catch-up run), Amy's new email too.
    const rerun = await migrate();
    expect(rerun.code, rerun.stdout).toBe(0);
    expect(rerun.report.counts).toMatchObject({ inserted: 0, kept_app_changes: 1, deleted_by_app: 1, conflicts: 0 });
    expect(rerun.report.reasons).toEqual({});
    expectReportAddsUp(rerun.report);
    expect(await db.query(`select user_id, current_credits::int as c from users order by 1`)).toEqual([{ user_id: 'app_amy', c: 7000 }]);
    const proven = await verify();
    expect(proven.code, proven.stdout).toBe(0);
    expect(proven.report.counts).toMatchObject({ deleted_by_app: 1, changed_by_app: 1, missing: 0, mismatch: 0 });
    expect(proven.report.invariants.balanced).toBe(true);
    expect((await verify(['--strict'])).code).toBe(1);
    // Amy's old address signs up again: a new person's row, not an early login of Amy's.
    await appRow('app_amy2', 'amy@x.test', { credits: 100, used: 0 });
    const again = await reconcile(['--apply', '--merge']);
    expect(again.code, again.stdout).toBe(0);
    expect(again.report.counts).toMatchObject({ merged: 0, conflicts: 0 });
  });

  it('after a merge: re-runs write nothing, verify and reconcile pass; an app spend is kept; a later Redis change is changed_after_merge', async () => {
    await keys.putUser('a@x.test', { user_id: 'usr_a', credits: 5000, credits_used: 5 });
    await appRow('app_a', 'a@x.test', { credits: 350, used: 2 });
    await keys.putUser('n@x.test', { user_id: 'usr_n', credits: 10 });
    const merged = await reconcile(['--apply', '--merge']);
    expect(merged.report.counts).toMatchObject({ merged: 1, inserted: 1 });
    const after = await snapshot();

    const rerun = await migrate();
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.report.counts).toMatchObject({ unchanged: 2, inserted: 0, updated: 0, merged: 0, kept_app_changes: 0, conflicts: 0 });
    expect(rerun.report.credits.written).toEqual({ current: 0, used: 0 });
    expect(rerun.report.credits.merge_difference).toEqual({ current: 250, used: 2 });
    expectReportAddsUp(rerun.report);
    expect(await snapshot()).toEqual(after);

    const proven = await verify();
    expect(proven.code, proven.stdout).toBe(0);
    expect(proven.report.ok).toBe(true);
    expect(proven.report.counts).toMatchObject({ match: 2, mismatch: 0, not_migratable: 0, only_in_postgres: 0 });
    expect(proven.report.invariants.balanced).toBe(true);
    expect(proven.report.invariants.merged_from_postgres).toEqual({ users: 1, current_credits: 250, total_credits_used: 2 });
    expect(proven.report.invariants.expected).toMatchObject({ users: 2, current_credits: 5260, total_credits_used: 7 });
    expect(proven.stdout).toMatch(/\+ kept from new-app rows by merges +250/);

    const synced = await reconcile();
    expect(synced.code, synced.stdout).toBe(0);
    expect(synced.report.classes.in_sync.users).toBe(2);
    expect(synced.report.classes.only_in_postgres.users).toBe(0);
    expect(synced.report.remaining).toBe(0);
    expect(await snapshot()).toEqual(after);

    // The app spends 200 on the merged row: the app owns it now.
    await db.query(`update users set current_credits = current_credits - 200, total_credits_used = total_credits_used + 200 where user_id = 'app_a'`);
    const spent = await snapshot();
    const kept = await migrate();
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.report.counts).toMatchObject({ kept_app_changes: 1, unchanged: 1, conflicts: 0, merged: 0 });
    expect(kept.report.credits.merge_difference).toEqual({ current: 50, used: 202 });
    expect(kept.report.credits.app_difference).toEqual({ current: 0, used: 0 });
    expectReportAddsUp(kept.report);
    expect(await snapshot()).toEqual(spent);
    // verify compares the row with what the merge wrote: the spend is the app's own work, listed written ->
    // now, and passes; the invariants add it up.
    const drifted = await verify();
    expect(drifted.code, drifted.stdout).toBe(0);
    expect(drifted.report.counts).toMatchObject({ match: 1, changed_by_app: 1, mismatch: 0 });
    expect(drifted.report.invariants.balanced).toBe(true);
    // Listed under the row PostgreSQL has: the new app's user_id.
    expect(drifted.stdout).toMatch(/app_a +a@x\.test +current_credits +5250 +5050/);
    expect(drifted.stdout).toMatch(/app_a +a@x\.test +total_credits_used +7 +207/);
    const appOwned = await reconcile();
    expect(appOwned.report.classes.changed_in_postgres.users).toBe(1);

    // The Redis record changes after the merge: a person must look; nothing is written.
    await keys.putUser('a@x.test', { user_id: 'usr_a', credits: 6000, credits_used: 5 });
    const changed = await migrate();
    expect(changed.code).toBe(1);
    expect(changed.report.counts).toMatchObject({ conflicts: 1, updated: 0, merged: 0 });
    expect(changed.report.reasons).toEqual({ changed_after_merge: 1 });
    expect(changed.rejects).toEqual([
      expect.objectContaining({ user_id: 'usr_a', reason: 'changed_after_merge', detail: expect.stringContaining('merged into app_a') }),
    ]);
    const reconciled = await reconcile(['--apply', '--merge']);
    expect(reconciled.code).toBe(1);
    expect(reconciled.report.reasons).toEqual({ changed_after_merge: 1 });
    expect(reconciled.report.counts).toMatchObject({ merged: 0, updated: 0, inserted: 0 });
    expect(await snapshot()).toEqual(spent);
    expect(await merges()).toHaveLength(1);
  });
});
