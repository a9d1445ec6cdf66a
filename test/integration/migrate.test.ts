import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { adminQuery, createTestDatabase, createTestKeys, REDIS_URL, redisUrlAs, uniqueName, type TestDatabase, type TestKeys } from '../helpers/servers.js';

let db: TestDatabase;
let keys: TestKeys;
let dir: string;

beforeEach(async () => {
  db = await createTestDatabase();
  keys = await createTestKeys();
  dir = mkdtempSync(join(tmpdir(), 'mu-test-'));
});

afterEach(async () => {
  await keys.cleanup();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

interface Report {
  mode: string;
  counts: Record<string, number>;
  reasons: Record<string, number>;
  credits: { read: { current: number; used: number }; whitelist_topup: number; written: { current: number }; by_outcome: Record<string, { current: number }> };
}

async function migrate(extra: string[] = [], env: Record<string, string> = {}) {
  const report = join(dir, `report-${Math.random()}.json`);
  const rejects = join(dir, `rejects-${Math.random()}.ndjson`);
  const result = await runCli(['--match', keys.match, '--report', report, '--rejects', rejects, ...extra], { DATABASE_URL: db.url, REDIS_URL, ...env });
  let parsed: Report | undefined;
  let lines: Record<string, unknown>[] = [];
  try {
    parsed = JSON.parse(await readFile(report, 'utf8')) as Report;
    lines = (await readFile(rejects, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  } catch {
    // No report: the run failed before writing it; callers assert on the exit code.
  }
  return { ...result, report: parsed, rejects: lines, reportPath: report, rejectsPath: rejects };
}

const user = (id: string, extra: Record<string, unknown> = {}) => ({ user_id: id, current_credits: 10, ...extra });

describe('migrate', () => {
  it('moves every mapping rule into the users row exactly, with the signup flag and the whitelist rule', async () => {
    await keys.putUser('Full@Example.com', {
      user_id: 'usr_full',
      email: ' full@EXAMPLE.com ',
      username: 'Full Name',
      avatar: 'https://a/b.png',
      password_hash: '$2b$12$secrethashvalue',
      credits: '250',
      credits_used: 12,
      plan: 'pro',
      plan_renew_at: '2026-03-01T10:00:00.654321+01:00',
      created_at: 1700000000,
      last_login: 1700000000123,
      unknown_field: [1, 2, 3],
    });
    await keys.putUser('vip@example.com', user('usr_vip', { current_credits: 5 }));
    await keys.putUser('rich-vip@example.com', user('usr_rich', { current_credits: 200000 }));
    const whitelist = join(dir, 'whitelist.txt');
    writeFileSync(whitelist, '# VIPs\nVIP@example.com\n\nrich-vip@example.com  # already has more\n');

    const run = await migrate(['--whitelist-file', whitelist]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const rows = await db.query(`
      select user_id, email, username, avatar, password_hash, current_credits::text, total_credits_used::text,
        signup_bonus_granted, current_plan_id,
        to_char(plan_renew_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') as plan_renew_at,
        to_char(created_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') as created_at,
        to_char(last_login at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') as last_login
      from users order by user_id`);
    expect(rows).toEqual([
      {
        user_id: 'usr_full',
        email: 'full@example.com',
        username: 'Full Name',
        avatar: 'https://a/b.png',
        password_hash: '$2b$12$secrethashvalue',
        current_credits: '250',
        total_credits_used: '12',
        signup_bonus_granted: true,
        current_plan_id: 'pro',
        plan_renew_at: '2026-03-01 09:00:00.654321',
        created_at: '2023-11-14 22:13:20.000000',
        last_login: '2023-11-14 22:13:20.123000',
      },
      expect.objectContaining({ user_id: 'usr_rich', current_credits: '200000', signup_bonus_granted: true }),
      expect.objectContaining({ user_id: 'usr_vip', email: 'vip@example.com', current_credits: '100000' }),
    ]);
    expect(run.report?.counts).toMatchObject({ scanned: 3, valid: 3, invalid: 0, inserted: 3, whitelist_topups: 1 });
    expect(run.report?.credits).toMatchObject({ read: { current: 200255, used: 12 }, whitelist_topup: 99995 });
    expect(run.report?.credits.written.current).toBe(300250);
    // The summary names no secret.
    expect(run.stdout + run.stderr + (await readFile(run.reportPath, 'utf8'))).not.toContain('secrethashvalue');
  });

  it('writes text COPY must escape exactly: from escapes in the JSON, and from the key alone', async () => {
    await keys.putUser('esc@example.com', user('usr_esc', { username: 'tab\there', avatar: 'back\\slash', current_plan_id: 'line\nbreak\r' }));
    // No backslash in the JSON, but one in the key's email, which becomes the row's email.
    await keys.putUser('back\\slash@example.com', { user_id: 'usr_key', current_credits: 1 });
    const run = await migrate();
    expect(run.code).toBe(0);
    expect(await db.query('select user_id, email, username, avatar, current_plan_id from users order by user_id')).toEqual([
      { user_id: 'usr_esc', email: 'esc@example.com', username: 'tab\there', avatar: 'back\\slash', current_plan_id: 'line\nbreak\r' },
      { user_id: 'usr_key', email: 'back\\slash@example.com', username: null, avatar: null, current_plan_id: null },
    ]);
    const again = await migrate();
    expect(again.report?.counts).toMatchObject({ inserted: 0, unchanged: 2 });
  });

  it('rejects bad records with their key and reason, and migrates the rest of the batch', async () => {
    await keys.putUser('good@example.com', user('usr_good'));
    await keys.putUser('notjson@example.com', '{"user_id": ');
    await keys.putUser('array@example.com', '[1]');
    await keys.putUser('noid@example.com', { current_credits: 3 });
    await keys.putUser('mismatch@example.com', user('usr_mm', { email: 'someone@else.com' }));
    await keys.putUser('neg@example.com', user('usr_neg', { current_credits: -1 }));
    await keys.putUser('frac@example.com', user('usr_frac', { current_credits: '12.5' }));
    await keys.putUser('huge@example.com', user('usr_huge', { current_credits: 1e15 }));
    await keys.putUser('date@example.com', user('usr_date', { created_at: 'last tuesday' }));
    await keys.redis.hset(keys.userKey('hash@example.com'), 'user_id', 'usr_hash');
    await keys.putUser('big@example.com', user('usr_big', { avatar: 'x'.repeat(5000) }));

    const run = await migrate(['--max-value-bytes', '4096']);
    expect(run.code).toBe(1);
    expect(run.report?.counts).toMatchObject({ scanned: 11, valid: 1, invalid: 10, inserted: 1, conflicts: 0 });
    const byKey = Object.fromEntries(run.rejects.map((r) => [String(r.key), r] as const));
    const expectReject = (email: string, reason: string, userId?: string) => {
      const entry = byKey[keys.userKey(email)];
      expect(entry, email).toMatchObject({ reason });
      expect(typeof entry?.detail).toBe('string');
      if (userId) expect(entry?.user_id).toBe(userId);
    };
    expectReject('notjson@example.com', 'not_json');
    expectReject('array@example.com', 'not_object');
    expectReject('noid@example.com', 'missing_user_id');
    expectReject('mismatch@example.com', 'email_mismatch', 'usr_mm');
    expectReject('neg@example.com', 'negative_credits', 'usr_neg');
    expectReject('frac@example.com', 'invalid_credits', 'usr_frac');
    expectReject('huge@example.com', 'credits_out_of_range', 'usr_huge');
    expectReject('date@example.com', 'invalid_timestamp', 'usr_date');
    expectReject('hash@example.com', 'wrong_type');
    expectReject('big@example.com', 'value_too_large');
    expect(run.rejects).toHaveLength(10);
    expect(await db.query('select user_id from users')).toEqual([{ user_id: 'usr_good' }]);
    expect(statSync(run.rejectsPath).mode & 0o777).toBe(0o600);
  });

  it('holds back cross-key duplicates and emails taken in PostgreSQL, showing both sides', async () => {
    await keys.putUser('Twin@example.com', user('usr_t1'));
    await keys.putUser('twin@example.com ', user('usr_t2'));
    await keys.putUser('first@example.com', user('usr_same'));
    await keys.putUser('second@example.com', user('usr_same'));
    await keys.putUser('taken@example.com', user('usr_redis'));
    await keys.putUser('fine@example.com', user('usr_fine'));
    // signup_bonus_granted false: not a new-app first login, so not an early login either.
    await db.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values ('usr_app', 'taken@example.com', 100, false)`);

    const run = await migrate();
    expect(run.code).toBe(1);
    expect(run.report?.counts).toMatchObject({ valid: 6, inserted: 1, conflicts: 5 });
    expect(run.report?.reasons).toEqual({ duplicate_email: 2, duplicate_user_id: 2, email_taken: 1 });
    const taken = run.rejects.find((r) => r.reason === 'email_taken');
    expect(taken?.detail).toContain('usr_app');
    expect(taken).toMatchObject({ user_id: 'usr_redis', redis: { email: 'taken@example.com', current_credits: '10' } });
    const twin = run.rejects.find((r) => r.reason === 'duplicate_email');
    expect(twin?.detail).toMatch(/usr_t1.*usr_t2|usr_t2.*usr_t1/);
    expect((await db.query('select user_id from users order by 1')).map((r) => r.user_id)).toEqual(['usr_app', 'usr_fine']);
    // Held-back credits are still accounted for.
    expect(run.report?.credits.by_outcome.conflict?.current).toBe(50);
  });

  it('dry-run reports exactly what a run would do and writes nothing, even as a SELECT-only role', async () => {
    for (let i = 0; i < 25; i++) await keys.putUser(`u${i}@example.com`, user(`usr_${i}`, { current_credits: i }));
    await keys.putUser('bad@example.com', 'nope');
    const role = uniqueName('mu_ro');
    await adminQuery(`create role ${role} login`);
    try {
      await db.query(`grant usage on schema migrate_users to ${role}`);
      await db.query(`grant select on public.users, migrate_users.ledger, migrate_users.merges to ${role}`);
      const url = new URL(db.url);
      url.username = role;
      const dry = await migrate(['--dry-run'], { DATABASE_URL: url.toString() });
      expect(dry.stderr).toBe('');
      expect(dry.code).toBe(1);
      expect(dry.report?.mode).toBe('dry-run');
      expect(dry.stdout).toContain('DRY RUN');
      expect(dry.report?.counts).toMatchObject({ scanned: 26, valid: 25, invalid: 1, inserted: 25, updated: 0 });
      expect(await db.query('select count(*)::int as n from users')).toEqual([{ n: 0 }]);
      expect(await db.query('select count(*)::int as n from migrate_users.ledger')).toEqual([{ n: 0 }]);
      expect(await db.query('select count(*)::int as n from migrate_users.runs')).toEqual([{ n: 0 }]);

      const real = await migrate();
      expect(real.report?.counts).toEqual({ ...dry.report?.counts });
    } finally {
      await db.drop();
      db = await createTestDatabase();
      await adminQuery(`drop role if exists ${role}`);
    }
  });

  it('re-running with nothing changed writes nothing; a Redis change is caught up; an app change is never overwritten', async () => {
    await keys.putUser('a@example.com', user('usr_a', { current_credits: 100 }));
    await keys.putUser('b@example.com', user('usr_b', { current_credits: 200 }));
    await keys.putUser('c@example.com', user('usr_c', { current_credits: 300 }));
    await keys.putUser('d@example.com', user('usr_d', { current_credits: 400 }));
    const first = await migrate();
    expect(first.report?.counts).toMatchObject({ inserted: 4 });
    const ledgerBefore = await db.query('select user_id, written_at::text, row_updated_at::text from migrate_users.ledger order by 1');

    const again = await migrate();
    expect(again.code).toBe(0);
    expect(again.report?.counts).toMatchObject({ inserted: 0, updated: 0, unchanged: 4, conflicts: 0 });
    expect(await db.query('select user_id, written_at::text, row_updated_at::text from migrate_users.ledger order by 1')).toEqual(ledgerBefore);

    // Old app still live: a's balance changes in Redis. New app: b spends credits in PostgreSQL.
    // Both apps touch c. d is deleted by the new app (the app's decision); e too, after the old app changed it.
    await keys.putUser('e@example.com', user('usr_e', { current_credits: 500 }));
    expect((await migrate()).report?.counts).toMatchObject({ inserted: 1 });
    await keys.putUser('a@example.com', user('usr_a', { current_credits: 150 }));
    await db.query(`update users set current_credits = 180 where user_id = 'usr_b'`);
    await keys.putUser('c@example.com', user('usr_c', { current_credits: 333 }));
    await db.query(`update users set current_credits = 290 where user_id = 'usr_c'`);
    await db.query(`delete from users where user_id = 'usr_d'`);
    await keys.putUser('e@example.com', user('usr_e', { current_credits: 555 }));
    await db.query(`delete from users where user_id = 'usr_e'`);

    const catchUp = await migrate();
    expect(catchUp.code).toBe(1);
    expect(catchUp.report?.counts).toMatchObject({ updated: 1, kept_app_changes: 1, deleted_by_app: 1, conflicts: 2, inserted: 0 });
    expect(catchUp.report?.reasons).toEqual({ changed_in_both: 1, deleted_in_postgres: 1 });
    expect(catchUp.rejects.find((r) => r.reason === 'deleted_in_postgres')).toMatchObject({ user_id: 'usr_e' });
    // The deletion the app made counts as its difference: d's 400 are gone from PostgreSQL, not kept.
    expect(catchUp.report?.credits.by_outcome.deleted_by_app).toEqual({ current: 0, used: 0 });
    const both = catchUp.rejects.find((r) => r.reason === 'changed_in_both');
    expect(both).toMatchObject({
      user_id: 'usr_c',
      differences: [{ column: 'current_credits', expected: '333', actual: '290' }],
    });
    const credits = await db.query<{ user_id: string; current_credits: string }>('select user_id, current_credits::text from users order by 1');
    expect(credits).toEqual([
      { user_id: 'usr_a', current_credits: '150' },
      { user_id: 'usr_b', current_credits: '180' },
      { user_id: 'usr_c', current_credits: '290' },
    ]);

    // Once caught up, the next run is quiet again for a and b.
    const settled = await migrate();
    expect(settled.report?.counts).toMatchObject({ updated: 0, inserted: 0, unchanged: 1, kept_app_changes: 1, deleted_by_app: 1, conflicts: 2 });
  });

  it('an email the app stored as typed is the same mailbox; emails stored normalised are matched only exactly', async () => {
    await db.query(`insert into users (user_id, email, current_credits, signup_bonus_granted)
      values ('app_bob', ' Bob@Example.COM ', 50, true), ('app_sam', 'sam@example.com', 5, true)`);
    await keys.putUser('bob@example.com', user('usr_bob'));
    // Would collide with 'sam@example.com' if normalising trimmed letters instead of white space.
    await keys.putUser('am@example.com', user('usr_am'));
    const dry = await migrate(['--dry-run']);
    const run = await migrate();
    for (const result of [dry, run]) {
      expect(result.code).toBe(1);
      expect(result.report?.counts).toMatchObject({ inserted: 1, conflicts: 1 });
      // The app created that row at a first login (signup bonus granted, the tool never wrote it).
      expect(result.report?.reasons).toEqual({ early_login: 1 });
      expect((result.report as unknown as { postgres_unnormalised_emails: number }).postgres_unnormalised_emails).toBe(1);
    }
    expect(run.rejects).toEqual([expect.objectContaining({ user_id: 'usr_bob', reason: 'early_login', detail: expect.stringContaining('app_bob') })]);
    expect(await db.query(`select user_id from users order by 1`)).toEqual([{ user_id: 'app_bob' }, { user_id: 'app_sam' }, { user_id: 'usr_am' }]);
    const verify = await runCli(['verify', '--match', keys.match], { DATABASE_URL: db.url, REDIS_URL });
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain('not migratable');
  });

  it('a bad output path is refused before any work, and a run that cannot start leaves the last files as they were', async () => {
    await keys.putUser('a@example.com', user('usr_a'));
    const bad = await runCli(['--match', keys.match, '--report', join(dir, 'nodir', 'run.json'), '--rejects', dir], { DATABASE_URL: db.url });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`--report ${join(dir, 'nodir', 'run.json')}: the folder ${join(dir, 'nodir')} does not exist`);
    expect(bad.stderr).toContain(`--rejects ${dir} is a directory`);
    expect(await db.query('select count(*)::int as n from migrate_users.runs')).toEqual([{ n: 0 }]);

    const rejects = join(dir, 'rejects.ndjson');
    writeFileSync(rejects, 'the last run\n');
    const unreachable = await runCli(['--match', keys.match, '--rejects', rejects, '--retries', '0'], {
      DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none',
      REDIS_URL,
    });
    expect(unreachable.code).toBe(2);
    expect(await readFile(rejects, 'utf8')).toBe('the last run\n');
    const verifyBad = await runCli(['verify', '--match', keys.match, '--junit', join(dir, 'no', 'j.xml')], { DATABASE_URL: db.url });
    expect(verifyBad.code).toBe(2);
    expect(verifyBad.stderr).toContain('--junit');
  });

  it('names whitelisted emails that match no Redis user, in the report and the summary', async () => {
    await keys.putUser('vip@example.com', user('usr_vip'));
    const run = await migrate([], { WHITELIST_EMAILS: 'vip@example.com, vipp@example.com' });
    expect(run.code).toBe(0);
    expect((run.report as unknown as { whitelist: { unmatched: string[] } }).whitelist.unmatched).toEqual(['vipp@example.com']);
    expect(run.stdout).toContain('1 whitelisted emails match no Redis user (no top-up for them): vipp@example.com');
    expect(await db.query('select current_credits::int as c from users')).toEqual([{ c: 100_000 }]);
  });

  it("a reused xid (wraparound, a restored cluster) never passes an app change to the balance for the tool's own row", async () => {
    await keys.putUser('a@example.com', user('usr_a', { current_credits: 5000 }));
    expect((await migrate()).code).toBe(0);
    // The app spends 50; then, as if the xid counter had come round to the tool's, the ledger's row version
    // equals the app's. Redis moves too: a catch-up would be due if the row were still the tool's.
    await db.query(`update users set current_credits = 4950 where user_id = 'usr_a'`);
    await db.query(`update migrate_users.ledger l set row_xmin = u.xmin from users u where u.user_id = l.user_id`);
    await keys.putUser('a@example.com', user('usr_a', { current_credits: 6000 }));
    const run = await migrate();
    expect(run.report?.reasons).toEqual({ changed_in_both: 1 });
    expect(await db.query('select current_credits::int as c from users')).toEqual([{ c: 4950 }]);
  });

  it('does not overwrite a row with the same user_id that the tool did not write', async () => {
    await keys.putUser('x@example.com', user('usr_x', { current_credits: 1 }));
    await keys.putUser('y@example.com', user('usr_y', { current_credits: 2 }));
    await db.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values ('usr_x', 'x@example.com', 999, true)`);
    await db.query(`insert into users (user_id, email, current_credits, signup_bonus_granted, created_at) values ('usr_y', 'y@example.com', 2, true, null)`);
    const run = await migrate();
    expect(run.report?.counts).toMatchObject({ conflicts: 1, unchanged: 1 });
    expect(run.rejects[0]).toMatchObject({ reason: 'row_not_written_by_tool', user_id: 'usr_x' });
    expect(await db.query(`select current_credits::int as c from users where user_id = 'usr_x'`)).toEqual([{ c: 999 }]);
    // The identical row is adopted into the ledger, so later Redis changes can be caught up.
    expect(await db.query('select user_id from migrate_users.ledger')).toEqual([{ user_id: 'usr_y' }]);
  });

  it('works for a Redis user that may not even run INFO (a single server is assumed)', async () => {
    await keys.putUser('i@example.com', user('usr_i'));
    const acl = uniqueName('mu_noinfo');
    await keys.redis.call('ACL', 'SETUSER', acl, 'on', '>pw', 'resetkeys', `~${keys.prefix}user:email:*`, '-@all', '+@read', '+@connection', '+client');
    try {
      const run = await migrate([], { REDIS_URL: redisUrlAs(acl, 'pw') });
      expect(run.code).toBe(0);
      expect(run.report?.counts).toMatchObject({ scanned: 1, inserted: 1 });
    } finally {
      await keys.redis.call('ACL', 'DELUSER', acl);
    }
  });

  it('never reads keys outside --match and never writes to Redis (proved with a read-only ACL user)', async () => {
    await keys.putUser('r@example.com', user('usr_r'));
    await keys.putRaw(`${keys.prefix}email_code:r@example.com`, '123456');
    const acl = uniqueName('mu_reader');
    await keys.redis.call(
      'ACL',
      'SETUSER',
      acl,
      'on',
      '>readerpass',
      'resetkeys',
      `~${keys.prefix}user:email:*`,
      '-@all',
      '+@read',
      '+@connection',
      '+info',
      '+client',
    );
    try {
      const run = await migrate([], { REDIS_URL: redisUrlAs(acl, 'readerpass') });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(run.report?.counts).toMatchObject({ scanned: 1, inserted: 1 });
      expect(await keys.redis.get(`${keys.prefix}email_code:r@example.com`)).toBe('123456');
    } finally {
      await keys.redis.call('ACL', 'DELUSER', acl);
    }
  });

  it('batches: many users over several batches, concurrent reads and writes give the same result', async () => {
    const pipeline = keys.redis.pipeline();
    for (let i = 0; i < 2500; i++) pipeline.set(keys.userKey(`bulk${i}@example.com`), JSON.stringify(user(`usr_bulk_${i}`, { current_credits: i })));
    // Two keys for one email, far apart in the keyspace: held back even though their batches run side by side.
    pipeline.set(keys.userKey('twin@example.com'), JSON.stringify(user('usr_twin_1', { email: 'twin@example.com' })));
    pipeline.set(keys.userKey('TWIN@example.com'), JSON.stringify(user('usr_twin_2', { email: 'twin@example.com' })));
    await pipeline.exec();
    const run = await migrate(['--batch-size', '300', '--concurrency', '3', '--scan-count', '50', '--write-concurrency', '4']);
    expect(run.code).toBe(1);
    expect(run.report?.counts).toMatchObject({ scanned: 2502, inserted: 2500, conflicts: 2 });
    expect(await db.query('select count(*)::int as n, sum(current_credits)::text as s from users')).toEqual([{ n: 2500, s: String((2499 * 2500) / 2) }]);
    expect(await db.query('select count(*)::int as n from migrate_users.ledger')).toEqual([{ n: 2500 }]);
    const again = await migrate(['--batch-size', '300', '--write-concurrency', '4']);
    expect(again.report?.counts).toMatchObject({ inserted: 0, unchanged: 2500, conflicts: 2 });
  });
});

describe('exit codes and messages', () => {
  it('2 for a bad flag value, with every problem named on one line', async () => {
    const run = await runCli(['--batch-size', 'many', '--match', 'user:*:x', '--whitelist-file', '/nonexistent/file', '--write-concurrency', '0']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--batch-size must be a whole number');
    expect(run.stderr).toContain('--write-concurrency must be');
    expect(run.stderr).toContain('--match must be a literal prefix');
    expect(run.stderr).toContain('whitelist file /nonexistent/file not found (--whitelist-file)');
  });

  it('2 for an unknown flag', async () => {
    const run = await runCli(['--no-such-flag']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("unknown option '--no-such-flag'");
  });

  it('2 when the schema has not been applied, naming the fix', async () => {
    const bare = await createTestDatabase({ schema: false });
    try {
      const run = await runCli(['--match', keys.match], { DATABASE_URL: bare.url });
      expect(run.code).toBe(2);
      expect(run.stderr).toContain('migrate-users schema apply');
    } finally {
      await bare.drop();
    }
  });

  it('2 when a server cannot be reached at the start, naming it, and the password never appears', async () => {
    const pgDown = await runCli(['--match', keys.match], {
      DATABASE_URL: 'postgres://admin:Sup3r-Secret-pw@127.0.0.1:1/postgres',
    });
    expect(pgDown.code).toBe(2);
    expect(pgDown.stderr).toContain('cannot connect to PostgreSQL at postgres://admin:***@127.0.0.1:1/postgres: connection refused');
    expect(pgDown.stdout + pgDown.stderr).not.toContain('Sup3r-Secret-pw');

    const redisDown = await runCli(['--match', keys.match, '--redis-url', 'redis://:An0ther-Secret@127.0.0.1:1'], {
      DATABASE_URL: db.url,
    });
    expect(redisDown.code).toBe(2);
    expect(redisDown.stderr).toContain('cannot connect to Redis at redis://:***@127.0.0.1:1: connection refused');
    expect(redisDown.stdout + redisDown.stderr).not.toContain('An0ther-Secret');
  });

  it('schema apply is idempotent', async () => {
    const first = await runCli(['schema', 'apply'], { DATABASE_URL: db.url });
    const second = await runCli(['schema', 'apply'], { DATABASE_URL: db.url });
    expect([first.code, second.code]).toEqual([0, 0]);
    expect(second.stdout).toContain('Schema applied');
  });
});
