/**
 * The review's reproductions (/work/shared/repro 01-06, 10) as tests, plus the guards added with their fixes
 * (empty source, abandoned runs, whole-job reports of resumed runs). Every test has its own database and its
 * own Redis key prefix (and a throwaway redis-server where it needs two sources or a known SCAN order), runs
 * the real bin/migrate-users, and makes every race deterministic: the "app" holds a lock on a pg client, the
 * test polls pg_stat_activity until the tool waits on it, and only then signals, kills or commits.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { startRedis, type ThrowawayRedis } from '../../src/bench/servers.js';
import type { MigrateReport } from '../../src/results/migrate-report.js';
import type { ReconcileReport } from '../../src/results/reconcile-report.js';
import type { VerifyReport } from '../../src/results/verify-report.js';
import { createRaceWorld, type RaceWorld } from '../helpers/races.js';
import { expectReportAddsUp } from '../helpers/reports.js';
import { noStageRecords, REDIS_URL, type TestDatabase, type TestKeys } from '../helpers/servers.js';
import { reviewOf } from '../helpers/review.js';

let world: RaceWorld;
let db: TestDatabase;
let keys: TestKeys;
let dir: string;
const servers: ThrowawayRedis[] = [];

beforeEach(async () => {
  world = await createRaceWorld('proof');
  ({ db, keys, dir } = world);
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.stop()));
  await world.close();
});

/** The source as the tool names it in reports: no credentials, port and database number spelled out. */
function sourceUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.hostname}:${u.port || '6379'}/${Number(u.pathname.slice(1) || '0')}`;
}

const start = (args: readonly string[], env: Record<string, string> = {}) => world.start(args, env);

/** Runs a command to its end, whether or not it writes a report. */
const run = (args: readonly string[] = [], env: Record<string, string> = {}) => start(args, env).ended();

/** Runs a command whose report must exist: fails with the tool's output otherwise. */
const reported = <R = MigrateReport>(args: readonly string[] = [], env: Record<string, string> = {}) => start(args, env).finished<R>();

async function credits(): Promise<Record<string, number>> {
  const rows = await db.query<{ user_id: string; c: string }>('select user_id, current_credits::text as c from users order by user_id');
  return Object.fromEntries(rows.map((r) => [r.user_id, Number(r.c)]));
}

async function stageOfRun(runId: string): Promise<string> {
  const [row] = await db.query<{ t: string | null }>('select stage_table as t from migrate_users.runs where run_id = $1', [runId]);
  if (!row?.t) throw new Error(`run ${runId} has no stage table`);
  return row.t;
}

async function runIds(): Promise<string[]> {
  return (await db.query<{ run_id: string }>('select run_id from migrate_users.runs order by started_at')).map((r) => r.run_id);
}

describe('proof: whitelist grants (repro 01)', { timeout: 120_000 }, () => {
  it('a top-up is granted once: re-runs without the whitelist or with lower credits change nothing; an app change is kept, not a conflict', async () => {
    await keys.putUser('vip@x.test', { user_id: 'u_vip', credits: 500 });
    await keys.putUser('vip2@x.test', { user_id: 'u_vip2', credits: 500 });
    await keys.putUser('a@x.test', { user_id: 'u_a', credits: 100 });
    const whitelist = { WHITELIST_EMAILS: 'vip@x.test,vip2@x.test' };

    const first = await reported([], whitelist);
    expect(first.code, first.stderr).toBe(0);
    expect(await credits()).toEqual({ u_a: 100, u_vip: 100_000, u_vip2: 100_000 });
    expect(first.report.whitelist).toMatchObject({ emails: 2, credits: 100_000, same_as_last_run: null, last_run: null, grants_kept: 0 });
    expect(first.report.credits.whitelist_topup).toBe(2 * 99_500);
    expectReportAddsUp(first.report);
    const ledger = async () =>
      db.query('select user_id, source_digest, row_xmin::text, granted_credits::text, run_id from migrate_users.ledger order by user_id');
    const ledgerAfterFirst = await ledger();
    expect(ledgerAfterFirst.map((r) => [r.user_id, r.granted_credits])).toEqual([
      ['u_a', null],
      ['u_vip', '100000'],
      ['u_vip2', '100000'],
    ]);
    const rowVersions = async () => db.query('select user_id, xmin::text from users order by user_id');
    const versionsAfterFirst = await rowVersions();

    // A catch-up run from a shell without WHITELIST_EMAILS; no Redis record changed.
    const bare = await reported();
    expect(bare.code, bare.stderr).toBe(0);
    expect(bare.report.counts).toMatchObject({ updated: 0, unchanged: 3, conflicts: 0, kept_app_changes: 0 });
    expect(bare.report.whitelist).toMatchObject({
      emails: 0,
      credits: 100_000,
      same_as_last_run: false,
      last_run: { emails: 2, credits: 100_000 },
      grants_kept: 2,
    });
    expect(await credits()).toEqual({ u_a: 100, u_vip: 100_000, u_vip2: 100_000 });
    // Nothing written at all: same row versions, same ledger (its digest is of the record before the whitelist rule).
    expect(await rowVersions()).toEqual(versionsAfterFirst);
    expect(await ledger()).toEqual(ledgerAfterFirst);
    expectReportAddsUp(bare.report);

    // The same whitelist with lower credits: the earlier grant stands.
    const lower = await reported(['--whitelist-credits', '1000'], whitelist);
    expect(lower.code, lower.stderr).toBe(0);
    expect(lower.report.counts.updated).toBe(0);
    expect(lower.report.whitelist).toMatchObject({ emails: 2, credits: 1000, same_as_last_run: false, grants_kept: 2 });
    expect(await credits()).toEqual({ u_a: 100, u_vip: 100_000, u_vip2: 100_000 });
    expect(await ledger()).toEqual(ledgerAfterFirst);
    expectReportAddsUp(lower.report);

    // A newly whitelisted user is still topped up (keeping grants is not ignoring the whitelist).
    const wider = await reported([], { WHITELIST_EMAILS: 'vip@x.test,vip2@x.test,a@x.test' });
    expect(wider.code, wider.stderr).toBe(0);
    expect(wider.report.counts).toMatchObject({ updated: 1, unchanged: 2 });
    expect(await credits()).toEqual({ u_a: 100_000, u_vip: 100_000, u_vip2: 100_000 });
    expectReportAddsUp(wider.report);

    // The app touches u_vip2; Redis did not change: the app's row is kept, never a "Redis changed" conflict.
    await db.query(`update users set last_login = now() where user_id = 'u_vip2'`);
    const touched = await reported();
    expect(touched.code, touched.stderr).toBe(0);
    expect(touched.report.counts).toMatchObject({ kept_app_changes: 1, conflicts: 0, updated: 0, unchanged: 2 });
    expect(touched.rejects).toEqual([]);
    expect(touched.report.credits.by_outcome.kept_app_change).toEqual({ current: 100_000, used: 0 });
    expect(await credits()).toEqual({ u_a: 100_000, u_vip: 100_000, u_vip2: 100_000 });
    expectReportAddsUp(touched.report);
  });
});

describe('proof: the source of a resumed stage (repro 02)', { timeout: 120_000 }, () => {
  it('a run stopped while reading the wrong Redis is never resumed from the right one; what it wrote fails verify', async () => {
    const wrong = await startRedis();
    servers.push(wrong);
    const staging = new Redis(wrong.url);
    await staging.set(keys.userKey('a@x.test'), JSON.stringify({ user_id: 'u_a', credits: 999_999 }));
    await staging.set(keys.userKey('b@x.test'), JSON.stringify({ user_id: 'u_b', credits: 888_888 }));
    await staging.set(keys.userKey('ghost@x.test'), JSON.stringify({ user_id: 'u_ghost', credits: 777_777 }));
    staging.disconnect();
    await keys.putUser('a@x.test', { user_id: 'u_a', credits: 100 });
    await keys.putUser('b@x.test', { user_id: 'u_b', credits: 200 });
    await keys.putUser('c@x.test', { user_id: 'u_c', credits: 300 });

    // The app is signing up ghost@x.test (uncommitted): the tool, pointed at the wrong Redis, blocks there.
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`insert into users (user_id, email, current_credits) values ('app_ghost', 'ghost@x.test', 1)`);
    const mistaken = start(['--batch-size', '1', '--write-concurrency', '1'], { REDIS_URL: wrong.url });
    await world.toolBlockedBy(mistaken, [app]);
    // The operator notices and presses Ctrl-C; then the app's signup fails, so the batch in flight lands.
    mistaken.child.kill('SIGINT');
    await world.until(() => mistaken.output().includes('SIGINT: finishing the batches in flight'), 'the tool to take the SIGINT', mistaken);
    await app.client.query('rollback');
    const stopped = await mistaken.finished();
    expect(stopped.code, mistaken.output()).toBe(130);
    expect(stopped.report.status).toBe('interrupted');
    expect(stopped.report.source).toEqual({ kind: 'redis', url: sourceUrl(wrong.url), server: expect.stringMatching(/^[0-9a-f]{40}$/) });
    expect((await credits()).u_ghost).toBe(777_777);

    // The same command, pointed at the right Redis: a fresh run, never a continuation of the wrong stage.
    const right = await reported();
    expect(right.code, right.stderr).toBe(0);
    expect(right.report.resumed_from).toBeNull();
    expect(right.report.source).toEqual({ kind: 'redis', url: sourceUrl(REDIS_URL), server: expect.stringMatching(/^[0-9a-f]{40}$/) });
    const server = (report: MigrateReport) => (report.source?.kind === 'redis' ? report.source.server : undefined);
    expect(server(right.report)).not.toBe(server(stopped.report));
    expect(right.report.counts).toMatchObject({ scanned: 3, valid: 3, resumed_skipped: 0, pending: 0 });
    expect(right.report.credits.read).toEqual({ current: 600, used: 0 });
    expectReportAddsUp(right.report);
    // Every user the right Redis has holds its balance; none of the wrong server's balances is left on them.
    expect(await credits()).toMatchObject({ u_a: 100, u_b: 200, u_c: 300 });
    const ledger = await db.query<{ user_id: string; run_id: string }>(
      `select user_id, run_id from migrate_users.ledger where user_id in ('u_a', 'u_b', 'u_c') order by user_id`,
    );
    expect(ledger).toEqual(['u_a', 'u_b', 'u_c'].map((user_id) => ({ user_id, run_id: right.report.run_id })));
    // The wrong stage is gone, so no later run can continue it either.
    expect(await noStageRecords(db)).toBe(true);

    // What the stopped run did write (u_ghost, in no source the next runs read) fails verification.
    const verified = await reported<VerifyReport>(['verify']);
    expect(verified.code, verified.stderr).toBe(1);
    expect(verified.report.counts.deleted_in_redis).toBe(1);
    expect(verified.report.invariants.postgres_deleted_in_redis).toEqual({ users: 1, current_credits: 777_777, total_credits_used: 0 });
  });
});

describe('proof: verify and rows gone from Redis (repro 03)', { timeout: 120_000 }, () => {
  it('verify fails on a row the tool wrote whose Redis key is gone; a new-app signup stays allowed', async () => {
    await keys.putUser('a@x.test', { user_id: 'u_a', credits: 100 });
    await keys.putUser('b@x.test', { user_id: 'u_b', credits: 50_000, total_credits_used: 7 });
    expect((await run()).code).toBe(0);
    await keys.redis.del(keys.userKey('b@x.test'));
    const catchUp = await run();
    expect(catchUp.code, catchUp.stderr).toBe(0);
    await db.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values ('app_new', 'new@x.test', 100, true)`);

    const verified = await reported<VerifyReport>(['verify']);
    expect(verified.code, verified.stdout).toBe(1);
    expect(verified.stdout).toContain('VERIFY FAILED');
    expect(verified.report.ok).toBe(false);
    expect(verified.report.counts).toMatchObject({ match: 1, deleted_in_redis: 1, only_in_postgres: 1, mismatch: 0, missing: 0 });
    const gone = (verified.report as VerifyReport & { differences: { kind: string; user_id: string; key: string }[] }).differences;
    expect(gone.filter((d) => d.kind === 'deleted_in_redis')).toEqual([
      expect.objectContaining({ kind: 'deleted_in_redis', user_id: 'u_b', key: keys.userKey('b@x.test') }),
    ]);
    expect(verified.report.invariants.postgres_deleted_in_redis).toEqual({ users: 1, current_credits: 50_000, total_credits_used: 7 });
    expect(verified.report.invariants.postgres_only).toEqual({ users: 1, current_credits: 100, total_credits_used: 0 });
  });
});

