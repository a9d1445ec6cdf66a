import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { InterruptedError, UnfinishedError, UsageError, describe } from '../errors.js';
import type { Logger } from '../log.js';
import type { SnapshotFile } from './rdb-file.js';
import type { RedisServerBinary } from './redis-server-binary.js';
import { loadFailure, readLog, serverLines } from './server-log.js';
import { untilLoaded } from './server-ready.js';
import { startWatchdog, type Ended, type Watchdog } from './server-watchdog.js';

/** One redis-server loaded from one RDB file: no TCP port, no persistence, a unix socket in a 0700 folder. */
export class ThrowawayServer {
  private stopping = false;
  private died: Error | undefined;
  /** What the pipeline reads through: fails at once, and for good, once the server has died. */
  readonly client: Redis;

  private constructor(
    readonly file: SnapshotFile,
    readonly pid: number,
    private readonly connection: Redis,
    private readonly dir: string,
    private readonly watchdog: Watchdog,
    private readonly log: Logger,
  ) {
    this.client = failFast(connection, () => this.died);
    // Runs when the server ends, however it ends; `ended` never rejects (see Watchdog.ended).
    void watchdog.ended.then((how) => {
      if (this.stopping) return;
      const said = serverLines(how.log, false);
      log.error({ file: file.path, pid, exit: how.exit, signal: how.signal, server: said }, 'the throwaway redis-server stopped unexpectedly');
      this.died = new Error(
        `the throwaway redis-server reading ${file.path} stopped (${how.signal ?? `exit code ${how.exit ?? 'unknown'}`}${how.signal === 'SIGKILL' ? ': out of memory?' : ''}) ` +
          `and the snapshot cannot be read any more${said.length > 0 ? `; it said: ${said.join(' / ')}` : ''}`,
      );
    });
  }

  /** `folder`: where its private folder is made (short enough for a unix socket path). */
  static async start(file: SnapshotFile, binary: RedisServerBinary, folder: string, log: Logger, signal: AbortSignal | undefined): Promise<ThrowawayServer> {
    const dir = mkdtempSync(join(folder, 'migrate-users-rdb-'));
    const socket = join(dir, 'redis.sock');
    // The server reads the file through a link in its own folder: anything it might write (it is told to
    // write nothing) would land there, never on the operator's file.
    symlinkSync(file.path, join(dir, 'dump.rdb'));
    const args = [
      '--port',
      '0',
      '--unixsocket',
      socket,
      '--unixsocketperm',
      '700',
      '--dir',
      dir,
      '--dbfilename',
      'dump.rdb',
      '--save',
      '',
      '--appendonly',
      'no',
      '--logfile',
      '',
      '--daemonize',
      'no',
    ];
    const watchdog = startWatchdog(dir, binary.path, args);
    const abandon = async () => {
      watchdog.process.stdin?.end();
      await Promise.race([watchdog.gone, sleep(10_000, undefined, { ref: false })]);
      rmSync(dir, { recursive: true, force: true });
    };
    const first = await watchdog.first;
    if (!('pid' in first)) {
      await abandon();
      throw new UsageError(`cannot start ${binary.path} (${'error' in first ? first.error : 'it ended at once'})`);
    }
    const pid = first.pid;
    log.info(
      { file: file.path, pid, watchdog: watchdog.process.pid, socket, server: `${binary.product} ${binary.version}`, memory: file.header.usedMemory },
      'loading the snapshot into a throwaway redis-server',
    );
    const startedAt = Date.now();
    let client: Redis | undefined;
    try {
      await untilLoaded(socket, watchdog.ended, signal, (percent) => log.info({ file: file.path, percent }, 'still loading the snapshot'));
      client = new Redis({
        path: socket,
        lazyConnect: true,
        connectTimeout: 10_000,
        maxRetriesPerRequest: 2,
        retryStrategy: (attempt) => (attempt > 3 ? null : attempt * 500),
      });
      client.on('error', (err: Error) => log.debug({ err }, 'throwaway redis-server connection error'));
      await client.connect();
      const keyspace = Object.fromEntries(
        [...(await client.info('keyspace')).matchAll(/^(db\d+):keys=(\d+)/gm)].map((m) => [m[1] ?? '', Number(m[2])] as const),
      );
      const expired = /keys expired: (\d+)/.exec(readLog(dir))?.[1];
      log.info({ file: file.path, pid, seconds: (Date.now() - startedAt) / 1000, keyspace }, 'snapshot loaded: reading it (database 0)');
      if (expired && expired !== '0') {
        log.warn(
          { file: file.path, expired: Number(expired) },
          'keys whose TTL passed since the snapshot was written were not loaded (Redis drops them on load, as production has since)',
        );
      }
    } catch (error) {
      client?.disconnect();
      await abandon();
      if (error instanceof InterruptedError) throw error;
      // Ended on its own (not stopped by abandon): the server said why. Its report may arrive just after
      // the watchdog's exit.
      const how: Ended | undefined = await Promise.race([watchdog.ended, sleep(5000, undefined, { ref: false }).then(() => undefined)]);
      if (how && !how.stopped) throw loadFailure(file, binary, how);
      throw new UnfinishedError(`cannot read the throwaway redis-server loaded from ${file.path}: ${describe(error)}`);
    }
    return new ThrowawayServer(file, pid, client, dir, watchdog, log);
  }

  /** Stops the server (the watchdog kills it when its pipe closes) and removes its folder. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.connection.disconnect();
    this.watchdog.process.stdin?.end();
    const stopped = await Promise.race([this.watchdog.gone.then(() => true), sleep(10_000, undefined, { ref: false }).then(() => false)]);
    if (!stopped) {
      // The watchdog did not answer: end both directly.
      this.log.warn({ pid: this.pid }, 'the watchdog did not stop the throwaway redis-server: killing it');
      // The server leads a process group of its own (with whatever a wrapper script started); the watchdog does not.
      for (const pid of [-this.pid, this.pid, this.watchdog.process.pid]) {
        try {
          if (pid !== undefined) process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    this.log.debug({ file: this.file.path, pid: this.pid }, 'throwaway redis-server stopped');
  }
}

/**
 * `client`, except that once `died()` says the server is gone every read fails at once with that error. A
 * live Redis may come back, so a lost connection is retried; a throwaway server never does, and retrying
 * it would only delay the failure by every retry's backoff.
 */
function failFast(client: Redis, died: () => Error | undefined): Redis {
  const reads = new Set<PropertyKey>(['scanBuffer', 'callBuffer', 'pipeline']);
  return new Proxy(client, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (!reads.has(property)) return method.bind(target);
      return (...args: unknown[]) => {
        const error = died();
        if (error) throw error;
        return method.apply(target, args);
      };
    },
  });
}
