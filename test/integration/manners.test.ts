import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { adminQuery, createTestDatabase, createTestKeys, REDIS_URL, uniqueName, type TestDatabase, type TestKeys } from '../helpers/servers.js';

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
