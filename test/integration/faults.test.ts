import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import pg from 'pg';
import { startRedis, type ThrowawayRedis } from '../../src/bench/servers.js';
import { BIN, runCli } from '../helpers/cli.js';
import { createTestDatabase, noStageRecords, type TestDatabase } from '../helpers/servers.js';

const MATCH = 'user:email:*';
interface Counts {
  scanned: number;
  resumed_skipped: number;
  inserted: number;
  updated: number;
  unchanged: number;
  kept_app_changes: number;
  conflicts: number;
  pending: number;
}
let db: TestDatabase;
let redis: ThrowawayRedis;
let dir: string;

/** n users with credits 1..n in the throwaway Redis; returns the credit total. */
async function seed(n: number): Promise<number> {
  const client = new Redis(redis.url);
  const pipe = client.pipeline();
  for (let i = 1; i <= n; i++) pipe.set(`user:email:u${i}@example.com`, JSON.stringify({ user_id: `usr_${i}`, current_credits: i }));
  await pipe.exec();
  client.disconnect();
  return (n * (n + 1)) / 2;
}

const env = (extra: Record<string, string> = {}) => ({ DATABASE_URL: db.url, REDIS_URL: redis.url, LOG_LEVEL: 'warn', ...extra });

function start(
  args: string[],
  extra: Record<string, string> = {},
): { child: ChildProcess; stderr: () => string; stdout: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, '--match', MATCH, '--no-progress', ...args], {
    env: { PATH: process.env.PATH, ...env(extra) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  return { child, stderr: () => err, stdout: () => out, exit };
}

async function until(test: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function expectExact(n: number, total: number): Promise<void> {
  const verify = await runCli(['verify', '--match', MATCH, '--no-progress', '--report', join(dir, 'verify.json')], env());
  expect(verify.stdout).toContain('VERIFY OK');
  expect(verify.code).toBe(0);
  const rows = await db.query<{ n: number; s: string; d: number }>(
    'select count(*)::int as n, sum(current_credits)::text as s, count(distinct email)::int as d from users',
  );
  expect(rows[0]).toEqual({ n, s: String(total), d: n });
}

/** What a DBA (or a failover) does to the tool's sessions: pg_terminate_backend. Returns how many. */
async function terminateToolSessions(): Promise<number> {
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  try {
    const { rows } = await admin.query(
      `select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'migrate-users' and datname = current_database()`,
    );
    return rows.length;
  } finally {
    await admin.end();
  }
}

beforeEach(async () => {
  db = await createTestDatabase();
  redis = await startRedis({ persist: true });
  dir = mkdtempSync(join(tmpdir(), 'mu-faults-'));
});

afterEach(async () => {
  await redis.stop();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('faults', () => {
  it('SIGKILL at random moments, 6 times in a row, then a re-run: exact match, nothing doubled or lost', { timeout: 180_000 }, async () => {
    const total = await seed(20_000);
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      const run = start(['--batch-size', '300']);
      const delay = 200 + Math.floor(Math.random() * 2500);
      delays.push(delay);
      await sleep(delay);
      run.child.kill('SIGKILL');
      await run.exit;
    }
    const final = await runCli(['--match', MATCH, '--no-progress', '--report', join(dir, 'final.json')], env());
    expect(final.code, `kills after ${delays.join(', ')} ms; ${final.stderr}`).toBe(0);
    const report = JSON.parse(readFileSync(join(dir, 'final.json'), 'utf8')) as { counts: Counts };
    // The whole job, whatever the killed runs did before: resumed_skipped is part of these counts.
    expect(report.counts.inserted + report.counts.unchanged).toBe(20_000);
    await expectExact(20_000, total);
  });

  it('first SIGINT: in-flight batches finish, report marked interrupted, exit 130; a re-run completes', { timeout: 120_000 }, async () => {
    const total = await seed(20_000);
    const reportPath = join(dir, 'interrupted.json');
    const run = start(['--batch-size', '200', '--report', reportPath], { LOG_LEVEL: 'info' });
    await until(() => run.stderr().includes('triage done'), 'the writing phase');
    await sleep(300);
    run.child.kill('SIGINT');
    expect(await run.exit).toBe(130);
    const report = JSON.parse(readFileSync(reportPath, 'utf8')) as { status: string; counts: Counts };
    expect(report.status).toBe('interrupted');
    expect(report.counts.pending).toBeGreaterThan(0);
    expect(report.counts.inserted).toBeGreaterThan(0);
    // The summary says so too, with what to do next.
    expect(run.stdout()).toContain(
      `INTERRUPTED: ${report.counts.pending.toLocaleString('en-US')} records not decided yet. Run the same command again to resume.`,
    );
    const [row] = await db.query<{ n: number }>('select count(*)::int as n from users');
    expect(row?.n).toBe(report.counts.inserted);
    const runs = await db.query<{ status: string }>('select status from migrate_users.runs');
    expect(runs).toEqual([{ status: 'interrupted' }]);

    // The re-run resumes from the checkpoint: Redis is not read again, done records are skipped.
    const rest = await runCli(['--match', MATCH, '--no-progress', '--report', join(dir, 'rest.json')], env({ LOG_LEVEL: 'info' }));
    expect(rest.code).toBe(0);
    expect(rest.stderr).toContain('resuming an unfinished run');
    const after = JSON.parse(readFileSync(join(dir, 'rest.json'), 'utf8')) as { resumed_from: string | null; counts: Counts };
    expect(after.resumed_from).toMatch(/^run_/);
    expect(rest.stdout).toContain(`It resumed ${String(after.resumed_from)} (${report.counts.inserted.toLocaleString('en-US')} records were done before).`);
    // It reports the whole job: what the interrupted run committed plus its own.
    expect(after.counts.resumed_skipped).toBe(report.counts.inserted);
    expect(after.counts.inserted).toBe(20_000);
    expect(after.counts.scanned).toBe(report.counts.scanned);
    expect(after.counts.unchanged).toBe(0);
    await expectExact(20_000, total);
    // Finished: the checkpoint's stage holds no record any more (it stays, empty, for the next run).
    expect(await noStageRecords(db)).toBe(true);
  });

  it('a resumed run still reports the conflicts the interrupted run found, and exits 1', { timeout: 120_000 }, async () => {
    await seed(20_000);
    // 200 users, spread over the keyspace, whose email a new-app signup already took.
    await db.query(`insert into users (user_id, email, current_credits, signup_bonus_granted)
      select 'app_' || i, 'u' || (i * 100) || '@example.com', 1, true from generate_series(1, 200) as i`);
    const first = start(['--batch-size', '200', '--report', join(dir, 'first.json')], { LOG_LEVEL: 'info' });
    await until(() => first.stderr().includes('triage done'), 'the writing phase');
    await sleep(400);
    first.child.kill('SIGINT');
    expect(await first.exit).toBe(130);
    const before = JSON.parse(readFileSync(join(dir, 'first.json'), 'utf8')) as { counts: Counts };
    expect(before.counts.conflicts).toBeGreaterThan(0);

    const rejects = join(dir, 'rejects.ndjson');
    const rest = await runCli(['--match', MATCH, '--no-progress', '--report', join(dir, 'rest.json'), '--rejects', rejects], env());
    expect(rest.code).toBe(1);
    const after = JSON.parse(readFileSync(join(dir, 'rest.json'), 'utf8')) as { resumed_from: string | null; counts: Counts };
    expect(after.resumed_from).toMatch(/^run_/);
    expect(after.counts.conflicts).toBe(200);
    const lines = readFileSync(rejects, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { reason: string });
    // Rows the new app created at a first login: early logins, mergeable with reconcile --merge.
    expect(lines.filter((l) => l.reason === 'early_login')).toHaveLength(200);
  });

  it('--restart ignores the checkpoint; a stale or deleted checkpoint only costs time', { timeout: 120_000 }, async () => {
    const total = await seed(20_000);
    const interrupt = async () => {
      const run = start(['--batch-size', '200'], { LOG_LEVEL: 'info' });
      await until(() => run.stderr().includes('triage done'), 'the writing phase');
      await sleep(300);
      run.child.kill('SIGINT');
      expect(await run.exit).toBe(130);
    };
    await interrupt();
    const restarted = await runCli(['--match', MATCH, '--no-progress', '--restart', '--report', join(dir, 'restart.json')], env());
    expect(restarted.code).toBe(0);
    const fresh = JSON.parse(readFileSync(join(dir, 'restart.json'), 'utf8')) as { resumed_from: string | null; counts: Counts };
    expect(fresh.resumed_from).toBeNull();
    expect(fresh.counts.scanned).toBe(20_000);
    await expectExact(20_000, total);

    // A checkpoint claiming nothing was done (stale): the resumed run re-checks those users, writes nothing twice.
    await db.query('truncate users, migrate_users.ledger');
    await interrupt();
    await db.query(`update migrate_users.runs set last_seq = 0 where stage_table is not null`);
    const stale = await runCli(['--match', MATCH, '--no-progress', '--report', join(dir, 'stale.json')], env());
    expect(stale.code).toBe(0);
    const staleReport = JSON.parse(readFileSync(join(dir, 'stale.json'), 'utf8')) as { counts: Counts };
    expect(staleReport.counts.resumed_skipped).toBe(0);
    expect(staleReport.counts.unchanged).toBeGreaterThan(0);
    await expectExact(20_000, total);

    // A deleted checkpoint (the stage table dropped): a fresh run.
    await db.query('truncate users, migrate_users.ledger');
    await interrupt();
    const [row] = await db.query<{ t: string }>(`select stage_table as t from migrate_users.runs where stage_table is not null`);
    await db.query(`drop table ${row?.t ?? 'missing'}`);
    const gone = await runCli(['--match', MATCH, '--no-progress', '--report', join(dir, 'gone.json')], env());
    expect(gone.code).toBe(0);
    expect((JSON.parse(readFileSync(join(dir, 'gone.json'), 'utf8')) as { resumed_from: string | null }).resumed_from).toBeNull();
    await expectExact(20_000, total);
  });

  it('SIGTERM exits 143; a second signal stops at once', { timeout: 60_000 }, async () => {
    await seed(5_000);
    const term = start(['--max-rate', '2000', '--batch-size', '100']);
    await sleep(800);
    term.child.kill('SIGTERM');
    expect(await term.exit).toBe(143);

    const twice = start(['--max-rate', '500', '--batch-size', '100']);
    await sleep(800);
    twice.child.kill('SIGINT');
    await sleep(100);
    const sent = Date.now();
    twice.child.kill('SIGINT');
    expect(await twice.exit).toBe(130);
    expect(Date.now() - sent).toBeLessThan(2_000);
    expect(twice.stderr()).toContain('SIGINT again: stopping now');
  });

  it('one writing run at a time: a second migrate is refused (exit 3); dry-run and verify run alongside', { timeout: 60_000 }, async () => {
    await seed(6_000);
    const slow = start(['--max-rate', '2000']);
    await until(async () => (await db.query('select 1 from migrate_users.runs')).length > 0, 'the first run to start');
    const second = await runCli(['--match', MATCH, '--no-progress'], env());
    expect(second.code).toBe(3);
    expect(second.stderr).toContain('another migrate-users run is writing to this database');
    const dry = await runCli(['--match', MATCH, '--no-progress', '--dry-run'], env());
    expect(dry.code).toBe(0);
    expect(await slow.exit).toBe(0);
  });

  it('a PostgreSQL backend terminated mid-batch: retried with backoff, counted, and the result is exact', { timeout: 120_000 }, async () => {
    const total = await seed(20_000);
    const reportPath = join(dir, 'retried.json');
    const run = start(['--batch-size', '200', '--retry-delay-ms', '100', '--report', reportPath], { LOG_LEVEL: 'info' });
    await until(() => run.stderr().includes('triage done'), 'the writing phase');
    await sleep(300);
    expect(await terminateToolSessions()).toBeGreaterThan(0);
    expect(await run.exit, run.stderr()).toBe(0);
    const report = JSON.parse(readFileSync(reportPath, 'utf8')) as { retries: number; status: string };
    expect(report).toMatchObject({ status: 'finished' });
    expect(report.retries).toBeGreaterThanOrEqual(1);
    expect(run.stderr()).toContain('connection lost; retrying');
    await expectExact(20_000, total);
  });

  it('retries exhausted: exit 3 with a report of what was done, and a re-run completes the job', { timeout: 120_000 }, async () => {
    const total = await seed(20_000);
    const reportPath = join(dir, 'failed.json');
    const run = start(['--batch-size', '200', '--retries', '0', '--report', reportPath], { LOG_LEVEL: 'info' });
    await until(() => run.stderr().includes('triage done'), 'the writing phase');
    await sleep(300);
    expect(await terminateToolSessions()).toBeGreaterThan(0);
    expect(await run.exit).toBe(3);
    expect(run.stderr()).toMatch(/could not finish: lost the connection to PostgreSQL mid-run \(.+\); run the same command again when it is back: it resumes/);
    const report = JSON.parse(readFileSync(reportPath, 'utf8')) as { status: string; counts: Counts };
    expect(report.status).toBe('failed');
    const [row] = await db.query<{ n: number }>('select count(*)::int as n from users');
    expect(row?.n).toBe(report.counts.inserted);
    expect(await db.query('select status from migrate_users.runs')).toEqual([{ status: 'failed' }]);
    expect((await runCli(['--match', MATCH, '--no-progress'], env())).code).toBe(0);
    await expectExact(20_000, total);
  });

  it('Redis restarted mid-scan: the scan starts over safely and nothing is missed or doubled', { timeout: 120_000 }, async () => {
    const total = await seed(20_000);
    const reportPath = join(dir, 'redis.json');
    const run = start(['--max-rate', '8000', '--batch-size', '500', '--retry-delay-ms', '200', '--report', reportPath], { LOG_LEVEL: 'info' });
    await sleep(1000);
    await redis.restart(300);
    expect(await run.exit, run.stderr()).toBe(0);
    const report = JSON.parse(readFileSync(reportPath, 'utf8')) as { retries: number; counts: Counts };
    expect(report.retries).toBeGreaterThanOrEqual(1);
    expect(report.counts.scanned).toBe(20_000);
    await expectExact(20_000, total);
  });

  it('racing the live app: rows it changes during a catch-up run are never overwritten', { timeout: 120_000 }, async () => {
    await seed(10_000);
    expect((await runCli(['--match', MATCH, '--no-progress'], env())).code).toBe(0);
    // The old app moves every balance in Redis; the new app keeps spending credits of users 1..500.
    const client = new Redis(redis.url);
    const pipe = client.pipeline();
    for (let i = 1; i <= 10_000; i++) pipe.set(`user:email:u${i}@example.com`, JSON.stringify({ user_id: `usr_${i}`, current_credits: i + 1_000_000 }));
    await pipe.exec();
    client.disconnect();

    const last = new Map<string, number>();
    let stop = false;
    const app = new pg.Client({ connectionString: db.url });
    await app.connect();
    const writer = (async () => {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set once the run below ends, which TS's narrowing of a let does not see
      for (let k = 0; !stop; k++) {
        const id = `usr_${1 + (k % 500)}`;
        const value = 7_000_000 + k;
        await app.query('update users set current_credits = $1 where user_id = $2', [value, id]);
        last.set(id, value);
      }
    })();
    const run = await runCli(['--match', MATCH, '--no-progress', '--batch-size', '100', '--report', join(dir, 'race.json')], env());
    stop = true;
    await writer;
    await app.end();
    expect([0, 1]).toContain(run.code);

    const rows = await db.query<{ user_id: string; c: string }>('select user_id, current_credits::text as c from users');
    const byId = new Map(rows.map((r) => [r.user_id, Number(r.c)]));
    for (const [id, value] of last) expect(byId.get(id), id).toBe(value);
    for (let i = 501; i <= 10_000; i++) expect(byId.get(`usr_${i}`)).toBe(i + 1_000_000);
    const report = JSON.parse(readFileSync(join(dir, 'race.json'), 'utf8')) as { counts: Counts };
    expect(report.counts.updated + report.counts.kept_app_changes + report.counts.conflicts).toBe(10_000);
  });
});
