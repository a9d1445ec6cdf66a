import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { appTeamUsersDdl } from '../../src/bench/app-team-table.js';
import { runCli, startCli } from '../helpers/cli.js';
import { createTestDatabase, createTestKeys, REDIS_URL, type TestDatabase, type TestKeys } from '../helpers/servers.js';
import { reviewOf } from '../helpers/review.js';

/*
 * verify on a live system (BRIEF.md "After go-live"): the new app spends, buys, renames, deletes accounts and
 * signs people up from the first day. verify, migrate and reconcile take every user's outcome from the one
 * decision: the app's work since the tool's write is shown and added up, never a failed migration; a catch-up
 * due, a conflict or a row the ledger does not explain fail. Each test has its own database and key prefix, on
 * the table schema apply ships and on the app team's table without a trigger.
 */

interface Side {
  users: number;
  current_credits: number;
  total_credits_used: number;
}
interface VerifyReport {
  ok: boolean;
  counts: Record<string, number | null>;
  differences: { kind: string; user_id: string | null; column: string | null; expected: unknown; actual: unknown }[];
  invariants: Record<'expected' | 'changed_by_app' | 'deleted_by_app' | 'expected_now' | 'postgres_matching', Side> & { balanced: boolean };
}

interface World {
  readonly db: TestDatabase;
  readonly keys: TestKeys;
  readonly dir: string;
  readonly env: Record<string, string>;
}
const open: World[] = [];

afterEach(async () => {
  for (const w of open.splice(0)) {
    try {
      await w.keys.cleanup();
    } finally {
      await w.db.drop();
      rmSync(w.dir, { recursive: true, force: true });
    }
  }
});

const TABLES = [
  ['the shipped table', null],
  ["the app team's table without a trigger", appTeamUsersDdl({ trigger: false })],
] as const;

/** Ten users u0..u9 with 100 + 10·i credits, migrated. */
async function migratedWorld(ddl: string | null): Promise<World> {
  const db = await createTestDatabase({ schema: false });
  const keys = await createTestKeys();
  const w: World = { db, keys, dir: mkdtempSync(join(tmpdir(), 'mu-live-')), env: { DATABASE_URL: db.url, REDIS_URL } };
  open.push(w);
  if (ddl) await db.query(ddl);
  const applied = await runCli(['schema', 'apply'], w.env);
  expect(applied.code, applied.stderr).toBe(0);
  for (let i = 0; i < 10; i++) await putUser(w, i);
  const migrated = await runCli(['--match', keys.match, '--no-progress'], w.env);
  expect(migrated.code, migrated.stdout + migrated.stderr).toBe(0);
  return w;
}

async function putUser(w: World, i: number, over: Record<string, unknown> = {}): Promise<void> {
  await w.keys.putUser(`u${i}@example.com`, { user_id: `u${i}`, credits: 100 + 10 * i, credits_used: 0, username: `user ${i}`, ...over });
}

async function verify(w: World, ...extra: string[]) {
  const path = join(w.dir, `verify-${Math.random()}.json`);
  const run = await runCli(['verify', '--match', w.keys.match, '--no-progress', '--report', path, ...extra], w.env);
  const report = JSON.parse(await readFile(path, 'utf8')) as VerifyReport;
  return { ...run, report };
}

async function command(w: World, ...args: string[]) {
  const path = join(w.dir, `report-${Math.random()}.json`);
  const run = await runCli([...args, '--match', w.keys.match, '--no-progress', '--report', path], w.env);
  const report = JSON.parse(await readFile(path, 'utf8')) as { counts: Record<string, number>; remaining?: number };
  return { ...run, report };
}

/** The new app serving customers, as the migration guide's test list says it does. */
const app = {
  spend: (w: World, userId: string, credits: number) =>
    w.db.query('update users set current_credits = current_credits - $2, total_credits_used = total_credits_used + $2 where user_id = $1', [userId, credits]),
  buy: (w: World, userId: string, credits: number) =>
    w.db.query('update users set current_credits = current_credits + $2 where user_id = $1', [userId, credits]),
  rename: (w: World, userId: string, name: string) => w.db.query('update users set username = $2 where user_id = $1', [userId, name]),
  deleteAccount: (w: World, userId: string) => w.db.query('delete from users where user_id = $1', [userId]),
  signup: (w: World, userId: string, email: string) =>
    w.db.query('insert into users (user_id, email, current_credits, total_credits_used, signup_bonus_granted) values ($1, $2, 100, 0, true)', [userId, email]),
};

