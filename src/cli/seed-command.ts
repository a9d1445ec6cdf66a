import { Cluster } from 'ioredis';
import type { Redis } from 'ioredis';
import { EXIT, UsageError } from '../errors.js';
import { redactUrl } from '../redact.js';
import { BAD_RECORD_KINDS, generateUsers } from '../seed/generate.js';
import { Problems } from './config.js';
import { withRedis } from './connect.js';
import { setup, type CliContext, type ConnectionFlags } from './context.js';

interface SeedFlags extends ConnectionFlags {
  count?: string;
  seed?: string;
  force?: boolean;
}

/** The only command that writes to Redis: demo data for a newcomer, never for production. */
export async function runSeed(flags: SeedFlags, ctx: CliContext): Promise<number> {
  const problems = new Problems();
  const { conn, log } = setup(flags, ctx, problems);
  const count = problems.integer('--count', flags.count, 1000, 1, 10_000_000);
  const seed = problems.integer('--seed', flags.seed, 1, 0, 2 ** 31 - 1);
  problems.throwIfAny();
  const prefix = conn.match.slice(0, -1);

  const written = await withRedis(conn, log, async (redis) => {
    if (redis instanceof Cluster) throw new UsageError('seed writes demo users to a single Redis server, not to a cluster');
    if (!flags.force && (await anyKey(redis, conn.match))) {
      throw new UsageError(
        `${redactUrl(conn.redisUrl)} already holds keys matching "${conn.match}": refusing to mix demo users into them (--force to do it anyway)`,
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
    // Verification codes live beside the users and must never be read or touched by the migration.
    pipeline.set(`email_code:vip1@demo.test`, '493817', 'EX', 3600);
    await flush();
    return total;
  });
  const bad = count >= 20 ? BAD_RECORD_KINDS.length + 1 : 0;
  ctx.out(
    `Seeded ${written} records under "${conn.match}" in ${redactUrl(conn.redisUrl)}: ${written - bad} users, ${bad} deliberately bad (${BAD_RECORD_KINDS.join(', ')}).\n` +
      `Whitelisted demo users: vip1@demo.test, vip2@demo.test, vip3@demo.test.\n`,
  );
  return EXIT.ok;
}

async function anyKey(redis: Redis, match: string): Promise<boolean> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    if (keys.length > 0) return true;
    cursor = next;
  } while (cursor !== '0');
  return false;
}
