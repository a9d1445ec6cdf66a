import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedis } from '../../src/bench/servers.js';
import { BIN, runCli, startCli } from '../helpers/cli.js';
import {
  ADMIN_DATABASE_URL,
  adminQuery,
  createTestDatabase,
  createTestKeys,
  databaseUrl,
  noStageRecords,
  REDIS_URL,
  type TestDatabase,
  type TestKeys,
  uniqueName,
} from '../helpers/servers.js';

/** Command-line manners (issue 31): the real CLI as a child process, its exit code and its words. */

let db: TestDatabase;
let keys: TestKeys;
let dir: string;

beforeAll(async () => {
  db = await createTestDatabase();
  keys = await createTestKeys();
  dir = mkdtempSync(join(tmpdir(), 'mu-manners-'));
  for (let i = 0; i < 20; i++) await keys.putUser(`u${i}@manners.test`, { user_id: `usr_${i}`, current_credits: i });
});

afterAll(async () => {
  await keys.cleanup();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

/** REDIS_URL with this user and password. */
const redisAs = (user: string, password: string) => {
  const url = new URL(REDIS_URL);
  url.username = user;
  url.password = password;
  return url.toString();
};

describe('a password that is an ordinary word is redacted where it stands, not wherever the word occurs', () => {
  it('Redis: "wrong", "Redis" as passwords leave the message whole; the URL shows ***', async () => {
    const nobody = uniqueName('mu_nobody');
    const wrong = await runCli(['seed', '--match', keys.match], { REDIS_URL: redisAs(nobody, 'wrong') });
    expect(wrong.code, wrong.stderr).toBe(2);
    expect(wrong.stderr).toContain(`cannot connect to Redis at ${redisAs(nobody, '***')}: wrong user name or password (WRONGPASS`);
    const redis = await runCli(['seed', '--match', keys.match], { REDIS_URL: redisAs(nobody, 'Redis') });
    expect(redis.code, redis.stderr).toBe(2);
    expect(redis.stderr).toContain(`cannot connect to Redis at ${redisAs(nobody, '***')}: wrong user name or password`);
  });

  it('Redis: the password ioredis attaches to its errors (the HELLO command) never reaches a debug log', async () => {
    const result = await runCli(['seed', '--match', keys.match, '--log-level', 'debug', '--log-format', 'json'], {
      REDIS_URL: redisAs(uniqueName('mu_nobody'), 'Wrong-Pw-55'),
    });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain('"name":"hello","args":["3","AUTH"');
    expect(result.stdout + result.stderr).not.toContain('Wrong-Pw-55');
  });

  it('a run whose Redis password is "run": the report keeps its run_id, and holds no password', async () => {
    const user = uniqueName('mu_run');
    await keys.redis.call('ACL', 'SETUSER', user, 'on', '>run', `~${keys.prefix}*`, '+@read', '+eval_ro', '+ping', '+info', '+select');
    try {
      const reportPath = join(dir, 'run.json');
      const run = await runCli(['--dry-run', '--match', keys.match, '--no-progress', '--report', reportPath], {
        DATABASE_URL: db.url,
        REDIS_URL: redisAs(user, 'run'),
      });
      expect(run.code, run.stderr).toBe(0);
      const text = readFileSync(reportPath, 'utf8');
      const report = JSON.parse(text) as { run_id?: string; source: { url: string } };
      expect(report.run_id).toMatch(/^run_/);
      expect(report.source.url).toContain(`//${user}@`);
      expect(text).not.toContain('***');
      expect(text).not.toContain(':run@');
    } finally {
      await keys.redis.call('ACL', 'DELUSER', user);
    }
  });

  it('PostgreSQL: a role whose password is "users" sees "table public.users … not found", not "public.***"', async () => {
    const bare = await createTestDatabase({ schema: false });
    const role = uniqueName('mu_pw');
    await adminQuery(`create role ${role} login password 'users'`);
    try {
      const url = new URL(bare.url);
      url.username = role;
      url.password = 'users';
      const result = await runCli(['schema', 'check'], { DATABASE_URL: url.toString() });
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain('table public.users');
      expect(result.stderr).not.toContain('***');
    } finally {
      await bare.drop();
      await adminQuery(`drop role ${role}`);
    }
  });
});

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A shell command with a bare environment plus `env`; stdout, stderr and the exit code. */
async function shell(command: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn('bash', ['-c', command], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** The demo's clean-up line, split into its PostgreSQL and Redis commands. */
function cleanUp(demoOutput: string): { dropdb: string; redis: string } {
  const line = /^demo: to remove it afterwards: (.*)$/m.exec(demoOutput)?.[1] ?? '';
  const [dropdb = '', redis = ''] = line.split(/; (?=redis-cli )/);
  return { dropdb, redis };
}

const DEMO_MATCH = 'demo:user:email:*';

describe("the demo's clean-up command names the servers the demo used", () => {
  it('DEMO_REDIS_URL on another port and database: both redis-cli calls name it, and the command removes the demo keys there', async () => {
    const redis = await startRedis();
    try {
      const url = `${redis.url}/2`;
      const seeded = await runCli(['seed', '--match', DEMO_MATCH, '--count', '30'], { REDIS_URL: url });
      expect(seeded.code, seeded.stderr).toBe(0);
      const client = new Redis(url);
      await client.set('other:key', 'stays');
      // PostgreSQL on a closed port: the demo prints where it writes, then stops before it writes anything.
      const pgUrl = `postgres://postgres@127.0.0.1:${await freePort()}/mu_demo`;
      const demo = await shell('bash bin/demo.sh', { DEMO_DATABASE_URL: pgUrl, DEMO_REDIS_URL: url });
      expect(demo.code, demo.stdout + demo.stderr).toBe(3);
      const { dropdb, redis: redisPart } = cleanUp(demo.stdout);
      expect(dropdb).toBe(`dropdb --maintenance-db='${pgUrl.replace(/mu_demo$/, 'postgres')}' 'mu_demo'`);
      // Checked before it is run: the old line would have deleted demo keys on 127.0.0.1:6379.
      expect(redisPart).toBe(`redis-cli -u '${url}' --scan --pattern '${DEMO_MATCH}' | xargs -r redis-cli -u '${url}' del`);
      const removed = await shell(redisPart, {});
      expect(removed.code, removed.stderr).toBe(0);
      expect(await client.keys('*')).toEqual(['other:key']);
      client.disconnect();
    } finally {
      await redis.stop();
    }
  });

  it('a password in DEMO_REDIS_URL is not printed: the command reads it from the variable', async () => {
    const redis = await startRedis({ password: 'Demo-Pw-31' });
    try {
      const seeded = await runCli(['seed', '--match', DEMO_MATCH, '--count', '30'], { REDIS_URL: redis.url });
      expect(seeded.code, seeded.stderr).toBe(0);
      const pgUrl = `postgres://postgres@127.0.0.1:${await freePort()}/mu_demo`;
      const demo = await shell('bash bin/demo.sh', { DEMO_DATABASE_URL: pgUrl, DEMO_REDIS_URL: redis.url });
      expect(demo.stdout + demo.stderr).not.toContain('Demo-Pw-31');
      const { redis: redisPart } = cleanUp(demo.stdout);
      expect(redisPart).toBe(`redis-cli -u "$DEMO_REDIS_URL" --scan --pattern '${DEMO_MATCH}' | xargs -r redis-cli -u "$DEMO_REDIS_URL" del`);
      expect(demo.stdout).toContain('no password is printed: that command reads it from DEMO_REDIS_URL');
      const removed = await shell(redisPart, { DEMO_REDIS_URL: redis.url });
      expect(removed.code, removed.stderr).toBe(0);
      const client = new Redis(redis.url);
      expect(await client.dbsize()).toBe(0);
      client.disconnect();
    } finally {
      await redis.stop();
    }
  });

  it('dropdb names the PostgreSQL server of DEMO_DATABASE_URL, and drops the demo database there', async () => {
    const name = uniqueName('mu_demo');
    await adminQuery(`create database ${name}`);
    try {
      // Redis on a closed port: the demo applies the schema, then stops at the seed.
      const env = { DEMO_DATABASE_URL: databaseUrl(name), DEMO_REDIS_URL: `redis://127.0.0.1:${await freePort()}`, DEMO_ALLOW_REMOTE: '1' };
      const demo = await shell('bash bin/demo.sh', env);
      expect(demo.code, demo.stdout + demo.stderr).toBe(2);
      const { dropdb } = cleanUp(demo.stdout);
      expect(dropdb).toMatch(/^dropdb --maintenance-db=/);
      if (new URL(ADMIN_DATABASE_URL).password === '') expect(dropdb).toContain(`'${databaseUrl('postgres')}'`);
      const dropped = await shell(dropdb, env);
      expect(dropped.code, dropped.stderr).toBe(0);
      const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
      await admin.connect();
      try {
        expect((await admin.query('select 1 from pg_database where datname = $1', [name])).rows).toEqual([]);
      } finally {
        await admin.end();
      }
    } finally {
      await adminQuery(`drop database if exists ${name} with (force)`);
    }
  });
});

/** Until `test` holds (polled), or fail naming `what`. */
async function until(test: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** n users under a match of their own (a pipeline: one round trip). */
async function putUsers(redis: Redis, prefix: string, n: number): Promise<void> {
  const pipe = redis.pipeline();
  for (let i = 0; i < n; i++) pipe.set(`${prefix}user:email:r${i}@read.test`, JSON.stringify({ user_id: `usr_r${i}`, current_credits: i }));
  await pipe.exec();
}

/** A writing run has recorded its stage table: it is reading Redis into it now (a slow read takes seconds). */
const readingInto = (database: TestDatabase) => async () =>
  (await database.query(`select 1 from migrate_users.runs where stage_table is not null and stage_rows is null`)).length > 0;

describe('a run stopped while still reading Redis says what the next run will do', () => {
  it('SIGTERM while reading: "nothing was written; the next run reads Redis again from the start", and it does', { timeout: 120_000 }, async () => {
    const target = await createTestDatabase();
    const source = await createTestKeys();
    try {
      await putUsers(source.redis, source.prefix, 3000);
      const env = { DATABASE_URL: target.url, REDIS_URL, LOG_LEVEL: 'info' };
      const reportPath = join(dir, 'interrupted-read.json');
      const run = startCli(['--match', source.match, '--no-progress', '--max-rate', '500', '--report', reportPath], env);
      await until(readingInto(target), 'the run to read Redis');
      await sleep(500);
      run.child.kill('SIGTERM');
      expect(await run.exit, run.output()).toBe(143);
      expect(run.stderr).not.toContain('read every key');
      expect(run.stdout).not.toContain('resume');
      const report = JSON.parse(readFileSync(reportPath, 'utf8')) as { status: string; resumable: boolean; counts: { scanned: number } };
      expect(report.counts.scanned).toBeLessThan(3000);
      expect(run.stdout).toContain(
        `INTERRUPTED while reading Redis (${report.counts.scanned.toLocaleString('en-US')} keys read): nothing was written; the next run reads Redis again from the start.`,
      );
      expect(report).toMatchObject({ status: 'interrupted', resumable: false });
      expect(await target.query('select 1 from users')).toEqual([]);
      // Nothing to resume, so nothing kept: the keys it had read (password hashes with them) are gone from its stage.
      expect(await noStageRecords(target)).toBe(true);

      const next = await runCli(['--match', source.match, '--no-progress', '--report', join(dir, 'after-read.json')], env);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stderr).not.toContain('resuming an unfinished run');
      const after = JSON.parse(readFileSync(join(dir, 'after-read.json'), 'utf8')) as {
        resumed_from: string | null;
        counts: { scanned: number; inserted: number };
      };
      expect(after).toMatchObject({ resumed_from: null, counts: { scanned: 3000, inserted: 3000 } });
    } finally {
      await source.cleanup();
      await target.drop();
    }
  });

  it('Redis lost while reading (retries spent, exit 3): "it reads Redis again from the start", not "it resumes"', { timeout: 120_000 }, async () => {
    const target = await createTestDatabase();
    const redis = await startRedis();
    try {
      const client = new Redis(redis.url);
      await putUsers(client, '', 3000);
      client.disconnect();
      const reportPath = join(dir, 'lost-read.json');
      const run = startCli(['--match', 'user:email:*', '--no-progress', '--max-rate', '500', '--retries', '0', '--report', reportPath], {
        DATABASE_URL: target.url,
        REDIS_URL: redis.url,
      });
      await until(readingInto(target), 'the run to read Redis');
      await sleep(500);
      await redis.stop();
      expect(await run.exit, run.output()).toBe(3);
      expect(run.stderr).toContain('lost the connection to Redis mid-run');
      expect(run.stderr).toContain('run the same command again when it is back: it reads Redis again from the start');
      expect(run.stderr).not.toContain('it resumes');
      expect(JSON.parse(readFileSync(reportPath, 'utf8'))).toMatchObject({ status: 'failed', resumable: false });
      expect(await noStageRecords(target)).toBe(true);
    } finally {
      await redis.stop();
      await target.drop();
    }
  });
});

/** The exit code a command's --help gives for `words` (its "Exit codes:" sentence, entries split at "; "). */
function helpExitCode(help: string, words: string): number | undefined {
  const exits = /^Exit codes: (.*)$/m.exec(help)?.[1] ?? '';
  const entry = exits.split('; ').find((e) => e.includes(words));
  return entry === undefined ? undefined : Number(/^\d+/.exec(entry)?.[0]);
}

describe('--help and behaviour agree on the exit code of a server that cannot be reached', () => {
  it.each([
    [['--dry-run', '--match', 'x:*'], 'postgres'],
    [['verify', '--match', 'x:*'], 'postgres'],
    [['reconcile', '--match', 'x:*'], 'postgres'],
    [['schema', 'apply'], 'postgres'],
    [['schema', 'check'], 'postgres'],
    [['seed', '--match', 'x:*'], 'redis'],
  ])('%j (%s not reachable)', async (args, server) => {
    const port = await freePort();
    const command = args.filter((a) => !a.startsWith('-') && a !== 'x:*');
    const help = await runCli([...command, '--help']);
    expect(help.code).toBe(0);
    const said = helpExitCode(help.stdout, 'be reached');
    const env = server === 'postgres' ? { DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/x` } : { REDIS_URL: `redis://127.0.0.1:${port}` };
    const run = await runCli(args, env);
    expect(run.stderr).toContain('connection refused');
    expect(said, help.stdout).toBe(run.code);
    expect(run.code).toBe(2);
  });
});

describe('each command offers only the options it uses', () => {
  it('verify (which never writes) has no --allow-older-snapshot; migrate and reconcile (which can write from a snapshot) do', async () => {
    const verifyHelp = await runCli(['verify', '--help']);
    expect(verifyHelp.stdout).toContain('--rdb <path>');
    expect(verifyHelp.stdout).not.toContain('--allow-older-snapshot');
    for (const command of [[], ['migrate'], ['reconcile']]) expect((await runCli([...command, '--help'])).stdout).toContain('--allow-older-snapshot');
    const given = await runCli(['verify', '--allow-older-snapshot'], { DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/x` });
    expect(given.code).toBe(2);
    expect(given.stderr).toContain("unknown option '--allow-older-snapshot'");
  });
});

describe('help <command>', () => {
  it('a typo is named with the nearest command, exit 2, as at top level; a real command (or subcommand) shows its help', async () => {
    const typo = await runCli(['help', 'verfy']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("unknown command 'verfy' (did you mean verify?)");
    expect(typo.stderr).not.toContain('Usage:');
    expect(typo.stdout).toBe('');
    const top = await runCli(['verfy']);
    expect(typo.stderr).toBe(top.stderr);

    const nested = await runCli(['help', 'schema', 'aply']);
    expect(nested.code).toBe(2);
    expect(nested.stderr).toContain("unknown command 'aply' (did you mean apply?)");
    expect(nested.stderr).toContain('`migrate-users help schema` lists them');

    const verify = await runCli(['help', 'verify']);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/^Usage: migrate-users verify \[options\]/);
    expect(verify.stdout).toContain('Exit codes: 0 PostgreSQL holds exactly');
    const apply = await runCli(['help', 'schema', 'apply']);
    expect(apply.code).toBe(0);
    expect(apply.stdout).toMatch(/^Usage: migrate-users schema apply \[options\]/);
    const all = await runCli(['help']);
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/^Usage: migrate-users \[options\] \[command\]/);
    expect(all.stdout).toContain('help [command]');
  });
});

describe('an unknown option', () => {
  it("of another command is named as that command's (no look-alike guess); a typo of one of its own gets the nearest", async () => {
    const apply = await runCli(['verify', '--apply']);
    expect(apply.code).toBe(2);
    expect(apply.stderr).toBe("error: unknown option '--apply'\n(--apply is an option of reconcile, not of verify)\n");
    const dry = await runCli(['verify', '--dry-run']);
    expect(dry.stderr).toContain('(--dry-run is an option of migrate, not of verify)');
    const strict = await runCli(['reconcile', '--strict']);
    expect(strict.stderr).toContain('(--strict is an option of verify, not of reconcile)');
    const typo = await runCli(['verify', '--sampel']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('(Did you mean --sample?)');
    const own = await runCli(['--dryrun']);
    expect(own.stderr).toContain('(Did you mean --dry-run?)');
    const nothing = await runCli(['seed', '--frobnicate']);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toBe("error: unknown option '--frobnicate'\n");
  });
});

describe('files that cannot be used are named in plain words, before any work (exit 2)', () => {
  // Servers on a closed port: a problem with a file is said before anything is connected to.
  const nowhere = async () => ({ DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/x`, REDIS_URL: `redis://127.0.0.1:${await freePort()}` });

  it('an output folder that takes no new file (/proc), does not exist, or is a file', async () => {
    const env = await nowhere();
    const proc = await runCli(['--dry-run', '--report', '/proc/x.json'], env);
    expect(proc.code).toBe(2);
    expect(proc.stderr).toBe('migrate-users: error: --report /proc/x.json: the folder /proc cannot take a new file (creating one there fails with ENOENT)\n');
    const missing = await runCli(['--dry-run', '--rejects', join(dir, 'nodir', 'r.ndjson')], env);
    expect(missing.stderr).toBe(`migrate-users: error: --rejects ${join(dir, 'nodir', 'r.ndjson')}: the folder ${join(dir, 'nodir')} does not exist\n`);
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    const notFolder = await runCli(['verify', '--junit', join(file, 'j.xml')], env);
    expect(notFolder.code).toBe(2);
    expect(notFolder.stderr).toBe(`migrate-users: error: --junit ${join(file, 'j.xml')}: ${file} is not a folder\n`);
  });

  it('a missing --whitelist-file, --database-ca or --users: "<what> <path> not found"', async () => {
    const env = await nowhere();
    const whitelist = await runCli(['--dry-run', '--whitelist-file', '/nonexistent/vip.txt'], env);
    expect(whitelist.code).toBe(2);
    expect(whitelist.stderr).toBe('migrate-users: error: whitelist file /nonexistent/vip.txt not found (--whitelist-file)\n');
    const folder = await runCli(['verify', '--whitelist-file', dir], env);
    expect(folder.stderr).toBe(`migrate-users: error: whitelist file ${dir} is a folder, not a file (--whitelist-file)\n`);
    const ca = await runCli(['schema', 'check', '--database-ca', '/nonexistent/ca.pem'], env);
    expect(ca.code).toBe(2);
    expect(ca.stderr).toBe('migrate-users: error: CA file /nonexistent/ca.pem not found (--database-ca / DATABASE_CA)\n');
    const users = await runCli(['reconcile', '--apply', '--take', 'redis', '--users', '/nonexistent/review.ndjson'], env);
    expect(users.code).toBe(2);
    expect(users.stderr).toBe('migrate-users: error: review file /nonexistent/review.ndjson not found (--users)\n');
  });
});

/**
 * The CLI with its stdout read by a reader that goes away: at once (`after: 0`, before anything is written,
 * so the first write fails), or after the first chunk of a text longer than a pipe holds.
 */
async function withClosedStdout(
  args: readonly string[],
  env: Record<string, string>,
  after: 0 | 1,
): Promise<{ code: number | null; stderr: string; read: number }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let read = 0;
  if (after === 0) child.stdout.destroy();
  else
    child.stdout.once('data', (chunk: Buffer) => {
      read = chunk.length;
      child.stdout.destroy();
    });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stderr, read };
}

describe('a reader that closes stdout early ends the output, quietly', () => {
  it.each([[['help']], [['seed', '--help']], [['help', 'verify']], [['--version']]])('%j: exit 0, nothing on stderr', async (args) => {
    const result = await withClosedStdout(args, {}, 0);
    expect(result).toEqual({ code: 0, stderr: '', read: 0 });
  });

  it('verify with more differences than a pipe holds, its reader gone after the first chunk: still exit 1 (the verdict), no stack trace', async () => {
    const source = await createTestKeys();
    const target = await createTestDatabase();
    try {
      // About 1 MB of differences listed: far more than the pipe and the reader's buffer hold.
      await putUsers(source.redis, source.prefix, 20_000);
      const args = ['verify', '--match', source.match, '--no-progress', '--show', '20000'];
      const result = await withClosedStdout(args, { DATABASE_URL: target.url, REDIS_URL }, 1);
      expect(result.read).toBeGreaterThan(0);
      expect(result.stderr).not.toMatch(/EPIPE|^\s+at /m);
      expect(result.code).toBe(1);
      const whole = await runCli(args, { DATABASE_URL: target.url, REDIS_URL });
      expect(whole.code).toBe(1);
      expect(whole.stdout.length).toBeGreaterThan(16 * 65_536);
    } finally {
      await source.cleanup();
      await target.drop();
    }
  });
});
