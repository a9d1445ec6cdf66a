import calculateSlot from 'cluster-key-slot';
import { Cluster, type Redis } from 'ioredis';
import pLimit from 'p-limit';
import type { RejectReason } from '../map/reasons.js';

/** The part of ioredis the reader uses: read-only commands only (SCAN, EVAL_RO, TYPE, GETRANGE). */
export type RedisReadable = Pick<Redis, 'scanBuffer' | 'pipeline' | 'callBuffer'> & {
  on(event: string, listener: () => void): unknown;
  off(event: string, listener: () => void): unknown;
};

/**
 * Several independent servers read as one keyspace, each holding keys of its own: a cluster's snapshots,
 * one throwaway server per master's RDB file. Nothing routes a key to its server: each key is read from the
 * server that SCAN found it on.
 */
export class ServerGroup {
  constructor(
    readonly servers: readonly RedisReadable[],
    /** What each server was loaded from (its snapshot file), for messages. */
    readonly names: readonly string[] = servers.map((_s, i) => `server ${i + 1}`),
  ) {}
}

/** What the pipeline reads: one server, a Redis Cluster, or a group of servers. */
export type RedisSource = RedisReadable | ServerGroup;

export interface ScanTarget {
  /** SCANned for keys. */
  readonly node: RedisReadable;
  /** The values of the keys `node` returns are read through this client. */
  readonly reader: RedisReadable;
}

/**
 * Where SCAN must run, and through which client the keys found are read: every master of a Redis Cluster
 * (each SCANs only its own slots; values are read through the cluster client, which follows a slot that
 * moves), every server of a group (each read where it was found), or the one server. Replicas are left
 * alone: their keys are their masters'.
 */
export function scanTargets(source: RedisSource): ScanTarget[] {
  if (source instanceof ServerGroup) return source.servers.map((server) => ({ node: server, reader: server }));
  if (source instanceof Cluster) return source.nodes('master').map((node) => ({ node, reader: source }));
  return [{ node: source, reader: source }];
}

/**
 * How many keys the servers SCAN visits hold (DBSIZE, summed over masters): every key of the database, so
 * an upper bound of what --match finds, shown as an estimate. Undefined where DBSIZE is not allowed.
 */
export async function keyCount(redis: RedisSource): Promise<number | undefined> {
  try {
    let total = 0;
    for (const { node } of scanTargets(redis)) total += Number(await node.callBuffer('DBSIZE'));
    return Number.isFinite(total) ? total : undefined;
  } catch {
    return undefined;
  }
}

export type SourceRecord =
  | { readonly key: string; readonly ok: true; readonly keyEmail: string; readonly value: string }
  | { readonly key: string; readonly ok: false; readonly reason: RejectReason; readonly detail: string };

export interface ScanOptions {
  readonly match: string;
  /** SCAN's COUNT: how much work Redis does per call (a hint, not a page size). */
  readonly scanCount: number;
  readonly batchSize: number;
  /** Called when a lost connection made the scan start over from cursor 0. */
  readonly onRestart?: (() => void) | undefined;
  /** Changes whenever the client (re)connects: a cursor from an earlier connection may belong to a server
   * that has restarted since, and continuing it could skip keys. */
  readonly connectionEpoch?: (() => number) | undefined;
}

/**
 * Yields key batches. SCAN may return a key twice and pages may be empty; only cursor "0" ends it.
 * Duplicates are removed later, across the whole run, in the staging table. If the server is lost mid-scan
 * (a restart invalidates the cursor) and `retry` allows, the scan starts over from cursor 0: keys seen twice
 * are dropped by that same de-duplication.
 */
