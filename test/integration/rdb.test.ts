/**
 * --rdb: migrate, dry-run, verify and reconcile read an RDB snapshot through a throwaway redis-server the tool
 * starts and stops. The snapshots are made by real redis-servers (SAVE) from the same data a live run reads,
 * and every run is the real bin/migrate-users as a child process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type ThrowawayRedis } from '../../src/bench/servers.js';
import type { VerifyReport } from '../../src/results/verify-report.js';
import type { ReconcileReport } from '../../src/results/reconcile-report.js';
import type { MigrateReport } from '../../src/results/migrate-report.js';
import { BIN, runCli } from '../helpers/cli.js';
import { alive, childrenOf, commandLine, saveSnapshot, throwawayServers } from '../helpers/rdb.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { asTheToolsOwnWrite, createTestDatabase, type TestDatabase } from '../helpers/servers.js';

const WAIT_MS = 60_000;
const SEEDED = 3000;
const WHITELIST = 'vip1@demo.test,vip2@demo.test,nobody@x.test';

let live: ThrowawayRedis;
let dir: string;
let snapshot: string;
let savedAt: number;
let files = 0;
const databases: TestDatabase[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mu-rdb-test-'));
  live = await startRedis();
  // The seed's variety (aliases, four timestamp styles, mixed-case keys, 9 bad records of every kind), and
  // what it lacks: a key with a TTL, a key that is not UTF-8, a value over --max-value-bytes, other databases
  // and other key patterns (which nobody may read), and a clean set for verify.
  const seeded = await runCli(['seed', '--count', String(SEEDED), '--redis-url', live.url]);
  expect(seeded.code, seeded.stderr).toBe(0);
  const redis = new Redis(live.url);
  await redis.set('user:email:ttl@x.test', JSON.stringify({ user_id: 'usr_ttl', credits: 7 }), 'EX', 86_400);
  await redis.set(Buffer.from('user:email:\xff@x.test', 'latin1'), JSON.stringify({ user_id: 'usr_bytes', credits: 1 }));
  await redis.set('user:email:big@x.test', JSON.stringify({ user_id: 'usr_big', credits: 1, avatar: 'x'.repeat(10_000) }));
  await redis.set('code:verify:vip1@demo.test', '123456');
  // Expires between the SAVE and the runs: gone from the live server, and dropped when the snapshot loads.
  await redis.set('user:email:expiring@x.test', JSON.stringify({ user_id: 'usr_expiring', credits: 5 }), 'PX', 1500);
  for (let i = 0; i < 50; i++) await redis.set(`clean:user:email:c${i}@x.test`, JSON.stringify({ user_id: `usr_c${i}`, credits: i, credits_used: 2 * i }));
  await redis.select(1);
  await redis.set('user:email:other-db@x.test', JSON.stringify({ user_id: 'usr_db1', credits: 1 }));
  redis.disconnect();
  savedAt = Date.now();
  snapshot = await saveSnapshot(live.url, join(dir, 'dump.rdb'));
  // A copy made later (as when a backup is downloaded): its mtime is not when the snapshot was taken.
  await sleep(3000);
  const copy = `${snapshot}.copy`;
  copyFileSync(snapshot, copy);
  rmSync(snapshot);
  copyFileSync(copy, snapshot);
  rmSync(copy);
}, 120_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- beforeAll may have failed before setting it
  await live?.stop();
  await Promise.all(databases.map((db) => db.drop()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function database(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  databases.push(db);
  return db;
}

interface Running {
  readonly child: ChildProcess;
  readonly exit: Promise<number | null>;
  stderr(): string;
  finished<R>(): Promise<Finished<R>>;
}

interface Finished<R> {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly report: R;
  readonly rejects: string[];
}

/** bin/migrate-users with a report (and, where the command has them, rejects); `detached` gives it a process group of its own. */
function start(args: readonly string[], env: Record<string, string> = {}, options: { detached?: boolean } = {}): Running {
  files += 1;
  const report = join(dir, `report-${files}.json`);
  const rejects = join(dir, `rejects-${files}.ndjson`);
  const command = args[0] === 'verify' || args[0] === 'reconcile' ? [args[0]] : [];
  const flags = args.slice(command.length);
  const outputs = ['--report', report, ...(command[0] === 'verify' ? [] : ['--rejects', rejects])];
  const child = spawn(process.execPath, [BIN, ...command, '--no-progress', ...outputs, ...flags], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn', WHITELIST_EMAILS: WHITELIST, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached === true,
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  return {
    child,
    exit,
    stderr: () => stderr,
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- a typed JSON.parse: the caller names the report it expects
    finished: async <R>() => {
      const code = await Promise.race([exit, sleep(WAIT_MS).then(() => 'timeout' as const)]);
      if (code === 'timeout') {
        child.kill('SIGKILL');
        throw new Error(`the tool did not finish within ${WAIT_MS} ms\n${stdout}\n${stderr}`);
      }
      const parsed = JSON.parse(await readFile(report, 'utf8').catch(() => 'null')) as R;
      const lines = (await readFile(rejects, 'utf8').catch(() => '')).split('\n').filter(Boolean);
      return { code, stdout, stderr, report: parsed, rejects: lines };
    },
  };
}

const run = <R = MigrateReport>(args: readonly string[], env: Record<string, string> = {}) => start(args, env).finished<R>();

/** A command without report files (seed). */

const EXPIRED = 'keys whose TTL passed since the snapshot was written were not loaded (Redis drops them on load, as production has since)';

/** What the tool said on stderr (JSON log lines at warn level and above), in short. */
function warnings(stderr: string): { msg: string; expired?: number }[] {
  return stderr
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      try {
        const entry = JSON.parse(line) as { msg: string; expired?: number };
        return entry.expired === undefined ? { msg: entry.msg } : { msg: entry.msg, expired: entry.expired };
      } catch {
        return { msg: line };
      }
    });
}

