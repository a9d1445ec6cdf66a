import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { createTestDatabase, type TestDatabase } from '../helpers/servers.js';

// A local 3-master Redis Cluster: every master holds a third of the slots, so a tool that scans one node, or
// reads several keys in one multi-key command, misses or refuses most users.
let cluster: RedisCluster;
let client: Cluster;
let db: TestDatabase;
let dir: string;
const USERS = 3000;

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
  db = await createTestDatabase();
  dir = mkdtempSync(join(tmpdir(), 'mu-cluster-test-'));
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < USERS; i++) writes.push(client.set(`user:email:c${i}@example.com`, JSON.stringify({ user_id: `usr_${i}`, credits: i })));
  // The same email under two keys, which hash to different slots (and here to different masters).
  writes.push(client.set('user:email:Twin@example.com', JSON.stringify({ user_id: 'usr_twin_a', credits: 1 })));
  writes.push(client.set('user:email:twin@example.com', JSON.stringify({ user_id: 'usr_twin_b', credits: 2 })));
  writes.push(client.set('user:email:bad@example.com', '{oops'));
  await Promise.all(writes);
}, 60_000);

afterAll(async () => {
  // beforeAll may have failed before setting these, whatever their declared types say.
  /* eslint-disable @typescript-eslint/no-unnecessary-condition */
  await client?.quit().catch(() => client.disconnect());
  await cluster?.stop();
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
});

async function run(args: string[], port: number) {
  const report = join(dir, `report-${Math.random()}.json`);
  const result = await runCli([...args, '--no-progress', '--report', report], { DATABASE_URL: db.url, REDIS_URL: `redis://127.0.0.1:${port}` });
  const parsed = await readFile(report, 'utf8').then(
    (t) => JSON.parse(t) as { counts: Record<string, number>; sample?: unknown },
    () => undefined,
  );
  return { ...result, report: parsed };
}

describe('Redis Cluster', () => {
  it('detects the cluster, scans every master, and migrates and verifies every user exactly', async () => {
    const keysPerMaster = await Promise.all(client.nodes('master').map((node) => node.dbsize()));
    expect(keysPerMaster.every((n) => n > 0)).toBe(true);

    const migrate = await run([], cluster.ports[1] as number);
    expect(migrate.stderr).toBe('');
    expect(migrate.code).toBe(1); // the duplicate email and the bad record
    expect(migrate.report?.counts).toMatchObject({ scanned: USERS + 3, inserted: USERS, conflicts: 2, invalid: 1 });
    expect(await db.query('select count(*)::int as n, sum(current_credits)::int as c from users')).toEqual([{ n: USERS, c: (USERS * (USERS - 1)) / 2 }]);

    const verify = await run(['verify', '--redis-cluster'], cluster.ports[2] as number);
    expect(verify.stderr).toBe('');
    expect(verify.stdout).toMatch(/match\s+3,?000/);

    await client.set('user:email:c5@example.com', JSON.stringify({ user_id: 'usr_5', credits: 555 }));
    const reconcile = await run(['reconcile', '--apply'], cluster.ports[0] as number);
    expect(reconcile.stderr).toBe('');
    expect(await db.query(`select current_credits::int as c from users where user_id = 'usr_5'`)).toEqual([{ c: 555 }]);

    const sample = await run(['verify', '--sample', '300'], cluster.ports[0] as number);
    expect(sample.stderr).toBe('');
    // The sample is drawn from every master's keys.
    expect(sample.report?.counts).toMatchObject({ keys_checked: 300 });
    expect(sample.report?.sample).toEqual({ size: 300, keys_in_redis: USERS + 3 });
  });

  it('a numbered database is refused for a cluster (it has only database 0)', async () => {
    const result = await runCli(['verify', '--no-progress'], { DATABASE_URL: db.url, REDIS_URL: `redis://127.0.0.1:${String(cluster.ports[0])}/2` });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('a Redis Cluster has only database 0');
  });
});
