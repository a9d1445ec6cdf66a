import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type ThrowawayRedis } from '../../src/bench/servers.js';
import { runCli } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/servers.js';

/**
 * Live reads are short commands by default: a batch is read in chunks of --read-chunk keys, one command
 * after another, so the live app's commands are served between them; --fast-read reads a batch in one.
 * Counted on a Redis of this test's own (INFO commandstats), with the same result either way.
 */

const USERS = 250;
const MATCH = 'gentle:user:email:*';

let redis: ThrowawayRedis;
let client: Redis;
let db: TestDatabase;
let dir: string;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  const pipe = client.pipeline();
  for (let i = 0; i < USERS; i++) {
    const email = `g${i}@gentle.test`;
    pipe.set(`gentle:user:email:${email}`, JSON.stringify({ user_id: `gentle-${i}`, email, current_credits: i, total_credits_used: 0 }));
  }
  pipe.set('gentle:user:email:broken@gentle.test', 'not json');
  await pipe.exec();
  db = await createTestDatabase();
  dir = mkdtempSync(join(tmpdir(), 'mu-gentle-'));
});

afterAll(async () => {
  client.disconnect();
  await redis.stop();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function evalCalls(): Promise<number> {
  const stats = await client.info('commandstats');
  return Number(/^cmdstat_eval_ro:calls=(\d+)/m.exec(stats)?.[1] ?? 0);
}

async function dryRun(extra: string[]): Promise<{ calls: number; report: { counts: Record<string, number>; credits: unknown } }> {
  await client.config('RESETSTAT');
  const reportPath = join(dir, `dry-${extra.join('_') || 'default'}.json`);
  const result = await runCli(['--dry-run', '--match', MATCH, '--batch-size', '100', '--concurrency', '1', '--report', reportPath, ...extra], {
    DATABASE_URL: db.url,
    REDIS_URL: redis.url,
  });
  expect(result.code, result.stderr).toBe(1);
  return { calls: await evalCalls(), report: JSON.parse(readFileSync(reportPath, 'utf8')) as { counts: Record<string, number>; credits: unknown } };
}

describe('reading live Redis in short commands', () => {
  it('--read-chunk n reads a batch in ceil(batch / n) commands, --fast-read in one, the default in chunks of 100; the same records either way', async () => {
    // 251 keys in batches of 100, 100, 51.
    const chunked = await dryRun(['--read-chunk', '30']);
    expect(chunked.calls).toBe(4 + 4 + 2);
    const fast = await dryRun(['--fast-read']);
    expect(fast.calls).toBe(3);
    const byDefault = await dryRun([]);
    expect(byDefault.calls).toBe(3);
    const small = await dryRun(['--read-chunk', '10', '--batch-size', '1000']);
    expect(small.calls).toBe(26);
    for (const run of [chunked, byDefault, small]) {
      expect(run.report.counts).toEqual(fast.report.counts);
      expect(run.report.credits).toEqual(fast.report.credits);
    }
    expect(fast.report.counts).toMatchObject({ scanned: USERS + 1, valid: USERS, invalid: 1 });
  });

  it('--fast-read and --read-chunk exclude each other (exit 2, nothing read)', async () => {
    await client.config('RESETSTAT');
    const result = await runCli(['--dry-run', '--match', MATCH, '--fast-read', '--read-chunk', '5'], { DATABASE_URL: db.url, REDIS_URL: redis.url });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--fast-read and --read-chunk exclude each other');
    expect(await evalCalls()).toBe(0);
  });
});
