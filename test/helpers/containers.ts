/**
 * Throwaway PostgreSQL 15 and Redis 7 containers for a machine without local servers (the laptop path).
 * testcontainers is imported only here, and only when a container is wanted: a run against local servers
 * never loads it.
 */

export interface StartedServer {
  readonly url: string;
  stop(): Promise<void>;
}

/** Whether testcontainers finds a container runtime (DOCKER_HOST, ~/.testcontainers.properties, the sockets). */
export async function dockerReachable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

export async function startPostgres(): Promise<StartedServer> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  // A superuser, as the tests need (they create databases and roles); its password comes in the URL.
  const container = await new PostgreSqlContainer('postgres:15').withUsername('postgres').withDatabase('postgres').start();
  return {
    url: container.getConnectionUri(),
    stop: async () => {
      await container.stop();
    },
  };
}

export async function startRedis(): Promise<StartedServer> {
  const { RedisContainer } = await import('@testcontainers/redis');
  // No persistence: nothing the tests write outlives the container.
  const container = await new RedisContainer('redis:7').withCommand(['redis-server', '--save', '', '--appendonly', 'no']).start();
  return {
    url: container.getConnectionUrl(),
    stop: async () => {
      await container.stop();
    },
  };
}
