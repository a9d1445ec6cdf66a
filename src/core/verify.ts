import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { inOneTransaction, withSession } from '../db/database.js';
import { canonicalColumns } from '../db/canonical.js';
import type { Logger } from '../log.js';
import { publicRow, rowFromRecord } from '../compare/compare-rows.js';
import { money } from '../report/report.js';
import type { SourceInfo } from '../results/migrate-report.js';
import type { AcceptEntry, Difference, DifferenceKind, Side, VerifyReport } from '../results/verify-report.js';
import type { RedisSource } from '../source/redis-reader.js';
import { createStage, finishStage, STAGE_TABLE } from '../stage/stage.js';
import type { AcceptList } from './accept-list.js';
import { heldBackRecords, loadFacts, prepareFacts, triage, triagedTotals, type TriageKind } from './facts.js';
import { boundByTarget, emptySource, sampleKeys, stageSource, type Progress, type ReadOptions } from './stage-source.js';
import { mergedCredits, verifyRecord } from './verify-record.js';

export interface VerifyOptions extends ReadOptions {
  /** Rows only in PostgreSQL fail verification too. */
  readonly strict: boolean;
  /** Check a uniform random sample of this many keys instead of all. */
  readonly sample?: number | undefined;
  /** Known problems the team has accepted: they are listed and counted apart, and do not fail verification. */
  readonly accept?: AcceptList | undefined;
  /** Named in the report. */
  readonly source?: SourceInfo | undefined;
}

export interface VerifyIo {
  readonly redis: RedisSource;
  readonly pool: pg.Pool;
  readonly log: Logger;
  readonly progress?: Progress | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Receives every difference, in order (an accepted one says so); a user's column differences come together. */
  readonly onDifference?: ((difference: Difference) => Promise<void>) | undefined;
}

/**
 * Read-only on both sides: stages Redis the way migrate does (same mapping, same whitelist rule), then
 * compares each expected row with PostgreSQL using the same comparison.
 */
