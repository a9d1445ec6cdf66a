import { statSync } from 'node:fs';
import { resolve } from 'node:path';
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

/** For the commands that read the source (migrate, dry-run, verify, reconcile). */
export function addSnapshotOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        '--rdb <path>',
        'read this RDB snapshot (dump.rdb) through a throwaway local redis-server instead of a live Redis: production gets no command; repeat for a cluster, one file per master',
      ).argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]),
    )
    .addOption(new Option('--redis-server <path>', 'the redis-server binary --rdb starts (default: redis-server on PATH)'))
    .option('--allow-older-snapshot', 'write from a snapshot older than what an earlier writing run read (which puts back older balances)');
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
  return 'problem' in server ? undefined : { files, server };
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
