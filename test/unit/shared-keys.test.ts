import { describe, expect, it } from 'vitest';
import { ServerGroup, type RedisReadable, type SourceRecord } from '../../src/source/redis-reader.js';
import { SharedKeys } from '../../src/source/shared-keys.js';

const ok = (key: string, value: string): SourceRecord => ({ key, ok: true, keyEmail: key, value });
const big = (key: string): SourceRecord => ({ key, ok: false, reason: 'value_too_large', detail: 'over' });

function group(contents: Record<string, SourceRecord>[]) {
  // The servers are only identities here: SharedKeys reads through `read`, never through them.
  const servers = contents.map(() => ({}) as RedisReadable);
  const read = (server: RedisReadable, keys: readonly Buffer[]) =>
    Promise.resolve(
      keys.map((k): SourceRecord => contents[servers.indexOf(server)]?.[k.toString()] ?? { key: k.toString(), ok: false, reason: 'vanished', detail: 'gone' }),
    );
  const shared = new SharedKeys(new ServerGroup(servers, ['a.rdb', 'b.rdb', 'c.rdb'].slice(0, servers.length)), read);
  const scan = async (i: number) => {
    const keys = Object.keys(contents[i] ?? {}).map((k) => Buffer.from(k));
    await shared.check(servers[i] as RedisReadable, keys, await read(servers[i] as RedisReadable, keys));
  };
  return { shared, scan };
}

describe('SharedKeys: a key in two snapshot files', () => {
  it('nothing shared: no problem', async () => {
    const { shared, scan } = group([{ k1: ok('k1', '1') }, { k2: ok('k2', '2') }]);
    await scan(0);
    await scan(1);
    expect(shared.problem()).toBeUndefined();
  });

  it('each pair of files once, keys grouped by likeness, the first five named', async () => {
    const a: Record<string, SourceRecord> = { diff: ok('diff', '1'), huge: big('huge') };
    const b: Record<string, SourceRecord> = { diff: ok('diff', '2'), huge: big('huge') };
    const c: Record<string, SourceRecord> = {};
    for (let i = 0; i < 7; i++) {
      a[`s${i}`] = ok(`s${i}`, 'same');
      c[`s${i}`] = ok(`s${i}`, 'same');
    }
    const { shared, scan } = group([a, b, c]);
    for (const i of [0, 1, 2]) await scan(i);
    const message = shared.problem()?.message ?? '';
    expect(message).toContain(
      'a.rdb and b.rdb both hold 2 keys: 1 with different values (diff); 1 not compared (neither value is a string of at most --max-value-bytes) (huge)',
    );
    expect(message).toContain('a.rdb and c.rdb both hold 7 keys: 7 with the same value (s0, s1, s2, s3, s4, …)');
    expect(message).not.toContain('b.rdb and c.rdb');
    expect(message.match(/a\.rdb and b\.rdb/g)).toHaveLength(1);
  });
});