describe.each(TABLES)('verify on a live system, on %s', (_table, ddl) => {
  it("app activity only: exit 0, the app's work counted and added up, invariants balanced; --strict fails", async () => {
    const w = await migratedWorld(ddl);
    await app.spend(w, 'u2', 5); // a task: 120 -> 115, used 0 -> 5
    await app.buy(w, 'u3', 50); // 130 -> 180
    await app.rename(w, 'u4', 'renamed');
    await app.deleteAccount(w, 'u5'); // held 150
    await app.signup(w, 'new_1', 'new1@example.com');
    const run = await verify(w);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.report.counts).toMatchObject({
      match: 6,
      changed_by_app: 3,
      deleted_by_app: 1,
      only_in_postgres: 1,
      stale: 0,
      conflict: 0,
      mismatch: 0,
      missing: 0,
    });
    const inv = run.report.invariants;
    expect(inv.expected).toEqual({ users: 10, current_credits: 1450, total_credits_used: 0 });
    expect(inv.changed_by_app).toEqual({ users: 3, current_credits: 45, total_credits_used: 5 });
    expect(inv.deleted_by_app).toEqual({ users: 1, current_credits: 150, total_credits_used: 0 });
    expect(inv.expected_now).toEqual({ users: 9, current_credits: 1345, total_credits_used: 5 });
    expect(inv.postgres_matching).toEqual(inv.expected_now);
    expect(inv.balanced).toBe(true);
    // Listed base -> now per column.
    expect(run.report.differences).toContainEqual(
      expect.objectContaining({ kind: 'changed_by_app', user_id: 'u2', column: 'current_credits', expected: '120', actual: '115' }),
    );
    expect(run.stdout).toContain(
      '3 users changed by the new app since their migration (+45 credits, +5 credits used), 1 account deleted in the new app (150 credits when migrated): expected on a live system.',
    );

    const strict = await verify(w, '--strict');
    expect(strict.code).toBe(1);
    expect(strict.report.counts.failing).toBe(3 + 1 + 1);

    // CI files: the app's work is a JUnit test case of its own that passes, naming count and credits (and fails
    // under --strict); the markdown says it is expected on a live system.
    const ci = async (...extra: string[]) => {
      const junit = join(w.dir, `junit-${Math.random()}.xml`);
      const markdown = join(w.dir, `summary-${Math.random()}.md`);
      const run = await runCli(['verify', '--match', w.keys.match, '--no-progress', '--junit', junit, '--markdown', markdown, ...extra], w.env);
      return { code: run.code, junit: await readFile(junit, 'utf8'), markdown: await readFile(markdown, 'utf8') };
    };
    const lenient = await ci();
    expect(lenient.code).toBe(0);
    expect(lenient.junit).toMatch(/<testsuites name="migrate-users verify" tests="\d+" failures="0"/);
    expect(lenient.junit).toMatch(
      /name="changes by the new app since the migration are the app's own" time="0"><system-out>3 users changed by the new app since their migration \(\+45 credits, \+5 credits used\)/,
    );
    expect(lenient.junit).toContain('current_credits: written 1,450 + changed by the app 45 - deleted by the app 150 = 1,345, PostgreSQL holds 1,345');
    expect(lenient.markdown).toContain('## ✅ migrate-users verify');
    expect(lenient.markdown).toContain(
      '3 users changed by the new app since their migration (+45 credits, +5 credits used), 1 account deleted in the new app (150 credits when migrated): expected on a live system.',
    );
    const strictCi = await ci('--strict');
    expect(strictCi.code).toBe(1);
    expect(strictCi.junit).toMatch(
      /name="changes by the new app since the migration are the app's own \(--strict: none allowed\)" time="0"><failure message="3 users changed/,
    );

    // migrate and reconcile say the same: nothing re-inserted, nothing to do.
    const rerun = await command(w);
    expect(rerun.code, rerun.stdout).toBe(0);
    expect(rerun.report.counts).toMatchObject({ inserted: 0, updated: 0, kept_app_changes: 3, deleted_by_app: 1, conflicts: 0 });
    expect(await w.db.query("select 1 from users where user_id = 'u5'")).toEqual([]);
    const rec = await command(w, 'reconcile');
    expect(rec.code, rec.stdout).toBe(0);
    expect(rec.report.remaining).toBe(0);
  });

  it('the old app edits Redis for untouched users: stale, exit 1, "run migrate again"; after a catch-up migrate, exit 0', async () => {
    const w = await migratedWorld(ddl);
    await putUser(w, 1, { credits: 999 });
    await putUser(w, 2, { username: 'renamed in the old app' });
    await app.spend(w, 'u3', 1);
    const run = await verify(w);
    expect(run.code).toBe(1);
    expect(run.report.counts).toMatchObject({ stale: 2, changed_by_app: 1, mismatch: 0, conflict: 0, failing: 2 });
    expect(run.report.invariants.balanced).toBe(false);
    expect(run.stdout).toContain('run migrate again');
    const catchUp = await command(w);
    expect(catchUp.code, catchUp.stdout).toBe(0);
    expect(catchUp.report.counts).toMatchObject({ updated: 2 });
    const after = await verify(w);
    expect(after.code, after.stdout).toBe(0);
    expect(after.report.counts).toMatchObject({ stale: 0, changed_by_app: 1 });
    expect(after.report.invariants.balanced).toBe(true);
  });

  it('both sides changed: conflict, exit 1, "reconcile"; after reconcile --apply --take, exit 0', async () => {
    const w = await migratedWorld(ddl);
    await putUser(w, 1, { credits: 500 });
    await app.spend(w, 'u1', 10);
    await putUser(w, 2, { credits: 700 });
    await app.spend(w, 'u2', 20);
    const run = await verify(w);
    expect(run.code).toBe(1);
    expect(run.report.counts).toMatchObject({ conflict: 2, stale: 0, mismatch: 0, failing: 2 });
    expect(run.stdout).toContain('reconcile');
    const review = (ids: string[]) => reviewOf(w.dir, ids, (conflicts) => command(w, 'reconcile', '--conflicts', conflicts));
    expect((await command(w, 'reconcile', '--apply', '--take', 'redis', '--users', await review(['u1']))).code).toBe(1);
    const settled = await command(w, 'reconcile', '--apply', '--take', 'postgres', '--users', await review(['u2']));
    expect(settled.code, settled.stdout).toBe(0);
    const after = await verify(w);
    expect(after.code, after.stdout).toBe(0);
    // u1 holds Redis's 500 again (a match), u2 the app's balance (the operator's choice: the app's row).
    expect(after.report.counts).toMatchObject({ conflict: 0, changed_by_app: 1, match: 9 });
    expect(after.report.invariants.balanced).toBe(true);
  });

  it('a row corrupted behind the ledger, the ledger made to agree with it (a forged tool write): mismatch, exit 1', async () => {
    const w = await migratedWorld(ddl);
    await w.db.query("update users set current_credits = 5000 where user_id = 'u6'");
    await w.db.query(
      `update migrate_users.ledger l set row_xmin = u.xmin, row_credits = u.current_credits, row_used = u.total_credits_used
       from users u where u.user_id = l.user_id and l.user_id = 'u6'`,
    );
    const run = await verify(w);
    expect(run.code).toBe(1);
    expect(run.report.counts).toMatchObject({ mismatch: 1, changed_by_app: 0, failing: 1 });
    expect(run.report.differences).toEqual([
      expect.objectContaining({ kind: 'mismatch', user_id: 'u6', column: 'current_credits', expected: '160', actual: '5000' }),
    ]);
    expect(run.report.invariants.balanced).toBe(false);
  });

  it('the app changes rows while verify runs: every row judged by the version verify saw, exit 0, balanced', async () => {
    const w = await migratedWorld(ddl);
    for (let i = 10; i < 400; i++) await putUser(w, i);
    expect((await runCli(['--match', w.keys.match, '--no-progress'], w.env)).code).toBe(0);
    const state = { stop: false };
    let spent = 0;
    const spender = (async () => {
      while (!state.stop) {
        await app.spend(w, `u${spent % 400}`, 1);
        spent++;
      }
    })();
    try {
      const path = join(w.dir, 'during.json');
      // Small batches: many statements, each of which would see a newer state without one snapshot.
      const cli = startCli(['verify', '--match', w.keys.match, '--no-progress', '--batch-size', '10', '--report', path], w.env);
      const code = await cli.exit;
      state.stop = true;
      await spender;
      const report = JSON.parse(await readFile(path, 'utf8')) as VerifyReport;
      expect(code, cli.output()).toBe(0);
      expect(spent).toBeGreaterThan(0);
      expect(report.invariants.balanced).toBe(true);
      expect(report.counts.mismatch).toBe(0);
    } finally {
      state.stop = true;
      await spender;
    }
  });
});