/** A report without what differs between any two runs: its id, its times and its source. */
function comparable(report: object | null): Record<string, unknown> {
  if (report === null) throw new Error('no report was written');
  const { run_id, started_at, finished_at, duration_seconds, users_per_second, source, ...rest } = report as Record<string, unknown>;
  return rest;
}

const sortedRejects = (lines: readonly string[]) =>
  lines
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .map(({ run_id, ...rest }) => JSON.stringify(rest))
    .sort();

async function rows(db: TestDatabase) {
  return {
    users: await db.query(`select to_jsonb(u) - 'updated_at' as row from users u order by user_id`),
    ledger: await db.query(
      `select to_jsonb(l) - 'run_id' - 'written_at' - 'row_xmin' - 'row_updated_at' as entry from migrate_users.ledger l order by user_id`,
    ),
  };
}

async function until(test: () => boolean | Promise<boolean>, what: string, tool?: Running, ms = WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await test())) {
    if (tool && tool.child.exitCode !== null) throw new Error(`the tool exited (${tool.child.exitCode}) before ${what}\n${tool.stderr()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${tool ? `\n${tool.stderr()}` : ''}`);
    await sleep(20);
  }
}

/** A TCP port that accepts connections, counts them and answers nothing. */
async function listener(): Promise<{ url: string; connections(): number; close(): Promise<void> }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { url: `redis://127.0.0.1:${port}`, connections: () => connections, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('--rdb reads a snapshot exactly as the live server', { timeout: 240_000 }, () => {
  it('dry-run, migrate, verify and reconcile: the same reports and the same rows, and production gets no command', async () => {
    const fromLive = await database();
    const fromSnapshot = await database();
    const liveEnv = { REDIS_URL: live.url };
    const common = ['--max-value-bytes', '4096'];
    // REDIS_URL names "production" for the snapshot runs: a listener that counts who connects to it.
    const production = await listener();
    const snapEnv = { REDIS_URL: production.url, DATABASE_URL: fromSnapshot.url };

    const dryLive = await run(['--dry-run', ...common], { ...liveEnv, DATABASE_URL: fromLive.url });
    const drySnap = await run(['--dry-run', '--rdb', snapshot, ...common], snapEnv);
    expect(warnings(drySnap.stderr)).toEqual([{ msg: EXPIRED, expired: 1 }]);
    expect(drySnap.code).toBe(dryLive.code);
    expect(comparable(drySnap.report)).toEqual(comparable(dryLive.report));
    expect(sortedRejects(drySnap.rejects)).toEqual(sortedRejects(dryLive.rejects));
    expect(dryLive.rejects).toHaveLength(11);

    const migLive = await run([...common], { ...liveEnv, DATABASE_URL: fromLive.url });
    const migSnap = await run(['--rdb', snapshot, ...common], snapEnv);
    expect(warnings(migSnap.stderr)).toEqual([{ msg: EXPIRED, expired: 1 }]);
    expect(migLive.code).toBe(1);
    expect(migSnap.code).toBe(1);
    // The data set has what the comparison must cover: bad records of every kind, top-ups, a TTL, odd keys.
    expect(migLive.report.counts).toMatchObject({ scanned: SEEDED + 9 + 3, whitelist_topups: 2 });
    expect(migLive.report.reasons).toMatchObject({ key_not_utf8: 1, value_too_large: 1, wrong_type: 1, duplicate_email: 2 });
    expect(comparable(migSnap.report)).toEqual(comparable(migLive.report));
    expect(sortedRejects(migSnap.rejects)).toEqual(sortedRejects(migLive.rejects));
    expect(await rows(fromSnapshot)).toEqual(await rows(fromLive));
    expect((await rows(fromLive)).users.length).toBeGreaterThan(SEEDED - 10);

    const digest = createHash('sha256').update(readFileSync(snapshot)).digest('hex');
    expect(migSnap.report.source).toEqual({ kind: 'rdb', file: snapshot, sha256: digest, bytes: readFileSync(snapshot).length, created: expect.any(String) });
    // created: the RDB's own ctime (the SAVE), not the copy's mtime.
    const created = Date.parse((migSnap.report.source as { created: string }).created);
    expect(Math.abs(created - savedAt)).toBeLessThanOrEqual(2000);
    expect(migSnap.stdout).toContain(`source: snapshot ${snapshot} (sha256 ${digest.slice(0, 12)}`);
    expect(migLive.report.source).toMatchObject({ kind: 'redis' });

    // verify from the snapshot, against what the live run wrote: the same verdict and figures as verify live.
    const verLive = await run<VerifyReport>(['verify', ...common], { ...liveEnv, DATABASE_URL: fromLive.url });
    const verSnap = await run<VerifyReport>(['verify', '--rdb', snapshot, ...common], { ...snapEnv, DATABASE_URL: fromLive.url });
    expect(warnings(verSnap.stderr)).toEqual([{ msg: EXPIRED, expired: 1 }]);
    expect(verSnap.code).toBe(verLive.code);
    const { differences: liveDifferences, ...liveVerify } = comparable(verLive.report);
    const { differences: snapDifferences, ...snapVerify } = comparable(verSnap.report);
    expect(snapVerify).toEqual(liveVerify);
    expect((snapDifferences as unknown[]).map((d) => JSON.stringify(d)).sort()).toEqual((liveDifferences as unknown[]).map((d) => JSON.stringify(d)).sort());
    expect(verSnap.stdout).toContain(`source: snapshot ${snapshot}`);

    const recSnap = await run<ReconcileReport>(['reconcile', '--rdb', snapshot, ...common], { ...snapEnv, DATABASE_URL: fromLive.url });
    const recLive = await run<ReconcileReport>(['reconcile', ...common], { ...liveEnv, DATABASE_URL: fromLive.url });
    expect(warnings(recSnap.stderr)).toEqual([{ msg: EXPIRED, expired: 1 }]);
    expect(recSnap.code).toBe(recLive.code);
    expect(comparable(recSnap.report)).toEqual(comparable(recLive.report));

    // The clean set: live migrate, then the CI job's verify from the snapshot passes (exit 0) ...
    const clean = ['--match', 'clean:user:email:*'];
    const cleanDb = await database();
    expect((await run(clean, { ...liveEnv, DATABASE_URL: cleanDb.url })).code).toBe(0);
    const passes = await run<VerifyReport>(['verify', '--rdb', snapshot, ...clean], { ...snapEnv, DATABASE_URL: cleanDb.url });
    expect(passes.code, passes.stderr).toBe(0);
    expect(passes.report.counts).toMatchObject({ keys_checked: 50, match: 50, mismatch: 0 });
    const sample = await run<VerifyReport>(['verify', '--rdb', snapshot, '--sample', '20', ...clean], { ...snapEnv, DATABASE_URL: cleanDb.url });
    expect(sample.code, sample.stderr).toBe(0);
    expect(sample.report.sample).toEqual({ size: 20, keys_in_redis: 50 });
    // ... and fails when PostgreSQL differs from the snapshot (a wrong write of the tool's, not the app's work).
    await cleanDb.query(`update users set current_credits = current_credits + 1 where user_id = 'usr_c7'`);
    await asTheToolsOwnWrite(cleanDb);
    const fails = await run<VerifyReport>(['verify', '--rdb', snapshot, ...clean], { ...snapEnv, DATABASE_URL: cleanDb.url });
    expect(fails.code).toBe(1);
    expect(fails.report.counts).toMatchObject({ mismatch: 1 });

    // Production (REDIS_URL) was never contacted by a snapshot run; the same URL is contacted by a live run
    // (which cannot connect to this listener, which speaks no Redis: exit 2, a server never reached).
    expect(production.connections()).toBe(0);
    expect((await run(['--dry-run', ...clean], { REDIS_URL: production.url, DATABASE_URL: fromSnapshot.url, LOG_LEVEL: 'silent' })).code).toBe(2);
    expect(production.connections()).toBeGreaterThan(0);
    await production.close();
  });
});

describe('--rdb: a snapshot older than what was written is not written from', { timeout: 120_000 }, () => {
  it('after a live run, a writing run from an older snapshot is refused (exit 2, nothing written); dry-run reads it; --allow-older-snapshot writes', async () => {
    const db = await database();
    // The snapshot's time has whole seconds: the live run starts in a later one.
    await sleep(Math.max(0, savedAt + 1100 - Date.now()));
    const env = { DATABASE_URL: db.url, WHITELIST_EMAILS: WHITELIST };
    const fromLive = await runCli(['--redis-url', live.url, '--no-progress'], env);
    expect(fromLive.code, fromLive.stderr).toBe(1);
    const before = await db.query<{ n: number }>('select count(*)::int as n from migrate_users.runs');

    const refused = await runCli(['--rdb', snapshot, '--no-progress'], env);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(
      /the snapshot was taken at \S+, before what run run_\w+ wrote \(read as of \S+\): writing from it would put back older balances/,
    );
    expect(await db.query<{ n: number }>('select count(*)::int as n from migrate_users.runs')).toEqual(before);
    const reconcileApply = await runCli(['reconcile', '--apply', '--rdb', snapshot, '--no-progress'], env);
    expect(reconcileApply.code, reconcileApply.stderr).toBe(2);
    expect(reconcileApply.stderr).toContain('would put back older balances');

    const dry = await runCli(['--dry-run', '--rdb', snapshot, '--no-progress'], env);
    expect(dry.code, dry.stderr).toBe(1);
    const allowed = await runCli(['--rdb', snapshot, '--allow-older-snapshot', '--no-progress'], env);
    expect(allowed.code, allowed.stderr).toBe(1);
  });
});

describe('--rdb: what is wrong is said before any work (exit 2)', { timeout: 120_000 }, () => {
  it('missing, not an RDB, too new for the local server, no redis-server: refused before connecting to anything', async () => {
    // Nothing listens here: a tool that connected first would exit 3 ("cannot reach"), not 2.
    const nowhere = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', REDIS_URL: 'redis://127.0.0.1:1' };
    const missing = await run(['--rdb', join(dir, 'missing.rdb')], nowhere);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`--rdb ${join(dir, 'missing.rdb')} does not exist`);

    const text = join(dir, 'notes.rdb');
    writeFileSync(text, 'hello, not a snapshot\n');
    const notRdb = await run(['verify', '--rdb', text], nowhere);
    expect(notRdb.code).toBe(2);
    expect(notRdb.stderr).toContain('is not an RDB file (it does not start with "REDIS" and a 4-digit version)');

    const unreadable = join(dir, 'unreadable.rdb');
    copyFileSync(snapshot, unreadable);
    chmodSync(unreadable, 0o000);
    if (process.getuid?.() !== 0) {
      const denied = await run(['--rdb', unreadable], nowhere);
      expect(denied.code).toBe(2);
      expect(denied.stderr).toContain('is not readable');
    }

    const newer = join(dir, 'newer.rdb');
    const bytes = readFileSync(snapshot);
    bytes.write('0011', 5, 'latin1');
    writeFileSync(newer, bytes);
    const tooNew = await run(['--dry-run', '--rdb', newer], nowhere);
    expect(tooNew.code).toBe(2);
    expect(tooNew.stderr).toMatch(
      /--rdb \S+newer\.rdb is RDB version 11 \(written by Redis [\d.]+\), but the local redis-server \(Redis 7\.0\.\d+, \S+\) loads RDB versions up to 10/,
    );

    const noBinary = await run(['reconcile', '--rdb', snapshot, '--redis-server', '/nonexistent'], nowhere);
    expect(noBinary.code).toBe(2);
    expect(noBinary.stderr).toContain('--redis-server /nonexistent does not exist: install it (Debian/Ubuntu: apt install redis-server');
    const notOnPath = await run(['--rdb', snapshot], { ...nowhere, PATH: dir });
    expect(notOnPath.code).toBe(2);
    expect(notOnPath.stderr).toContain('none was found on PATH: install it');

    const mixed = await run(['--rdb', snapshot, '--redis-url', 'redis://127.0.0.1:6379', '--redis-cluster'], nowhere);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('it cannot go with --redis-url');
    expect(mixed.stderr).toContain('--rdb cannot go with --redis-cluster');
  });

  it("a corrupt or truncated file: the server's own words, exit 2, nothing written and nothing left running", async () => {
    const db = await database();
    const corrupt = join(dir, 'corrupt.rdb');
    const bytes = readFileSync(snapshot);
    bytes.fill(0x41, Math.floor(bytes.length / 2), Math.floor(bytes.length / 2) + 16);
    writeFileSync(corrupt, bytes);
    const truncated = join(dir, 'truncated.rdb');
    copyFileSync(snapshot, truncated);
    truncateSync(truncated, Math.floor(bytes.length * 0.7));
    const env = { DATABASE_URL: db.url, REDIS_URL: 'redis://127.0.0.1:1', LOG_LEVEL: 'info' };

    const damaged = await run(['--rdb', corrupt], env);
    expect(damaged.code, damaged.stderr).toBe(2);
    expect(damaged.stderr).toMatch(/could not load --rdb \S+corrupt\.rdb \(damaged or incomplete\?\): .*(checksum|CRC|Internal error in RDB)/);
    const cut = await run(['verify', '--rdb', truncated], env);
    expect(cut.code, cut.stderr).toBe(2);
    expect(cut.stderr).toMatch(/could not load --rdb \S+truncated\.rdb \(damaged or incomplete\?\): .*Unexpected EOF reading RDB file/);
    // The server's check names keys (emails) on other lines: none of them reaches the message.
    expect(`${damaged.stderr}${cut.stderr}`).not.toMatch(/Reading key/);

    for (const result of [damaged, cut]) {
      const servers = throwawayServers(result.stderr);
      expect(servers).toHaveLength(1);
      for (const { pid, watchdog, folder } of servers) {
        expect(alive(pid)).toBe(false);
        expect(alive(watchdog)).toBe(false);
        expect(existsSync(folder)).toBe(false);
      }
    }
    expect(await db.query('select count(*)::int as n from migrate_users.runs')).toEqual([{ n: 0 }]);
    expect(await db.query('select count(*)::int as n from users')).toEqual([{ n: 0 }]);
  });

  it("a release this tool does not know: the server's refusal of a newer format is reported with both versions", async () => {
    // A redis-server that calls itself 9.0.0: no table says what it loads, so the load itself decides.
    const fake = join(dir, 'redis-server-9');
    writeFileSync(
      fake,
      `#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Redis server v=9.0.0 sha=00000000:0 malloc=libc bits=64 build=0"; exit 0; fi\nexec redis-server "$@"\n`,
      { mode: 0o755 },
    );
    const newer = join(dir, 'newer-12.rdb');
    const bytes = readFileSync(snapshot);
    bytes.write('0012', 5, 'latin1');
    writeFileSync(newer, bytes);
    const db = await database();
    const refused = await run(['--rdb', newer, '--redis-server', fake], { DATABASE_URL: db.url });
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`--rdb ${newer} is RDB version 12 (written by Redis`);
    expect(refused.stderr).toContain(`which the local redis-server (Redis 9.0.0, ${fake}) cannot load ("Can't handle RDB format version 12")`);
  });
});

