import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { appTeamUsersDdl } from '../../src/bench/app-team-table.js';
import { startRedis } from '../../src/bench/servers.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { createTestDatabase, createTestKeys, REDIS_URL, type TestDatabase, type TestKeys } from '../helpers/servers.js';
import { reviewOf } from '../helpers/review.js';

/*
 * The tool on the app team's own `public.users` (BRIEF.md: varchar limits, integer credits, `timestamp without
 * time zone`, an updated_at trigger on UPDATE only or none at all), not only on the table sql/001_users.sql
 * creates. Every command runs the real bin/migrate-users as a child process; each test has its own database
 * and its own Redis key prefix.
 */

// ---------------------------------------------------------------------------------------------------------
// Tables

/** The app team's DDL as BRIEF.md describes it (shared with the benchmark). */
const appTable = appTeamUsersDdl;

interface Fixture {
  readonly db: TestDatabase;
  readonly keys: TestKeys;
  readonly dir: string;
  readonly env: Record<string, string>;
}

const open: Fixture[] = [];

/** A database of its own with `ddl` run first (null: the table `schema apply` ships), then `schema apply`. */
async function fixture(ddl: string | null, { apply = true } = {}): Promise<Fixture> {
  const db = await createTestDatabase({ schema: false });
  const keys = await createTestKeys();
  const f: Fixture = { db, keys, dir: mkdtempSync(join(tmpdir(), 'mu-target-')), env: { DATABASE_URL: db.url, REDIS_URL } };
  open.push(f);
  if (ddl) await db.query(ddl);
  if (apply) {
    const applied = await runCli(['schema', 'apply'], f.env);
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
  }
  return f;
}

afterEach(async () => {
  for (const f of open.splice(0)) {
    try {
      await f.keys.cleanup();
    } finally {
      await f.db.drop();
      rmSync(f.dir, { recursive: true, force: true });
    }
  }
});

// ---------------------------------------------------------------------------------------------------------
// Running the CLI

/** money(): a number, or a string beyond Number.MAX_SAFE_INTEGER. */
interface Amounts {
  readonly current: number | string;
  readonly used: number | string;
}

interface MigrateReport {
  readonly status: string;
  readonly counts: Readonly<Record<string, number>>;
  readonly reasons: Readonly<Record<string, number>>;
  readonly postgres_unnormalised_emails: number | null;
  readonly credits: {
    readonly read: Amounts;
    readonly whitelist_topup: number | string;
    readonly app_difference: Amounts;
    /** Since merges (reconcile --merge): what merging changed on merged rows. */
    readonly merge_difference?: Amounts;
    readonly by_outcome: Readonly<Record<string, Amounts>>;
    readonly written: Amounts;
  };
}

interface RejectLine {
  readonly key: string;
  readonly user_id?: string;
  readonly reason: string;
  readonly detail: string;
}

interface Run extends CliResult {
  readonly report: MigrateReport;
  /** The --rejects file, line by line as written. */
  readonly lines: readonly string[];
  readonly rejects: readonly RejectLine[];
}

let files = 0;

/** migrate (or --dry-run): the run's report and rejects file. */
async function migrate(f: Fixture, args: readonly string[] = [], env: Record<string, string> = {}): Promise<Run> {
  const report = join(f.dir, `migrate-${++files}.json`);
  const rejects = join(f.dir, `rejects-${files}.ndjson`);
  const result = await runCli(['--match', f.keys.match, '--no-progress', '--report', report, '--rejects', rejects, ...args], { ...f.env, ...env });
  const text = await readFile(report, 'utf8').catch(() => {
    throw new Error(`migrate ${args.join(' ')} wrote no report (exit ${String(result.code)}):\n${result.stderr}`);
  });
  const lines = (await readFile(rejects, 'utf8')).split('\n').filter(Boolean);
  return { ...result, report: JSON.parse(text) as MigrateReport, lines, rejects: lines.map((l) => JSON.parse(l) as RejectLine) };
}

interface Difference {
  readonly kind: string;
  readonly user_id: string | null;
  readonly column: string | null;
  readonly expected: unknown;
  readonly actual: unknown;
  readonly reason?: string;
}

interface VerifyReport {
  readonly ok: boolean;
  readonly counts: Readonly<Record<string, number | null>>;
  readonly reasons: Readonly<Record<string, number>>;
  readonly differences: readonly Difference[];
  readonly invariants: { readonly balanced: boolean };
}

interface ReconcileReport extends MigrateReport {
  readonly remaining: number;
  readonly classes: Readonly<Record<string, { readonly users: number; readonly redis_credits: number; readonly postgres_credits: number }>>;
}

/** A subcommand with --report (subcommand first: its options follow it). */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- a typed JSON.parse: the caller names the report it expects
async function command<R>(f: Fixture, sub: 'verify' | 'reconcile', args: readonly string[] = [], env: Record<string, string> = {}) {
  const report = join(f.dir, `${sub}-${++files}.json`);
  const result = await runCli([sub, '--match', f.keys.match, '--no-progress', '--report', report, ...args], { ...f.env, ...env });
  const text = await readFile(report, 'utf8').catch(() => {
    throw new Error(`${sub} wrote no report (exit ${String(result.code)}):\n${result.stderr}`);
  });
  return { ...result, report: JSON.parse(text) as R };
}

/**
 * docs/reports.md "Report format": read.current + whitelist_topup + app_difference.current + merge_difference.current =
 * sum of by_outcome.*.current (and the same for credits used); valid = the sum of the outcome counts.
 */
function expectCreditsBalance(report: MigrateReport): void {
  const c = report.credits;
  const outcomes = Object.values(c.by_outcome);
  const merge = c.merge_difference ?? { current: 0, used: 0 };
  expect(Number(c.read.current) + Number(c.whitelist_topup) + Number(c.app_difference.current) + Number(merge.current), 'current credits balance').toBe(
    outcomes.reduce((s, o) => s + Number(o.current), 0),
  );
  expect(Number(c.read.used) + Number(c.app_difference.used) + Number(merge.used), 'credits used balance').toBe(
    outcomes.reduce((s, o) => s + Number(o.used), 0),
  );
  const n = report.counts;
  const outcomeCounts = ['inserted', 'updated', 'unchanged', 'kept_app_changes', 'merged', 'conflicts', 'pending'];
  expect(n.valid, 'valid = sum of outcomes').toBe(outcomeCounts.reduce((s, k) => s + (n[k] ?? 0), 0));
}

