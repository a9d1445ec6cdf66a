import { Redis } from 'ioredis';
import type { ConnectionOptions } from 'node:tls';
import { UnfinishedError, UsageError, describe, tlsFailure } from '../errors.js';
import type { Logger } from '../log.js';
import { redactUrl } from '../redact.js';

/** A Redis connection that fails fast when the server is not there, closed in `finally`. */
export async function withRedis<T>(url: string, tls: ConnectionOptions | undefined, log: Logger, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, {
    ...(tls ? { tls } : {}),
    lazyConnect: true,
    connectTimeout: 10_000,
    maxRetriesPerRequest: 2,
    retryStrategy: (attempt) => (attempt > 3 ? null : attempt * 500),
  });
  // Without a listener ioredis prints "Unhandled error event" for every failed reconnect.
  let lastError: Error | undefined;
  redis.on('error', (err: Error) => {
    lastError = err;
    log.debug({ err }, 'redis connection error');
  });
  try {
    await redis.connect();
  } catch (cause) {
    redis.disconnect();
    const tlsProblem = tlsFailure(cause, 'Redis', '--redis-ca') ?? tlsFailure(lastError, 'Redis', '--redis-ca');
    if (tlsProblem) throw new UsageError(`cannot use Redis at ${redactUrl(url)}: ${tlsProblem}`);
    throw new UnfinishedError(`cannot reach Redis at ${redactUrl(url)}: ${describe(cause)}`);
  }
  try {
    return await fn(redis);
  } finally {
    await redis.quit().catch(() => redis.disconnect());
  }
}
