import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import { unboundedTransaction, withSession, type HeldLock, type Session } from '../db/database.js';
import type { Logger } from '../log.js';
import type { UserRow } from '../map/user-row.js';
import { Tally, type RecordCredits } from '../report/report.js';
import { recordConflicts, triagedTotals, type TriageKind } from './facts.js';
import type { MigrateIo, MigrateOptions } from './migrate.js';
import { conflictEntry, processChunk, type ClassifiedEntry } from './process-chunk.js';

/**
 * Phase 2 of a run: the staged records, batch by batch on one or more connections, classified by decide()
 * and (unless dry-run) written; what each batch decided is counted, and the checkpoint follows the batches.
 */

/** Runs `fn` in a transaction of its own with the role's timeouts lifted, unless already in one (a dry-run). */
async function whole<T>(db: Kysely<unknown>, inTransaction: boolean, fn: (db: Kysely<unknown>) => Promise<T>): Promise<T> {
  return inTransaction ? fn(db) : unboundedTransaction(db, fn);
}

/** The session, plus `lanes - 1` connections of their own (released when `fn` is done). */
export async function withLanes<T>(pool: pg.Pool, session: Session, lanes: number, log: Logger, fn: (dbs: Kysely<unknown>[]) => Promise<T>): Promise<T> {
  if (lanes <= 1) return fn([session.db]);
  return withSession(pool, (extra) => withLanes(pool, session, lanes - 1, log, (dbs) => fn([...dbs, extra.db])), log);
}

/**
 * Classifies (and writes) seq range (from, to] in batches, one batch at a time on each of `dbs`. Every
 * batch is atomic on its own and batches never share a user (cross-key duplicates are held back), so they
 * may commit in any order; the checkpoint only moves past a batch once every batch before it committed.
 */

export async function classifyAll(
  dbs: readonly Kysely<unknown>[],
  run: ClassifyRun,
  range: { from: number; to: number; save?: ((db: Kysely<unknown>, seq: number) => Promise<void>) | undefined; lock?: HeldLock | undefined },
) {
  const { stage, options, io, log, tally, presettled } = run;
  const [first] = dbs;
  if (!first) throw new Error('classifyAll needs a connection');
  // Stage-wide: the statement timeout is lifted for them (see unbounded in migrate.ts); the batches stay bounded.
  const { rows } = await whole(first, options.dryRun, (db) =>
    sql<{ n: string }>`select count(*)::text as n from ${sql.raw(stage)} where outcome is null and seq > ${range.from}`.execute(db),
  );
  io.progress?.phase(options.dryRun ? 'comparing' : 'writing', Number(rows[0]?.n ?? 0));
  // What triage settled with nothing to write is counted for the whole stage in one pass; batches go only
  // to the ranges holding anything else. Reconcile, which lists every record, goes through every range.
  let starts: number[] = [];
  const settledRanges: { start: number; tally: Tally }[] = [];
  if (presettled.length > 0) {
    const totals = await whole(first, options.dryRun, (db) => triagedTotals(db, stage, options.batchSize, presettled, range.from));
    for (const [start, sums] of totals.byRange) {
      const settled = new Tally();
      for (const [kind, s] of sums) settled.addSums(kind === 'insert' ? 'inserted' : 'unchanged', s);
      tally.merge(settled);
      settledRanges.push({ start, tally: settled });
      io.progress?.advance(settled.count);
    }
    starts = totals.rangesWithOthers;
  } else {
    for (let start = range.from; start < range.to; start += options.batchSize) starts.push(start);
  }
  let next = 0;
  let batch = 0;
  let failure: { error: unknown } | undefined;
  const checkpoint = new Checkpoint(
    starts,
    range.to,
    run.committed,
    settledRanges.sort((a, b) => a.start - b.start),
  );
  const stop = () => failure !== undefined || io.signal?.aborted === true;

  const lane = async (db: Kysely<unknown>) => {
    while (next < starts.length && !stop()) {
      const start = starts[next] as number;
      const end = Math.min(start + options.batchSize, range.to);
      next += 1;
      batch += 1;
      const batchLog = log.child({ batch });
      const decided = new Tally();
      try {
        // A batch cut short by a statement timeout (see processChunk) leaves the rest of its range to a
        // next call: the range is done when all of it is.
        for (let afterSeq = start; afterSeq < end;) {
          const lost = range.lock?.lost();
          // Retried as a lost connection: the next attempt takes the lock again before writing anything.
          if (lost) throw new Error('the write lock was lost with its connection', { cause: lost });
          afterSeq = await classifyBatch(db, run, batchLog, afterSeq, end - afterSeq, decided);
        }
      } catch (error) {
        failure ??= { error };
        return;
      }
      const upTo = checkpoint.done(start, decided);
      // On this lane's connection: another lane's may be inside a batch's transaction.
      if (upTo !== undefined) await range.save?.(db, upTo);
    }
  };
  await Promise.all(dbs.map(lane));
  if (failure) throw failure.error;
  if (!stop()) {
    const upTo = checkpoint.finish();
    if (upTo !== undefined) await range.save?.(first, upTo);
  }
}

/**
 * How far every record is decided, as batches finish in any order: up to the start of the first batch
 * not done yet (records between batches needed no batch), or to the end once all are done. What the
 * batches and the settled ranges it passes decided is added to `committed`, so a saved checkpoint carries the
 * counts of everything up to it.
 */

export class Checkpoint {
  private readonly finished = new Map<number, Tally>();
  private first = 0;
  private settled = 0;

  constructor(
    private readonly starts: readonly number[],
    private readonly end: number,
    readonly committed: Tally = new Tally(),
    private readonly settledRanges: readonly { readonly start: number; readonly tally: Tally }[] = [],
  ) {}

