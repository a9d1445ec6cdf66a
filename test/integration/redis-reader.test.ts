import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { ValueReader, scanKeys } from '../../src/source/redis-reader.js';
import { createTestKeys, REDIS_URL, uniqueName, type TestKeys } from '../helpers/servers.js';

let keys: TestKeys;
beforeEach(async () => {
  keys = await createTestKeys();
});
afterEach(async () => {
  await keys.cleanup();
});

async function fixture(): Promise<Buffer[]> {
  await keys.putUser('ok@example.com', '{"user_id":"u1"}');
  await keys.putUser('big@example.com', 'x'.repeat(300));
  await keys.redis.set(Buffer.from(keys.userKey('latin1@example.com')), Buffer.from([0x7b, 0xff, 0x7d]));
  await keys.redis.hset(keys.userKey('hash@example.com'), 'a', '1');
  await keys.redis.set(Buffer.concat([Buffer.from(keys.userKey('bin')), Buffer.from([0xc3, 0x28])]), '{}');
  return [
    Buffer.from(keys.userKey('ok@example.com')),
    Buffer.from(keys.userKey('big@example.com')),
    Buffer.from(keys.userKey('latin1@example.com')),
    Buffer.from(keys.userKey('hash@example.com')),
    Buffer.from(keys.userKey('gone@example.com')),
    Buffer.concat([Buffer.from(keys.userKey('bin')), Buffer.from([0xc3, 0x28])]),
  ];
}

const EXPECTED = [
  { ok: true, keyEmail: 'ok@example.com', value: '{"user_id":"u1"}' },
  { ok: false, reason: 'value_too_large' },
  { ok: false, reason: 'not_utf8' },
  { ok: false, reason: 'wrong_type' },
  { ok: false, reason: 'vanished' },
  { ok: false, reason: 'key_not_utf8' },
];

describe('ValueReader', () => {
  it('reads with one EVAL_RO per batch: vanished, wrong type, too large, bad bytes told apart', async () => {
    const batch = await fixture();
    const fallbacks: string[] = [];
    const records = await new ValueReader(keys.redis, (r) => fallbacks.push(r)).read(batch, keys.match.length - 1, 256);
    expect(records).toMatchObject(EXPECTED);
    expect(fallbacks).toEqual([]);
  });

  it('falls back to TYPE + GETRANGE pipelines when scripting is refused, with the same results', async () => {
    const batch = await fixture();
    const user = uniqueName('mu_noscript');
    await keys.redis.call('ACL', 'SETUSER', user, 'on', '>pw', 'resetkeys', `~${keys.prefix}*`, '-@all', '+@read', '+@connection', '+info', '+client');
    const url = new URL(REDIS_URL);
    url.username = user;
    url.password = 'pw';
    const limited = new Redis(url.toString());
    try {
      const fallbacks: string[] = [];
      const reader = new ValueReader(limited, (r) => fallbacks.push(r));
      expect(await reader.read(batch, keys.match.length - 1, 256)).toMatchObject(EXPECTED);
      expect(fallbacks).toHaveLength(1);
      expect(fallbacks[0]).toMatch(/NOPERM/);
      expect(await reader.read(batch, keys.match.length - 1, 256)).toMatchObject(EXPECTED);
      expect(fallbacks).toHaveLength(1);
    } finally {
      limited.disconnect();
      await keys.redis.call('ACL', 'DELUSER', user);
    }
  });

  it('scans every matching key, in batches, and nothing else', async () => {
    for (let i = 0; i < 25; i++) await keys.putUser(`s${i}@example.com`, '{}');
    await keys.putRaw(`${keys.prefix}email_code:s1@example.com`, '123');
    const seen = new Set<string>();
    for await (const batch of scanKeys(keys.redis, { match: keys.match, scanCount: 500, batchSize: 7 })) {
      expect(batch.length).toBeLessThanOrEqual(7);
      for (const key of batch) seen.add(key.toString());
    }
    expect(seen.size).toBe(25);
  });
});
