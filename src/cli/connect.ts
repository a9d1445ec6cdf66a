import { Cluster, Redis } from 'ioredis';
import type { ConnectionOptions } from 'node:tls';
import { UsageError, connectFailure, describe, tlsFailure } from '../errors.js';
import type { Logger } from '../log.js';
import { redactUrl } from '../redact.js';
import type { SourceInfo } from '../results/migrate-report.js';
import type pg from 'pg';
import { withPool } from '../db/database.js';
import { assertWritable, readTarget } from '../db/target.js';
import { withSnapshots, type SnapshotPlan } from '../source/rdb-snapshot.js';
import type { RedisSource } from '../source/redis-reader.js';

export interface RedisTarget {
  readonly redisUrl: string;
  readonly redisTls: ConnectionOptions | undefined;
  /** --redis-cluster; a cluster is also detected (INFO cluster) when this is off. */
  readonly redisCluster: boolean;
}

// disconnectTimeout: ioredis otherwise keeps the process alive 2 s after a failed first connection.
const CONNECT = { connectTimeout: 10_000, maxRetriesPerRequest: 2, disconnectTimeout: 100 } as const;

/**
 * A Redis connection that fails fast when the server is not there, closed in `finally`. A Redis Cluster
 * (asked for, or detected on the server the URL names) is opened as one: ioredis learns the slots from it.
 */