describe('--rdb: the throwaway server never outlives the tool', { timeout: 120_000 }, () => {
  it('kill -9 of the tool mid-run: its redis-server, watchdog and folder are gone', async () => {
    const db = await database();
    const tool = start(['--rdb', snapshot, '--max-rate', '300', '--batch-size', '100'], { DATABASE_URL: db.url, LOG_LEVEL: 'info' });
    await until(() => tool.stderr().includes('"msg":"run started"'), 'the run to start reading', tool);
    const [server] = throwawayServers(tool.stderr());
    if (!server) throw new Error(`no throwaway server logged\n${tool.stderr()}`);
    expect(alive(server.pid)).toBe(true);
    expect(commandLine(server.pid)).toContain('redis-server');
    expect(existsSync(server.folder)).toBe(true);
    tool.child.kill('SIGKILL');
    await tool.exit;
    await until(() => !alive(server.pid) && !alive(server.watchdog) && !existsSync(server.folder), 'the throwaway server to be gone', undefined, 10_000);
  });

  it('Ctrl-C (SIGINT to the whole process group): the run ends as interrupted, reading until then, and the server is gone', async () => {
    const db = await database();
    const tool = start(['--rdb', snapshot, '--max-rate', '1000', '--batch-size', '100'], { DATABASE_URL: db.url, LOG_LEVEL: 'info' }, { detached: true });
    await until(() => tool.stderr().includes('"msg":"run started"'), 'the run to start reading', tool);
    const [server] = throwawayServers(tool.stderr());
    if (!server) throw new Error(`no throwaway server logged\n${tool.stderr()}`);
    await sleep(500);
    // What a terminal does: every process of the foreground group gets the signal.
    process.kill(-(tool.child.pid as number), 'SIGINT');
    const result = await tool.finished<MigrateReport>();
    expect(result.code, result.stderr).toBe(130);
    // The batches in flight still read from the server: a server killed by the Ctrl-C would fail the run (exit 3).
    expect(result.report.status).toBe('interrupted');
    expect(result.report.source).toMatchObject({ kind: 'rdb', file: snapshot });
    expect(alive(server.pid)).toBe(false);
    expect(alive(server.watchdog)).toBe(false);
    expect(existsSync(server.folder)).toBe(false);
  });

  it('a --redis-server wrapper that does not exec: the redis-server it starts is gone after a normal end, Ctrl-C and kill -9 of the tool', async () => {
    // The shell stays between the watchdog and the server: killing the shell alone would orphan the server.
    const wrapper = join(dir, 'redis-server-no-exec');
    writeFileSync(wrapper, '#!/bin/sh\nredis-server "$@"\n', { mode: 0o755 });
    for (const end of ['finishes', 'SIGINT', 'SIGKILL'] as const) {
      const db = await database();
      const rate = end === 'finishes' ? '5000' : '500';
      const args = ['--rdb', snapshot, '--redis-server', wrapper, '--max-rate', rate, '--batch-size', '100'];
      const tool = start(args, { DATABASE_URL: db.url, LOG_LEVEL: 'info' }, { detached: true });
      await until(() => tool.stderr().includes('"msg":"run started"'), 'the run to start reading', tool);
      const [shell] = throwawayServers(tool.stderr());
      if (!shell) throw new Error(`no throwaway server logged\n${tool.stderr()}`);
      const servers = childrenOf(shell.pid).filter((pid) => commandLine(pid).includes('redis-server'));
      expect(servers, `${end}: the wrapper's redis-server`).toHaveLength(1);
      if (end === 'SIGINT') process.kill(-(tool.child.pid as number), 'SIGINT');
      if (end === 'SIGKILL') tool.child.kill('SIGKILL');
      const code = end === 'SIGKILL' ? await tool.exit : (await tool.finished<MigrateReport>()).code;
      expect(code, `${end}\n${tool.stderr()}`).toBe({ finishes: 1, SIGINT: 130, SIGKILL: null }[end]);
      const left = () => [...servers, shell.pid, shell.watchdog].filter(alive);
      await until(() => left().length === 0 && !existsSync(shell.folder), `${end}: every process of the throwaway server to be gone`, undefined, 10_000).catch(
        (error: unknown) => {
          throw new Error(
            `${String(error)}; alive: ${left()
              .map((pid) => `${pid} ${commandLine(pid)}`)
              .join(', ')}`,
          );
        },
      );
    }
  });
});

