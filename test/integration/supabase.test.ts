import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli, startCli } from '../helpers/cli.js';
import { createTestKeys, REDIS_URL, stageRecords, type TestKeys } from '../helpers/servers.js';
import { createSupabaseLike, type SupabaseLike } from '../helpers/supabase.js';

/*
 * Supabase as it really is (issue 29): its postgres role is no superuser but owns what it creates and has
 * BYPASSRLS; every new table in public is granted to the public API roles; tables made in the Table Editor have
 * row level security on. Each test has a Supabase-like database and roles of its own (test/helpers/supabase.ts).
 */

let sb: SupabaseLike;
let keys: TestKeys;

beforeEach(async () => {
  sb = await createSupabaseLike();
  keys = await createTestKeys();
  for (let i = 1; i <= 5; i++) await keys.putUser(`u${i}@x.test`, { user_id: `u${i}`, credits: i * 10, password_hash: `secret-${i}` });
});

afterEach(async () => {
  await keys.cleanup();
  await sb.drop();
});

const as = (role: string, args: string[], redisUrl = REDIS_URL) =>
  runCli([...args, ...(args[0] === 'schema' ? [] : ['--match', keys.match, '--no-progress'])], { DATABASE_URL: sb.urlAs(role), REDIS_URL: redisUrl });

