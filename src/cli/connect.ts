import { Redis } from 'ioredis';
import { UnfinishedError, describe } from '../errors.js';
import type { Logger } from '../log.js';
import { redactUrl } from '../redact.js';

/** A Redis connection that fails fast when the server is not there, closed in `finally`. */
export async function withRedis<T>(url: string, log: Logger, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 10_000,
    maxRetriesPerRequest: 2,
    retryStrategy: (attempt) => (attempt > 3 ? null : attempt * 500),
  });
  // Without a listener ioredis prints "Unhandled error event" for every failed reconnect.
  redis.on('error', (err: Error) => log.debug({ err }, 'redis connection error'));
  try {
    await redis.connect();
  } catch (cause) {
    redis.disconnect();
    throw new UnfinishedError(`cannot reach Redis at ${redactUrl(url)}: ${describe(cause)}`);
  }
  try {
    return await fn(redis);
  } finally {
    await redis.quit().catch(() => redis.disconnect());
  }
}