describe('--rdb: a resume continues only a stage read from the same snapshot', { timeout: 180_000 }, () => {
  it('the same file (even copied elsewhere) resumes; another file starts afresh', async () => {
    const db = await database();
    const own = await startRedis();
    try {
      const redis = new Redis(own.url);
      for (let i = 1; i <= 30; i++) await redis.set(`user:email:u${i}@x.test`, JSON.stringify({ user_id: `u_${i}`, credits: i }));
      const first = await saveSnapshot(own.url, join(dir, 'first.rdb'));
      await redis.set('user:email:u1@x.test', JSON.stringify({ user_id: 'u_1', credits: 1000 }));
      const second = await saveSnapshot(own.url, join(dir, 'second.rdb'));
      redis.disconnect();
      const copy = join(dir, 'copy-of-first.rdb');
      copyFileSync(first, copy);

      const interrupt = async (file: string) => {
        // The app signs up u20's email and holds it uncommitted: the tool waits there, the stage complete.
        const app = new (await import('pg')).default.Client({ connectionString: db.url, application_name: 'rdb-test-app' });
        await app.connect();
        try {
          const [{ pid }] = (await app.query<{ pid: number }>('select pg_backend_pid() as pid')).rows as [{ pid: number }];
          await app.query('begin');
          await app.query(`insert into users (user_id, email, current_credits) values ('app_u20', 'u20@x.test', 1)`);
          const tool = start(['--rdb', file, '--batch-size', '1', '--write-concurrency', '1'], { DATABASE_URL: db.url });
          await until(
            async () => {
              const [row] = await db.query<{ n: number }>(
                `select count(*)::int as n from pg_stat_activity where datname = $1 and application_name = 'migrate-users' and wait_event_type = 'Lock' and $2 = any(pg_blocking_pids(pid))`,
                [db.name, pid],
              );
              return (row?.n ?? 0) > 0;
            },
            'the tool to wait on the app',
            tool,
          );
          tool.child.kill('SIGINT');
          await until(() => tool.stderr().includes('SIGINT: finishing the batches in flight'), 'the tool to take the SIGINT', tool);
          await app.query('rollback');
          const stopped = await tool.finished<MigrateReport>();
          expect(stopped.code, stopped.stderr).toBe(130);
          return stopped.report;
        } finally {
          await app.end();
        }
      };

      const stopped = await interrupt(first);
      const resumed = await run(['--rdb', copy, '--write-concurrency', '1'], { DATABASE_URL: db.url });
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.report.resumed_from).toBe(stopped.run_id);
      // The report names the file the stage was read from.
      expect(resumed.report.source).toMatchObject({ kind: 'rdb', file: first });

      await db.query('delete from migrate_users.ledger; delete from users');
      const again = await interrupt(first);
      const fresh = await run(['--rdb', second, '--write-concurrency', '1'], { DATABASE_URL: db.url });
      expect(fresh.code, fresh.stderr).toBe(0);
      expect(fresh.report.resumed_from).toBeNull();
      expect(again.run_id).not.toBe(fresh.report.run_id);
      expect(fresh.report.source).toMatchObject({ kind: 'rdb', file: second });
      expect(await db.query(`select current_credits::int as c from users where user_id = 'u_1'`)).toEqual([{ c: 1000 }]);
    } finally {
      await own.stop();
    }
  });
});