describe('proof: credits of kept app changes (repro 04)', { timeout: 120_000 }, () => {
  it("kept_app_change counts PostgreSQL's balance, app_difference says what the app changed, and the credits close", async () => {
    await keys.putUser('a@x.test', { user_id: 'u_a', credits: 100, total_credits_used: 5 });
    await keys.putUser('b@x.test', { user_id: 'u_b', credits: 7, total_credits_used: 1 });
    expect((await run()).code).toBe(0);
    await db.query(`update users set current_credits = 40, total_credits_used = 65 where user_id = 'u_a'`); // the app: 60 spent

    const rerun = await reported();
    expect(rerun.code, rerun.stderr).toBe(0);
    const c = rerun.report.credits;
    expect(rerun.report.counts).toMatchObject({ kept_app_changes: 1, unchanged: 1 });
    expect(c.read).toEqual({ current: 107, used: 6 });
    expect(c.by_outcome.kept_app_change).toEqual({ current: 40, used: 65 });
    expect(c.by_outcome.unchanged).toEqual({ current: 7, used: 1 });
    expect(c.app_difference).toEqual({ current: -60, used: 60 });
    expect(c.written).toEqual({ current: 0, used: 0 });
    // read + top-up + app difference = what PostgreSQL holds for the users of every outcome.
    const held = Object.values(c.by_outcome).reduce<{ current: number; used: number }>(
      (sum, x) => ({ current: sum.current + Number(x.current), used: sum.used + Number(x.used) }),
      { current: 0, used: 0 },
    );
    expect(Number(c.read.current) + Number(c.whitelist_topup) + Number(c.app_difference.current)).toBe(held.current);
    expect(Number(c.read.used) + Number(c.app_difference.used)).toBe(held.used);
    expectReportAddsUp(rerun.report);
    expect(await credits()).toEqual({ u_a: 40, u_b: 7 });
  });
});

