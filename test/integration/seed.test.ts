import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BIN, runCli } from '../helpers/cli.js';
import { createTestKeys, redisUrlAs, uniqueName, type TestKeys } from '../helpers/servers.js';

let keys: TestKeys;
let user: string;

/** The seed runs as a Redis user that may write only under this test's prefix: a write anywhere else fails it. */
const env = () => ({ REDIS_URL: redisUrlAs(user, 'pw'), DATABASE_URL: 'postgres://postgres@127.0.0.1:1/unused' });

async function keysUnder(pattern: string): Promise<string[]> {
  const found = new Set<string>();
  let cursor = '0';
  do {
    const [next, batch] = await keys.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    for (const key of batch) found.add(key);
    cursor = next;
  } while (cursor !== '0');
  return [...found];
}

beforeEach(async () => {
  keys = await createTestKeys();
  user = uniqueName('mu_seed');
  await keys.redis.call('ACL', 'SETUSER', user, 'on', '>pw', 'resetkeys', `~${keys.prefix}*`, '+@all');
});

afterEach(async () => {
  await keys.redis.call('ACL', 'DELUSER', user);
  await keys.cleanup();
});

describe('seed', () => {
  it('writes only under --match (as a Redis user allowed no other key) and names only the demo whitelist', async () => {
    const run = await runCli(['seed', '--count', '30', '--match', keys.match], env());
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Seeded 39 records under "${keys.match}"`);
    expect(run.stdout).toContain('30 users, 9 deliberately bad');
    expect(await keysUnder(`${keys.prefix}*`)).toHaveLength(39);
    expect((await keysUnder(`${keys.prefix}*`)).every((key) => key.startsWith(`${keys.prefix}user:email:`))).toBe(true);

    // The users the seed calls whitelisted are exactly the ones bin/demo.sh whitelists.
    const demo = await readFile(join(dirname(BIN), 'demo.sh'), 'utf8');
    const demoList = /^export WHITELIST_EMAILS="([^"]*)"$/m.exec(demo)?.[1];
    expect(demoList).toBeDefined();
    expect(run.stdout).toContain(`Users for the whitelist (bin/demo.sh passes them as WHITELIST_EMAILS): ${demoList?.split(',').join(', ') ?? ''}.\n`);
    expect(run.stdout).not.toContain('vip3');

    const one = await runCli(['seed', '--count', '1', '--match', keys.match, '--force'], env());
    expect(one.code).toBe(0);
    expect(one.stdout).toContain('Users for the whitelist (bin/demo.sh passes them as WHITELIST_EMAILS): vip1@demo.test.\n');
  });

  it('a smaller --count after a larger one leaves no stale key behind, and says what it removed', async () => {
    expect((await runCli(['seed', '--count', '60', '--match', keys.match], env())).code).toBe(0);
    expect(await keysUnder(keys.match)).toHaveLength(69);

    const smaller = await runCli(['seed', '--count', '25', '--match', keys.match, '--force', '--seed', '7'], env());
    expect(smaller.stderr).toBe('');
    expect(smaller.code).toBe(0);
    expect(smaller.stdout).toContain('The 69 keys an earlier seed had written there were removed first: none is left behind.');
    const left = await keysUnder(keys.match);
    expect(left).toHaveLength(25 + 9);
    const emails = left.map((key) => key.slice(keys.match.length - 1).toLowerCase());
    expect(
      emails
        .filter((email) => /^user\d+@demo\.test$/.test(email))
        .sort()
        .at(-1),
    ).toBe('user0000025@demo.test');
  });

  it('refuses to mix demo users into other keys; with --force leaves those keys alone and says they are there', async () => {
    await keys.putUser('real@example.com', { user_id: 'usr_real', credits: 5 });
    const refused = await runCli(['seed', '--count', '5', '--match', keys.match], env());
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`already holds 1 keys matching "${keys.match}" (0 from an earlier seed, 1 others): refusing to mix demo users`);
    expect(await keysUnder(keys.match)).toHaveLength(1);

    const forced = await runCli(['seed', '--count', '5', '--match', keys.match, '--force'], env());
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain(`1 other key matches "${keys.match}" (not written by a seed): left as they are`);
    expect(await keys.redis.get(keys.userKey('real@example.com'))).toBe(JSON.stringify({ user_id: 'usr_real', credits: 5 }));
    expect(await keysUnder(keys.match)).toHaveLength(6);
  });
});
