import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { inOneTransaction, withSession } from '../db/database.js';
import { canonicalColumns } from '../db/canonical.js';
import type { Logger } from '../log.js';
import { publicRow, rowFromRecord } from '../compare/compare-rows.js';
import type { SourceInfo } from '../results/migrate-report.js';
import type { AcceptEntry, Difference, DifferenceKind, VerifyReport } from '../results/verify-report.js';
import type { RedisSource } from '../source/redis-reader.js';
import { createStage, finishStage, STAGE_TABLE } from '../stage/stage.js';
import { DIFFERENCE_KINDS, type AcceptList } from './accept-list.js';
import { heldBackRecords, loadFacts, prepareFacts, triage, triagedTotals, type TriageKind } from './facts.js';
import { boundByTarget, emptySource, sampleKeys, stageSource, type Progress, type ReadOptions } from './stage-source.js';
import { Sums, VerifyTally } from './verify-tally.js';

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
 * Read-only on both sides: stages Redis the way migrate does (same mapping, same whitelist rule), then takes
 * each record's outcome from the decision migrate and reconcile take (decide, verifyOutcome) and adds it up.
 */
export async function verify(given: VerifyOptions, io: VerifyIo): Promise<{ report: VerifyReport }> {
  const started = new Date();
  const runId = `verify_${started.toISOString().replace(/\D/g, '').slice(0, 14)}_${randomBytes(3).toString('hex')}`;
  const log = io.log.child({ run: runId, mode: 'verify' });
  const options = await boundByTarget(io.pool, given);
  let differences = 0;
  const accepted = Object.fromEntries(DIFFERENCE_KINDS.map((kind) => [kind, 0])) as Record<DifferenceKind, number>;
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

  // One read-only transaction around a TEMP stage: nothing persistent is written, a pooler in transaction
  // mode keeps the same server connection throughout, and PostgreSQL is read at one snapshot: a row the app
  // changes while verify runs is judged by the version verify saw.
  return withSession(
    io.pool,
    (session) =>
      inOneTransaction(
        session,
        async () => {
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

            const tally = new VerifyTally();
            io.progress?.phase('comparing', await pendingCount(session.db));
            // Rows triage found identical to their record match: counted and summed in one pass, not compared
            // again here. Only the ranges holding any other record are compared, record by record.
            const { byKind, rangesWithOthers } = await triagedTotals(session.db, stage.table, options.batchSize, MATCHING);
            for (const same of byKind.values()) {
              // Credits after the whitelist rule: as Redis held them plus the top-up.
              tally.addMatching(same.n, same.source + same.topup, same.used);
              io.progress?.advance(same.n);
            }
            for (const afterSeq of rangesWithOthers) {
              if (io.signal?.aborted) break;
              // With the ledger's base: a merged user is compared with the merge the tool wrote.
              const facts = await loadFacts(session.db, stage.table, afterSeq, options.batchSize, { skip: MATCHING });
              for (const fact of facts) {
                const found = tally.record(fact);
                if (found.length > 0) await emit(...found);
              }
              io.progress?.advance(facts.length);
            }
            const { counts, reasons } = tally;
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
                if (tally.earlyLoginRows.has(row.user_id)) continue;
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
            const invariants = await tally.invariants(session.db, only, deleted);
            const interrupted = io.signal?.aborted === true;
            const unaccepted = (kind: DifferenceKind, n: number | null) => (n ?? 0) - accepted[kind];
            const failures =
              FAILING.reduce((n, kind) => n + unaccepted(kind, counts[kind]), 0) +
              unaccepted('deleted_in_redis', deletedInRedis) +
              (options.strict ? unaccepted('changed_by_app', counts.changed_by_app) + unaccepted('deleted_by_app', counts.deleted_by_app) : 0) +
              (options.strict ? unaccepted('only_in_postgres', onlyInPostgres) : 0);
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
        },
        { snapshot: true },
      ),
    log,
  );
}

/** Triage kinds of a row equal to its Redis record. */
const MATCHING: readonly TriageKind[] = ['same', 'same_current'];

/** Outcomes that fail verification whatever the flags (docs/verify-in-ci.md "Verify"). */
const FAILING = ['mismatch', 'missing', 'not_migratable', 'stale', 'conflict'] as const;

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
