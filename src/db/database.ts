import pg from 'pg';
import { Kysely, PostgresDialect, type PostgresPool } from 'kysely';
import type { Logger } from '../log.js';
import { describe } from '../errors.js';

export interface Session {
  /** The raw client: COPY needs it, and the staging table is a TEMP table living in this session only. */
  readonly client: pg.PoolClient;
  readonly db: Kysely<unknown>;
}

export interface PoolOptions {
  readonly url: string;
  readonly max: number;
  readonly log: Logger;
}

export async function withPool<T>(options: PoolOptions, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max,
    application_name: 'migrate-users',
    connectionTimeoutMillis: 15_000,
  });
  // An idle client that loses its server emits 'error' on the pool; unhandled, it would crash the process.
  pool.on('error', (err) => options.log.warn({ err }, 'idle PostgreSQL connection lost'));
  try {
    return await fn(pool);
  } finally {
    await pool.end().catch((err: unknown) => options.log.warn({ err: describe(err) }, 'closing PostgreSQL pool failed'));
  }
}

/** One dedicated connection, seen through kysely. Everything run on `db` goes to this one session. */
export async function withSession<T>(pool: pg.Pool, fn: (session: Session) => Promise<T>, log?: Logger): Promise<T> {
  const client = await pool.connect();
  // A checked-out client whose server goes away between queries emits 'error'; the pool only listens on
  // idle ones, and an unheard 'error' crashes the process. The next query on it then fails, and is retried.
  const onError = (err: Error) => log?.warn({ err: describe(err) }, 'PostgreSQL session lost');
  client.on('error', onError);
  const single: PostgresPool = {
    // pg's Client keeps its state on `this`: delegate calls rather than wrapping the object.
    connect: async () =>
      ({
        query: (...args: unknown[]) => (client.query as (...a: unknown[]) => unknown).apply(client, args),
        release: () => undefined,
      }) as unknown as pg.PoolClient,
    end: async () => undefined,
  };
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: single }) });
  let broken: Error | undefined;
  try {
    return await fn({ client, db });
  } catch (error) {
    broken = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    await db.destroy().catch(() => undefined);
    client.off('error', onError);
    // A session that failed mid-transaction is not returned to the pool for reuse.
    client.release(broken);
  }
}
