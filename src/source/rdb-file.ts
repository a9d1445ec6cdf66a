import { closeSync, openSync, readSync } from 'node:fs';

/** What an RDB file's first bytes say: the format version and, where written, who wrote it and when. */
export interface RdbHeader {
  readonly version: number;
  /** The `redis-ver` (or `valkey-ver`) aux field: the server that wrote the file, "Redis 7.2.4" (RDB 7 and later). */
  readonly writtenBy?: string | undefined;
  /** The `ctime` aux field: when the snapshot was taken (RDB 7 and later). */
  readonly created?: Date | undefined;
  /** The `used-mem` aux field: the writer's memory use, about what loading the file needs. */
  readonly usedMemory?: number | undefined;
}

/** An RDB file checked before any work: it exists, is an RDB, and the local server can load its version. */
export interface SnapshotFile {
  /** Absolute. */
  readonly path: string;
  readonly header: RdbHeader;
}

/** The oldest release that writes each RDB version (rdb.h's RDB_VERSION). */
const WRITERS: Readonly<Record<number, string>> = {
  6: 'Redis 2.6',
  7: 'Redis 3.2',
  8: 'Redis 4.0',
  9: 'Redis 5.0',
  10: 'Redis 7.0',
  11: 'Redis 7.2 or Valkey',
  12: 'Redis 7.4',
};

export function rdbWriter(version: number): string {
  const writer = WRITERS[version];
  return writer ? `${writer} or later` : 'a release newer than this tool knows';
}

const AUX = 0xfa;

/**
 * Reads the header (magic `REDIS` and four digits) and the aux fields that follow it. Returns a problem in
 * words instead when the file is not an RDB, naming the common mix-ups (compressed export, AOF).
 */
export function readRdbHeader(path: string): RdbHeader | { readonly problem: string } {
  const head = Buffer.alloc(4096);
  const fd = openSync(path, 'r');
  let length: number;
  try {
    length = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const bytes = head.subarray(0, length);
  const magic = /^REDIS(\d{4})/.exec(bytes.subarray(0, 9).toString('latin1'));
  if (!magic) return { problem: `is not an RDB file (it does not start with "REDIS" and a 4-digit version)${mixUp(bytes)}` };
  const header: { version: number; writtenBy?: string; created?: Date; usedMemory?: number } = { version: Number(magic[1]) };
  try {
    const reader = new AuxReader(bytes, 9);
    while (reader.next() === AUX) {
      reader.skip(1);
      const key = reader.string();
      const value = reader.string();
      if (key === 'redis-ver' && typeof value === 'string') header.writtenBy ??= `Redis ${value}`;
      if (key === 'valkey-ver' && typeof value === 'string') header.writtenBy = `Valkey ${value}`;
      const number = typeof value === 'number' ? value : /^\d+$/.test(String(value)) ? Number(value) : NaN;
      if (key === 'ctime' && number > 0) header.created = new Date(number * 1000);
      if (key === 'used-mem' && number > 0) header.usedMemory = number;
    }
  } catch {
    // The aux fields are a nicety (who wrote it, when): a file cut short in them is found by the server's load.
  }
  return header;
}

function mixUp(bytes: Buffer): string {
  if (bytes.length === 0) return ': it is empty';
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) return ': it is gzip-compressed, gunzip it first';
  if (bytes.subarray(0, 4).toString('latin1') === 'LZ4\x18' || (bytes[0] === 0x04 && bytes[1] === 0x22)) return ': it is lz4-compressed, decompress it first';
  if (bytes[0] === 0x28 && bytes[1] === 0xb5 && bytes[2] === 0x2f && bytes[3] === 0xfd) return ': it is zstd-compressed, decompress it first';
  if (/^\*\d+\r\n\$/.test(bytes.subarray(0, 8).toString('latin1'))) return ': it looks like an append-only file (AOF), not a snapshot';
  return '';
}

/** The RDB length and string encodings (rdb.c rdbLoadLen / rdbGenericLoadStringObject), for aux fields. */
class AuxReader {
  constructor(
    private readonly bytes: Buffer,
    private at: number,
  ) {}

  next(): number | undefined {
    return this.bytes[this.at];
  }

  skip(n: number): void {
    if (this.at + n > this.bytes.length) throw new RangeError('past the bytes read');
    this.at += n;
  }

  private byte(): number {
    const value = this.bytes[this.at];
    if (value === undefined) throw new RangeError('past the bytes read');
    this.at += 1;
    return value;
  }

  /** A length, or an encoded integer / LZF string marker as `{ encoding }`. */
  private length(): number | { encoding: number } {
    const first = this.byte();
    switch (first >> 6) {
      case 0:
        return first & 0x3f;
      case 1:
        return ((first & 0x3f) << 8) | this.byte();
      case 2:
        if (first === 0x80) return this.take(4).readUInt32BE(0);
        if (first === 0x81) return Number(this.take(8).readBigUInt64BE(0));
        throw new RangeError('unknown length encoding');
      default:
        return { encoding: first & 0x3f };
    }
  }

  private take(n: number): Buffer {
    const at = this.at;
    this.skip(n);
    return this.bytes.subarray(at, at + n);
  }

  /** A string, an integer-encoded string as a number, or undefined for an LZF-compressed one (skipped). */
  string(): string | number | undefined {
    const length = this.length();
    if (typeof length === 'number') return this.take(length).toString('utf8');
    switch (length.encoding) {
      case 0:
        return this.take(1).readInt8(0);
      case 1:
        return this.take(2).readInt16LE(0);
      case 2:
        return this.take(4).readInt32LE(0);
      case 3: {
        const compressed = this.length();
        this.length();
        if (typeof compressed !== 'number') throw new RangeError('bad LZF length');
        this.skip(compressed);
        return undefined;
      }
      default:
        throw new RangeError('unknown string encoding');
    }
  }
}