describe("--rdb repeated: a cluster's snapshots, one per master", { timeout: 180_000 }, () => {
  let cluster: RedisCluster;
  let client: Cluster;

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
  }, 60_000);

  afterAll(async () => {
    // beforeAll may have failed before setting these, whatever their declared types say.
    /* eslint-disable @typescript-eslint/no-unnecessary-condition */
    await client?.quit().catch(() => client.disconnect());
    await cluster?.stop();
    /* eslint-enable @typescript-eslint/no-unnecessary-condition */
  });

  it('reads every file as the live cluster reads every master: the same report and rows', async () => {
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 1500; i++) writes.push(client.set(`user:email:c${i}@example.com`, JSON.stringify({ user_id: `usr_${i}`, credits: i })));
    // The same email under two keys on different masters, and a bad record.
    writes.push(client.set('user:email:Twin@example.com', JSON.stringify({ user_id: 'usr_twin_a', credits: 1 })));
    writes.push(client.set('user:email:twin@example.com', JSON.stringify({ user_id: 'usr_twin_b', credits: 2 })));
    writes.push(client.set('user:email:bad@example.com', '{oops'));
    await Promise.all(writes);
    // The masters share a folder and a file name: SAVE and copy one after another.
    const snapshots: string[] = [];
    for (const port of cluster.ports) snapshots.push(await saveSnapshot(`redis://127.0.0.1:${port}`, join(dir, `master-${port}.rdb`)));

    const fromLive = await database();
    const fromSnapshots = await database();
    const liveRun = await run([], { DATABASE_URL: fromLive.url, REDIS_URL: `redis://127.0.0.1:${String(cluster.ports[0])}` });
    const snapRun = await run(
      snapshots.flatMap((file) => ['--rdb', file]),
      { DATABASE_URL: fromSnapshots.url },
    );
    expect(snapRun.stderr).toBe('');
    expect(liveRun.code).toBe(1);
    expect(snapRun.code).toBe(1);
    expect(liveRun.report.counts).toMatchObject({ scanned: 1503, inserted: 1500, conflicts: 2, invalid: 1 });
    expect(comparable(snapRun.report)).toEqual(comparable(liveRun.report));
    expect(await rows(fromSnapshots)).toEqual(await rows(fromLive));
    expect(snapRun.report.source).toMatchObject({ kind: 'rdb-cluster', files: snapshots.map((file): unknown => expect.objectContaining({ file })) });

    // verify from the files against the live run's rows, in full and in a sample drawn from every file.
    const verified = await run<VerifyReport>(['verify', ...snapshots.flatMap((file) => ['--rdb', file])], { DATABASE_URL: fromLive.url });
    expect(verified.code).toBe(1);
    expect(verified.report.counts).toMatchObject({ keys_checked: 1503, match: 1500, not_migratable: 3 });
    const sample = await run<VerifyReport>(['verify', '--sample', '300', ...snapshots.flatMap((file) => ['--rdb', file])], { DATABASE_URL: fromLive.url });
    expect(sample.report.sample).toEqual({ size: 300, keys_in_redis: 1503 });

    // One master's file alone is a third of the users, not all of them.
    const partial = await run<VerifyReport>(['verify', '--rdb', snapshots[0] as string], { DATABASE_URL: fromLive.url });
    expect(partial.report.counts.keys_checked).toBeLessThan(1000);
    // The same master's file twice (under another name) would read its users twice: refused.
    const copy = join(dir, 'copy-of-master.rdb');
    copyFileSync(snapshots[0] as string, copy);
    const twice = await run(['--dry-run', '--rdb', snapshots[0] as string, '--rdb', copy], { DATABASE_URL: fromLive.url });
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain(`--rdb ${copy} is the same snapshot as --rdb ${snapshots[0] as string}`);
  });
});

