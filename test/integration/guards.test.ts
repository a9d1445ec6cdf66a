import type pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MigrateReport } from '../../src/results/migrate-report.js';
import { createRaceWorld, type Finished, type RaceWorld } from '../helpers/races.js';
import { expectReportAddsUp } from '../helpers/reports.js';
import { reviewOf } from '../helpers/review.js';
import type { TestDatabase, TestKeys } from '../helpers/servers.js';

/*
 * Every write guard of the tool, raced deterministically against the "app": a connection of the test that
 * changes the target row in an open transaction. The test starts the real CLI, waits until PostgreSQL shows
 * the tool's backend blocked by the app's transaction in the guarded statement, and only then commits.
 * Under READ COMMITTED the blocked statement then re-checks its guard on the app's row version (or hits the
 * unique index), so the race happens the same way on every run.
 */

let world: RaceWorld;
let db: TestDatabase;
let keys: TestKeys;

beforeEach(async () => {
  world = await createRaceWorld('guards', 20_000);
  ({ db, keys } = world);
});

afterEach(async () => {
  await world.close();
});

/** Puts a Redis record under this test's prefix; the key's email is `<id>@example.com`. */
async function putUser(id: string, credits: number): Promise<void> {
  await keys.putUser(`${id}@example.com`, { user_id: id, current_credits: credits, username: `name ${id}` });
}

const start = (args: readonly string[]) => world.start(args);
const run = (args: readonly string[]) => start(args).finished();

