import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configDigest } from '../../src/core/checkpoint.js';
import type { ReadOptions } from '../../src/core/stage-source.js';
import type { SourceInfo } from '../../src/results/migrate-report.js';
import { rdbWriter, readRdbHeader } from '../../src/source/rdb-file.js';
import { serverLines } from '../../src/source/server-log.js';
import { maxRdbVersion } from '../../src/source/redis-server-binary.js';

const dir = mkdtempSync(join(tmpdir(), 'mu-rdb-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** RDB string encodings (rdb.c): a 6-bit length and the bytes, or an integer in 1, 2 or 4 bytes. */
const str = (text: string) => Buffer.concat([Buffer.from([text.length]), Buffer.from(text)]);
const int32 = (n: number) => {
  const b = Buffer.alloc(5);
  b[0] = 0xc2;
  b.writeInt32LE(n, 1);
  return b;
};
const aux = (key: string, value: Buffer) => Buffer.concat([Buffer.from([0xfa]), str(key), value]);

function file(name: string, ...parts: Buffer[]): string {
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat(parts));
  return path;
}

describe('readRdbHeader', () => {
  it('reads the version and the aux fields the way Redis writes them (ctime as an int32, version as a string)', () => {
    const path = file(
      'a.rdb',
      Buffer.from('REDIS0010'),
      aux('redis-ver', str('7.0.15')),
      aux('redis-bits', Buffer.from([0xc0, 64])),
      aux('ctime', int32(1_795_619_667)),
      aux('used-mem', int32(946_360)),
      Buffer.from([0xfe, 0x00, 0xff]),
    );
    expect(readRdbHeader(path)).toEqual({ version: 10, writtenBy: 'Redis 7.0.15', created: new Date(1_795_619_667_000), usedMemory: 946_360 });
  });

  it('takes a ctime written as digits (after 2038 it no longer fits an int32), skips LZF-compressed fields, and prefers valkey-ver', () => {
    const lzf = Buffer.concat([Buffer.from([0xc3, 3, 40]), Buffer.from('abc')]);
    const path = file(
      'b.rdb',
      Buffer.from('REDIS0011'),
      aux('repl-id', lzf),
      aux('valkey-ver', str('8.0.1')),
      aux('redis-ver', str('7.2.4')),
      aux('ctime', str('2200000000')),
    );
    expect(readRdbHeader(path)).toEqual({ version: 11, writtenBy: 'Valkey 8.0.1', created: new Date(2_200_000_000_000) });
  });

  it('an old RDB without aux fields, and one cut short in them, still give their version', () => {
    expect(readRdbHeader(file('c.rdb', Buffer.from('REDIS0006'), Buffer.from([0xfe, 0x00])))).toEqual({ version: 6 });
    expect(readRdbHeader(file('d.rdb', Buffer.from('REDIS0009'), Buffer.from([0xfa, 9])))).toEqual({ version: 9 });
  });

  it('says what a file that is not an RDB is, when it is a common mix-up', () => {
    const problem = (path: string) => (readRdbHeader(path) as { problem: string }).problem;
    expect(problem(file('e.rdb', Buffer.from([0x1f, 0x8b, 8, 0])))).toContain('gzip-compressed, gunzip it first');
    expect(problem(file('f.rdb', Buffer.from('*2\r\n$6\r\nSELECT\r\n')))).toContain('append-only file (AOF)');
    expect(problem(file('g.rdb'))).toContain('it is empty');
    expect(problem(file('h.rdb', Buffer.from('REDIS00x0')))).toMatch(/^is not an RDB file/);
  });
});

describe('RDB versions', () => {
  it('knows what each Redis release loads, and leaves releases it does not know to the server', () => {
    expect(maxRdbVersion('Redis', 7, 0)).toBe(10);
    expect(maxRdbVersion('Redis', 7, 2)).toBe(11);
    expect(maxRdbVersion('Redis', 7, 4)).toBe(12);
    expect(maxRdbVersion('Redis', 6, 2)).toBe(9);
    expect(maxRdbVersion('Redis', 8, 0)).toBeUndefined();
    expect(maxRdbVersion('Valkey', 8, 0)).toBe(11);
    expect(maxRdbVersion('KeyDB', 6, 3)).toBeUndefined();
    expect(rdbWriter(11)).toBe('Redis 7.2 or Valkey or later');
    expect(rdbWriter(99)).toBe('a release newer than this tool knows');
  });
});

describe('serverLines', () => {
  it("keeps the server's reasons and the RDB check's verdict, never its start-up banner or the lines naming keys", () => {
    const log = [
      '1:C 25 Nov 2026 15:14:41.168 # oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo',
      '1:C 25 Nov 2026 15:14:41.168 # Configuration loaded',
      '1:M 25 Nov 2026 15:14:41.169 # Server initialized',
      '1:M 25 Nov 2026 15:14:41.169 # WARNING Memory overcommit must be enabled!',
      '1:M 25 Nov 2026 15:14:41.169 * Loading RDB produced by version 7.0.15',
      '1:M 25 Nov 2026 15:14:41.169 # Short read or OOM loading DB. Unrecoverable error, aborting now.',
      '[offset 0] Checking RDB file dump.rdb',
      '--- RDB ERROR DETECTED ---',
      '[offset 1468] Unexpected EOF reading RDB file',
      "[additional info] Reading key 'user:email:someone@x.test'",
    ].join('\n');
    expect(serverLines(log)).toEqual([
      'Short read or OOM loading DB. Unrecoverable error, aborting now.',
      'redis-check-rdb: [offset 1468] Unexpected EOF reading RDB file',
    ]);
    expect(serverLines('\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\nBad directive or wrong number of arguments\n')).toEqual([
      '*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***',
      'Bad directive or wrong number of arguments',
    ]);
  });
});

describe('configDigest: which stage a run may resume', () => {
  const options: ReadOptions & { command: string } = {
    command: 'migrate',
    match: 'user:email:*',
    batchSize: 1000,
    concurrency: 4,
    scanCount: 1000,
    maxValueBytes: 1024,
    mapContext: { whitelist: new Set(), whitelistCredits: 100_000n },
  };
  const rdb = (file: string, sha256: string, created = '2026-01-01T00:00:00.000Z'): SourceInfo => ({ kind: 'rdb', file, sha256, bytes: 10, created });
  const digest = (source: SourceInfo) => configDigest({ ...options, source });

  it('a snapshot is its content: the same bytes at another path are the same source, other bytes are not', () => {
    expect(digest(rdb('/backups/dump.rdb', 'aa'))).toBe(digest(rdb('/tmp/copy.rdb', 'aa', '2026-02-02T00:00:00.000Z')));
    expect(digest(rdb('/backups/dump.rdb', 'aa'))).not.toBe(digest(rdb('/backups/dump.rdb', 'bb')));
    const files = (...sha: string[]): SourceInfo => ({
      kind: 'rdb-cluster',
      files: sha.map((s, i) => ({ file: `/m${i}.rdb`, sha256: s, bytes: 1, created: '' })),
    });
    expect(digest(files('a', 'b', 'c'))).toBe(digest(files('c', 'a', 'b')));
    expect(digest(files('a', 'b', 'c'))).not.toBe(digest(files('a', 'b', 'd')));
    expect(digest(rdb('/x.rdb', 'a'))).not.toBe(digest(files('a')));
  });

  it('a live source is still its address and run_id, as before (a live run stopped before this change still resumes)', () => {
    const live: SourceInfo = { kind: 'redis', url: 'redis://127.0.0.1:6379/0', server: 'abc' };
    expect(digest(live)).not.toBe(digest({ ...live, server: 'def' }));
    // Computed by configDigest as it was before --rdb (commit eb53c4d), for these options.
    expect(digest(live)).toBe('e12d8b025dfe13b74c1e6c108617c6ccbdea51629be4616d64ee754b731e1592');
  });
});
