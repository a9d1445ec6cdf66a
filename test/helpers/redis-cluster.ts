import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './pgbouncer.js';

export interface RedisCluster {
  readonly ports: readonly number[];
  stop(): Promise<void>;
}

/** A local Redis Cluster of `masters` redis-servers (no replicas, nothing on disk but nodes.conf). */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'mu-cluster-'));
  const ports: number[] = [];
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(
      children.map(async (child) => {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        if (child.exitCode === null) await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      ports.push(port);
      children.push(
        spawn(
          'redis-server',
          [
            '--port',
            String(port),
            '--bind',
            '127.0.0.1',
            '--save',
            '',
            '--appendonly',
            'no',
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            '--dir',
            dir,
          ],
          { stdio: 'ignore' },
        ),
      );
    }
    for (const port of ports) await until(async () => (await ask(port, (r) => r.ping())) === 'PONG');
    execFileSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'pipe' });
    for (const port of ports) {
      await until(async () => String(await ask(port, (r) => r.cluster('INFO'))).includes('cluster_state:ok'));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { ports, stop };
}

async function ask<T>(port: number, fn: (redis: Redis) => Promise<T>): Promise<T | undefined> {
  const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return await fn(redis);
  } catch {
    return undefined;
  } finally {
    redis.disconnect();
  }
}

async function until(check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('Redis Cluster did not come up within 15 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}
