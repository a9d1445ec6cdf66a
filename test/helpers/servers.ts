import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Redis } from 'ioredis';
import { inject } from 'vitest';
import { applySchema } from '../../src/db/schema.js';
import type { TestServers } from './test-servers.js';

// Chosen once per run by test/helpers/global-setup.ts: TEST_*_URL, the local defaults, or containers;
// undefined (whatever inject's type says) when that setup did not run.
const servers = inject('testServers') as TestServers | undefined;
if (!servers) throw new Error('no test servers: test/helpers/global-setup.ts did not run (vitest.config.ts globalSetup)');

export const ADMIN_DATABASE_URL = servers.databaseUrl;
export const REDIS_URL = servers.redisUrl;

/** The test Redis, logged in as an ACL user of the test's own. */
export function redisUrlAs(user: string, password: string): string {
  const url = new URL(REDIS_URL);
  url.username = user;
  url.password = password;
  return url.toString();
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

export function databaseUrl(name: string): string {
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** A database of its own for one test: created with the schema applied, dropped by `drop()`. */
export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  readonly pool: pg.Pool;
  query<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[]): Promise<R[]>;
  drop(): Promise<void>;
}

export async function createTestDatabase(options: { schema?: boolean } = {}): Promise<TestDatabase> {
  const name = uniqueName('mu_test');
  await adminQuery(`create database ${name}`);
  const url = databaseUrl(name);
  const pool = new pg.Pool({ connectionString: url, max: 3 });
  // A test that terminates backends (faults) or drops the database may hit this pool's idle connections:
  // that is not a failure of the test using it.
  pool.on('error', () => undefined);
  if (options.schema !== false) await applySchema(pool);
  return {
    name,
    url,
    pool,
    query: async <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => (await pool.query<R>(text, values)).rows,
    drop: async () => {
      await pool.end();
      await adminQuery(`drop database if exists ${name} with (force)`);
    },
  };
}

/** Redis keys of one test: everything lives under a unique prefix, deleted by `cleanup()`. */
export interface TestKeys {
  readonly redis: Redis;
  readonly prefix: string;
  /** The --match pattern of this test's user keys. */
  readonly match: string;
  userKey(email: string): string;
  putUser(email: string, record: unknown): Promise<void>;
  putRaw(key: string, value: string): Promise<void>;
  cleanup(): Promise<void>;
}

export async function createTestKeys(): Promise<TestKeys> {
  const redis = new Redis(REDIS_URL);
  const prefix = `${uniqueName('mutest')}:`;
  const userKey = (email: string) => `${prefix}user:email:${email}`;
  return {
    redis,
    prefix,
    match: `${prefix}user:email:*`,
    userKey,
    putUser: async (email, record) => {
      await redis.set(userKey(email), typeof record === 'string' ? record : JSON.stringify(record));
    },
    putRaw: async (key, value) => {
      await redis.set(key, value);
    },
    cleanup: async () => {
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        keys.push(...found);
        cursor = next;
      } while (cursor !== '0');
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    },
  };
}

/**
 * Makes a tampered table look like the tool's own wrong write, not the app's work: the ledger is made to agree
 * with every row as it is now (its version and balances), and forgets rows that are gone (the tool never wrote
 * them). verify must then fail the tampered users as the migration's errors.
 */
export async function asTheToolsOwnWrite(db: TestDatabase): Promise<void> {
  await db.query(`
    update migrate_users.ledger l set row_xmin = u.xmin, row_credits = u.current_credits, row_used = u.total_credits_used
    from public.users u where u.user_id = l.user_id`);
  await db.query('delete from migrate_users.ledger l where not exists (select 1 from public.users u where u.user_id = l.user_id)');
}

/**
 * The records left in the persistent stages of migrate_users (each one's password hash with it), per stage
 * table: a finished run's stage stays, emptied, for its role's next run (see createStage).
 */
export async function stageRecords(db: Pick<TestDatabase, 'query'>): Promise<Record<string, number>> {
  const tables = await db.query<{ t: string }>(
    `select 'migrate_users.' || tablename as t from pg_tables where schemaname = 'migrate_users' and tablename like 'stage%' order by 1`,
  );
  const counts: Record<string, number> = {};
  for (const { t } of tables) counts[t] = (await db.query<{ n: number }>(`select count(*)::int as n from ${t}`))[0]?.n ?? 0;
  return counts;
}

/** True when no persistent stage table holds a record. */
export async function noStageRecords(db: Pick<TestDatabase, 'query'>): Promise<boolean> {
  return Object.values(await stageRecords(db)).every((n) => n === 0);
}
