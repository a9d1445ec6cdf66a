import { Cluster } from 'ioredis';
import type { Redis } from 'ioredis';
import { EXIT, UsageError } from '../errors.js';
import { redactUrl } from '../redact.js';
import { BAD_RECORD_KINDS, DEMO_WHITELIST, badRecordCount, generateUsers, isSeedKey } from '../seed/generate.js';
import { Problems } from './config.js';
import { withRedis } from './connect.js';
import { setup, type CliContext, type ConnectionFlags } from './context.js';

interface SeedFlags extends ConnectionFlags {
  count?: string;
  seed?: string;
  force?: boolean;
}

const n = (value: number) => value.toLocaleString('en-US');

/**
 * The only command that writes to Redis: demo data for a newcomer, never for production. It writes only keys
 * under --match, and with --force first removes what an earlier seed wrote there (a smaller --count must not
 * leave the earlier run's extra users behind); keys it did not write are never touched.
 */
export async function runSeed(flags: SeedFlags, ctx: CliContext): Promise<number> {
  const problems = new Problems();
  const { conn, log } = setup(flags, ctx, problems);
  const count = problems.integer('--count', flags.count, 1000, 1, 10_000_000);
  const seed = problems.integer('--seed', flags.seed, 1, 0, 2 ** 31 - 1);
  problems.throwIfAny();
  const prefix = conn.match.slice(0, -1);
  const where = redactUrl(conn.redisUrl);

  const { written, removed, others } = await withRedis(conn, log, async (redis) => {
    if (redis instanceof Cluster) throw new UsageError('seed writes demo users to a single Redis server, not to a cluster');
    const found = await earlierKeys(redis, conn.match, prefix, flags.force === true);
    if (!flags.force && found.seeded + found.others > 0) {
      throw new UsageError(
        `${where} already holds ${n(found.seeded + found.others)} keys matching "${conn.match}" (${n(found.seeded)} from an earlier seed, ` +
          `${n(found.others)} others): refusing to mix demo users into them (--force replaces the earlier seed's keys and leaves the others alone)`,
      );
    }
    let total = 0;
    let pipeline = redis.pipeline();
    const flush = async () => {
      const results = (await pipeline.exec()) ?? [];
      const failed = results.find(([err]) => err);
      if (failed?.[0]) throw new Error('writing demo users', { cause: failed[0] });
      pipeline = redis.pipeline();
    };
    for (const entry of generateUsers({ count, prefix, seed })) {
      if (entry.kind === 'hash') pipeline.del(entry.key).hset(entry.key, 'json', entry.value);
      else pipeline.set(entry.key, entry.value);
      total++;
      if (total % 1000 === 0) await flush();
    }
    await flush();
    return { written: total, removed: found.seeded, others: found.others };
  });
  const bad = badRecordCount(count);
  const lines = [
    `Seeded ${n(written)} records under "${conn.match}" in ${where}: ${n(written - bad)} users, ${n(bad)} deliberately bad` +
      (bad > 0 ? ` (${BAD_RECORD_KINDS.join(', ')}).` : '.'),
  ];
  if (removed > 0) lines.push(`The ${n(removed)} keys an earlier seed had written there were removed first: none is left behind.`);
  if (others > 0) {
    const them = others === 1 ? 'other key matches' : 'other keys match';
    lines.push(`${n(others)} ${them} "${conn.match}" (not written by a seed): left as they are; migrate and verify will read them too.`);
  }
  const whitelisted = DEMO_WHITELIST.slice(0, count);
  lines.push(`Users for the whitelist (bin/demo.sh passes them as WHITELIST_EMAILS): ${whitelisted.join(', ')}.`);
  ctx.out(`${lines.join('\n')}\n`);
  return EXIT.ok;
}

/** Keys already under the pattern: those an earlier seed wrote (removed when `remove`) and the others. */
async function earlierKeys(redis: Redis, match: string, prefix: string, remove: boolean): Promise<{ seeded: number; others: number }> {
  let seeded = 0;
  let others = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    const ours = keys.filter((key) => isSeedKey(key, prefix));
    others += keys.length - ours.length;
    // SCAN may return a key twice: once removed, a key is not counted again.
    if (!remove) seeded += ours.length;
    else if (ours.length > 0) seeded += await redis.unlink(...ours);
    cursor = next;
  } while (cursor !== '0');
  return { seeded, others };
}