describe('Supabase: schema apply, row level security, the roles to use', () => {
  it('schema apply as the project owner creates public.users with RLS on (the API roles see nothing) and says so', async () => {
    const applied = await as(sb.owner, ['schema', 'apply']);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain('Row level security is enabled on the new public.users, with no policy');
    expect(applied.stdout).toContain(sb.anon);
    const [t] = await sb.query<{ rls: boolean; anon: boolean }>(
      `select c.relrowsecurity as rls, has_table_privilege($1, 'public.users', 'select') as anon from pg_class c where c.oid = 'public.users'::regclass`,
      [sb.anon],
    );
    expect(t).toEqual({ rls: true, anon: true });
    // The owner migrates (BYPASSRLS, not a superuser); the public API sees no row of it.
    expect((await as(sb.owner, [])).code).toBe(0);
    const seen = await sb.query<{ n: number }>(`select count(*)::int as n from public.users`);
    expect(seen[0]?.n).toBe(5);
    const client = await import('pg');
    const c = new client.default.Client({ connectionString: sb.urlAs(sb.owner) });
    await c.connect();
    try {
      await c.query('begin');
      await c.query(`set local role ${sb.anon}`);
      const { rows } = await c.query<{ n: number }>('select count(*)::int as n from public.users');
      expect(rows[0]?.n).toBe(0);
      await c.query('rollback');
    } finally {
      await c.end();
    }
    // The whole runbook as the owner: verify and reconcile green.
    expect((await as(sb.owner, ['verify'])).code).toBe(0);
    expect((await as(sb.owner, ['reconcile'])).code).toBe(0);
  });

  it('an existing table is never altered; schema check warns that roles other than the owner can use it without RLS', async () => {
    await sb.query(`set role ${sb.owner}; create table public.users (user_id text primary key, email text unique not null, username text, avatar text,
      password_hash text, current_credits bigint not null default 0, total_credits_used bigint not null default 0,
      signup_bonus_granted boolean not null default false, current_plan_id text, plan_renew_at timestamptz, created_at timestamptz,
      last_login timestamptz); reset role`);
    const applied = await as(sb.owner, ['schema', 'apply']);
    expect(applied.code, applied.stderr).toBe(0);
    const [t] = await sb.query<{ rls: boolean }>(`select relrowsecurity as rls from pg_class where oid = 'public.users'::regclass`);
    expect(t?.rls).toBe(false);
    expect(applied.stdout).toContain('public.users has no row level security and roles other than its owner may use it');
    expect(applied.stdout).toContain(sb.anon);
    const check = await as(sb.owner, ['schema', 'check']);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain('it holds every password hash');
  });

  it('a role that RLS blinds is refused before any work, naming the role and the fixes; BYPASSRLS works, membership in service_role does not', async () => {
    expect((await as(sb.owner, ['schema', 'apply'])).code).toBe(0);
    expect((await as(sb.owner, [])).code).toBe(0);
    const runner = await sb.loginRole('runner');
    const checker = await sb.loginRole('checker');
    const member = await sb.loginRole('member', `in role ${sb.serviceRole}`);
    await sb.grantTool(runner, 'writer');
    await sb.grantTool(checker, 'reader');
    await sb.grantTool(member, 'writer');
    // The refusal names everything else pre-flight found about the role, its timeouts too.
    await sb.query(`alter role ${runner} in database ${sb.name} set statement_timeout = '40ms'`);
    await keys.putUser('u6@x.test', { user_id: 'u6', credits: 60 });
    const unreachable = 'redis://127.0.0.1:1';
    for (const [role, args] of [
      [runner, ['--dry-run']],
      [runner, []],
      [checker, ['verify']],
      [member, ['reconcile']],
    ] as const) {
      // Refused before Redis is even connected to: the Redis URL here answers nothing.
      const run = await as(role, [...args], unreachable);
      expect(run.code, `${role} ${args.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toContain(`row level security is enabled on public.users and role ${role} does not bypass it`);
      expect(run.stderr).toContain(`alter role ${role} bypassrls`);
      expect(run.stderr).toContain('membership in service_role is not enough');
      if (role === runner) expect(run.stderr).toContain(`role ${runner} has statement_timeout = 40ms: meant for the app's queries`);
    }
    const check = await as(runner, ['schema', 'check']);
    expect(check.code).toBe(2);
    expect(check.stdout).toContain(`role ${runner} cannot use it`);
    expect((await sb.query<{ n: number }>('select count(*)::int as n from public.users'))[0]?.n).toBe(5);

    await sb.query(`alter role ${runner} bypassrls`);
    const run = await as(runner, []);
    expect(run.code, run.stderr).toBe(0);
    expect((await sb.query<{ n: number }>('select count(*)::int as n from public.users'))[0]?.n).toBe(6);
  });

  it('policies: a select-all policy lets a reader verify; an update policy keyed on auth.uid() refuses a writer up front (never blamed on the app)', async () => {
    expect((await as(sb.owner, ['schema', 'apply'])).code).toBe(0);
    expect((await as(sb.owner, [])).code).toBe(0);
    const runner = await sb.loginRole('runner');
    const checker = await sb.loginRole('checker');
    await sb.grantTool(runner, 'writer');
    await sb.grantTool(checker, 'reader');
    await sb.query(`create policy read_all on public.users for select using (true);
      create policy insert_all on public.users for insert with check (true);
      create policy own_row on public.users for update using (auth.uid() = user_id)`);
    const verified = await as(checker, ['verify']);
    expect(verified.code, verified.stderr).toBe(0);
    const refused = await as(runner, []);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('every row for UPDATE');
  });

  it("a role's statement_timeout (Supabase sets them) never cuts the tool's stage-wide statements: the run completes, and so does a resume", async () => {
    expect((await as(sb.owner, ['schema', 'apply'])).code).toBe(0);
    const runner = await sb.loginRole('runner', 'bypassrls');
    await sb.grantTool(runner, 'writer');
    await sb.query(`alter role ${runner} in database ${sb.name} set statement_timeout = '40ms'`);
    const seeded = await runCli(['seed', '--count', '60000', '--match', keys.match, '--force'], { REDIS_URL });
    expect(seeded.code, seeded.stderr).toBe(0);
    const run = await as(runner, ['--log-level', 'error']);
    expect(run.code, run.stderr).toBeLessThanOrEqual(1);
    expect(run.stdout).toContain('inserted');
    expect((await sb.query<{ n: number }>('select count(*)::int as n from public.users'))[0]?.n).toBeGreaterThan(59_000);
    const again = await as(runner, ['--log-level', 'error']);
    expect(again.code, again.stderr).toBeLessThanOrEqual(1);
  }, 120_000);

  it("a role's lock_timeout and idle_in_transaction_session_timeout never end a run: every command completes, and a batch waits behind an app's row lock", async () => {
    expect((await as(sb.owner, ['schema', 'apply'])).code).toBe(0);
    const runner = await sb.loginRole('runner', 'bypassrls');
    await sb.grantTool(runner, 'writer');
    for (const setting of [`idle_in_transaction_session_timeout = '5ms'`, `lock_timeout = '100ms'`, `statement_timeout = '2s'`]) {
      await sb.query(`alter role ${runner} in database ${sb.name} set ${setting}`);
    }
    const seeded = await runCli(['seed', '--count', '20000', '--match', keys.match, '--force'], { REDIS_URL });
    expect(seeded.code, seeded.stderr).toBe(0);
    const check = await as(runner, ['schema', 'check']);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain(
      `role ${runner} has statement_timeout = 2s, lock_timeout = 100ms, idle_in_transaction_session_timeout = 5ms: meant for the app's queries`,
    );
    for (const args of [['--dry-run'], [], ['verify'], ['reconcile']]) {
      const run = await as(runner, [...args, '--log-level', 'error']);
      expect(run.code, `${args.join(' ')}: ${run.stderr}\n${run.stdout}`).toBeLessThanOrEqual(1);
    }
    // The old app changes a user; the new app holds that row locked for a while (a long request).
    await keys.putUser('u3@x.test', { user_id: 'u3', credits: 333, password_hash: 'secret-3' });
    const client = new pg.Client({ connectionString: sb.urlAs(sb.owner) });
    await client.connect();
    try {
      await client.query('begin');
      await client.query(`select 1 from public.users where user_id = 'u3' for update`);
      const started = Date.now();
      const running = as(runner, ['--log-level', 'error']);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await client.query('commit');
      const run = await running;
      expect(run.code, run.stderr).toBeLessThanOrEqual(1);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
      expect(run.stdout).toMatch(/updated\s+1\b/);
    } finally {
      await client.end();
    }
    expect((await sb.query<{ c: string }>(`select current_credits::text as c from public.users where user_id = 'u3'`))[0]?.c).toBe('333');
  }, 120_000);
});

describe('Supabase: schema check for a reader made before migrate_users.runs was readable', () => {
  it('describes the table and exits 0, without listing stages it may not see', async () => {
    expect((await as(sb.owner, ['schema', 'apply'])).code).toBe(0);
    const old = await sb.loginRole('oldreader', 'bypassrls');
    await sb.query(`grant usage on schema public, migrate_users to ${old};
      grant select on public.users, migrate_users.ledger, migrate_users.merges to ${old}`);
    const check = await as(old, ['schema', 'check']);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain('public.users can hold what migrate-users writes.');
  });
});

describe('Supabase: what a run leaves behind, and the schema reloads it costs the API', () => {
  /** Counts PostgREST's `NOTIFY pgrst` (the schema reloads of the project's API) while `fn` runs. */
  async function reloadsDuring(fn: () => Promise<unknown>): Promise<number> {
    const listener = new pg.Client({ connectionString: sb.urlAs(sb.owner) });
    await listener.connect();
    let n = 0;
    listener.on('notification', (m) => {
      if (m.channel === 'pgrst') n++;
    });
    try {
      await listener.query('listen pgrst');
      await fn();
      // Notifications are delivered at commit; give the last one a moment to arrive.
      await new Promise((resolve) => setTimeout(resolve, 300));
      return n;
    } finally {
      await listener.end();
    }
  }

  it("a writing run makes its stage once and reuses it: one schema reload for the role's first run, none after; dry-run, verify and reconcile none", async () => {
    expect((await as(sb.owner, ['schema', 'apply'])).code).toBe(0);
    const runner = await sb.loginRole('runner', 'bypassrls');
    await sb.grantTool(runner, 'writer');
    expect(await reloadsDuring(async () => expect((await as(runner, [])).code).toBe(0))).toBe(1);
    await keys.putUser('u2@x.test', { user_id: 'u2', credits: 25, password_hash: 'secret-2' });
    for (const args of [[], ['--dry-run'], ['verify'], ['reconcile'], ['reconcile', '--apply'], []]) {
      const reloads = await reloadsDuring(async () => expect((await as(runner, args)).code).toBe(0));
      expect(reloads, args.join(' ')).toBe(0);
    }
    // One stage, emptied: no record, no password hash, is left in it.
    const left = await stageRecords(sb);
    expect(Object.keys(left)).toHaveLength(3);
    expect(Object.values(left)).toEqual([0, 0, 0]);
    expect((await sb.query<{ c: string }>(`select current_credits::text as c from public.users where user_id = 'u2'`))[0]?.c).toBe('25');
  }, 60_000);

  it("an unfinished run's stage: schema check lists it; a role that may not drop it is told whose it is; a member of its owner removes it; so does schema clean as the owner", async () => {
    expect((await as(sb.owner, ['schema', 'apply'])).code).toBe(0);
    const runner = await sb.loginRole('runner', 'bypassrls');
    const member = await sb.loginRole('member', `bypassrls in role ${runner}`);
    await sb.grantTool(runner, 'writer');
    await sb.grantTool(member, 'writer');
    const seeded = await runCli(['seed', '--count', '20000', '--match', keys.match, '--force'], { REDIS_URL });
    expect(seeded.code, seeded.stderr).toBe(0);
    const interrupted = async () => {
      const run = startCli(['--match', keys.match, '--no-progress', '--batch-size', '10'], { DATABASE_URL: sb.urlAs(runner), REDIS_URL, LOG_LEVEL: 'info' });
      for (const started = Date.now(); !run.stderr.includes('triage done');) {
        if (Date.now() - started > 30_000) throw new Error(`the run never reached its writing phase:\n${run.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // Some batches in: the checkpoint has passed records that were written.
      const written = async () =>
        (
          await sb.query<{ n: number }>(
            `select count(*)::int as n from migrate_users.ledger l join migrate_users.runs r on r.run_id = l.run_id where r.status = 'running'`,
          )
        )[0]?.n ?? 0;
      for (const started = Date.now(); (await written()) < 50;) {
        if (Date.now() - started > 30_000 || run.child.exitCode !== null) throw new Error(`the run wrote no batch:\n${run.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      run.child.kill('SIGINT');
      expect(await run.exit, run.output()).toBe(130);
      const held = Object.entries(await stageRecords(sb)).filter(([t, n]) => n > 0 && !/_(triage|emails)$/.test(t));
      expect(held).toHaveLength(1);
      const table = held[0]?.[0] ?? '';
      // Kept for the resume, but no password hash of a record the checkpoint passed: only the rest need theirs.
      const [hashes] = await sb.query<{ passed: number; passed_hashes: number; rest_hashes: number }>(
        `select count(*) filter (where s.seq <= r.last_seq and s.outcome is null)::int as passed,
           count(s.password_hash) filter (where s.seq <= r.last_seq and s.outcome is null)::int as passed_hashes,
           count(s.password_hash) filter (where s.seq > r.last_seq)::int as rest_hashes
         from ${table} s, migrate_users.runs r where r.stage_table = '${table}'`,
      );
      expect(hashes?.passed).toBeGreaterThan(0);
      expect(hashes?.passed_hashes).toBe(0);
      expect(hashes?.rest_hashes).toBeGreaterThan(0);
      return table;
    };

    const stage = await interrupted();
    const check = await as(runner, ['schema', 'check']);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain('stages holding records (each with its password hash) of runs that did not finish:');
    expect(check.stdout).toMatch(new RegExp(`${stage.replace(/\./g, '\\.')}: run run_\\w+, interrupted, started .*, owned by ${runner}`));

    // A role with neither the runner's privileges nor migrate_users of its own may not drop it, and says whose it is.
    const other = await sb.loginRole('other', 'bypassrls');
    await sb.grantTool(other, 'writer');
    const owners = await as(other, []);
    expect(owners.code, owners.stderr).toBeLessThanOrEqual(1);
    expect(owners.stderr).toContain(
      `the stage of an unfinished run of role ${runner} holds its records (password hashes included), and this role may not remove it`,
    );
    const refused = await as(other, ['schema', 'clean']);
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stdout).toContain(`left ${stage} (run `);
    expect(refused.stdout).toContain(`owned by ${runner}, run this as ${runner}`);
    expect((await stageRecords(sb))[stage]).toBeGreaterThan(0);

    const cleaned = await as(runner, ['schema', 'clean']);
    expect(cleaned.code, cleaned.stderr).toBe(0);
    expect(cleaned.stdout).toContain(`removed ${stage} (run `);
    expect((await stageRecords(sb))[stage]).toBeUndefined();
    expect((await sb.query<{ n: number }>(`select count(*)::int as n from migrate_users.runs where stage_table is not null`))[0]?.n).toBe(0);

    // A member of the owning role removes such a stage on its next writing run (on a target emptied again, so
    // that the runner has batches to write when it is stopped).
    await sb.query('delete from public.users; delete from migrate_users.ledger');
    const again = await interrupted();
    const members = await as(member, []);
    expect(members.code, members.stderr).toBeLessThanOrEqual(1);
    expect((await stageRecords(sb))[again]).toBeUndefined();
  }, 120_000);
});