describe('proof: conflicts of a killed run (repro 05)', { timeout: 120_000 }, () => {
  it('after kill -9, the resumed run lists in --rejects every conflict the killed run recorded past its checkpoint', async () => {
    // A server of its own: the tool stages keys in SCAN order, which a quiet server keeps.
    const own = await startRedis();
    servers.push(own);
    const redis = new Redis(own.url);
    for (let i = 1; i <= 30; i++) await redis.set(keys.userKey(`u${i}@x.test`), JSON.stringify({ user_id: `u_${i}`, credits: i * 100 }));
    const order: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', keys.match, 'COUNT', 1000);
      order.push(...found);
      cursor = next;
    } while (cursor !== '0');
    redis.disconnect();
    // 20 users already have a row the tool never wrote: row_not_written_by_tool conflicts.
    await db.query(`insert into users (user_id, email, current_credits)
      select 'u_' || i, 'app' || i || '@x.test', 1 from generate_series(1, 20) as i`);
    // The app is signing up the email of the first user without such a row: one write lane blocks there (so
    // the checkpoint cannot pass it) while the other lane decides every other record.
    const blocked = order.map((key) => key.slice(keys.userKey('').length)).find((email) => Number(/^u(\d+)@/.exec(email)?.[1]) > 20);
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`insert into users (user_id, email, current_credits) values ('app_block', $1, 1)`, [blocked]);
    const rejects = join(dir, 'rejects.ndjson');
    const env = { REDIS_URL: own.url };
    const killed = start(['--batch-size', '1', '--concurrency', '1', '--write-concurrency', '2', '--rejects', rejects], env);
    await world.toolBlockedBy(killed, [app]);
    const [running] = await db.query<{ run_id: string }>(`select run_id from migrate_users.runs where status = 'running'`);
    const killedRun = running?.run_id ?? '';
    const stage = await stageOfRun(killedRun);
    const recorded = async () =>
      (await db.query<{ n: number }>(`select count(*)::int as n from ${stage} where outcome = 'conflict' and decided_by = $1`, [killedRun]))[0]?.n;
    await world.until(async () => (await recorded()) === 20, 'the killed run to record the 20 conflicts', killed);
    killed.child.kill('SIGKILL');
    await killed.exit;
    await app.client.query('rollback');
    await world.toolSessionsGone();
    // The repro's precondition: conflicts the killed run decided after its last saved checkpoint.
    const [past] = await db.query<{ n: number }>(
      `select count(*)::int as n from ${stage} s, migrate_users.runs r
       where r.run_id = $1 and s.outcome = 'conflict' and s.seq > coalesce(r.last_seq, 0)`,
      [killedRun],
    );
    expect(past?.n).toBeGreaterThan(0);

    const resumed = await reported(['--rejects', rejects], env);
    expect(resumed.code, resumed.stderr).toBe(1);
    expect(resumed.report.resumed_from).toBe(killedRun);
    expect(resumed.report.counts).toMatchObject({ scanned: 30, conflicts: 20, pending: 0 });
    expect(resumed.report.counts.inserted + resumed.report.counts.unchanged).toBe(10);
    expect(resumed.report.reasons).toEqual({ row_not_written_by_tool: 20 });
    const listed = resumed.rejects.filter((r) => r.reason === 'row_not_written_by_tool').map((r) => r.user_id);
    expect(listed.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `u_${i + 1}`).sort());
    expectReportAddsUp(resumed.report);
  });
});