export async function verify(given: VerifyOptions, io: VerifyIo): Promise<{ report: VerifyReport }> {
  const started = new Date();
  const runId = `verify_${started.toISOString().replace(/\D/g, '').slice(0, 14)}_${randomBytes(3).toString('hex')}`;
  const log = io.log.child({ run: runId, mode: 'verify' });
  const options = await boundByTarget(io.pool, given);
  let differences = 0;
  const accepted: Record<DifferenceKind, number> = { mismatch: 0, missing: 0, not_migratable: 0, deleted_in_redis: 0, only_in_postgres: 0 };
  const used = new Set<AcceptEntry>();
  const mark = (difference: Difference): Difference => {
    const entries = options.accept?.matches(difference) ?? [];
    for (const entry of entries) used.add(entry);
    const entry = entries[0];
    return entry ? { ...difference, accepted: { line: entry.line, reason: entry.reason } } : difference;
  };
  /** Emits the differences of one record; the record is accepted when every one of them is. */
  const emit = async (...found: Difference[]): Promise<void> => {
    const marked = found.map(mark);
    for (const difference of marked) {
      differences++;
      await io.onDifference?.(difference);
    }
    const wholly = marked.length > 0 && marked.every((d) => d.accepted !== undefined);
    if (wholly && marked[0]) accepted[marked[0].kind]++;
  };

  // One read-only transaction around a TEMP stage: nothing persistent is written, and a pooler in
  // transaction mode keeps the same server connection throughout.
  return withSession(
    io.pool,
    (session) =>
      inOneTransaction(session, async () => {
        try {
          const stage = await createStage(session);
          const sampled = { seen: 0 };
          const keys = options.sample === undefined ? undefined : sampleKeys(io.redis, options, options.sample, sampled);
          const checked = await stageSource(session, stage, options, { ...io, log }, keys);
          // Nothing checked is not a pass: a typo in --match or the wrong server must not turn CI green.
          if (checked === 0 && !io.signal?.aborted && !options.allowEmpty) throw emptySource(options);
          io.progress?.step('indexing, triage');
          // The same phase lines as migrate's: the benchmark splits every command's time by them.
          log.info({ scanned: checked }, 'read every key; classifying');
          await finishStage(session, stage, { userIdIndex: true });
          log.info('stage indexed; duplicates across keys marked');
          await triage(session.db, stage.table, 0, await prepareFacts(session.db, stage.table));
          log.info('triage done');
          await sql`set transaction read only`.execute(session.db);

          const counts = { match: 0, mismatch: 0, missing: 0, not_migratable: 0 };
          const sums = { expected: new Sums(), matching: new Sums(), held: new Sums(), merged: new Sums() };
          const reasons: Record<string, number> = {};
          const earlyLoginRows = new Set<string>();
          io.progress?.phase('comparing', await pendingCount(session.db));
          // Rows triage found identical to their record match: counted and summed in one pass, not compared
          // again here. Only the ranges holding any other record are compared, record by record.
          const { byKind, rangesWithOthers } = await triagedTotals(session.db, stage.table, options.batchSize, MATCHING);
          for (const same of byKind.values()) {
            counts.match += same.n;
            // Credits after the whitelist rule: as Redis held them plus the top-up.
            sums.expected.addMany(same.n, same.source + same.topup, same.used);
            sums.matching.addMany(same.n, same.source + same.topup, same.used);
            io.progress?.advance(same.n);
          }
          for (const afterSeq of rangesWithOthers) {
            if (io.signal?.aborted) break;
            // With the ledger's base: a merged user is compared with the merge the tool wrote.
            const facts = await loadFacts(session.db, stage.table, afterSeq, options.batchSize, { skip: MATCHING, withBase: true });
            for (const fact of facts) {
              const result = verifyRecord(fact);
              counts[result.status]++;
              if (result.status === 'not_migratable') {
                sums.held.add(fact.expected.current_credits, fact.expected.total_credits_used);
              } else {
                const merged = mergedCredits(fact);
                if (merged) {
                  // What PostgreSQL must hold for a merged user: Redis's credits plus what the merge kept of the new-app row.
                  sums.expected.add(merged.current, merged.used);
                  sums.merged.add(
                    (BigInt(merged.current) - BigInt(fact.expected.current_credits)).toString(),
                    (BigInt(merged.used) - BigInt(fact.expected.total_credits_used)).toString(),
                  );
                } else {
                  sums.expected.add(fact.expected.current_credits, fact.expected.total_credits_used);
                }
                if (fact.actual) sums.matching.add(fact.actual.current_credits, fact.actual.total_credits_used);
              }
              // A merged user's row has the new app's user_id.
              const where = { key: fact.key, user_id: fact.actual?.user_id ?? fact.expected.user_id, email: fact.expected.email };
              if (result.status === 'not_migratable' && result.reason === 'early_login' && fact.emailOwner) earlyLoginRows.add(fact.emailOwner);
              if (result.status === 'mismatch') {
                await emit(...result.diffs.map((d): Difference => ({ kind: 'mismatch', ...where, ...d })));
              } else if (result.status === 'missing') {
                await emit({ kind: 'missing', ...where, column: null, expected: 'row', actual: null });
              } else if (result.status === 'not_migratable') {
                reasons[result.reason] = (reasons[result.reason] ?? 0) + 1;
                await emit({
                  kind: 'not_migratable',
                  ...where,
                  column: null,
                  expected: 'migratable',
                  actual: result.reason,
                  reason: result.reason,
                  detail: result.detail,
                });
              }
            }
            io.progress?.advance(facts.length);
          }
          for await (const held of heldBackRecords(session.db, stage.table)) {
            counts.not_migratable++;
            reasons[held.reason] = (reasons[held.reason] ?? 0) + 1;
            await emit({
              kind: 'not_migratable',
              key: held.key,
              user_id: held.user_id ?? null,
              email: (held.redis?.email as string | undefined) ?? null,
              column: null,
              expected: 'migratable',
              actual: held.reason,
              reason: held.reason,
              detail: held.detail,
            });
          }
          let onlyInPostgres: number | null = null;
          let deletedInRedis: number | null = null;
          let only: Sums | null = null;
          let deleted: Sums | null = null;
          // Neither a sample nor an interrupted read knows every Redis user: "only in PostgreSQL" would be wrong.
          if (options.sample === undefined && !io.signal?.aborted) {
            onlyInPostgres = 0;
            deletedInRedis = 0;
            only = new Sums();
            deleted = new Sums();
            for await (const row of rowsOnlyInPostgres(session.db)) {
              // The new-app row of an early login is counted with that user (not migratable until merged).
              if (earlyLoginRows.has(row.user_id)) continue;
              const where = { key: row.source_key, user_id: row.user_id, email: row.email, column: null };
              if (row.source_key !== null && !row.postgres_owns) {
                // The ledger says the tool wrote this row from a key the source no longer has.
                deletedInRedis++;
                deleted.add(row.current_credits, row.total_credits_used);
                await emit({
                  kind: 'deleted_in_redis',
                  ...where,
                  expected: null,
                  actual: 'row',
                  reason: 'deleted_in_redis',
                  detail: 'the tool migrated this user from this key; the source no longer has it',
                });
              } else {
                onlyInPostgres++;
                only.add(row.current_credits, row.total_credits_used);
                await emit({ kind: 'only_in_postgres', ...where, expected: null, actual: 'row' });
              }
            }
          }
          const invariants = await computeInvariants(session.db, { ...sums, only, deleted });
          const interrupted = io.signal?.aborted === true;
          const failures =
            counts.mismatch -
            accepted.mismatch +
            counts.missing -
            accepted.missing +
            counts.not_migratable -
            accepted.not_migratable +
            (deletedInRedis ?? 0) -
            accepted.deleted_in_redis +
            (options.strict ? (onlyInPostgres ?? 0) - accepted.only_in_postgres : 0);
          const everyKeyChecked = options.sample === undefined && !interrupted;
          const finished = new Date();
          const report: VerifyReport = {
            run_id: runId,
            command: 'verify',
            ok: failures === 0 && !interrupted,
            interrupted,
            strict: options.strict,
            source: options.source ?? null,
            sample: options.sample === undefined ? null : { size: checked, keys_in_redis: sampled.seen },
            started_at: started.toISOString(),
            finished_at: finished.toISOString(),
            duration_seconds: Number(((finished.getTime() - started.getTime()) / 1000).toFixed(3)),
            counts: {
              keys_checked: checked,
              redis_users: invariants.redis.users,
              ...counts,
              only_in_postgres: onlyInPostgres,
              deleted_in_redis: deletedInRedis,
              differences,
              accepted,
              failing: failures,
            },
            accepted: options.accept
              ? {
                  file: options.accept.file,
                  entries: options.accept.entries.length,
                  fine_now: everyKeyChecked ? options.accept.entries.filter((entry) => !used.has(entry)) : null,
                }
              : null,
            reasons,
            invariants,
          };
          log.info({ ok: report.ok, counts: report.counts }, 'verify finished');
          return { report };
        } finally {
          io.progress?.done();
        }
      }),
    log,
  );
}

