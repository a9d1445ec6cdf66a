import pg from 'pg';
import { Redis } from 'ioredis';
import type { TestProject } from 'vitest/node';
import { dockerReachable, startPostgres, startRedis, type StartedServer } from './containers.js';
import { configuredUrl, missingLocally, planServers, SERVERS, type Server, type ServerFacts } from './test-servers.js';

/**
 * Tests run against real servers: TEST_DATABASE_URL / TEST_REDIS_URL, else the local defaults, else (with a
 * Docker engine) containers started here; the choice is test-servers.ts's. Fails at once with the fix in the
 * message rather than letting every test time out.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const env = { postgres: process.env.TEST_DATABASE_URL, redis: process.env.TEST_REDIS_URL };
  const [postgres, redis] = await Promise.all([probePostgres(configuredUrl('postgres', env)), probeRedis(configuredUrl('redis', env))]);
  const facts: ServerFacts = { env, errors: { postgres, redis }, docker: false };
  const plan = planServers({ ...facts, docker: missingLocally(facts).length > 0 && (await dockerReachable()) });
  if (!plan.ok) throw new Error(plan.message);

  const containers: Record<Server, () => Promise<StartedServer>> = { postgres: startPostgres, redis: startRedis };
  const servers: Partial<Record<Server, StartedServer>> = {};
  const results = await Promise.allSettled(
    SERVERS.map(async (s) => {
      const source = plan.sources[s];
      servers[s] = source.kind === 'url' ? { url: source.url, stop: async () => undefined } : await containers[s]();
    }),
  );
  const stopAll = async () => {
    await Promise.all(Object.values(servers).map((server) => server.stop()));
  };
  const failed = results.find((r) => r.status === 'rejected');
  if (failed || !servers.postgres || !servers.redis) {
    await stopAll();
    throw new Error('starting the test containers', { cause: failed?.reason });
  }
  project.provide('testServers', { databaseUrl: servers.postgres.url, redisUrl: servers.redis.url });
  return stopAll;
}

async function probePostgres(url: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('select 1');
    return null;
  } catch (error) {
    return String(error);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function probeRedis(url: string): Promise<string | null> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
    return null;
  } catch (error) {
    return String(error);
  } finally {
    redis.disconnect();
  }
}