/** A dry-run predicts the run after it: counts, reasons, credits, and the rejects file line for line. */
function expectSamePrediction(dry: Run, real: Run): void {
  expect(dry.code).toBe(real.code);
  expect(dry.report.counts).toEqual(real.report.counts);
  expect(dry.report.reasons).toEqual(real.report.reasons);
  expect(dry.report.credits).toEqual(real.report.credits);
  expect([...dry.lines].sort()).toEqual([...real.lines].sort());
}

// ---------------------------------------------------------------------------------------------------------
// Redis users

interface SeedUser {
  readonly i: number;
  readonly email: string;
  readonly keyEmail: string;
  readonly userId: string;
  readonly record: Record<string, unknown>;
  readonly creditsField: 'credits' | 'current_credits';
  credits: number;
  readonly used: number;
  readonly username: string;
  readonly plan: string | null;
  readonly hash: string | null;
  /** Expected instants in microseconds since the epoch (UTC), as text; null when the record has none. */
  readonly createdAt: string | null;
  readonly lastLogin: string | null;
  readonly planRenewAt: string | null;
}

const LONG = 1234; // username of 300 characters (2 bytes each)
const EMOJI = 777; // username of exactly 100 characters (2 UTF-16 units each): fits varchar(100)

function seedUsers(n: number): SeedUser[] {
  const users: SeedUser[] = [];
  for (let i = 1; i <= n; i++) {
    const email = `user${i}@example.test`;
    const keyEmail = i % 100 === 0 ? `User${i}@Example.TEST` : email;
    const userId = `usr_${String(i).padStart(5, '0')}`;
    const credits = 1000 + (i % 500);
    const used = i % 37;
    const username = i === LONG ? 'ü'.repeat(300) : i === EMOJI ? '😀'.repeat(100) : `name ${i}`;
    const creditsField = i % 2 === 0 ? 'current_credits' : 'credits';
    const record: Record<string, unknown> = {
      user_id: userId,
      email,
      username,
      [creditsField]: i % 4 === 1 ? String(credits) : credits,
      [i % 3 === 0 ? 'credits_used' : 'total_credits_used']: used,
    };
    const hash = i % 10 === 0 ? null : `$2b$12$${String(i).padStart(53, 'h')}`;
    if (hash) record.password_hash = hash;
    const plan = i % 5 === 0 ? 'pro' : null;
    if (plan) record.plan = plan;
    let createdAt: string | null = null;
    if (i % 3 === 0) {
      // ISO with an offset and microseconds.
      const seconds = 1_600_000_000 + i * 3600;
      const micros = (i * 7919) % 1_000_000;
      record.created_at = `${new Date((seconds + 7200) * 1000).toISOString().slice(0, 19)}.${String(micros).padStart(6, '0')}+02:00`;
      createdAt = String(BigInt(seconds) * 1_000_000n + BigInt(micros));
    } else if (i % 3 === 1) {
      record.created_at = 1_500_000_000 + i; // epoch seconds
      createdAt = String(BigInt(1_500_000_000 + i) * 1_000_000n);
    }
    let lastLogin: string | null = null;
    if (i % 4 === 0) {
      record.last_login = 1_700_000_000_000 + i * 1001; // epoch milliseconds
      lastLogin = String(BigInt(1_700_000_000_000 + i * 1001) * 1000n);
    }
    let planRenewAt: string | null = null;
    if (i % 7 === 0) {
      record.plan_renew_at = '2026-03-01'; // date only: midnight UTC
      planRenewAt = String(BigInt(Date.UTC(2026, 2, 1)) * 1000n);
    }
    users.push({ i, email, keyEmail, userId, record, creditsField, credits, used, username, plan, hash, createdAt, lastLogin, planRenewAt });
  }
  return users;
}

/** Writes the users' records (as they are now) in one pipeline; a failed SET fails the test. */
async function putUsers(keys: TestKeys, users: readonly SeedUser[]): Promise<void> {
  const pipe = keys.redis.pipeline();
  for (const u of users) {
    const record = { ...u.record, [u.creditsField]: u.credits };
    pipe.set(keys.userKey(u.keyEmail), JSON.stringify(record));
  }
  const results = (await pipe.exec()) ?? [];
  expect(results.length).toBe(users.length);
  for (const [err] of results) if (err) throw err;
}

// ---------------------------------------------------------------------------------------------------------
// The new app spending credits

interface Left {
  readonly current: number;
  readonly used: number;
}

/** A connection of the "new app": spends credits and remembers the balance each spend left. */
class Spender {
  readonly left = new Map<string, Left>();

  private constructor(readonly client: pg.Client) {}

  static async open(url: string): Promise<Spender> {
    const client = new pg.Client({ connectionString: url, application_name: 'test-app' });
    await client.connect();
    return new Spender(client);
  }

  async spend(userId: string, amount: number): Promise<boolean> {
    const { rows } = await this.client.query<{ c: string; u: string }>(
      `update public.users set current_credits = current_credits - $2, total_credits_used = total_credits_used + $2
       where user_id = $1 and current_credits >= $2 returning current_credits::text as c, total_credits_used::text as u`,
      [userId, amount],
    );
    const row = rows[0];
    if (!row) return false;
    this.left.set(userId, { current: Number(row.c), used: Number(row.u) });
    return true;
  }

