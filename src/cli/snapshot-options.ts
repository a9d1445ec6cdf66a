import { mkdtempSync, rmdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { rdbWriter, readRdbHeader, type SnapshotFile } from '../source/rdb-file.js';
import type { SnapshotPlan } from '../source/rdb-snapshot.js';
import { findRedisServer } from '../source/redis-server-binary.js';
import type { Problems } from './config.js';

export interface SnapshotFlags {
  rdb?: string[];
  redisServer?: string;
  redisUrl?: string;
  redisCluster?: boolean;
  redisCa?: string;
  allowOlderSnapshot?: boolean;
}

/**
 * For the commands that read the source (migrate, dry-run, verify, reconcile); `writes`: a command that can
 * write from the snapshot (migrate, reconcile --apply) also takes --allow-older-snapshot. verify never
 * writes, so it has no such option (commander then calls it unknown there).
 */
export function addSnapshotOptions(command: Command, writes: boolean): Command {
  command
    .addOption(
      new Option(
        '--rdb <path>',
        'read this RDB snapshot (dump.rdb) through a throwaway local redis-server instead of a live Redis: production gets no command; repeat for a cluster, one file per master',
      ).argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]),
    )
    .addOption(new Option('--redis-server <path>', 'the redis-server binary --rdb starts (default: redis-server on PATH)'));
  if (writes) command.option('--allow-older-snapshot', 'write from a snapshot older than what an earlier writing run read (which puts back older balances)');
  return command;
}

/**
 * The snapshots to read, or undefined for a live Redis. Everything that can be known before connecting to
 * anything is checked here, with the other flags: the files exist, are RDB files, and the local server
 * can load their version.
 */
export function snapshotPlan(flags: SnapshotFlags, env: NodeJS.ProcessEnv, problems: Problems): SnapshotPlan | undefined {
  const given = flags.rdb ?? [];
  if (given.length === 0) {
    if (flags.redisServer !== undefined) problems.add('--redis-server goes with --rdb');
    return undefined;
  }
  if (flags.redisUrl !== undefined) problems.add('--rdb reads a snapshot instead of a live Redis: it cannot go with --redis-url');
  if (flags.redisCluster) problems.add('--rdb cannot go with --redis-cluster: give one --rdb per master of the cluster');
  if (flags.redisCa !== undefined) problems.add('--rdb cannot go with --redis-ca (there is no live Redis to verify)');
  const server = findRedisServer(flags.redisServer, env.PATH);
  if ('problem' in server) problems.add(server.problem);
  const files: SnapshotFile[] = [];
  for (const name of given) {
    const path = resolve(name);
    if (files.some((f) => f.path === path)) {
      problems.add(`--rdb ${name} is given twice`);
      continue;
    }
    const file = checkFile(name, path, problems);
    if (!file) continue;
    if (!('problem' in server) && server.maxRdbVersion !== undefined && file.header.version > server.maxRdbVersion) {
      problems.add(
        `--rdb ${name} is RDB version ${file.header.version} (written by ${file.header.writtenBy ?? rdbWriter(file.header.version)}), ` +
          `but the local redis-server (${server.product} ${server.version}, ${server.path}) loads RDB versions up to ${server.maxRdbVersion}: ` +
          'give a redis-server as new as the one that wrote it with --redis-server PATH',
      );
    }
    files.push(file);
  }
  const folder = serverFolder(env, problems);
  return 'problem' in server ? undefined : { files, server, folder };
}

/**
 * Where the throwaway servers' private folders go: the temporary folder (TMPDIR, as os.tmpdir() reads it),
 * tried now by making and removing a folder there, so that a TMPDIR that cannot be used is said before
 * anything is connected to or loaded.
 */
function serverFolder(env: NodeJS.ProcessEnv, problems: Problems): string {
  const variable = ['TMPDIR', 'TMP', 'TEMP'].find((name) => (env[name] ?? '') !== '');
  const given = variable === undefined ? '/tmp' : (env[variable] ?? '').replace(/(.)\/+$/, '$1');
  // A unix socket path may hold about 100 bytes: a long TMPDIR falls back to /tmp.
  const folder = given.length > 60 ? '/tmp' : given;
  const where =
    variable === undefined ? '/tmp (TMPDIR is not set)' : folder === given ? `${variable} (${given})` : `/tmp (${variable} is too long for a unix socket path)`;
  let step = 'exists';
  try {
    if (!statSync(folder).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    step = 'create';
    rmdirSync(mkdtempSync(join(folder, 'migrate-users-probe-')));
  } catch (error) {
    const code = String((error as NodeJS.ErrnoException).code ?? error);
    const why =
      step === 'create'
        ? `takes no new folder (${code})`
        : code === 'ENOENT'
          ? 'does not exist'
          : code === 'ENOTDIR'
            ? 'is not a folder'
            : `cannot be used (${code})`;
    problems.add(`--rdb starts its throwaway redis-server in a private folder under ${where}, which ${why}: set TMPDIR to a folder this user can write to`);
  }
  return folder;
}

function checkFile(name: string, path: string, problems: Problems): SnapshotFile | undefined {
  try {
    if (statSync(path).isDirectory()) {
      problems.add(`--rdb ${name} is a directory: give the RDB file (dump.rdb)`);
      return undefined;
    }
    const header = readRdbHeader(path);
    if ('problem' in header) {
      problems.add(`--rdb ${name} ${header.problem}`);
      return undefined;
    }
    return { path, header };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable (permission denied)' : `cannot be read (${code ?? String(error)})`;
    problems.add(`--rdb ${name} ${why}`);
    return undefined;
  }
}
