import { createHash } from 'node:crypto';
import { createReadStream, statSync, type Stats } from 'node:fs';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import type { RdbFileInfo, SourceInfo } from '../results/migrate-report.js';
import type { SnapshotFile } from './rdb-file.js';
import { ServerGroup, type RedisSource } from './redis-reader.js';
import type { RedisServerBinary } from './redis-server-binary.js';
import { ThrowawayServer } from './throwaway-server.js';

export interface SnapshotPlan {
  readonly files: readonly SnapshotFile[];
  readonly server: RedisServerBinary;
  /** Where each server gets a private folder of its own (the temporary folder, checked to be usable). */
  readonly folder: string;
}

/**
 * Loads every snapshot into a throwaway redis-server of its own (side by side), hands `fn` the source the
 * pipeline reads (one server, or a group of them for a cluster's files) and the SourceInfo naming the files,
 * and stops the servers when `fn` ends, however it ends.
 */
export async function withSnapshots<T>(
  plan: SnapshotPlan,
  log: Logger,
  signal: AbortSignal | undefined,
  fn: (redis: RedisSource, source: SourceInfo) => Promise<T>,
): Promise<T> {
  const started: ThrowawayServer[] = [];
  try {
    const before = plan.files.map((file) => statSync(file.path));
    const hashed = await hashRepeatableSizes(plan.files, before);
    const results = await Promise.allSettled(
      plan.files.map(async (file, i) => {
        const starting = ThrowawayServer.start(file, plan.server, plan.folder, log, signal).then((server) => {
          started.push(server);
          return server;
        });
        const [server, info] = await Promise.all([starting, hashed[i] ?? fileInfo(file)]);
        return { server, info };
      }),
    );
    const opened = results.map((result) => {
      if (result.status === 'rejected') throw result.reason;
      return result.value;
    });
    plan.files.forEach((file, i) => {
      const after = statSync(file.path);
      const then = before[i] as Stats;
      if (after.size !== then.size || after.mtimeMs !== then.mtimeMs || after.ino !== then.ino) {
        throw new UsageError(`--rdb ${file.path} changed while it was being loaded: copy the snapshot where nothing writes to it, and give the copy`);
      }
    });
    const files = opened.map((o) => o.info);
    const source: SourceInfo = files.length === 1 ? { kind: 'rdb', ...(files[0] as RdbFileInfo) } : { kind: 'rdb-cluster', files };
    const only = opened.length === 1 ? opened[0]?.server.client : undefined;
    return await fn(
      only ??
        new ServerGroup(
          opened.map((o) => o.server.client),
          opened.map((o) => o.info.file),
        ),
      source,
    );
  } finally {
    await Promise.all(started.map((server) => server.stop().catch((err: unknown) => log.warn({ err }, 'could not stop a throwaway redis-server'))));
  }
}

/**
 * The same snapshot given twice under two names would read every key of it twice: refused before any
 * server is started. Only files of the same size can be the same, so only those are hashed first (the
 * others are hashed while their servers load); the hashes are returned, by position, for the report.
 */
async function hashRepeatableSizes(files: readonly SnapshotFile[], stats: readonly Stats[]): Promise<(RdbFileInfo | undefined)[]> {
  const shared = (i: number) => stats.some((other, j) => j !== i && other.size === stats[i]?.size);
  const infos = await Promise.all(files.map((file, i) => (shared(i) ? fileInfo(file) : Promise.resolve(undefined))));
  infos.forEach((info, i) => {
    const first = infos.findIndex((other) => other !== undefined && other.sha256 === info?.sha256);
    if (info && first !== i) {
      throw new UsageError(
        `--rdb ${info.file} is the same snapshot as --rdb ${files[first]?.path ?? '?'} (sha256 ${info.sha256}): ` +
          "give each master's file once; nothing was loaded",
      );
    }
  });
  return infos;
}

async function fileInfo(file: SnapshotFile): Promise<RdbFileInfo> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file.path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  const created = file.header.created ?? statSync(file.path).mtime;
  return { file: file.path, sha256: hash.digest('hex'), bytes, created: created.toISOString() };
}