export async function withRedis<T>(target: RedisTarget, log: Logger, fn: (redis: Redis | Cluster) => Promise<T>): Promise<T> {
  const url = target.redisUrl;
  const tls = target.redisTls;
  let lastError: Error | undefined;
  const onError = (err: Error) => {
    lastError = err;
    log.debug({ err }, 'redis connection error');
  };
  const failed = (cause: unknown) => {
    const tlsProblem = tlsFailure(cause, 'Redis', '--redis-ca') ?? tlsFailure(lastError, 'Redis', '--redis-ca');
    if (tlsProblem) return new UsageError(`cannot use Redis at ${redactUrl(url)}: ${tlsProblem}`);
    // ioredis rejects with "Connection is closed."; the socket's own error says why.
    const said = describe(cause);
    return connectFailure(/Connection is closed|slots cache/i.test(said) && lastError ? lastError : cause, 'Redis', redactUrl(url));
  };
  // A server never reached is not retried: the first attempt says what is wrong. Once connected, a lost
  // connection is retried (a failover, a restart) before the run gives up.
  const reconnect = (attempt: number) => (attempt > 3 ? null : attempt * 500);
  let client: Redis | Cluster = new Redis(url, {
    ...(tls ? { tls } : {}),
    ...CONNECT,
    lazyConnect: true,
    retryStrategy: () => null,
  });
  // Without a listener ioredis prints "Unhandled error event" for every failed reconnect.
  client.on('error', onError);
  try {
    let cluster = target.redisCluster;
    if (!cluster) {
      await withinConnectTimeout(client.connect());
      client.options.retryStrategy = reconnect;
      // ioredis reports a database number the server does not have only as an 'error' event, and then
      // reads database 0: ask again, and fail on the answer.
      const db = Number(new URL(url).pathname.replace(/^\//, '') || '0');
      if (db !== 0) {
        await withinConnectTimeout(client.select(db)).catch((error: unknown) => {
          const said = describe(error);
          if (/DB index is out of range|invalid DB index/i.test(said)) {
            throw new UsageError(`cannot use Redis at ${redactUrl(url)}: it has no database ${db} (check the number at the end of the URL)`);
          }
          if (/not allowed in cluster mode/i.test(said)) {
            throw new UsageError(`a Redis Cluster has only database 0, but the URL asks for database ${db}`);
          }
          throw error;
        });
      }
      cluster = await withinConnectTimeout(isCluster(client, log));
      if (cluster) log.info('Redis Cluster detected: scanning every master');
    }
    if (cluster) {
      client.disconnect();
      client = await openCluster(url, tls, onError);
    }
  } catch (cause) {
    client.disconnect();
    throw cause instanceof UsageError ? cause : failed(cause);
  }
  try {
    return await fn(client);
  } finally {
    await client.quit().catch(() => client.disconnect());
  }
}

/** A server that accepts the connection but never answers (a wrong port behind a proxy) fails like one that refuses. */
function withinConnectTimeout<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(Object.assign(new Error(`no answer within ${CONNECT.connectTimeout / 1000} s`), { code: 'ETIMEDOUT' }));
    }, CONNECT.connectTimeout);
  });
  return Promise.race([work, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

/**
 * PostgreSQL first, and the table checked (exit 2 naming the column when the tool cannot write it), then
 * the source: a live Redis, or (--rdb) the snapshots loaded into throwaway servers. A table problem is
 * reported as such, before anything is read or loaded, whatever the source's state. `fn` gets the source
 * as the pipeline reads it and as reports name it.
 */
export async function withServers<T>(
  conn: RedisTarget & { readonly databaseUrl: string; readonly databaseSsl: false | ConnectionOptions; readonly snapshot?: SnapshotPlan | undefined },
  log: Logger,
  maxConnections: number,
  fn: (redis: RedisSource, pool: pg.Pool, source: SourceInfo) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  return withPool({ url: conn.databaseUrl, ssl: conn.databaseSsl, max: maxConnections, log }, async (pool) => {
    assertWritable(await readTarget(pool));
    const snapshot = conn.snapshot;
    if (snapshot) return withSnapshots(snapshot, log, signal, (redis, source) => fn(redis, pool, source));
    return withRedis(conn, log, async (redis) => fn(redis, pool, await sourceInfo(conn, redis)));
  });
}

/**
 * The source as reports name it and as a resume must match it: scheme, user, host, port and database
 * number, never the password; and the server's own identity (INFO's run_id), so another server reached at
 * the same address (a tunnel, a port-forward) is never taken for the one a stage was read from. A server
 * that may not run INFO is named by its address only; a cluster by the node the URL names.
 */
export async function sourceInfo(target: RedisTarget, redis: Redis | Cluster): Promise<SourceInfo> {
  const parsed = new URL(target.redisUrl);
  const db = Number(parsed.pathname.replace(/^\//, '') || '0');
  const user = parsed.username ? `${decodeURIComponent(parsed.username)}@` : '';
  const url = `${parsed.protocol}//${user}${parsed.hostname}:${parsed.port || '6379'}/${Number.isFinite(db) ? db : 0}`;
  if (redis instanceof Cluster) return { kind: 'redis-cluster', url };
  const info = await redis.info('server').catch(() => '');
  const server = /^run_id:(\w+)/m.exec(info)?.[1];
  return server ? { kind: 'redis', url, server } : { kind: 'redis', url };
}

/** INFO tells; a read-only ACL user may not be allowed INFO, and is then taken to mean one server. */
async function isCluster(redis: Redis, log: Logger): Promise<boolean> {
  try {
    return /^cluster_enabled:1/m.test(await redis.info('cluster'));
  } catch (error) {
    if (!describe(error).includes('NOPERM')) throw error;
    log.info('this Redis user may not run INFO: reading it as a single server (--redis-cluster for a cluster)');
    return false;
  }
}

async function openCluster(url: string, tls: ConnectionOptions | undefined, onError: (err: Error) => void): Promise<Cluster> {
  const parsed = new URL(url);
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && db !== '0') throw new UsageError(`a Redis Cluster has only database 0, but the URL asks for database ${db}`);
  const cluster = new Cluster([{ host: parsed.hostname.replace(/^\[|\]$/g, ''), port: Number(parsed.port || 6379) }], {
    lazyConnect: true,
    redisOptions: {
      ...CONNECT,
      ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
      ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
      ...(tls ? { tls } : {}),
    },
    clusterRetryStrategy: (attempt) => (attempt > 3 ? null : attempt * 500),
  });
  cluster.on('error', onError);
  try {
    await cluster.connect();
  } catch (error) {
    cluster.disconnect();
    throw error;
  }
  return cluster;
}
