import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.js';
import { createTestDatabase, createTestKeys, noStageRecords, REDIS_URL, type TestDatabase, type TestKeys } from '../helpers/servers.js';

// PgBouncer in transaction mode stands in for Supavisor's port 6543: every transaction may land on another
// server connection (round robin over a pool of 3), so no session state survives from one to the next.
let bouncer: PgBouncer;
let db: TestDatabase;
let keys: TestKeys;
let dir: string;
const USERS = 1500;

beforeAll(async () => {
  bouncer = await startPgBouncer({ mode: 'transaction', poolSize: 3, users: ['postgres'] });
});

afterAll(async () => {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- beforeAll may have failed before setting it
  await bouncer?.stop();
});

beforeEach(async () => {
  db = await createTestDatabase();
  keys = await createTestKeys();
  dir = mkdtempSync(join(tmpdir(), 'mu-pooler-'));
  const pipeline = keys.redis.pipeline();
  for (let i = 0; i < USERS; i++) {
    pipeline.set(keys.userKey(`p${i}@example.com`), JSON.stringify({ user_id: `usr_${i}`, credits: i, total_credits_used: 1 }));
  }
  pipeline.set(keys.userKey('bad@example.com'), '{not json');
  pipeline.set(keys.userKey('Twin@example.com'), JSON.stringify({ user_id: 'usr_twin_a', credits: 5 }));
  pipeline.set(keys.userKey('twin@example.com'), JSON.stringify({ user_id: 'usr_twin_b', credits: 6 }));
  await pipeline.exec();
});

afterEach(async () => {
  await keys.cleanup();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function run(args: string[]) {
  const report = join(dir, `report-${Math.random()}.json`);
  const result = await runCli([...args, '--match', keys.match, '--batch-size', '200', '--no-progress', '--report', report], {
    DATABASE_URL: bouncer.through(db.url),
    REDIS_URL,
  });
  const parsed = await readFile(report, 'utf8').then(
    (text) => JSON.parse(text) as { counts: Record<string, number> },
    () => undefined,
  );
  return { ...result, report: parsed };
}

/** A lock taken through the pooler must end with the run, not stay behind on a pooled server connection. */
async function expectNoLeftoverLock() {
  expect(
    await db.query(
      `select count(*)::int as n from pg_locks where locktype = 'advisory' and database = (select oid from pg_database where datname = current_database())`,
    ),
  ).toEqual([{ n: 0 }]);
}

describe('through a transaction-mode pooler (PgBouncer, as Supavisor on port 6543)', () => {
  it('dry-run, migrate, re-run, verify and reconcile all work and agree', async () => {
    const dry = await run(['--dry-run']);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(1); // the bad record and the duplicate email are held back
    expect(dry.report?.counts).toMatchObject({ scanned: USERS + 3, inserted: USERS, conflicts: 2, invalid: 1 });

    const first = await run([]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(1);
    expect(first.report?.counts).toMatchObject({ inserted: USERS, conflicts: 2, invalid: 1 });
    expect(await db.query('select count(*)::int as n, sum(current_credits)::int as c from users')).toEqual([{ n: USERS, c: (USERS * (USERS - 1)) / 2 }]);

    const again = await run([]);
    expect(again.report?.counts).toMatchObject({ inserted: 0, unchanged: USERS });

    const verify = await run(['verify']);
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(1); // only the three records that cannot be migrated
    expect(verify.stdout).toMatch(/match\s+1,?500/);

    await keys.putUser('p7@example.com', { user_id: 'usr_7', credits: 700, total_credits_used: 1 });
    const reconcile = await run(['reconcile', '--apply']);
    expect(reconcile.stderr).toBe('');
    expect(await db.query(`select current_credits::int as c from users where user_id = 'usr_7'`)).toEqual([{ c: 700 }]);
    // Nothing of a run is left behind: no staged record, and every run recorded as finished.
    expect(await noStageRecords(db)).toBe(true);
    expect(await db.query(`select distinct status from migrate_users.runs`)).toEqual([{ status: 'finished' }]);
    await expectNoLeftoverLock();
  });

  it('a second writer is refused while a run holds the write lock, even through the pooler', async () => {
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query(`select pg_advisory_xact_lock(hashtext('migrate-users:write'))`);
      const refused = await run([]);
      expect(refused.code).toBe(3);
      expect(refused.stderr).toContain('another migrate-users run is writing to this database');
      await holder.query('commit');
      const ok = await run([]);
      expect(ok.report?.counts).toMatchObject({ inserted: USERS });
      await expectNoLeftoverLock();
    } finally {
      await holder.end();
    }
  });

  it('a statement_timeout set for the role or database (as Supabase does) does not kill the run', async () => {
    const many = 30_000;
    const pipeline = keys.redis.pipeline();
    for (let i = USERS; i < many; i++) pipeline.set(keys.userKey(`p${i}@example.com`), JSON.stringify({ user_id: `usr_${i}`, credits: 1 }));
    await pipeline.exec();
    // Staging 30,000 records with one COPY takes far longer than this.
    await db.query(`alter database ${db.name} set statement_timeout = '150ms'`);
    const first = await run([]);
    expect(first.stderr).toBe('');
    expect(first.report?.counts).toMatchObject({ inserted: many, conflicts: 2, invalid: 1 });
    const verify = await run(['verify']);
    expect(verify.stderr).toBe('');
    expect(verify.stdout).toMatch(/match\s+30,?000/);
  });
});