describe('proof: a batch classified again (repro 06)', { timeout: 120_000 }, () => {
  it('after a concurrent unique violation the batch still counts the inserts it committed', async () => {
    await keys.putUser('a@x.test', { user_id: 'u_a', credits: 100 });
    expect((await run()).code).toBe(0);
    // The old app: u_a moves to e@x.test; n@x.test signs up with 40 credits.
    await keys.redis.del(keys.userKey('a@x.test'));
    await keys.putUser('e@x.test', { user_id: 'u_a', credits: 100 });
    await keys.putUser('n@x.test', { user_id: 'u_n', credits: 40 });
    // The new app signs up e@x.test and commits once the tool is waiting for it.
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`insert into users (user_id, email, current_credits) values ('app_e', 'e@x.test', 1)`);
    const tool = start([]);
    await world.toolBlockedBy(tool, [app]);
    await app.client.query('commit');
    const result = await tool.finished();
    expect(result.code, tool.output()).toBe(1);
    // The path under test was taken.
    expect(result.stderr).toContain('concurrent write detected; classifying the batch again');

    const inserted = await db.query<{ user_id: string }>('select user_id from migrate_users.ledger where run_id = $1', [result.report.run_id]);
    expect(inserted).toEqual([{ user_id: 'u_n' }]);
    expect(result.report.counts).toMatchObject({ inserted: 1, updated: 0, unchanged: 0, conflicts: 1 });
    expect(result.report.reasons).toEqual({ email_taken: 1 });
    expect(result.report.credits.written).toEqual({ current: 40, used: 0 });
    expect(result.report.credits.by_outcome.inserted).toEqual({ current: 40, used: 0 });
    expectReportAddsUp(result.report);
    expect(await credits()).toEqual({ app_e: 1, u_a: 100, u_n: 40 });
  });
});

