import pg from 'pg';
import { Redis } from 'ioredis';
import { ADMIN_DATABASE_URL, REDIS_URL } from './servers.js';

/**
 * Tests run against real servers: TEST_DATABASE_URL / TEST_REDIS_URL, else the local defaults.
 * Fails at once with the fix in the message rather than letting every test time out.
 */
export default async function setup(): Promise<void> {
  const problems: string[] = [];
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (error) {
    problems.push(`PostgreSQL not reachable at TEST_DATABASE_URL (${redact(ADMIN_DATABASE_URL)}): ${String(error)}`);
  } finally {
    await client.end().catch(() => undefined);
  }
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    problems.push(`Redis not reachable at TEST_REDIS_URL (${redact(REDIS_URL)}): ${String(error)}`);
  } finally {
    redis.disconnect();
  }
  if (problems.length > 0) {
    throw new Error(`${problems.join('\n')}\nStart the local servers (see README "Running the tests") or point the variables at servers.`);
  }
}

function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
}