/** The statement inserts triage's records (insertTriaged), or records decided one by one (insertRows: `v.observed`). */
const TRIAGED_INSERT = /^(?![\s\S]*v\.observed)[\s\S]*ins as \(\s*insert into public\.users/;
const DECIDED_INSERT = /v\.observed[\s\S]*ins as \(\s*insert into public\.users/;
const GUARDED_UPDATE = /upd as \(\s*update public\.users u/;

/** The whole users row with its version: equal snapshots mean nobody wrote the row in between. */
async function rowOf(userId: string, client: Pick<pg.Client, 'query'> = db.pool): Promise<Record<string, unknown> | undefined> {
  const { rows } = await client.query<Record<string, unknown>>('select xmin::text as version, * from users where user_id = $1', [userId]);
  return rows[0];
}

async function creditsOf(userId: string): Promise<number | undefined> {
  const row = await rowOf(userId);
  return row ? Number(row.current_credits) : undefined;
}

async function ledgerOf(userId: string): Promise<Record<string, unknown> | undefined> {
  const [row] = await db.query(
    `select row_xmin::text, run_id, source_digest, base, postgres_owns, granted_credits, written_at from migrate_users.ledger where user_id = $1`,
    [userId],
  );
  return row;
}

async function ledgerUsers(): Promise<string[]> {
  return (await db.query<{ user_id: string }>('select user_id from migrate_users.ledger order by 1')).map((r) => r.user_id);
}

async function resolutions(): Promise<Record<string, unknown>[]> {
  return db.query('select user_id, side, reason from migrate_users.resolutions order by user_id, id');
}

const reasonOf = (result: Finished<MigrateReport>, userId: string) => result.rejects.find((r) => r.user_id === userId)?.reason;

/** The operator's review of these users' conflicts (reconcile --conflicts), for --take. */
const usersFile = (...ids: string[]) => reviewOf(world.dir, ids, (conflicts) => run(['reconcile', '--conflicts', conflicts]));

describe('write guards against the live app', { timeout: 120_000 }, () => {
  it('triaged insert: the plain INSERT waits on the user_id the app is inserting, fails whole, and the rest is written without it', async () => {
    await putUser('usr_1', 10);
    await putUser('usr_2', 20);
    await putUser('usr_3', 30);
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values ('usr_2', 'app-2@example.com', 500, true)`);
    const appRow = await rowOf('usr_2', app.client);

    const tool = start(['--write-concurrency', '1']);
    const blocked = await world.toolBlockedBy(tool, [app]);
    expect(blocked.query).toMatch(TRIAGED_INSERT);
    await app.client.query('commit');
    const result = await tool.finished();

    expect(await rowOf('usr_2'), "the app's row").toEqual(appRow);
    expect(result.code, result.stderr).toBe(1);
    expect([await creditsOf('usr_1'), await creditsOf('usr_3')]).toEqual([10, 30]);
    expect(result.report.counts).toMatchObject({ inserted: 2, conflicts: 1 });
    expect(result.report.reasons).toEqual({ row_not_written_by_tool: 1 });
    expect(reasonOf(result, 'usr_2')).toBe('row_not_written_by_tool');
    expect(await ledgerUsers()).toEqual(['usr_1', 'usr_3']);
    expect(result.report.credits.written.current).toBe(40);
    expect(result.report.credits.by_outcome.conflict?.current).toBe(20);
    expectReportAddsUp(result.report);

    const again = await run([]);
    expect(again.report.counts).toMatchObject({ unchanged: 2, conflicts: 1, inserted: 0, updated: 0 });
    expect(reasonOf(again, 'usr_2')).toBe('row_not_written_by_tool');
    expect(await rowOf('usr_2')).toEqual(appRow);
  });

  it('insert after refusal: the ON CONFLICT DO NOTHING statement itself waits on an email the app is inserting, and skips it', async () => {
    await putUser('usr_1', 10);
    await putUser('usr_2', 20);
    await putUser('usr_3', 30);
    // Two app transactions take the emails of usr_1 and usr_2 under user_ids of their own (no signup bonus:
    // not early logins, so plainly email_taken).
    const first = await world.connectApp();
    const second = await world.connectApp();
    await first.client.query('begin');
    await first.client.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values ('app_a', 'usr_1@example.com', 100, false)`);
    await second.client.query('begin');
    await second.client.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values ('app_b', 'usr_2@example.com', 200, false)`);
    const appRows = [await rowOf('app_a', first.client), await rowOf('app_b', second.client)];

    const tool = start(['--write-concurrency', '1']);
    // The plain INSERT stops at whichever email it reaches first; that app commits, and it fails whole.
    const plain = await world.toolBlockedBy(tool, [first, second]);
    expect(plain.query).toMatch(TRIAGED_INSERT);
    await plain.app.client.query('commit');
    // The fallback statement then waits on the other app's email: commit, and it must skip it too.
    const other = plain.app === first ? second : first;
    const fallback = await world.toolBlockedBy(tool, [other]);
    expect(fallback.query).toMatch(TRIAGED_INSERT);
    expect(fallback.started, 'a statement of its own').not.toBe(plain.started);
    await other.client.query('commit');
    const result = await tool.finished();

    expect([await rowOf('app_a'), await rowOf('app_b')], "the app's rows").toEqual(appRows);
    expect(result.code, result.stderr).toBe(1);
    expect([await rowOf('usr_1'), await rowOf('usr_2')]).toEqual([undefined, undefined]);
    expect(await creditsOf('usr_3')).toBe(30);
    expect(result.report.counts).toMatchObject({ inserted: 1, conflicts: 2 });
    expect(result.report.reasons).toEqual({ email_taken: 2 });
    expect(await ledgerUsers()).toEqual(['usr_3']);
    expect(result.report.credits.written.current).toBe(30);
    expect(result.report.credits.by_outcome.conflict?.current).toBe(30);
    expectReportAddsUp(result.report);

    const again = await run([]);
    expect(again.report.counts).toMatchObject({ unchanged: 1, conflicts: 2, inserted: 0 });
    expect(again.report.reasons).toEqual({ email_taken: 2 });
    expect([await rowOf('app_a'), await rowOf('app_b')]).toEqual(appRows);
  });

  it('insert of a decided record (reconcile --apply, only in Redis): waits on the row the app is inserting and leaves it', async () => {
    await putUser('usr_1', 10);
    expect((await run([])).code).toBe(0);
    await putUser('usr_2', 20);
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values ('usr_2', 'app-2@example.com', 500, true)`);
    const appRow = await rowOf('usr_2', app.client);

    const tool = start(['reconcile', '--apply', '--batch-size', '1']);
    const blocked = await world.toolBlockedBy(tool, [app]);
    expect(blocked.query).toMatch(DECIDED_INSERT);
    await app.client.query('commit');
    const result = await tool.finished();

    expect(await rowOf('usr_2'), "the app's row").toEqual(appRow);
    expect(result.code, result.stderr).toBe(1);
    expect(result.report.counts).toMatchObject({ inserted: 0, unchanged: 1, conflicts: 1 });
    expect(result.report.reasons).toEqual({ changed_during_run: 1 });
    expect(await ledgerUsers()).toEqual(['usr_1']);
    expect(result.report.credits.written.current).toBe(0);
    expect(result.report.credits.by_outcome.conflict?.current).toBe(20);
    expectReportAddsUp(result.report);

    const again = await run([]);
    expect(reasonOf(again, 'usr_2')).toBe('row_not_written_by_tool');
    expect(await rowOf('usr_2')).toEqual(appRow);
  });

  it('catch-up update (ledger guard): waits on the app changing the row, then skips it; the rest of the catch-up is written', async () => {
    await putUser('usr_1', 10);
    await putUser('usr_2', 20);
    await putUser('usr_3', 30);
    expect((await run([])).code).toBe(0);
    // The old app moves two balances in Redis: both are catch-ups on rows nobody touched since.
    await putUser('usr_1', 11);
    await putUser('usr_2', 25);
    const ledgerBefore = await ledgerOf('usr_2');
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`update users set current_credits = current_credits - 5 where user_id = 'usr_2'`);
    const appRow = await rowOf('usr_2', app.client);

    const tool = start(['--batch-size', '1', '--write-concurrency', '1']);
    const blocked = await world.toolBlockedBy(tool, [app]);
    expect(blocked.query).toMatch(GUARDED_UPDATE);
    await app.client.query('commit');
    const result = await tool.finished();

    expect(await rowOf('usr_2'), "the app's row").toEqual(appRow);
    expect(result.code, result.stderr).toBe(1);
    expect(await creditsOf('usr_2')).toBe(15);
    expect(await creditsOf('usr_1')).toBe(11);
    expect(await ledgerOf('usr_2')).toEqual(ledgerBefore);
    expect(result.report.counts).toMatchObject({ updated: 1, unchanged: 1, conflicts: 1 });
    expect(result.report.reasons).toEqual({ changed_during_run: 1 });
    expect(reasonOf(result, 'usr_2')).toBe('changed_during_run');
    expect(result.report.credits.written.current).toBe(11);
    expect(result.report.credits.by_outcome.conflict?.current).toBe(25);
    expectReportAddsUp(result.report);

    // Redis and the app both changed usr_2 since the tool wrote it: a conflict, never an overwrite.
    const again = await run([]);
    expect(reasonOf(again, 'usr_2')).toBe('changed_in_both');
    expect(again.report.counts).toMatchObject({ updated: 0, unchanged: 2, conflicts: 1 });
    expect(await rowOf('usr_2')).toEqual(appRow);
  });

  it('--take redis (observed-version guard): waits on the app changing the row, then skips it and logs no resolution', async () => {
    await putUser('usr_1', 10);
    await putUser('usr_2', 20);
    expect((await run([])).code).toBe(0);
    // Changed on both sides: the operator reviews usr_1 and takes Redis's record.
    await putUser('usr_1', 30);
    await db.query(`update users set current_credits = 7 where user_id = 'usr_1'`);
    const ledgerBefore = await ledgerOf('usr_1');
    const users = await usersFile('usr_1');
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`update users set current_credits = current_credits - 5 where user_id = 'usr_1'`);
    const appRow = await rowOf('usr_1', app.client);

    const tool = start(['reconcile', '--apply', '--take', 'redis', '--users', users, '--batch-size', '1']);
    const blocked = await world.toolBlockedBy(tool, [app]);
    expect(blocked.query).toMatch(GUARDED_UPDATE);
    await app.client.query('commit');
    const result = await tool.finished();

    expect(await rowOf('usr_1'), "the app's row").toEqual(appRow);
    expect(result.code, result.stderr).toBe(1);
    expect(await creditsOf('usr_1')).toBe(2);
    expect(await ledgerOf('usr_1')).toEqual(ledgerBefore);
    expect(await resolutions()).toEqual([]);
    expect(result.report.counts).toMatchObject({ updated: 0, unchanged: 1, conflicts: 1 });
    expect(result.report.reasons).toEqual({ changed_during_run: 1 });
    expect(result.report.credits.written.current).toBe(0);
    expectReportAddsUp(result.report);

    const again = await run([]);
    expect(reasonOf(again, 'usr_1')).toBe('changed_in_both');
    expect(await rowOf('usr_1')).toEqual(appRow);
    // The old review is stale now (the app wrote the row since): --take skips it and says so.
    const stale = await run(['reconcile', '--apply', '--take', 'redis', '--users', users]);
    expect(stale.code).toBe(1);
    expect(stale.rejects.find((r) => r.user_id === 'usr_1')?.detail).toContain('changed since your review');
    expect(await rowOf('usr_1')).toEqual(appRow);
    // Only the race stopped it: the same resolution, reviewed again, without an app write in between takes Redis's record.
    const calm = await run(['reconcile', '--apply', '--take', 'redis', '--users', await usersFile('usr_1')]);
    expect(calm.report.reasons).toEqual({});
    expect(await creditsOf('usr_1')).toBe(30);
    expect(await resolutions()).toEqual([{ user_id: 'usr_1', side: 'redis', reason: 'changed_in_both' }]);
  });

  it('adopt does not wait on a row lock: it records the committed version it compared, and the app change that commits later is kept', async () => {
    await putUser('usr_1', 10);
    // The new app created the very row Redis holds: the tool never wrote it (no ledger entry).
    await db.query(`insert into users (user_id, email, username, current_credits, total_credits_used, signup_bonus_granted, created_at)
      values ('usr_1', 'usr_1@example.com', 'name usr_1', 10, 0, true, null)`);
    const identical = await rowOf('usr_1');
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`update users set current_credits = current_credits - 5 where user_id = 'usr_1'`);

    // adoptRows is INSERT ... SELECT joined with users: a plain read of the committed version, no row lock.
    const result = await run([]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.report.counts).toMatchObject({ unchanged: 1, conflicts: 0 });
    expect((await ledgerOf('usr_1'))?.row_xmin).toBe(identical?.version);
    await app.client.query('commit');
    const appRow = await rowOf('usr_1');

    const again = await run([]);
    expect(again.report.counts).toMatchObject({ kept_app_changes: 1, updated: 0 });
    expect(again.report.credits.app_difference.current).toBe(-5);
    expectReportAddsUp(again.report);
    expect(await rowOf('usr_1')).toEqual(appRow);
  });

  it("adopt (observed-version guard): an app change committed between the look and the write is not adopted as the tool's", async () => {
    await putUser('usr_2', 20);
    expect((await run([])).code).toBe(0);
    // usr_1 appears in Redis and, identical, in PostgreSQL (the app's row: adopt); usr_2 moves in Redis (catch-up).
    await putUser('usr_1', 10);
    await db.query(`insert into users (user_id, email, username, current_credits, total_credits_used, signup_bonus_granted, created_at)
      values ('usr_1', 'usr_1@example.com', 'name usr_1', 10, 0, true, null)`);
    await putUser('usr_2', 25);
    const holder = await world.connectApp();
    await holder.client.query('begin');
    await holder.client.query(`update users set current_credits = current_credits - 5 where user_id = 'usr_2'`);

    // One batch: facts for both are loaded (the look), then the catch-up update waits on usr_2 before the adopt
    // statement runs. Meanwhile the app commits a change to usr_1: between the tool's look and its write.
    const tool = start(['--write-concurrency', '1']);
    const blocked = await world.toolBlockedBy(tool, [holder]);
    expect(blocked.query).toMatch(GUARDED_UPDATE);
    await db.query(`update users set current_credits = current_credits - 3 where user_id = 'usr_1'`);
    const appRow = await rowOf('usr_1');
    await holder.client.query('commit');
    const result = await tool.finished();

    expect(await ledgerOf('usr_1'), "a ledger entry for the app's version of usr_1").toBeUndefined();
    expect(await rowOf('usr_1'), "the app's row").toEqual(appRow);
    expect(await creditsOf('usr_2'), "the app's usr_2").toBe(15);
    expect(result.code, result.stderr).toBe(1);
    // Neither is reported as done: the skipped adopt is changed_during_run like the skipped update.
    expect(result.report.counts).toMatchObject({ unchanged: 0, conflicts: 2 });
    expect(result.report.reasons).toEqual({ changed_during_run: 2 });
    expectReportAddsUp(result.report);

    // Not taken for the tool's row: the re-run sees an app row it never wrote, and leaves it.
    const again = await run([]);
    expect(reasonOf(again, 'usr_1')).toBe('row_not_written_by_tool');
    expect(reasonOf(again, 'usr_2')).toBe('changed_in_both');
    expect(again.report.counts).toMatchObject({ updated: 0, inserted: 0 });
    expect(await rowOf('usr_1')).toEqual(appRow);
    expect(await creditsOf('usr_2')).toBe(15);
  });

  it('--take postgres writes only the ledger: it never waits on, nor writes, the users row, and the kept row is never caught up', async () => {
    await putUser('usr_1', 10);
    await putUser('usr_2', 20);
    await putUser('usr_3', 30);
    expect((await run([])).code).toBe(0);
    await putUser('usr_1', 30);
    await putUser('usr_2', 40);
    await db.query(`update users set current_credits = 7 where user_id = 'usr_1'`);
    await db.query(`update users set current_credits = 8 where user_id = 'usr_2'`);
    const users = await usersFile('usr_1', 'usr_2');
    const app = await world.connectApp();
    await app.client.query('begin');
    await app.client.query(`update users set current_credits = current_credits - 5 where user_id = 'usr_1'`);
    const before = [await rowOf('usr_1'), await rowOf('usr_2')];

    // The app still holds usr_1's row lock: a write to that row would wait until the deadline.
    const result = await run(['reconcile', '--apply', '--take', 'postgres', '--users', users, '--batch-size', '1']);
    expect([await rowOf('usr_1'), await rowOf('usr_2')], 'the users rows').toEqual(before);
    expect(result.code, result.stderr).toBe(0);
    for (const id of ['usr_1', 'usr_2']) expect(await ledgerOf(id)).toMatchObject({ postgres_owns: true, row_xmin: null });
    expect(await resolutions()).toEqual([
      { user_id: 'usr_1', side: 'postgres', reason: 'changed_in_both' },
      { user_id: 'usr_2', side: 'postgres', reason: 'changed_in_both' },
    ]);
    expect(result.report.counts).toMatchObject({ kept_app_changes: 2, updated: 0, conflicts: 0 });
    expect(result.report.credits.written.current).toBe(0);
    expectReportAddsUp(result.report);
    await app.client.query('commit');
    const kept = [await rowOf('usr_1'), await rowOf('usr_2')];
    expect(kept.map((r) => Number(r?.current_credits))).toEqual([2, 8]);

    const again = await run([]);
    expect(again.report.counts).toMatchObject({ kept_app_changes: 2, updated: 0, conflicts: 0 });
    expectReportAddsUp(again.report);
    // Redis moves again: the operator's choice is not a licence to catch up onto the kept row.
    await putUser('usr_2', 41);
    const later = await run([]);
    expect(reasonOf(later, 'usr_2')).toBe('changed_in_both');
    expect(later.report.counts).toMatchObject({ updated: 0 });
    expect([await rowOf('usr_1'), await rowOf('usr_2')]).toEqual(kept);
  });
});