describe('proof: settling a user deleted in Redis (repro 10)', { timeout: 120_000 }, () => {
  it('--take redis is refused with a reason, --take postgres settles it and logs the choice; then reconcile and verify pass', async () => {
    await keys.putUser('a@x.test', { user_id: 'u_a', credits: 100 });
    await keys.putUser('b@x.test', { user_id: 'u_b', credits: 200 });
    expect((await run()).code).toBe(0);
    await keys.redis.del(keys.userKey('b@x.test'));
    const users = await reviewOf(dir, ['u_b'], (conflicts) => run(['reconcile', '--conflicts', conflicts]));
    const ledger = async () => (await db.query<{ postgres_owns: boolean }>(`select postgres_owns from migrate_users.ledger where user_id = 'u_b'`))[0];
    const resolutions = async () => db.query('select user_id, side, reason, run_id from migrate_users.resolutions order by id');

    const conflicts = join(dir, 'conflicts.ndjson');
    const refused = await reported<ReconcileReport>(['reconcile', '--apply', '--take', 'redis', '--users', users, '--conflicts', conflicts]);
    expect(refused.code, refused.stdout).toBe(1);
    expect(refused.report.remaining).toBe(1);
    expect(refused.report.classes.deleted_in_redis.users).toBe(1);
    const listed = (await readFile(conflicts, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { class: string; user_id: string; detail: string; resolved_by?: string });
    expect(listed).toEqual([expect.objectContaining({ class: 'deleted_in_redis', user_id: 'u_b' })]);
    expect(listed[0]?.detail).toContain('--take redis cannot settle it');
    expect(listed[0]?.resolved_by).toBeUndefined();
    expect(await ledger()).toEqual({ postgres_owns: false });
    expect(await resolutions()).toEqual([]);
    expect(await credits()).toEqual({ u_a: 100, u_b: 200 });

    const kept = await reported<ReconcileReport>(['reconcile', '--apply', '--take', 'postgres', '--users', users]);
    expect(kept.code, kept.stdout).toBe(0);
    expect(kept.report.remaining).toBe(0);
    expect(await ledger()).toEqual({ postgres_owns: true });
    expect(await resolutions()).toEqual([{ user_id: 'u_b', side: 'postgres', reason: 'deleted_in_redis', run_id: kept.report.run_id }]);
    expect(await credits()).toEqual({ u_a: 100, u_b: 200 });

    const again = await reported<ReconcileReport>(['reconcile', '--apply']);
    expect(again.code, again.stdout).toBe(0);
    expect(again.report.remaining).toBe(0);
    expect(await resolutions()).toHaveLength(1);
    const verified = await reported<VerifyReport>(['verify']);
    expect(verified.code, verified.stdout).toBe(0);
    expect(verified.report.counts.deleted_in_redis).toBe(0);
  });
});

describe('proof: guards added with the fixes', { timeout: 120_000 }, () => {
  it('migrate, verify and reconcile exit 2 naming the source and --match when no key matches, unless --allow-empty', async () => {
    await keys.putUser('a@x.test', { user_id: 'u_a', credits: 100 });
    const typo = `${keys.prefix}usr:email:*`;
    const source = sourceUrl(REDIS_URL);
    for (const command of [[], ['verify'], ['reconcile'], ['reconcile', '--apply']]) {
      const refused = await run([...command, '--match', typo]);
      expect(refused.code, `${command.join(' ')}: ${refused.stderr}`).toBe(2);
      expect(refused.stderr).toContain(`no key in ${source} matches --match "${typo}"`);
      expect(refused.stderr).toContain('--allow-empty');
      const allowed = await run([...command, '--match', typo, '--allow-empty']);
      expect(allowed.code, `${command.join(' ')} --allow-empty: ${allowed.stderr}`).toBe(0);
    }
    // The right pattern on another database number of the same server: the message names that database.
    const otherDb = new URL(REDIS_URL);
    otherDb.pathname = '/14';
    const elsewhere = await run([], { REDIS_URL: otherDb.toString() });
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toContain(`no key in ${sourceUrl(otherDb.toString())} matches --match "${keys.match}"`);
    expect(await credits()).toEqual({});
  });

  it('a run left running by kill -9 is marked abandoned by the next writing run, not by a dry-run or verify', async () => {
    for (let i = 1; i <= 3; i++) await keys.putUser(`u${i}@x.test`, { user_id: `u_${i}`, credits: i });
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query('lock table users in exclusive mode');
    const killed = start(['--batch-size', '1', '--write-concurrency', '1']);
    await world.toolBlockedBy(killed, [app]);
    killed.child.kill('SIGKILL');
    await killed.exit;
    await app.client.query('rollback');
    await world.toolSessionsGone();
    const [killedRun] = await runIds();
    const status = async () => db.query<{ run_id: string; status: string }>('select run_id, status from migrate_users.runs order by started_at');
    expect(await status()).toEqual([{ run_id: killedRun, status: 'running' }]);

    expect((await run(['--dry-run'])).code).toBe(0);
    expect([0, 1]).toContain((await run(['verify'])).code);
    expect(await status()).toEqual([{ run_id: killedRun, status: 'running' }]);

    const next = await reported();
    expect(next.code, next.stderr).toBe(0);
    expect(await status()).toEqual([
      { run_id: killedRun, status: 'abandoned' },
      { run_id: next.report.run_id, status: 'finished' },
    ]);
    const [ended] = await db.query<{ finished: boolean }>('select finished_at is not null as finished from migrate_users.runs where run_id = $1', [killedRun]);
    expect(ended?.finished).toBe(true);
    // It continued the dead run's stage; what the dead run wrote after its checkpoint is found written.
    expect(next.report.resumed_from).toBe(killedRun);
    expect(next.report.counts.inserted + next.report.counts.unchanged).toBe(3);
    expect(await credits()).toEqual({ u_1: 1, u_2: 2, u_3: 3 });
  });

  it("a resumed run reports the whole job: the earlier run's decisions are in its counts and credits", async () => {
    const n = 12;
    for (let i = 1; i <= n; i++) await keys.putUser(`u${i}@x.test`, { user_id: `u_${i}`, credits: i * 10, total_credits_used: i });
    const total = 10 * ((n * (n + 1)) / 2);
    const used = (n * (n + 1)) / 2;
    // The table is locked by the app: the first write batch (one record) waits; Ctrl-C lets just it finish.
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query('lock table users in exclusive mode');
    const first = start(['--batch-size', '1', '--write-concurrency', '1']);
    await world.toolBlockedBy(first, [app]);
    first.child.kill('SIGINT');
    await world.until(() => first.output().includes('SIGINT: finishing the batches in flight'), 'the tool to take the SIGINT', first);
    await app.client.query('rollback');
    const interrupted = await first.finished();
    expect(interrupted.code, first.output()).toBe(130);
    expect(interrupted.report.counts).toMatchObject({ scanned: n, inserted: 1, pending: n - 1 });
    expectReportAddsUp(interrupted.report);

    const rest = await reported();
    expect(rest.code, rest.stderr).toBe(0);
    expect(rest.report.resumed_from).toBe(interrupted.report.run_id);
    expect(rest.report.counts).toMatchObject({
      scanned: n,
      valid: n,
      inserted: n,
      unchanged: 0,
      pending: 0,
      resumed_skipped: 1,
    });
    expect(rest.report.credits.read).toEqual({ current: total, used });
    expect(rest.report.credits.by_outcome.inserted).toEqual({ current: total, used });
    expectReportAddsUp(rest.report);
    const [sum] = await db.query<{ n: number; s: number }>('select count(*)::int as n, sum(current_credits)::int as s from users');
    expect(sum).toEqual({ n, s: total });
  });
});
