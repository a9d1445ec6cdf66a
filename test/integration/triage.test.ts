import pino from 'pino';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { withSession } from '../../src/db/database.js';
import { readBase } from '../../src/db/canonical.js';
import { prepareFacts, triage } from '../../src/core/facts.js';
import { processChunk } from '../../src/core/process-chunk.js';
import { createStage, finishStage, triageTable } from '../../src/stage/stage.js';
import { createTestDatabase, type TestDatabase } from '../helpers/servers.js';

let db: TestDatabase;
const log = pino({ level: 'silent' });

beforeEach(async () => {
  db = await createTestDatabase();
});

afterEach(async () => {
  await db.drop();
});

/** Stages `n` valid records u1..un directly (what stageSource would COPY). */
async function stageUsers(table: string, n: number): Promise<void> {
  await db.query(
    `insert into ${table} (seq, key, valid, user_id, email, username, current_credits, total_credits_used, signup_bonus_granted,
       created_at, source_credits, topup, digest)
     select i, 'user:email:u' || i || '@t.test', true, 'u' || i, 'u' || i || '@t.test', 'name' || i, i * 10, i, true,
       '2024-01-01T00:00:00Z'::timestamptz + i * interval '1 second', i * 10, 0, 'digest' || i
     from generate_series(1, $1::int) i`,
    [n],
  );
}

it('triage settles fresh inserts in bulk; an insert the app beat to it is decided again, never overwritten', async () => {
  await withSession(
    db.pool,
    async (session) => {
      const stage = await createStage(session, 'run_triage_test');
      await stageUsers(stage.table, 50);
      await finishStage(session, stage, { userIdIndex: false });
      await prepareFacts(session.db, stage.table);
      await triage(session.db, stage.table, 0);
      expect(await db.query(`select kind, count(*)::int as n from ${triageTable(stage.table)} group by kind`)).toEqual([{ kind: 'insert', n: 50 }]);

      // After triage, the live app signs up u7 itself and takes u9's email under another user_id.
      await db.query(`insert into public.users (user_id, email, current_credits) values ('u7', 'u7@t.test', 999), ('app1', 'u9@t.test', 5)`);
      const result = await processChunk(session.db, { stage: stage.table, afterSeq: 0, size: 50, dryRun: false, runId: 'run_triage_test', log });

      expect(result.settled).toEqual([{ outcome: 'inserted', sums: expect.objectContaining({ n: 48 }) }]);
      const decided = result.entries.map((e) => [e.fact.key, e.outcome, e.reason]).sort();
      expect(decided).toEqual([
        ['user:email:u7@t.test', 'conflict', 'row_not_written_by_tool'],
        ['user:email:u9@t.test', 'conflict', 'email_taken'],
      ]);
      // The app's rows stand as the app wrote them; the 48 others are in, each with its ledger entry.
      expect(await db.query(`select user_id, current_credits::int as c from public.users where user_id in ('u7', 'app1') order by 1`)).toEqual([
        { user_id: 'app1', c: 5 },
        { user_id: 'u7', c: 999 },
      ]);
      expect(await db.query(`select count(*)::int as n from public.users u join migrate_users.ledger l using (user_id)`)).toEqual([{ n: 48 }]);
      const base = (await db.query(`select base from migrate_users.ledger where user_id = 'u3'`))[0] as { base: string };
      // An array in column order (see canonicalJson), read back as the row.
      expect(JSON.parse(base.base)).toHaveLength(12);
      expect(readBase(base.base)).toEqual({
        user_id: 'u3',
        email: 'u3@t.test',
        username: 'name3',
        avatar: null,
        password_hash: null,
        current_credits: '30',
        total_credits_used: '3',
        signup_bonus_granted: true,
        current_plan_id: null,
        plan_renew_at: null,
        created_at: '2024-01-01T00:00:03.000000Z',
        last_login: null,
      });

      // The same range again on the old triage (what a batch classified again after a failure does): the 48
      // this run inserted are still counted as its inserts, not as unchanged, and nothing is written twice.
      const retried = await processChunk(session.db, { stage: stage.table, afterSeq: 0, size: 50, dryRun: false, runId: 'run_triage_test', log });
      expect(retried.settled).toEqual([{ outcome: 'inserted', sums: expect.objectContaining({ n: 48 }) }]);
      expect(retried.entries.map((e) => e.outcome)).toEqual(['conflict', 'conflict']);
      expect(await db.query(`select count(*)::int as n from public.users`)).toEqual([{ n: 50 }]);

      // Triage again: the 48 are identical and current, nothing to write; the two conflicts still need decide().
      await triage(session.db, stage.table, 0);
      const again = await processChunk(session.db, { stage: stage.table, afterSeq: 0, size: 50, dryRun: false, runId: 'run_triage_test', log });
      expect(again.settled).toEqual([{ outcome: 'unchanged', sums: expect.objectContaining({ n: 48, source: 12_750n - 70n - 90n }) }]);
      expect(again.entries.map((e) => e.outcome)).toEqual(['conflict', 'conflict']);
    },
    log,
  );
});

it('finds the app rows whose email is not normalised on a text column and on a citext one (whose ~ ignores case)', async () => {
  await db.query(`insert into public.users (user_id, email) values ('a1', 'Bob@X.test'), ('a2', ' carol@x.test'), ('a3', 'dave@x.test'), ('a4', 'é@x.test')`);
  const unnormalised = () =>
    withSession(
      db.pool,
      async (session) => {
        const stage = await createStage(session, 'run_emails_test');
        await stageUsers(stage.table, 1);
        await finishStage(session, stage, { userIdIndex: false });
        const prepared = await prepareFacts(session.db, stage.table);
        const rows = await db.query(`select user_id, email from ${stage.table}_emails order by user_id`);
        await db.query(`drop table ${stage.table}, ${stage.table}_emails, ${stage.table}_triage`);
        return { n: prepared.unnormalisedEmails, rows };
      },
      log,
    );
  // 'é' written decomposed (e + U+0301): NFC changes it; the plain 'dave@x.test' needs nothing.
  await db.query(`update public.users set email = 'e' || chr(769) || '@x.test' where user_id = 'a4'`);
  const expected = [
    { user_id: 'a1', email: 'bob@x.test' },
    { user_id: 'a2', email: 'carol@x.test' },
    { user_id: 'a4', email: '\u00e9@x.test' },
  ];
  expect(await unnormalised()).toEqual({ n: 3, rows: expected });
  await db.query(`create extension if not exists citext; alter table public.users alter column email type citext`);
  expect(await unnormalised()).toEqual({ n: 3, rows: expected });
});