  async pid(): Promise<number> {
    const { rows } = await this.client.query<{ pid: number }>('select pg_backend_pid() as pid');
    return rows[0]?.pid ?? -1;
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}

/** Waits (bounded) until a migrate-users session waits for a lock held by backend `pid`. */
async function untilToolWaitsFor(db: TestDatabase, pid: number, running: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const rows = await db.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity where application_name = 'migrate-users' and $1 = any(pg_blocking_pids(pid))`,
      [pid],
    );
    if ((rows[0]?.n ?? 0) > 0) return;
    if (!running()) throw new Error(`the run ended before it waited for ${what}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for the run to wait for ${what}`);
    await sleep(10);
  }
}

interface Balance {
  readonly user_id: string;
  readonly current: string;
  readonly used: string;
}

async function balances(db: TestDatabase): Promise<Map<string, Balance>> {
  const rows = await db.query<Balance>(`select user_id, current_credits::text as current, total_credits_used::text as used from users`);
  return new Map(rows.map((r) => [r.user_id, r]));
}

// ---------------------------------------------------------------------------------------------------------
// 1. Three table definitions

const TABLES = [
  { name: 'shipped sql/001_users.sql', ddl: null, usernameLimit: null },
  { name: 'app table, update trigger', ddl: appTable({ trigger: true }), usernameLimit: 100 },
  { name: 'app table, no trigger', ddl: appTable({ trigger: false }), usernameLimit: 100 },
] as const;

describe.each(TABLES)('users table: $name', ({ ddl, usernameLimit }) => {
  it('dry-run predicts every run; rejects what the column cannot hold; never reverts what the app spent, before or during a run', async () => {
    const f = await fixture(ddl);
    const users = seedUsers(3000);
    await putUsers(f.keys, users);
    const long = users.find((u) => u.i === LONG) as SeedUser;
    const limited = usernameLimit !== null;
    const valid = users.filter((u) => !(limited && u.i === LONG));
    const byId = new Map(users.map((u) => [u.userId, u]));

    // --- Fresh migration: the dry-run predicts the run exactly.
    const dry1 = await migrate(f, ['--dry-run']);
    const run1 = await migrate(f);
    expectSamePrediction(dry1, run1);
    expect(run1.code, run1.stderr).toBe(limited ? 1 : 0);
    expect(run1.report.counts).toMatchObject({ scanned: 3000, valid: valid.length, invalid: limited ? 1 : 0, inserted: valid.length, conflicts: 0 });
    expect(run1.report.reasons).toEqual(limited ? { value_too_long: 1 } : {});
    expect(run1.rejects).toEqual(
      limited
        ? [{ key: f.keys.userKey(long.keyEmail), user_id: long.userId, reason: 'value_too_long', detail: 'username is 300 characters > varchar(100)' }]
        : [],
    );
    expect(run1.report.credits.written.current).toBe(valid.reduce((s, u) => s + u.credits, 0));
    expectCreditsBalance(run1.report);
    // Every other user is written, every column as mapped (timestamps as UTC instants, to the microsecond).
    const rows = await f.db.query(`
        select user_id, email, username, password_hash as hash, current_credits::text as credits, total_credits_used::text as used,
          signup_bonus_granted as bonus, current_plan_id as plan,
          (extract(epoch from created_at) * 1000000)::bigint::text as created_at,
          (extract(epoch from last_login) * 1000000)::bigint::text as last_login,
          (extract(epoch from plan_renew_at) * 1000000)::bigint::text as plan_renew_at
        from users order by user_id`);
    expect(rows).toEqual(
      valid.map((u) => ({
        user_id: u.userId,
        email: u.email,
        username: u.username,
        hash: u.hash,
        credits: String(u.credits),
        used: String(u.used),
        bonus: true,
        plan: u.plan,
        created_at: u.createdAt,
        last_login: u.lastLogin,
        plan_renew_at: u.planRenewAt,
      })),
    );

    // --- Between runs: the old app changes records in Redis (A), the new app spends credits (S1).
    const spender = await Spender.open(f.db.url);
    try {
      const inA = (u: SeedUser) => u.i % 5 === 1;
      const inS1 = (u: SeedUser) => u.i % 20 === 1 || u.i % 20 === 2;
      for (const u of valid.filter(inA)) u.credits += 1000;
      await putUsers(f.keys, valid.filter(inA));
      for (const u of valid.filter(inS1)) expect(await spender.spend(u.userId, 1 + (u.i % 7))).toBe(true);
      const keptUsers = valid.filter((u) => inS1(u) && !inA(u));
      const bothUsers = valid.filter((u) => inS1(u) && inA(u));
      const caughtUp = valid.filter((u) => inA(u) && !inS1(u));

      const dry2 = await migrate(f, ['--dry-run']);
      const run2 = await migrate(f);
      expectSamePrediction(dry2, run2);
      expect(run2.code).toBe(1);
      expect(run2.report.counts).toMatchObject({
        inserted: 0,
        updated: caughtUp.length,
        kept_app_changes: keptUsers.length,
        conflicts: bothUsers.length,
        unchanged: valid.length - caughtUp.length - keptUsers.length - bothUsers.length,
      });
      expect(run2.report.reasons).toEqual({ changed_in_both: bothUsers.length, ...(limited ? { value_too_long: 1 } : {}) });
      expect(new Set(run2.rejects.filter((r) => r.reason === 'changed_in_both').map((r) => r.user_id))).toEqual(new Set(bothUsers.map((u) => u.userId)));
      // A kept app change counts the balance PostgreSQL holds, and app_difference what the app changed.
      const keptLeft = keptUsers.map((u) => spender.left.get(u.userId) as Left);
      expect(run2.report.credits.by_outcome.kept_app_change).toEqual({
        current: keptLeft.reduce((s, l) => s + l.current, 0),
        used: keptLeft.reduce((s, l) => s + l.used, 0),
      });
      expect(run2.report.credits.app_difference.current).toBe(keptLeft.reduce((s, l) => s + l.current, 0) - keptUsers.reduce((s, u) => s + u.credits, 0));
      expectCreditsBalance(run2.report);

      // --- A catch-up run while the app spends: Redis changed again (B); one app transaction holds a row
      // the run wants to update until the run waits for it; a loop of small spends runs all along.
      const inB = (u: SeedUser) => u.i % 5 === 3;
      for (const u of valid.filter(inB)) u.credits += 500;
      await putUsers(f.keys, valid.filter(inB));
      const held = valid.find((u) => inB(u) && !spender.left.has(u.userId)) as SeedUser;
      const holder = await Spender.open(f.db.url);
      let spendsDuring = 0;
      let run3: Run;
      try {
        await holder.client.query('begin');
        expect(await holder.spend(held.userId, 7)).toBe(true);
        const holderPid = await holder.pid();
        let running = true;
        const started = migrate(f, ['--batch-size', '25', '--write-concurrency', '2']).finally(() => {
          running = false;
        });
        const targets = valid.filter((u) => u.i !== LONG && u.userId !== held.userId);
        const targetsB = targets.filter(inB);
        const deadline = Date.now() + 60_000;
        const spending = (async () => {
          // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- cleared when the run ends (finally above), which TS's narrowing of a let does not see
          for (let k = 0; running && Date.now() < deadline; k++) {
            const pool = k % 2 === 0 ? targetsB : targets;
            const u = pool[Math.floor(Math.random() * pool.length)] as SeedUser;
            if (await spender.spend(u.userId, 1)) spendsDuring++;
            await sleep(2);
          }
        })();
        try {
          await untilToolWaitsFor(f.db, holderPid, () => running, `the app's uncommitted spend of ${held.userId}`);
          await holder.client.query('commit');
        } finally {
          if (holder.left.has(held.userId)) spender.left.set(held.userId, holder.left.get(held.userId) as Left);
          run3 = await started;
          await spending;
        }
      } finally {
        await holder.close();
      }
      expect(run3.code, run3.stderr).toBe(1);
      expect(run3.report.status).toBe('finished');
      expect(spendsDuring).toBeGreaterThan(0);
      expect(run3.rejects.find((r) => r.user_id === held.userId)?.reason).toBe('changed_during_run');
      expectCreditsBalance(run3.report);

      // --- The spender has stopped. The next catch-up run (predicted by its dry-run) writes nothing.
      const dry4 = await migrate(f, ['--dry-run']);
      const run4 = await migrate(f);
      expectSamePrediction(dry4, run4);
      const spent = new Set(spender.left.keys());
      const conflicted = new Set(run4.rejects.filter((r) => r.reason === 'changed_in_both').map((r) => r.user_id as string));
      expect(run4.report.counts).toMatchObject({ inserted: 0, updated: 0, kept_app_changes: spent.size - conflicted.size, conflicts: conflicted.size });
      expect(run4.report.reasons).toEqual({ changed_in_both: conflicted.size, ...(limited ? { value_too_long: 1 } : {}) });
      // changed_in_both only for users both sides changed; every user only the app changed is kept.
      for (const id of conflicted) {
        const u = byId.get(id) as SeedUser;
        expect(spent.has(id) && (inA(u) || inB(u)), `${id} is a conflict`).toBe(true);
      }
      for (const u of bothUsers) expect(conflicted.has(u.userId)).toBe(true);
      expect(conflicted.has(held.userId)).toBe(true);
      expectCreditsBalance(run4.report);

      // Every balance the app left is in the table; every other user holds its Redis record.
      const table = await balances(f.db);
      expect(table.size).toBe(valid.length);
      const wrong = valid.flatMap((u) => {
        const want = spender.left.get(u.userId) ?? { current: u.credits, used: u.used };
        const got = table.get(u.userId);
        return got?.current === String(want.current) && got.used === String(want.used) ? [] : [{ user: u.userId, want, got }];
      });
      expect(wrong).toEqual([]);
      expect(run4.report.credits.by_outcome.kept_app_change?.current).toBe(
        [...spent].filter((id) => !conflicted.has(id)).reduce((s, id) => s + (spender.left.get(id) as Left).current, 0),
      );

      // --- verify: the app's spends are its own work (changed_by_app, listed written -> now, passing); the users
      // both sides changed are conflicts, and (on a varchar(100) table) the over-long record is not migratable.
      const verified = await command<VerifyReport>(f, 'verify');
      expect(verified.code).toBe(1);
      expect(verified.report.ok).toBe(false);
      const kept = new Set([...spent].filter((id) => !conflicted.has(id)));
      expect(verified.report.counts).toMatchObject({
        match: valid.length - spent.size,
        changed_by_app: kept.size,
        conflict: conflicted.size,
        stale: 0,
        mismatch: 0,
        missing: 0,
        not_migratable: limited ? 1 : 0,
        only_in_postgres: 0,
        deleted_in_redis: 0,
        failing: conflicted.size + (limited ? 1 : 0),
      });
      const changes = verified.report.differences.filter((d) => d.kind === 'changed_by_app');
      expect(new Set(changes.map((d) => d.user_id))).toEqual(kept);
      expect(changes.length).toBe(2 * kept.size);
      for (const d of changes) {
        const u = byId.get(d.user_id as string) as SeedUser;
        const left = spender.left.get(u.userId) as Left;
        if (d.column === 'current_credits') expect(d).toMatchObject({ expected: String(u.credits), actual: String(left.current) });
        else expect(d).toMatchObject({ column: 'total_credits_used', expected: String(u.used), actual: String(left.used) });
      }
      expect(new Set(verified.report.differences.filter((d) => d.kind === 'conflict').map((d) => d.user_id))).toEqual(conflicted);
      expect(verified.report.differences.filter((d) => d.kind !== 'changed_by_app' && d.kind !== 'conflict')).toEqual(
        limited ? [expect.objectContaining({ kind: 'not_migratable', user_id: long.userId, reason: 'value_too_long' })] : [],
      );
      // reconcile tells the same story by class: the app owns what it changed.
      const reconciled = await command<ReconcileReport>(f, 'reconcile');
      expect(reconciled.code).toBe(1);
      expect(reconciled.report.classes).toMatchObject({
        in_sync: { users: valid.length - spent.size },
        changed_in_postgres: { users: spent.size - conflicted.size },
        changed_in_both: { users: conflicted.size },
        changed_in_redis: { users: 0 },
        invalid_in_redis: { users: limited ? 1 : 0 },
      });
    } finally {
      await spender.close();
    }
  }, 180_000);
});