export async function* scanKeys(
  redis: RedisReadable,
  options: ScanOptions,
  retry: (what: string, fn: () => Promise<[Buffer, Buffer[]]>) => Promise<[Buffer, Buffer[]]> = (_w, fn) => fn(),
): AsyncGenerator<Buffer[]> {
  const epoch = options.connectionEpoch ?? (() => 0);
  let cursor = '0';
  let pending: Buffer[] = [];
  let more = true;
  let seen = epoch();
  while (more) {
    // A reconnect while this generator waited for its consumer: the cursor belongs to the old connection.
    if (epoch() !== seen && cursor !== '0') {
      options.onRestart?.();
      cursor = '0';
    }
    const before = epoch();
    let failed = false;
    const [next, keys] = await retry('SCAN', async () => {
      try {
        return await redis.scanBuffer(failed ? '0' : cursor, 'MATCH', options.match, 'COUNT', options.scanCount);
      } catch (error) {
        failed = true;
        throw error;
      }
    });
    for (const key of keys) pending.push(key);
    // A reconnect during the call (ioredis may resend a command with the old cursor to a server that has
    // restarted since) makes the returned cursor meaningless, even a "0": go on from the start instead.
    seen = epoch();
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the SCAN callback above sets it, which TS's narrowing of a let does not see
    if (failed || seen !== before) {
      options.onRestart?.();
      cursor = '0';
      more = true;
    } else {
      cursor = next.toString();
      more = cursor !== '0';
    }
    while (pending.length >= options.batchSize) {
      yield pending.slice(0, options.batchSize);
      pending = pending.slice(options.batchSize);
    }
  }
  if (pending.length > 0) yield pending;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * Per key, server-side: STRLEN keeps a value of up to 512 MB from being sent whole, and (as an error)
 * tells a key of another type; a length of 0 asks EXISTS whether the key vanished. The reply is flat: the
 * value itself (the common case, cheapest to parse), its length if too large, or {type} otherwise
 * ("none" = vanished). EVAL_RO refuses any write.
 */
const READ_SCRIPT = `
local out = {}
local max = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local size = redis.pcall('STRLEN', key)
  if type(size) ~= 'number' then
    out[i] = {redis.call('TYPE', key).ok}
  elseif size > max then
    out[i] = size
  elseif size == 0 and redis.call('EXISTS', key) == 0 then
    out[i] = {'none'}
  else
    out[i] = redis.call('GET', key)
  end
end
return out`;

interface Raw {
  type: string;
  value: Buffer | null;
  tooLarge: boolean;
}

/**
 * Reads a batch of values in one round trip: one EVAL_RO of a small read-only script (Redis 7+), or,
 * where scripting is unavailable or not allowed, a pipeline of TYPE + GETRANGE 0..max per key.
 */
export class ValueReader {
  // A cluster refuses a script whose keys hash to different slots (CROSSSLOT); a batch scanned from one
  // master shares that master, which is what a cluster pipeline needs.
  private scripted: boolean;

  constructor(
    private readonly redis: RedisReadable,
    private readonly onFallback: (reason: string) => void = () => undefined,
    /** Keys per command sent to Redis (see `read`); Infinity: the whole batch in one, as many at once as asked. */
    private readonly chunk = Infinity,
  ) {
    this.scripted = !(redis instanceof Cluster);
    this.gate = Number.isFinite(chunk) ? pLimit(1) : <T>(fn: () => Promise<T>) => fn();
  }

  private readonly gate: <T>(fn: () => Promise<T>) => Promise<T>;

  /**
   * The values of `keys`. Redis runs one command at a time, and the commands a client has sent run back to
   * back: a script over 1,000 keys, or four of them in flight, hold every other client of the server (the
   * live app's sessions, its verification codes) for all of it. Gentle reads (a finite `chunk`) send
   * commands of `chunk` keys, one at a time per server, so other clients' commands are served between
   * them; the batches in flight are still mapped and staged side by side.
   */
  async read(keys: readonly Buffer[], prefixLength: number, maxValueBytes: number): Promise<SourceRecord[]> {
    if (keys.length <= this.chunk) return this.gate(() => this.readAtOnce(keys, prefixLength, maxValueBytes));
    const out: SourceRecord[] = [];
    for (let i = 0; i < keys.length; i += this.chunk) {
      const part = keys.slice(i, i + this.chunk);
      for (const record of await this.gate(() => this.readAtOnce(part, prefixLength, maxValueBytes))) out.push(record);
    }
    return out;
  }

  private async readAtOnce(keys: readonly Buffer[], prefixLength: number, maxValueBytes: number): Promise<SourceRecord[]> {
    let raw: Raw[] | undefined;
    if (this.scripted) {
      try {
        raw = await this.viaScript(keys, maxValueBytes);
      } catch (error) {
        if (!isScriptRefusal(error)) throw error;
        this.scripted = false;
        this.onFallback((error as Error).message);
      }
    }
    raw ??= await this.viaPipeline(keys, maxValueBytes);
    return keys.map((keyBytes, i) => toRecord(keyBytes, raw[i] as Raw, prefixLength, maxValueBytes));
  }

  private async viaScript(keys: readonly Buffer[], max: number): Promise<Raw[]> {
    const reply = (await this.redis.callBuffer('EVAL_RO', READ_SCRIPT, keys.length, ...keys, String(max))) as unknown[];
    if (!Array.isArray(reply) || reply.length !== keys.length) throw new Error('EVAL_RO returned an unexpected reply');
    return reply.map((entry): Raw => {
      if (Buffer.isBuffer(entry)) return { type: 'string', value: entry, tooLarge: false };
      if (typeof entry === 'number') return { type: 'string', value: null, tooLarge: true };
      if (Array.isArray(entry) && Buffer.isBuffer(entry[0])) return { type: entry[0].toString(), value: null, tooLarge: false };
      throw new Error('EVAL_RO returned an unexpected reply');
    });
  }

  private async viaPipeline(keys: readonly Buffer[], max: number): Promise<Raw[]> {
    const redis = this.redis;
    if (!(redis instanceof Cluster)) return this.pipelined(keys, max);
    // A cluster pipeline must stay on one node. A batch scanned from one master is one group; a sample
    // (keys from every master) becomes one pipeline per master, run side by side.
    const groups = new Map<string, number[]>();
    keys.forEach((key, i) => {
      const node = redis.slots[calculateSlot(key)]?.[0] ?? '';
      const group = groups.get(node);
      if (group) group.push(i);
      else groups.set(node, [i]);
    });
    const out: Raw[] = new Array<Raw>(keys.length);
    await Promise.all(
      [...groups.values()].map(async (indexes) => {
        const raws = await this.pipelined(
          indexes.map((i) => keys[i] as Buffer),
          max,
        );
        indexes.forEach((i, j) => (out[i] = raws[j] as Raw));
      }),
    );
    return out;
  }

  private async pipelined(keys: readonly Buffer[], max: number): Promise<Raw[]> {
    const pipeline = this.redis.pipeline();
    for (const key of keys) pipeline.type(key).getrangeBuffer(key, 0, max);
    const results = await pipeline.exec();
    if (results?.length !== keys.length * 2) throw new Error('Redis pipeline returned no results');
    return keys.map((key, i) => {
      const [typeErr, type] = results[2 * i] ?? [];
      const [valueErr, value] = results[2 * i + 1] ?? [];
      if (typeErr) throw new Error(`TYPE ${displayKey(key) ?? 'key'}`, { cause: typeErr });
      if (valueErr) {
        // The key changed type between TYPE and GETRANGE.
        if (valueErr.message.includes('WRONGTYPE')) return { type: 'changed', value: null, tooLarge: false };
        throw new Error(`GETRANGE ${displayKey(key) ?? 'key'}`, { cause: valueErr });
      }
      const bytes = value as Buffer;
      return { type: String(type), value: bytes, tooLarge: bytes.length > max };
    });
  }
}

/** Old servers (no EVAL_RO), ACLs without scripting, scripting disabled: fall back, never fail the run. */
function isScriptRefusal(error: unknown): boolean {
  const message = error instanceof Error ? error.message : '';
  return /unknown command|NOPERM|NOSCRIPT|not allowed|disabled|ERR.*script/i.test(message);
}

function toRecord(keyBytes: Buffer, raw: Raw, prefixLength: number, maxValueBytes: number): SourceRecord {
  const key = displayKey(keyBytes);
  if (key === undefined) {
    return reject(`hex:${keyBytes.toString('hex')}`, 'key_not_utf8', 'key is not valid UTF-8 (or holds NUL)');
  }
  if (raw.type === 'none') return reject(key, 'vanished', 'key disappeared between SCAN and read');
  if (raw.type === 'changed') return reject(key, 'wrong_type', 'key changed type during the read');
  if (raw.type !== 'string') return reject(key, 'wrong_type', `key holds a Redis ${raw.type}, not a string`);
  if (raw.tooLarge || raw.value === null) {
    return reject(key, 'value_too_large', `value is over --max-value-bytes (${maxValueBytes} bytes)`);
  }
  let text: string;
  try {
    text = utf8.decode(raw.value);
  } catch {
    return reject(key, 'not_utf8', `value is not valid UTF-8 (${raw.value.length} bytes)`);
  }
  return { key, ok: true, keyEmail: key.slice(prefixLength), value: text };
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