/** Triage kinds of a row equal to its Redis record. */
const MATCHING: readonly TriageKind[] = ['same', 'same_current'];

async function pendingCount(db: Kysely<unknown>): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*)::text as n from ${sql.raw(STAGE_TABLE)} where outcome is null`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

async function* rowsOnlyInPostgres(db: Kysely<unknown>): AsyncGenerator<{
  user_id: string;
  email: string;
  current_credits: string;
  total_credits_used: string;
  source_key: string | null;
  postgres_owns: boolean;
}> {
  for (let after = ''; ;) {
    const { rows } = await sql<Record<string, unknown> & { source_key: string | null; postgres_owns: boolean | null }>`
      select ${canonicalColumns('u', 'a_')},
        -- Probed for the few rows listed: a join would hash the whole ledger for every page.
        (select l.source_key from migrate_users.ledger l where l.user_id = u.user_id) as source_key,
        (select l.postgres_owns from migrate_users.ledger l where l.user_id = u.user_id) as postgres_owns
      from public.users u
      where u.user_id > ${after} and not exists (select 1 from ${sql.raw(STAGE_TABLE)} s where s.user_id = u.user_id)
        -- A row a staged record was merged into is that record's row.
        and not exists (select 1 from migrate_users.merges m join ${sql.raw(STAGE_TABLE)} s on s.user_id = m.old_user_id where m.user_id = u.user_id)
      order by u.user_id limit 5000`.execute(db);
    for (const row of rows) {
      const actual = rowFromRecord(row, 'a_');
      const pub = publicRow(actual);
      yield {
        user_id: String(pub.user_id),
        email: String(pub.email),
        current_credits: actual.current_credits,
        total_credits_used: actual.total_credits_used,
        source_key: row.source_key,
        postgres_owns: row.postgres_owns === true,
      };
    }
    const last = rows[rows.length - 1];
    if (!last) return;
    after = String(last.a_user_id);
  }
}

interface SideRow {
  users: string;
  credits: string;
  used: string;
}

/** Users and credit sums of one side, in BigInt: credits are money. */
class Sums {
  users = 0;
  credits = 0n;
  used = 0n;

  add(credits: string, used: string): void {
    this.users++;
    this.credits += BigInt(credits);
    this.used += BigInt(used);
  }

  addMany(users: number, credits: bigint, used: bigint): void {
    this.users += users;
    this.credits += credits;
    this.used += used;
  }

  side(): Side {
    return { users: this.users, current_credits: money(this.credits), total_credits_used: money(this.used) };
  }
}

/**
 * Credits are money: the invariants close exactly when everything matches. Redis credits + whitelist
 * top-ups - what is held back as not migratable = what PostgreSQL must hold for those users.
 */
async function computeInvariants(
  db: Kysely<unknown>,
  sums: { expected: Sums; matching: Sums; held: Sums; merged: Sums; only: Sums | null; deleted: Sums | null },
): Promise<VerifyReport['invariants']> {
  const t = sql.raw(STAGE_TABLE);
  const one = async <R>(query: { execute(db: Kysely<unknown>): Promise<{ rows: R[] }> }) => (await query.execute(db)).rows[0] as R;
  const redis = await one(sql<SideRow & { invalid: string; topup: string }>`
    select count(*) filter (where valid)::text as users, count(*) filter (where not valid)::text as invalid,
      coalesce(sum(source_credits), 0)::text as credits, coalesce(sum(topup), 0)::text as topup,
      coalesce(sum(total_credits_used), 0)::text as used
    from ${t}`);
  // Valid records held back before classification (duplicates across keys), whitelist rule applied.
  const duplicates = await one(sql<SideRow>`
    select count(*)::text as users, coalesce(sum(current_credits), 0)::text as credits,
      coalesce(sum(total_credits_used), 0)::text as used
    from ${t} where valid and outcome is not null`);
  const held = sums.held;
  held.users += Number(duplicates.users);
  held.credits += BigInt(duplicates.credits);
  held.used += BigInt(duplicates.used);
  const total = await one(sql<SideRow>`
    select count(*)::text as users, coalesce(sum(current_credits), 0)::text as credits,
      coalesce(sum(total_credits_used), 0)::text as used from public.users`);
  const side = (r: SideRow): Side => ({ users: Number(r.users), current_credits: money(BigInt(r.credits)), total_credits_used: money(BigInt(r.used)) });
  return {
    redis: { ...side(redis), invalid_records: Number(redis.invalid), whitelist_topup: money(BigInt(redis.topup)) },
    not_migratable: held.side(),
    merged_from_postgres: sums.merged.side(),
    expected: sums.expected.side(),
    postgres_matching: sums.matching.side(),
    postgres_only: sums.only ? sums.only.side() : null,
    postgres_deleted_in_redis: sums.deleted ? sums.deleted.side() : null,
    postgres_total: side(total),
    balanced: sums.expected.users === sums.matching.users && sums.expected.credits === sums.matching.credits && sums.expected.used === sums.matching.used,
  };
}
