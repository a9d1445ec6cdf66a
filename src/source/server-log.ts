import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UnfinishedError, UsageError } from '../errors.js';
import { rdbWriter, type SnapshotFile } from './rdb-file.js';
import type { RedisServerBinary } from './redis-server-binary.js';
import type { Ended } from './server-watchdog.js';

export function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'server.log'), 'utf8');
  } catch {
    return '';
  }
}

/**
 * The server's own words on why it stopped: its warning lines ("#"), and the verdict of the RDB check it
 * runs on a failed load. Never the check's other lines, which name keys (emails).
 */
export function serverLines(log: string, lastLinesIfSilent = true): string[] {
  const lines = log.split('\n');
  const out: string[] = [];
  // Redis logs its start-up banner at the warning level too: only what comes after initialisation counts.
  let started = !lines.some((line) => line.includes(' # Server initialized'));
  lines.forEach((line, i) => {
    const warning = /^\d+:[A-Z] .*? # (.*)$/.exec(line)?.[1]?.trim();
    if (warning === 'Server initialized') started = true;
    else if (warning && started && !warning.startsWith('WARNING')) out.push(warning);
    if (line.startsWith('--- RDB ERROR DETECTED ---')) {
      const verdict = /^\[offset \d+\] .*/.exec(lines[i + 1] ?? '')?.[0];
      if (verdict) out.push(`redis-check-rdb: ${verdict}`);
    }
  });
  // Anything else it printed on the way out (a configuration it refused, say): its last lines.
  if (out.length === 0 && lastLinesIfSilent)
    out.push(
      ...lines
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.includes('oO0OoO0O'))
        .slice(-3),
    );
  return out;
}

/** Why a snapshot did not load, in the server's words, as the error the operator sees. */
export function loadFailure(file: SnapshotFile, binary: RedisServerBinary, how: Ended): Error {
  const server = `the local redis-server (${binary.product} ${binary.version}, ${binary.path})`;
  const version = /Can't handle RDB format version (\d+)/.exec(how.log)?.[1];
  if (version) {
    return new UsageError(
      `--rdb ${file.path} is RDB version ${version} (written by ${file.header.writtenBy ?? rdbWriter(Number(version))}), which ${server} cannot load ` +
        `("Can't handle RDB format version ${version}"): use a redis-server as new as the one that wrote it (--redis-server PATH)`,
    );
  }
  const said = serverLines(how.log);
  if (how.signal) {
    return new UnfinishedError(
      `${server} was killed (${how.signal}) while loading --rdb ${file.path}${said.length > 0 ? `: ${said.join(' / ')}` : ''}. ` +
        `Loading needs about as much memory as the server that wrote it used${file.header.usedMemory ? ` (${Math.ceil(file.header.usedMemory / 1048576)} MB)` : ''}`,
    );
  }
  return new UsageError(
    `${server} could not load --rdb ${file.path} (damaged or incomplete?): ${said.length > 0 ? said.join(' / ') : `it exited with code ${how.exit ?? 'unknown'}`}`,
  );
}