// ---------------------------------------------------------------------------------------------------------
// 2. A database whose defaults are not UTC / ISO

describe('a database with timezone Asia/Kolkata and datestyle SQL, DMY', () => {
  it('stores UTC wall times, verifies and reconciles clean, re-runs in other zones without change, catches up and adopts', async () => {
    const f = await fixture(appTable({ trigger: true }));
    await f.db.query(`alter database ${f.db.name} set timezone = 'Asia/Kolkata'; alter database ${f.db.name} set datestyle = 'SQL, DMY'`);
    // The defaults are real for any new session (the tool's included, before it pins its own).
    const probe = new pg.Client({ connectionString: f.db.url });
    await probe.connect();
    try {
      const { rows } = await probe.query<{ tz: string; ds: string }>(`select current_setting('timezone') as tz, current_setting('datestyle') as ds`);
      expect(rows[0]).toMatchObject({ tz: 'Asia/Kolkata', ds: 'SQL, DMY' });
      // A genuinely identical row: every column the tool writes as the Redis record maps it (created_at
      // given, not left to its now() default; signup_bonus_granted true).
      await probe.query(`insert into users (user_id, email, current_credits, total_credits_used, signup_bonus_granted, created_at)
        values ('u_same', 'same@x.test', 7, 2, true, '2022-02-02 10:00:00')`);
    } finally {
      await probe.end();
    }
    await f.keys.putUser('a@x.test', {
      user_id: 'u_a',
      credits: 100,
      created_at: '2023-05-01T00:00:00Z',
      last_login: '2024-01-02T03:04:05.123456Z',
      plan_renew_at: '2025-07-01T05:00:00+05:30',
    });
    await f.keys.putUser('b@x.test', { user_id: 'u_b', credits: 50, created_at: 1700000000, last_login: 1700000000123 });
    await f.keys.putUser('c@x.test', { user_id: 'u_c', credits: 30 });
    await f.keys.putUser('same@x.test', { user_id: 'u_same', credits: 7, credits_used: 2, created_at: '2022-02-02T15:30:00+05:30' });

    const run1 = await migrate(f);
    expect(run1.code, run1.stderr).toBe(0);
    expect(run1.report.counts).toMatchObject({ inserted: 3, unchanged: 1, updated: 0, kept_app_changes: 0, conflicts: 0 });
    expect(await f.db.query(`select user_id from migrate_users.ledger where user_id = 'u_same'`), 'identical row adopted').toHaveLength(1);
    // Wall times as UTC (to_char of a timestamp without time zone does not depend on the session).
    const wall = (c: string) => `to_char(${c}, 'YYYY-MM-DD HH24:MI:SS.US') as ${c}`;
    expect(await f.db.query(`select user_id, ${wall('created_at')}, ${wall('last_login')}, ${wall('plan_renew_at')} from users order by user_id`)).toEqual([
      { user_id: 'u_a', created_at: '2023-05-01 00:00:00.000000', last_login: '2024-01-02 03:04:05.123456', plan_renew_at: '2025-06-30 23:30:00.000000' },
      { user_id: 'u_b', created_at: '2023-11-14 22:13:20.000000', last_login: '2023-11-14 22:13:20.123000', plan_renew_at: null },
      // No created_at in Redis: null, not the column's now() default.
      { user_id: 'u_c', created_at: null, last_login: null, plan_renew_at: null },
      { user_id: 'u_same', created_at: '2022-02-02 10:00:00.000000', last_login: null, plan_renew_at: null },
    ]);

    const verified = await command<VerifyReport>(f, 'verify');
    expect(verified.code, verified.stdout).toBe(0);
    expect(verified.report.counts).toMatchObject({ match: 4, mismatch: 0 });
    const reconciled = await command<ReconcileReport>(f, 'reconcile');
    expect(reconciled.code).toBe(0);
    expect(reconciled.report.classes.in_sync?.users).toBe(4);

    // Other session zones, DateStyles and process zones change nothing.
    const options = ['-c TimeZone=UTC', '-c TimeZone=Asia/Shanghai -c DateStyle=German'];
    for (const [n, opts] of options.entries()) {
      const again = await migrate(f, [], {
        DATABASE_URL: `${f.db.url}?options=${encodeURIComponent(opts)}`,
        TZ: n === 0 ? 'America/Los_Angeles' : 'Asia/Kolkata',
      });
      expect(again.code, opts).toBe(0);
      expect(again.report.counts, opts).toMatchObject({ inserted: 0, updated: 0, kept_app_changes: 0, conflicts: 0, unchanged: 4 });
    }

    // A Redis change is caught up: the row the tool wrote is recognised as its own.
    await f.keys.putUser('a@x.test', {
      user_id: 'u_a',
      credits: 150,
      created_at: '2023-05-01T00:00:00Z',
      last_login: '2024-01-02T03:04:05.123456Z',
      plan_renew_at: '2025-07-01T05:00:00+05:30',
    });
    const caught = await migrate(f);
    expect(caught.code).toBe(0);
    expect(caught.report.counts).toMatchObject({ updated: 1, conflicts: 0, kept_app_changes: 0 });
    expect(caught.report.reasons).toEqual({});
    expect(await f.db.query(`select current_credits, ${wall('last_login')} from users where user_id = 'u_a'`)).toEqual([
      { current_credits: 150, last_login: '2024-01-02 03:04:05.123456' },
    ]);

    // The adopted row is the tool's: an app change to it is kept (not row_not_written_by_tool).
    await f.db.query(`update users set current_credits = 5, total_credits_used = 4 where user_id = 'u_same'`);
    const kept = await migrate(f);
    expect(kept.code).toBe(0);
    expect(kept.report.counts).toMatchObject({ kept_app_changes: 1, conflicts: 0 });

    // repro 09: --take redis applies under this DateStyle.
    await f.db.query(`update users set current_credits = 40 where user_id = 'u_b'`);
    await f.keys.putUser('b@x.test', { user_id: 'u_b', credits: 60, created_at: 1700000000, last_login: 1700000000123 });
    const both = await migrate(f);
    expect(both.report.reasons).toEqual({ changed_in_both: 1 });
    const take = await reviewOf(f.dir, ['u_b'], (conflicts) => command(f, 'reconcile', ['--conflicts', conflicts]));
    const taken = await command<ReconcileReport>(f, 'reconcile', ['--apply', '--take', 'redis', '--users', take]);
    expect(taken.code, taken.stderr).toBe(0);
    expect(await f.db.query(`select current_credits from users where user_id = 'u_b'`)).toEqual([{ current_credits: 60 }]);
    expect(await f.db.query(`select side from migrate_users.resolutions where user_id = 'u_b'`)).toEqual([{ side: 'redis' }]);

    // repro 09: a concurrent signup of one of the new users' emails during a run: exit 1, not 3.
    for (let i = 1; i <= 5; i++) await f.keys.putUser(`n${i}@x.test`, { user_id: `n_${i}`, credits: i * 100 });
    const app = await Spender.open(f.db.url);
    let signupRun: Run;
    try {
      await app.client.query(`begin; insert into users (user_id, email, current_credits) values ('app_3', 'n3@x.test', 1)`);
      let running = true;
      const started = migrate(f).finally(() => {
        running = false;
      });
      try {
        await untilToolWaitsFor(f.db, await app.pid(), () => running, 'the uncommitted signup of n3@x.test');
        await app.client.query('commit');
      } finally {
        signupRun = await started;
      }
    } finally {
      await app.close();
    }
    expect(signupRun.code, signupRun.stderr).toBe(1);
    expect(signupRun.report.status).toBe('finished');
    expect(signupRun.report.counts).toMatchObject({ inserted: 4, conflicts: 1 });
    expect(signupRun.report.reasons).toEqual({ email_taken: 1 });
    expect(await f.db.query(`select user_id from users where email = 'n3@x.test'`)).toEqual([{ user_id: 'app_3' }]);
    expectCreditsBalance(signupRun.report);
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------------------
// 3. Emails the app stored as typed

describe('app rows whose email is not normalised', () => {
  it('are the same mailbox as the Redis user: never a second account; dry-run, verify and reconcile agree', async () => {
    const f = await fixture(appTable({ trigger: true }));
    // repro 07: the app stored the email as typed. Bob's row is not a first-login row (no signup bonus):
    // email_taken. Carol's is one (signup bonus granted, never written by the tool): early_login, to merge.
    await f.db.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values
      ('app_bob', 'Bob@X.test', 50, false), ('app_carol', ' Carol@X.test ', 20, true)`);
    await f.keys.putUser('bob@x.test', { user_id: 'u_bob', credits: 500 });
    await f.keys.putUser('carol@x.test', { user_id: 'u_carol', credits: 300 });
    await f.keys.putUser('dave@x.test', { user_id: 'u_dave', credits: 10 });

    const dry = await migrate(f, ['--dry-run']);
    const run = await migrate(f);
    expectSamePrediction(dry, run);
    expect(run.code).toBe(1);
    expect(run.report.counts).toMatchObject({ inserted: 1, conflicts: 2 });
    expect(run.report.reasons).toEqual({ email_taken: 1, early_login: 1 });
    expect(run.report.postgres_unnormalised_emails).toBe(2);
    expect(run.rejects.map((r) => [r.user_id, r.reason, r.detail]).sort()).toEqual([
      ['u_bob', 'email_taken', expect.stringContaining('app_bob')],
      ['u_carol', 'early_login', expect.stringContaining('app_carol')],
    ]);
    expectCreditsBalance(run.report);
    expect(await f.db.query(`select lower(btrim(email)) as mailbox, count(*)::int as n from users group by 1 order by 1`)).toEqual([
      { mailbox: 'bob@x.test', n: 1 },
      { mailbox: 'carol@x.test', n: 1 },
      { mailbox: 'dave@x.test', n: 1 },
    ]);
    // The app's rows are as the app wrote them.
    expect(await f.db.query(`select user_id, email, current_credits from users where user_id like 'app_%' order by 1`)).toEqual([
      { user_id: 'app_bob', email: 'Bob@X.test', current_credits: 50 },
      { user_id: 'app_carol', email: ' Carol@X.test ', current_credits: 20 },
    ]);

    const verified = await command<VerifyReport>(f, 'verify');
    expect(verified.code).toBe(1);
    expect(verified.report.counts).toMatchObject({ match: 1, mismatch: 0, missing: 0, not_migratable: 2 });
    expect(verified.report.reasons).toEqual({ email_taken: 1, early_login: 1 });
    const reconciled = await command<ReconcileReport>(f, 'reconcile');
    expect(reconciled.code).toBe(1);
    expect(reconciled.report.classes).toMatchObject({
      in_sync: { users: 1 },
      other_conflict: { users: 1 },
      early_login: { users: 1 },
      only_in_redis: { users: 0 },
    });
    expect(reconciled.report.postgres_unnormalised_emails).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------------------
// 4. schema apply never alters the app's table

/**
 * Every catalog row describing public.users (columns, defaults, constraints, indexes, triggers, rules,
 * policies), every function and relation in schema public, each with its row version (xmin): a rewrite that
 * changes no value (CREATE OR REPLACE with the same body) shows too. Statistics vacuum/analyze keep are left out.
 */
async function catalogFingerprint(db: TestDatabase): Promise<unknown[]> {
  return db.query(`
    with t as (select 'public.users'::regclass::oid as oid)
    select 'class' as kind, c.xmin::text as version,
      (to_jsonb(c) - 'reltuples' - 'relpages' - 'relallvisible' - 'relfrozenxid' - 'relminmxid')::text as row
      from pg_class c, t where c.oid = t.oid
    union all select 'attribute', a.xmin::text, to_jsonb(a)::text from pg_attribute a, t where a.attrelid = t.oid
    union all select 'attrdef', d.xmin::text, to_jsonb(d)::text || pg_get_expr(d.adbin, d.adrelid) from pg_attrdef d, t where d.adrelid = t.oid
    union all select 'constraint', k.xmin::text, to_jsonb(k)::text || pg_get_constraintdef(k.oid) from pg_constraint k, t where k.conrelid = t.oid
    union all select 'index', i.xmin::text, to_jsonb(i)::text || pg_get_indexdef(i.indexrelid) from pg_index i, t where i.indrelid = t.oid
    union all select 'trigger', g.xmin::text, to_jsonb(g)::text || pg_get_triggerdef(g.oid) from pg_trigger g, t where g.tgrelid = t.oid
    union all select 'rule', r.xmin::text, to_jsonb(r)::text from pg_rewrite r, t where r.ev_class = t.oid
    union all select 'policy', p.xmin::text, to_jsonb(p)::text from pg_policy p, t where p.polrelid = t.oid
    union all select 'function', p.xmin::text, to_jsonb(p)::text from pg_proc p where p.pronamespace = 'public'::regnamespace
    union all select 'relation', c.xmin::text, c.relname::text || ':' || c.relkind::text from pg_class c where c.relnamespace = 'public'::regnamespace
    order by 1, 3`);
}

describe('schema apply on an existing app table', () => {
  it('leaves every catalog row of it as it was, run twice and after a migration; only adds migrate_users', async () => {
    const f = await fixture(
      `${appTable({ trigger: true })}
       alter table users add constraint users_plan_known check (current_plan_id in ('free', 'pro', 'team'));
       create index users_lower_email on users (lower(email));
       create function public.app_helper(x int) returns int language sql as 'select x + 1';`,
      { apply: false },
    );
    const before = await catalogFingerprint(f.db);
    expect(before.length).toBeGreaterThan(20);
    for (let n = 1; n <= 2; n++) {
      const applied = await runCli(['schema', 'apply'], f.env);
      expect(applied.code, applied.stderr).toBe(0);
      expect(applied.stdout).toContain('left exactly as it is');
      expect(await catalogFingerprint(f.db), `after schema apply #${n}`).toEqual(before);
    }
    expect(await f.db.query(`select to_regclass('migrate_users.ledger')::text as ledger`)).toEqual([{ ledger: 'migrate_users.ledger' }]);
    await f.keys.putUser('a@x.test', { user_id: 'u_a', credits: 10, plan: 'pro' });
    expect((await migrate(f)).code).toBe(0);
    expect(await catalogFingerprint(f.db), 'after a migration').toEqual(before);

    // The fingerprint sees a rewrite that changes no visible value: the comparisons above can fail.
    await f.db.query(`create or replace function public.app_touch_updated_at() returns trigger language plpgsql as $$
      begin new.updated_at := now(); return new; end $$`);
    expect(await catalogFingerprint(f.db)).not.toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------------------------
// 5. schema check, and every command stopping on a table it cannot write

/** Redis commands that read keys or values (the tool reads with SCAN, EVAL_RO/EVAL, TYPE, GETRANGE, GET...). */
const READS = /^(scan|get|getrange|mget|strlen|type|exists|eval|eval_ro|evalsha|evalsha_ro|fcall|fcall_ro|dump|hgetall)$/;

describe('schema check', () => {
  it('describes the app table (exit 0); a missing column or an unfilled NOT NULL column stops every command with exit 2', async () => {
    const f = await fixture(appTable({ trigger: true }));
    await f.keys.putUser('a@x.test', { user_id: 'u_a', credits: 10 });
    const ok = await runCli(['schema', 'check'], f.env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('public.users can hold what migrate-users writes.');
    expect(ok.stdout).toMatch(/username\s+character varying\(100\)/);
    expect(ok.stdout).toMatch(/current_credits\s+integer default 100/);
    expect(ok.stdout).toMatch(/updated_at\s+timestamp without time zone not null default now\(\)/);
    expect(ok.stdout).toContain('BEFORE UPDATE ON public.users');

    // A Redis of its own, holding the user: its command statistics show whether a command read anything.
    const redis = await startRedis();
    const stats = new Redis(redis.url);
    try {
      await stats.set(`${f.keys.prefix}user:email:a@x.test`, JSON.stringify({ user_id: 'u_a', credits: 10 }));
      const expectStopped = async (column: string) => {
        const check = await runCli(['schema', 'check'], f.env);
        expect(check.code, check.stdout).toBe(2);
        expect(check.stdout).toContain('CANNOT hold');
        expect(check.stdout).toContain(`column ${column}`);
        for (const args of [[], ['--dry-run'], ['verify'], ['reconcile'], ['reconcile', '--apply']]) {
          await stats.config('RESETSTAT');
          const result = await runCli([...args, '--match', f.keys.match, '--no-progress'], { ...f.env, REDIS_URL: redis.url });
          const what = args.join(' ') || 'migrate';
          expect(result.code, `${what}: ${result.stderr}`).toBe(2);
          expect(result.stderr).toContain(`column ${column}`);
          const commands = [...(await stats.info('commandstats')).matchAll(/^cmdstat_([a-z_|]+):/gm)].map((m) => m[1]);
          expect(
            commands.filter((c) => READS.test(c ?? '')),
            `${what} read Redis`,
          ).toEqual([]);
        }
        expect(await f.db.query(`select count(*)::int as n from users`)).toEqual([{ n: 0 }]);
        expect(await f.db.query(`select count(*)::int as n from migrate_users.runs`)).toEqual([{ n: 0 }]);
      };

      await f.db.query(`alter table users drop column avatar`);
      await expectStopped('avatar');

      await f.db.query(`alter table users add column avatar text, add column tenant_id text not null`);
      await expectStopped('tenant_id');
    } finally {
      stats.disconnect();
      await redis.stop();
    }

    await f.db.query(`alter table users alter column tenant_id set default 'main', alter column current_credits type numeric(10,2)`);
    const fractional = await runCli(['schema', 'check'], f.env);
    expect(fractional.code).toBe(2);
    expect(fractional.stdout).toContain('column current_credits is numeric(10,2), which cannot hold whole credits');
    const stopped = await runCli(['--match', f.keys.match, '--no-progress'], f.env);
    expect(stopped.code).toBe(2);
    expect(stopped.stderr).toContain('column current_credits');

    await f.db.query(`alter table users alter column current_credits type integer`);
    expect((await runCli(['schema', 'check'], f.env)).code).toBe(0);
    expect((await migrate(f)).code).toBe(0);
  }, 120_000);

  it('credits beyond a smallint column are value_out_of_range, in the dry-run and the run alike', async () => {
    const f = await fixture(appTable({ trigger: false }).replace('current_credits      integer default 100', 'current_credits      smallint default 100'));
    await f.keys.putUser('a@x.test', { user_id: 'u_a', credits: 32767 });
    await f.keys.putUser('b@x.test', { user_id: 'u_b', credits: 32768 });
    const dry = await migrate(f, ['--dry-run']);
    const run = await migrate(f);
    expectSamePrediction(dry, run);
    expect(run.code).toBe(1);
    expect(run.report.counts).toMatchObject({ inserted: 1, invalid: 1 });
    expect(run.rejects).toEqual([expect.objectContaining({ user_id: 'u_b', reason: 'value_out_of_range' })]);
    const verified = await command<VerifyReport>(f, 'verify');
    expect(verified.report.reasons).toEqual({ value_out_of_range: 1 });
  });
});

describe('what the catalog says, used before anything is written', () => {
  it('a NOT NULL column the record leaves empty is value_missing, in the dry-run and the run alike', async () => {
    const f = await fixture(appTable({ trigger: false }).replace('username             varchar(100),', 'username             varchar(100) not null,'));
    await f.keys.putUser('a@x.test', { user_id: 'u_a', credits: 1, username: 'ann' });
    await f.keys.putUser('b@x.test', { user_id: 'u_b', credits: 2 });
    const dry = await migrate(f, ['--dry-run']);
    const run = await migrate(f);
    expectSamePrediction(dry, run);
    expect(run.report.counts).toMatchObject({ inserted: 1, invalid: 1, conflicts: 0 });
    expect(run.rejects).toEqual([
      expect.objectContaining({ user_id: 'u_b', reason: 'value_missing', detail: 'username is missing, and the column is NOT NULL' }),
    ]);
  });

  it('a value an app trigger rewrites on write is settled: the next run writes nothing', async () => {
    const f = await fixture(`${appTable({ trigger: false })};
      create function public.app_default_created() returns trigger language plpgsql as $$
        begin new.created_at := coalesce(new.created_at, now()); return new; end $$;
      create trigger app_default_created before insert or update on public.users
        for each row execute function public.app_default_created();`);
    await f.keys.putUser('a@x.test', { user_id: 'u_a', credits: 5 });
    expect((await migrate(f)).report.counts).toMatchObject({ inserted: 1 });
    const again = await migrate(f);
    expect(again.code).toBe(0);
    expect(again.report.counts).toMatchObject({ inserted: 0, updated: 0, unchanged: 1 });
    // A Redis change is still caught up.
    await f.keys.putUser('a@x.test', { user_id: 'u_a', credits: 6 });
    expect((await migrate(f)).report.counts).toMatchObject({ updated: 1 });
  });

  it('a table the tool cannot write is reported as such (exit 2) even when Redis cannot be reached', async () => {
    const f = await fixture(appTable({ trigger: false }));
    await f.db.query('alter table public.users drop column avatar');
    const result = await runCli(['--match', f.keys.match, '--no-progress', '--retries', '0'], { ...f.env, REDIS_URL: 'redis://127.0.0.1:1' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('column avatar is missing');
  });
});

// ---------------------------------------------------------------------------------------------------------
// 6. What PostgreSQL still refuses

describe('rows the app table refuses (check constraint, trigger raising)', () => {
  it('holds back exactly those as refused_by_database with the server message, writes the rest, exit 1, credits add up', async () => {
    const f = await fixture(`${appTable({ trigger: true })}
      alter table users add constraint users_plan_not_banned check (current_plan_id <> 'banned');
      create function public.app_block_signup() returns trigger language plpgsql as $$
        begin
          if new.email = 'blocked@x.test' then raise exception 'signups from % are blocked', new.email; end if;
          return new;
        end $$;
      create trigger app_block_signup before insert on public.users for each row execute function public.app_block_signup();`);
    const users = seedUsers(1000).map((u) => {
      if (u.i === 137) return { ...u, plan: 'banned', record: { ...u.record, plan: 'banned', password_hash: 'SECRET-HASH-137' } };
      if (u.i === 731) return { ...u, email: 'blocked@x.test', keyEmail: 'blocked@x.test', record: { ...u.record, email: 'blocked@x.test' } };
      return u;
    });
    const refusedIds = ['usr_00137', 'usr_00731'];
    await putUsers(f.keys, users);

    // A dry-run cannot foresee what the server refuses: it writes nothing.
    const dry = await migrate(f, ['--dry-run']);
    expect(dry.report.counts).toMatchObject({ inserted: 1000, conflicts: 0 });

    const run = await migrate(f);
    expect(run.code, run.stderr).toBe(1);
    expect(run.report.status).toBe('finished');
    expect(run.report.counts).toMatchObject({ valid: 1000, inserted: 998, conflicts: 2 });
    expect(run.report.reasons).toEqual({ refused_by_database: 2 });
    const refused = Object.fromEntries(run.rejects.map((r) => [r.user_id ?? '', r] as const));
    expect(Object.keys(refused).sort()).toEqual(refusedIds);
    expect(refused.usr_00137?.detail).toContain('new row for relation "users" violates check constraint "users_plan_not_banned"');
    expect(refused.usr_00731?.detail).toContain('signups from blocked@x.test are blocked');
    // The server's message, never its DETAIL (which holds the whole failing row, password hash included).
    const rejectsText = run.lines.join('\n');
    expect(rejectsText).not.toContain('Failing row contains');
    expect(rejectsText).not.toContain('SECRET-HASH-137');
    expect(await f.db.query(`select count(*)::int as n from users where user_id <> all($1)`, [refusedIds])).toEqual([{ n: 998 }]);
    expect(await f.db.query(`select count(*)::int as n from users where user_id = any($1)`, [refusedIds])).toEqual([{ n: 0 }]);
    expect(run.report.credits.written.current).toBe(users.filter((u) => !refusedIds.includes(u.userId)).reduce((s, u) => s + u.credits, 0));
    expect(run.report.credits.by_outcome.conflict?.current).toBe(users.filter((u) => refusedIds.includes(u.userId)).reduce((s, u) => s + u.credits, 0));
    expectCreditsBalance(run.report);

    // A catch-up batch holding a new user, a Redis change and an update the check refuses: only that one is held back.
    const changed = users.find((u) => u.i === 5) as SeedUser;
    changed.credits += 1;
    const banned = users.find((u) => u.i === 6) as SeedUser;
    await putUsers(f.keys, [changed, { ...banned, record: { ...banned.record, plan: 'banned' } }]);
    await f.keys.putUser('late@x.test', { user_id: 'usr_late', credits: 77 });
    const again = await migrate(f, ['--batch-size', '5000']);
    expect(again.code, again.stderr).toBe(1);
    expect(again.report.counts).toMatchObject({ inserted: 1, updated: 1, unchanged: 996, conflicts: 3 });
    expect(again.report.reasons).toEqual({ refused_by_database: 3 });
    expect(again.rejects.map((r) => r.user_id).sort()).toEqual([...refusedIds, banned.userId].sort());
    expect(
      await f.db.query(`select user_id, current_credits, current_plan_id from users where user_id = any($1) order by 1`, [
        [changed.userId, banned.userId, 'usr_late'],
      ]),
    ).toEqual([
      { user_id: changed.userId, current_credits: changed.credits, current_plan_id: changed.plan },
      { user_id: banned.userId, current_credits: banned.credits, current_plan_id: banned.plan },
      { user_id: 'usr_late', current_credits: 77, current_plan_id: null },
    ]);
    expectCreditsBalance(again.report);
  }, 120_000);
});