describe('the runbook after the cut-over ends green while the app keeps serving customers', () => {
  it('reconcile --apply until exit 0, then verify exit 0, with the app spending and signing users up throughout', async () => {
    const w = await migratedWorld(null);
    for (let i = 10; i < 60; i++) await putUser(w, i);
    expect((await runCli(['--match', w.keys.match, '--no-progress'], w.env)).code).toBe(0);
    // The old app, still live for a while: a purchase and a new signup in Redis.
    await putUser(w, 1, { credits: 999 });
    await w.keys.putUser('late@example.com', { user_id: 'late', credits: 5 });
    const state = { stop: false };
    let served = 0;
    const customers = (async () => {
      while (!state.stop) {
        // Users the old app did not touch: what the new app does there is its own.
        const i = 2 + (served % 50);
        await app.spend(w, `u${i}`, 1);
        if (served % 10 === 0) await app.signup(w, `app_${served}`, `signup${served}@example.com`);
        served++;
      }
    })();
    try {
      let code: number | null = null;
      for (let round = 0; round < 3 && code !== 0; round++) code = (await command(w, 'reconcile', '--apply')).code;
      expect(code).toBe(0);
      const run = await verify(w);
      expect(run.code, run.stdout).toBe(0);
      expect(run.report.counts).toMatchObject({ stale: 0, conflict: 0, mismatch: 0, missing: 0 });
      expect(run.report.counts.changed_by_app).toBeGreaterThan(0);
      expect(run.report.invariants.balanced).toBe(true);
    } finally {
      state.stop = true;
      await customers;
    }
    expect(served).toBeGreaterThan(0);
    expect(await w.db.query("select current_credits::int as c from users where user_id in ('u1', 'late') order by user_id")).toEqual([{ c: 5 }, { c: 999 }]);
  });
});