  /** Marks the batch starting after `start` done, with what it decided; returns the new checkpoint if it moved. */
  done(start: number, decided: Tally = new Tally()): number | undefined {
    this.finished.set(start, decided);
    const before = this.first;
    for (let at = this.starts[this.first]; at !== undefined && this.finished.has(at); at = this.starts[this.first]) {
      this.committed.merge(this.finished.get(at) as Tally);
      this.finished.delete(at);
      this.first += 1;
    }
    if (this.first === before) return undefined;
    return this.pass(this.starts[this.first] ?? this.end);
  }

  /** Every batch is done: the checkpoint reaches the end (undefined if it is there already). */
  finish(): number | undefined {
    if (this.first < this.starts.length) throw new Error('internal error: checkpoint finished with batches outstanding');
    if (this.settled >= this.settledRanges.length && this.starts.length > 0) return undefined;
    return this.pass(this.end);
  }

  private pass(upTo: number): number {
    for (let range = this.settledRanges[this.settled]; range !== undefined && range.start < upTo; range = this.settledRanges[this.settled]) {
      this.committed.merge(range.tally);
      this.settled += 1;
    }
    return upTo;
  }
}

/** What every batch of a run shares. */
export interface ClassifyRun {
  readonly stage: string;
  readonly options: MigrateOptions;
  readonly io: MigrateIo;
  readonly runId: string;
  readonly log: Logger;
  /** Every record decided, for the report (with what the runs this one resumed decided). */
  readonly tally: Tally;
  /** What is decided up to the checkpoint (see Checkpoint). */
  readonly committed: Tally;
  /** Triage kinds counted for the whole stage before the batches (see presettledKinds). */
  readonly presettled: readonly TriageKind[];
}

/** One batch: classified, written, tallied (into the run's tally and `decided`) and listed. Returns the last seq it covered. */
async function classifyBatch(db: Kysely<unknown>, run: ClassifyRun, log: Logger, afterSeq: number, size: number, decided: Tally): Promise<number> {
  const { stage, options, io, runId, tally } = run;
  const result = await processChunk(db, {
    stage,
    afterSeq,
    size,
    dryRun: options.dryRun,
    runId,
    log,
    take: options.take,
    everyRecord: io.onClassified !== undefined,
    presettled: run.presettled,
    merge: options.merge,
    combine: options.combine,
  });
  const batch = new Tally();
  for (const { outcome, sums } of result.settled) batch.addSums(outcome, sums);
  const conflicts = result.entries.filter((e) => e.outcome === 'conflict');
  await recordConflicts(
    db,
    stage,
    runId,
    conflicts.map((e) => ({ seq: e.fact.seq, reason: e.reason ?? '', detail: e.detail ?? '' })),
  );
  for (const entry of result.entries) {
    // Conflicts are counted from the stage (recorded above), everything else from the tally.
    if (entry.outcome !== 'conflict') {
      batch.add(entry.outcome, entry.reason, recordCredits(entry));
    } else {
      await io.rejects?.write(conflictEntry(entry));
    }
    await io.onClassified?.(entry);
  }
  tally.merge(batch);
  decided.merge(batch);
  io.progress?.advance(result.entries.length + result.settled.reduce((n, s) => n + s.sums.n, 0));
  return result.lastSeq;
}

/** What one decided record adds to the report: Redis's figures, and PostgreSQL's where its row differs. */
function recordCredits(entry: ClassifiedEntry): RecordCredits {
  const { fact } = entry;
  const redis = { source: fact.sourceCredits, topup: fact.topup, used: BigInt(fact.expected.total_credits_used) };
  const held = (row: UserRow) => ({ current: BigInt(row.current_credits), used: BigInt(row.total_credits_used) });
  if (entry.merge) {
    const before = fact.owner ? held(fact.owner.row) : undefined;
    return { ...redis, postgres: held(entry.merge.row), merged: { before, withheld: entry.merge.withheld } };
  }
  // A row the app deleted holds nothing: what it held when written (top-up included, if one was granted) is
  // the app's difference; a top-up the rule would add now was never granted to it.
  if (entry.outcome === 'deleted_by_app') {
    const written = entry.written ?? { current: fact.sourceCredits + fact.topup, used: redis.used };
    const topup = written.current > fact.sourceCredits && !fact.merged ? written.current - fact.sourceCredits : 0n;
    return { ...redis, topup, postgres: { current: 0n, used: 0n }, ...(fact.merged ? { merged: {} } : {}) };
  }
  // Both sides added up: PostgreSQL holds the combined row (a merged one stays a merge).
  if (entry.combined) {
    const postgres = { current: BigInt(entry.combined.current_credits), used: BigInt(entry.combined.total_credits_used) };
    // The top-up counts where the balance holds one: granted before, or with this write.
    const topup = fact.ledger?.granted || entry.topup !== undefined ? fact.topup : 0n;
    return { ...redis, topup, postgres, ...(fact.merged ? { merged: {} } : {}) };
  }
  // A top-up granted onto the app's balance: PostgreSQL holds the app's balance plus the grant.
  if (entry.topup !== undefined && fact.actual) {
    return { ...redis, postgres: { current: BigInt(fact.actual.current_credits) + entry.topup, used: BigInt(fact.actual.total_credits_used) } };
  }
  // A row merged before, or one the app changed, holds what it holds: PostgreSQL's balance is the user's.
  if (fact.merged && fact.actual) return { ...redis, postgres: held(fact.actual), merged: {} };
  // The app's row holds a top-up only if one was granted to it; one the rule adds now is granted by grant_topup.
  if (entry.outcome === 'kept_app_change' && fact.actual) return { ...redis, topup: fact.ledger?.granted ? fact.topup : 0n, postgres: held(fact.actual) };
  return redis;
}
