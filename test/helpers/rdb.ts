import { copyFileSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis } from '../../src/bench/servers.js';

/** SAVE on the server, and a copy of its dump.rdb at `to`. */
export async function saveSnapshot(url: string, to: string): Promise<string> {
  const redis = new Redis(url);
  try {
    const [, folder] = (await redis.config('GET', 'dir')) as [string, string];
    await redis.save();
    copyFileSync(join(folder, 'dump.rdb'), to);
  } finally {
    redis.disconnect();
  }
  return to;
}

/** An RDB file at `to` holding exactly `keys` (key -> string value), written by a redis-server of its own. */
export async function snapshotOf(keys: Readonly<Record<string, string>>, to: string): Promise<string> {
  const server = await startRedis();
  try {
    const redis = new Redis(server.url);
    for (const [key, value] of Object.entries(keys)) await redis.set(key, value);
    redis.disconnect();
    return await saveSnapshot(server.url, to);
  } finally {
    await server.stop();
  }
}

/** The throwaway servers the tool logged (at info level): the pid it started, its watchdog and its folder. */
export function throwawayServers(stderr: string): { pid: number; watchdog: number; folder: string }[] {
  return stderr
    .split('\n')
    .filter((line) => line.includes('loading the snapshot into a throwaway redis-server'))
    .map((line) => JSON.parse(line) as { pid: number; watchdog: number; socket: string })
    .map((entry) => ({ pid: entry.pid, watchdog: entry.watchdog, folder: entry.socket.replace(/\/redis\.sock$/, '') }));
}

/** Alive and not a zombie. */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** The live processes whose parent is `pid` (from /proc). */
export function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name (in parentheses) may hold spaces: the fields after it are fixed.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid && alive(Number(entry))) found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}