describe('a source lost for good mid-run ends the run (exit 3), never a hang', { timeout: 120_000 }, () => {
  it('the throwaway server dies (as by the OOM killer): the run fails at once, naming it, with nothing left behind', async () => {
    const db = await database();
    const tool = start(['--rdb', snapshot, '--max-rate', '500', '--batch-size', '100'], { DATABASE_URL: db.url, LOG_LEVEL: 'info' });
    await until(() => tool.stderr().includes('"msg":"run started"'), 'the run to start reading', tool);
    const [server] = throwawayServers(tool.stderr());
    if (!server) throw new Error(`no throwaway server logged\n${tool.stderr()}`);
    await sleep(300);
    const killedAt = Date.now();
    process.kill(server.pid, 'SIGKILL');
    const result = await tool.finished<MigrateReport>();
    expect(result.code, result.stderr).toBe(3);
    // No retry waits for a server that cannot come back (5 retries with backoff would take 15 s and more).
    expect(Date.now() - killedAt).toBeLessThan(10_000);
    expect(result.stderr).toContain(
      `could not finish: the run could not finish: the throwaway redis-server reading ${snapshot} stopped (SIGKILL: out of memory?)`,
    );
    expect(result.report.status).toBe('failed');
    expect(alive(server.watchdog)).toBe(false);
    expect(existsSync(server.folder)).toBe(false);
    expect(await db.query(`select status from migrate_users.runs`)).toEqual([{ status: 'failed' }]);
  });

  it("a live Redis that does not come back: once the retries are spent, exit 3 (the stage's COPY is given up)", async () => {
    const lost = await startRedis();
    try {
      expect((await runCli(['seed', '--count', '2000', '--redis-url', lost.url])).code).toBe(0);
      for (const mode of [['--dry-run'], []]) {
        const db = await database();
        const tool = start([...mode, '--max-rate', '500', '--batch-size', '100', '--retries', '1', '--retry-delay-ms', '100'], {
          DATABASE_URL: db.url,
          REDIS_URL: lost.url,
          LOG_LEVEL: 'info',
        });
        await until(() => tool.stderr().includes('"msg":"run started"'), 'the run to start reading', tool);
        await sleep(300);
        const redis = new Redis(lost.url, { retryStrategy: () => null, maxRetriesPerRequest: 0 });
        redis.on('error', () => undefined);
        await redis.call('SHUTDOWN', 'NOSAVE').catch(() => undefined);
        redis.disconnect();
        const result = await tool.finished<MigrateReport>();
        expect(result.code, result.stderr).toBe(3);
        expect(result.stderr).toContain('could not finish');
        await lost.restart(0);
        expect((await runCli(['seed', '--count', '2000', '--redis-url', lost.url])).code).toBe(0);
      }
    } finally {
      await lost.stop();
    }
  });
});
