import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export interface ThrowawayRedis {
  readonly url: string;
  /** Kills the server (SIGKILL: no goodbye to clients) and starts it again on the same port and data. */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A throwaway redis-server on a free loopback port. With `persist`, it keeps an append-only file in its
 * own temp folder so its data survives `restart()`; otherwise nothing touches the disk. With `password`,
 * it asks for one (requirepass), and `url` carries it.
 */
export async function startRedis(options: { persist?: boolean; password?: string } = {}): Promise<ThrowawayRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'mu-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir];
  args.push('--appendonly', options.persist ? 'yes' : 'no', ...(options.persist ? ['--appendfsync', 'always'] : []));
  if (options.password !== undefined) args.push('--requirepass', options.password);
  const auth = options.password === undefined ? '' : `default:${encodeURIComponent(options.password)}@`;
  const url = `redis://${auth}127.0.0.1:${port}`;
  let child: ChildProcess = await launch(args, url);
  return {
    url,
    restart: async (downMs = 500) => {
      await end(child, 'SIGKILL');
      await sleep(downMs);
      child = await launch(args, url);
    },
    stop: async () => {
      await end(child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Ends a child and waits for it, without waiting forever for one that has already gone. */
async function end(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await Promise.race([exited, sleep(10_000)]);
}

async function launch(args: string[], url: string): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const probe = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      // Loading the append-only file answers LOADING until done.
      await probe.get('probe');
      probe.disconnect();
      return child;
    } catch {
      probe.disconnect();
      await sleep(50);
    }
  }
  throw new Error(`redis-server did not start at ${url}`);
}

/**
 * A TCP proxy that delays every chunk by `delayMs` in each direction (so a round trip costs 2 x delayMs),
 * keeping order: a stand-in for the distance to a managed database.
 */
export async function startDelayProxy(target: { host: string; port: number }, delayMs: number): Promise<{ port: number; stop: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const delayed = (from: Socket, to: Socket) => {
    let chain = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      const due = Date.now() + delayMs;
      chain = chain
        .then(async () => {
          const wait = due - Date.now();
          if (wait > 0) await sleep(wait);
          if (!to.destroyed) to.write(chunk);
        })
        // A failed write must end the connection, not silently stall every later chunk.
        .catch(() => {
          to.destroy();
          from.destroy();
        });
    });
    from.on('end', () => void chain.then(() => to.end()));
    from.on('error', () => to.destroy());
  };
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    sockets.add(client).add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    delayed(client, upstream);
    delayed(upstream, client);
  });
  const port = await new Promise<number>((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });
  return {
    port,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
