import type { Redis } from 'ioredis';
import type { RejectReason } from '../map/reasons.js';

/** The part of ioredis the reader uses: read-only commands only (SCAN, TYPE, GETRANGE). */
export type RedisReadable = Pick<Redis, 'scanBuffer' | 'pipeline'>;

export type SourceRecord =
  | { readonly key: string; readonly ok: true; readonly keyEmail: string; readonly value: string }
  | { readonly key: string; readonly ok: false; readonly reason: RejectReason; readonly detail: string };

export interface ScanOptions {
  readonly match: string;
  /** SCAN's COUNT: how much work Redis does per call (a hint, not a page size). */
  readonly scanCount: number;
  readonly batchSize: number;
}

/**
 * Yields key batches. SCAN may return a key twice and pages may be empty; only cursor "0" ends it.
 * Duplicates are removed later, across the whole run, in the staging table.
 */
export async function* scanKeys(redis: RedisReadable, options: ScanOptions): AsyncGenerator<Buffer[]> {
  let cursor = '0';
  let pending: Buffer[] = [];
  do {
    const [next, keys] = await redis.scanBuffer(cursor, 'MATCH', options.match, 'COUNT', options.scanCount);
    cursor = next.toString();
    for (const key of keys) pending.push(key);
    while (pending.length >= options.batchSize) {
      yield pending.slice(0, options.batchSize);
      pending = pending.slice(options.batchSize);
    }
  } while (cursor !== '0');
  if (pending.length > 0) yield pending;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * Reads a batch of values in one round trip. TYPE tells a vanished key ("none") from a key of another
 * type (MGET would return nil for both); GETRANGE 0..max never loads more than max+1 bytes of a value
 * that may be up to 512 MB.
 */
export async function readValues(
  redis: RedisReadable,
  keys: readonly Buffer[],
  prefixLength: number,
  maxValueBytes: number,
): Promise<SourceRecord[]> {
  const pipeline = redis.pipeline();
  for (const key of keys) pipeline.type(key).getrangeBuffer(key, 0, maxValueBytes);
  const results = await pipeline.exec();
  if (!results || results.length !== keys.length * 2) throw new Error('Redis pipeline returned no results');
  return keys.map((keyBytes, i) => {
    const [typeErr, type] = results[2 * i] ?? [];
    const [valueErr, value] = results[2 * i + 1] ?? [];
    const key = displayKey(keyBytes);
    if (key === undefined) {
      return reject(`hex:${keyBytes.toString('hex')}`, 'key_not_utf8', 'key is not valid UTF-8 (or holds NUL)');
    }
    if (typeErr) throw new Error(`TYPE ${key}`, { cause: typeErr });
    if (type === 'none') return reject(key, 'vanished', 'key disappeared between SCAN and read');
    if (type !== 'string') return reject(key, 'wrong_type', `key holds a Redis ${String(type)}, not a string`);
    if (valueErr) {
      if (/WRONGTYPE/.test(valueErr.message)) return reject(key, 'wrong_type', 'key changed type during the read');
      throw new Error(`GETRANGE ${key}`, { cause: valueErr });
    }
    const bytes = value as Buffer;
    if (bytes.length > maxValueBytes) {
      return reject(key, 'value_too_large', `value is over --max-value-bytes (${maxValueBytes} bytes)`);
    }
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      return reject(key, 'not_utf8', `value is not valid UTF-8 (${bytes.length} bytes)`);
    }
    return { key, ok: true, keyEmail: key.slice(prefixLength), value: text };
  });
}

function displayKey(bytes: Buffer): string | undefined {
  try {
    const text = utf8.decode(bytes);
    return text.includes('\u0000') ? undefined : text;
  } catch {
    return undefined;
  }
}

function reject(key: string, reason: RejectReason, detail: string): SourceRecord {
  return { key, ok: false, reason, detail };
}
