import { execFileSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

/** A local redis-server executable, as its `--version` describes it. */
export interface RedisServerBinary {
  readonly path: string;
  /** "Redis", "Valkey", ... */
  readonly product: string;
  readonly version: string;
  /**
   * The newest RDB version this release is known to load, or undefined for a release this tool does not
   * know (then the server's own load decides, and its refusal is reported the same way).
   */
  readonly maxRdbVersion: number | undefined;
}

const INSTALL = 'install it (Debian/Ubuntu: apt install redis-server; macOS: brew install redis) or give its path with --redis-server PATH';

/** `given` (--redis-server), else `redis-server` on PATH. A problem in words when there is none that runs. */
export function findRedisServer(given: string | undefined, path: string | undefined): RedisServerBinary | { readonly problem: string } {
  const candidate = given === undefined ? onPath('redis-server', path) : resolve(given);
  if (candidate === undefined) {
    return { problem: `--rdb loads the snapshot into a throwaway local redis-server, but none was found on PATH: ${INSTALL}` };
  }
  const name = given === undefined ? `redis-server (${candidate})` : `--redis-server ${given}`;
  if (!isExecutable(candidate))
    return { problem: `${name} ${statSync(candidate, { throwIfNoEntry: false }) ? 'is not an executable file' : 'does not exist'}: ${INSTALL}` };
  let text: string;
  try {
    text = execFileSync(candidate, ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    return { problem: `${name} did not run (${(error as Error).message.split('\n')[0] ?? ''}): ${INSTALL}` };
  }
  const found = /^(\w+) server v=(\d+)\.(\d+)\.(\d+)/m.exec(text);
  if (!found) return { problem: `${name} is not a redis-server ("--version" printed "${text.trim().slice(0, 80)}")` };
  const [, product = '', major = '0', minor = '0', patch = '0'] = found;
  return { path: candidate, product, version: `${major}.${minor}.${patch}`, maxRdbVersion: maxRdbVersion(product, Number(major), Number(minor)) };
}

/** rdb.h's RDB_VERSION by release: what each one writes, and the newest it loads. */
const REDIS: readonly (readonly [major: number, minor: number, rdb: number])[] = [
  [7, 4, 12],
  [7, 2, 11],
  [7, 0, 10],
  [5, 0, 9],
  [4, 0, 8],
  [3, 2, 7],
  [2, 6, 6],
];

export function maxRdbVersion(product: string, major: number, minor: number): number | undefined {
  const at = (table: typeof REDIS) => table.find(([ma, mi]) => major > ma || (major === ma && minor >= mi))?.[2];
  // Releases after these may load newer formats: they are left to the server to decide.
  if (product === 'Redis' && major < 8) return at(REDIS);
  if (product === 'Valkey' && major >= 7 && major < 9) return 11;
  return undefined;
}

function onPath(name: string, path: string | undefined): string | undefined {
  for (const dir of (path ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}
