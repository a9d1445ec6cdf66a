import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { Kysely, PostgresDialect, sql, type PostgresPool } from 'kysely';
import type { Logger } from '../log.js';
import { connectFailure, describe, pgCode, tlsFailure } from '../errors.js';
import { redactUrl } from '../redact.js';

export interface Session {
  /** The raw client: COPY needs it. */
  readonly client: pg.PoolClient;
  readonly db: Kysely<unknown>;
}

export interface PoolOptions {
  readonly url: string;
  /** TLS as sslmode asked (see cli/config.ts); the URL carries no ssl parameters. */
  readonly ssl?: false | ConnectionOptions | undefined;
  readonly max: number;
  readonly log: Logger;
}

/**
 * The session settings every result of the tool depends on, whatever the database or role sets by default
 * (`alter database ... set timezone`, a DateStyle that prints zone abbreviations): a `timestamp without time
 * zone` column is read and written as UTC, and text forms of timestamps are ISO. Set on every new connection,
 * and again with SET LOCAL in every transaction the tool opens (a transaction-mode pooler may hand a
 * transaction a server connection this client never configured).
 */
const SETTINGS = [`timezone = 'UTC'`, `datestyle = 'ISO, MDY'`, `intervalstyle = 'postgres'`, `extra_float_digits = 3`];
const PIN_SESSION = SETTINGS.map((s) => `set ${s}`).join('; ');
/**
 * A role's waits meant for the app's queries (Supabase and teams set them per role), lifted for the tool's own
 * transactions: lock_timeout would fail a batch behind an app's row lock held a moment longer, and
 * idle_in_transaction_session_timeout would end the session between two statements of a transaction the tool
 * keeps open while it reads Redis or decides a batch. (statement_timeout: see inOneTransaction and processChunk.)
 */
const WAITS = ['lock_timeout = 0', 'idle_in_transaction_session_timeout = 0'];
/** SET LOCAL of the settings and waits above: the first statement of every transaction the tool opens. */
export const PIN_TRANSACTION = [...SETTINGS, ...WAITS].map((s) => `set local ${s}`).join('; ');

/** A pg Client whose session is pinned (see SETTINGS) before the pool hands it out. */
class PinnedClient extends pg.Client {
  // pg-pool calls connect(callback); others may await connect().
  override connect(): Promise<pg.Client>;
  override connect(callback: (err: Error | null, client?: pg.Client) => void): void;
  override connect(callback?: (err: Error | null, client?: pg.Client) => void): Promise<pg.Client> | void {
    const connected = super.connect().then(async () => {
      await this.query(PIN_SESSION);
      return this;
    });
    if (!callback) return connected;
    connected.then(
      (client) => callback(null, client),
      (err: unknown) => callback(err as Error),
    );
  }
}

export async function withPool<T>(options: PoolOptions, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = new pg.Pool({
    Client: PinnedClient,
    connectionString: options.url,
    ssl: options.ssl ?? false,
    max: options.max,
    application_name: 'migrate-users',
    connectionTimeoutMillis: 10_000,
  });
  // An idle client that loses its server emits 'error' on the pool; unhandled, it would crash the process.
  pool.on('error', (err) => options.log.warn({ err }, 'idle PostgreSQL connection lost'));
  try {
    await firstConnection(options);
    return await fn(pool);
  } finally {
    await pool.end().catch((err: unknown) => options.log.warn({ err: describe(err) }, 'closing PostgreSQL pool failed'));
  }
}

/**
 * The first connection, made before anything else: a server that cannot be reached is said in words (which
 * server, what happened) at once, not as a retried "connection lost". A TLS or permission problem keeps
 * its own message (see cli/main.ts).
 */