describe('verify on a live system: merges', () => {
  it('a merged user who spends after the merge is changed_by_app, listed against what the merge wrote; exit 0', async () => {
    const w = await migratedWorld(null);
    // An early login: the new app made a fresh row for u9's mailbox before the migration reached them.
    await w.keys.putUser('early@example.com', { user_id: 'old_early', credits: 500 });
    await app.signup(w, 'new_early', 'early@example.com');
    const merged = await command(w, 'reconcile', '--apply', '--merge');
    expect(merged.code, merged.stdout).toBe(0);
    await app.spend(w, 'new_early', 40); // 500 + (100 - 100) = 500 -> 460
    const run = await verify(w);
    expect(run.code, run.stdout).toBe(0);
    expect(run.report.counts).toMatchObject({ changed_by_app: 1, mismatch: 0, match: 10 });
    expect(run.report.differences).toContainEqual(
      expect.objectContaining({ kind: 'changed_by_app', user_id: 'new_early', column: 'current_credits', expected: '500', actual: '460' }),
    );
    expect(run.report.invariants.balanced).toBe(true);
    const rec = await command(w, 'reconcile');
    expect(rec.code, rec.stdout).toBe(0);
  });

  it('the app deletes a merged row: deleted_by_app everywhere, never inserted again, exit 0', async () => {
    const w = await migratedWorld(null);
    await w.keys.putUser('early@example.com', { user_id: 'old_early', credits: 500 });
    await app.signup(w, 'new_early', 'early@example.com');
    expect((await command(w, 'reconcile', '--apply', '--merge')).code).toBe(0);
    await app.deleteAccount(w, 'new_early');
    const run = await verify(w);
    expect(run.code, run.stdout).toBe(0);
    expect(run.report.counts).toMatchObject({ deleted_by_app: 1, missing: 0 });
    expect(run.report.invariants.balanced).toBe(true);
    const rerun = await command(w);
    expect(rerun.code, rerun.stdout).toBe(0);
    expect(rerun.report.counts).toMatchObject({ deleted_by_app: 1, inserted: 0, conflicts: 0 });
    expect(await w.db.query("select user_id from users where user_id in ('old_early', 'new_early')")).toEqual([]);
    expect((await command(w, 'reconcile')).code).toBe(0);
  });
});