async function firstConnection(options: PoolOptions): Promise<void> {
  const client = new pg.Client({
    connectionString: options.url,
    ssl: options.ssl ?? false,
    connectionTimeoutMillis: 10_000,
    application_name: 'migrate-users',
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    // A login that failed half-way (a password asked for and none given) leaves the socket open: close it,
    // or it keeps the process alive.
    (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    if (tlsFailure(error, 'PostgreSQL', '--database-ca') || pgCode(error) === '42501') throw error;
    throw connectFailure(error, 'PostgreSQL', redactUrl(options.url));
  }
  await client.end().catch(() => undefined);
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

/**
 * Runs `fn` as one transaction of the session. Behind a pooler in transaction mode (Supavisor on 6543,
 * PgBouncer) only an open transaction keeps the same server connection, so anything that must outlive a
 * statement (a TEMP stage, a long COPY) lives inside one. The tool's own long statements must not be cut
 * by a statement_timeout meant for app queries: SET LOCAL lifts it for this transaction only, which every
 * pooler allows (a plain SET would leak to other clients of a pooled server connection).
 */
export async function inOneTransaction<T>(session: Session, fn: () => Promise<T>, options: { snapshot?: boolean } = {}): Promise<T> {
  // `snapshot`: every statement sees the database as the first one did (REPEATABLE READ), so a row the app
  // writes meanwhile is judged by one version throughout.
  const begin = options.snapshot ? 'begin isolation level repeatable read' : 'begin';
  await session.client.query(`${begin}; set local statement_timeout = 0; ${PIN_TRANSACTION}`);
  try {
    const result = await fn();
    await session.client.query('commit');
    return result;
  } catch (error) {
    await session.client.query('rollback').catch(() => undefined);
    throw error;
  }
}

/**
 * Runs `fn` in a transaction of its own on `db`, pinned (PIN_TRANSACTION: the settings, and the role's lock and
 * idle timeouts lifted). A batch keeps the role's statement_timeout (see processChunk).
 */
export async function pinnedTransaction<T>(db: Kysely<unknown>, fn: (trx: Kysely<unknown>) => Promise<T>, lift = ''): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql.raw(`${lift}${PIN_TRANSACTION}`).execute(trx);
    return fn(trx);
  });
}

/**
 * pinnedTransaction with statement_timeout lifted too (SET LOCAL, see inOneTransaction): for the tool's own
 * statements over a whole stage, outside the run's one transaction.
 */
export async function unboundedTransaction<T>(db: Kysely<unknown>, fn: (trx: Kysely<unknown>) => Promise<T>): Promise<T> {
  return pinnedTransaction(db, fn, 'set local statement_timeout = 0; ');
}

/** A transaction-level advisory lock, held by an open transaction on a connection of its own. */
export interface HeldLock {
  /** Set if the lock's connection was lost: the lock is gone with it. */
  readonly lost: () => Error | undefined;
  release(): Promise<void>;
}

/**
 * Takes `key` (an SQL expression of a bigint) until the returned lock is released; undefined when another
 * session holds it. A session-level lock would stay on a
 * pooled server connection after the run in transaction mode; an open transaction pins its connection and
 * ends, lock and all, when the process or its connection dies.
 */
export async function tryAdvisoryLock(pool: pg.Pool, key: string, log: Logger): Promise<HeldLock | undefined> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const onError = (err: Error) => {
    lost ??= err;
    log.warn({ err: describe(err) }, 'the connection holding the write lock was lost');
  };
  client.on('error', onError);
  try {
    await client.query(`begin; ${PIN_TRANSACTION}`);
    const { rows } = await client.query<{ locked: boolean }>(`select pg_try_advisory_xact_lock(${key}) as locked`);
    if (!rows[0]?.locked) {
      await client.query('rollback');
      client.off('error', onError);
      client.release();
      return undefined;
    }
  } catch (error) {
    client.off('error', onError);
    client.release(error instanceof Error ? error : new Error(String(error)));
    throw error;
  }
  return {
    lost: () => lost,
    release: async () => {
      const failed = await client.query('commit').then(
        () => undefined,
        (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
      );
      client.off('error', onError);
      client.release(failed ?? lost);
    },
  };
}
