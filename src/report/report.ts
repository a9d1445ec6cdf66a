import type { Sums } from '../sink/apply-chunk.js';
import { sql, type Kysely } from 'kysely';

export type Mode = 'dry-run' | 'apply';

export interface Credits {
  readonly current: number | string;
  readonly used: number | string;
}

/** The JSON report (`--report`). Field names are a contract: see README "Report format". */
export type RunStatus = 'finished' | 'interrupted' | 'failed';

export interface MigrateReport {
  readonly run_id: string;
  readonly mode: Mode;
  /** finished; interrupted (Ctrl-C / SIGTERM: committed batches stay); failed (a server lost, retries spent). */
  readonly status: RunStatus;
  /** Connection losses survived by retrying. */
  readonly retries: number;
  /** The unfinished run this one resumed (its stage and checkpoint), or null. */
  readonly resumed_from: string | null;
  readonly started_at: string;
  readonly finished_at: string;
  readonly duration_seconds: number;
  readonly users_per_second: number;
  readonly counts: {
    readonly scanned: number;
    readonly valid: number;
    readonly invalid: number;
    readonly inserted: number;
    readonly updated: number;
    readonly unchanged: number;
    readonly kept_app_changes: number;
    readonly conflicts: number;
    readonly whitelist_topups: number;
    readonly scan_duplicates: number;
    /** Read but not decided because the run was interrupted or failed (0 when finished). */
    readonly pending: number;
    /** Records a resumed run skipped: already decided and committed by the run it resumed. */
    readonly resumed_skipped: number;
  };
  readonly reasons: Readonly<Record<string, number>>;
  readonly credits: {
    /** Sum over valid records, as Redis holds them (before the whitelist rule). */
    readonly read: Credits;
    /** Credits added by the whitelist rule to users that are (or would be) in PostgreSQL. */
    readonly whitelist_topup: number | string;
    /** Per outcome: what PostgreSQL holds (or would hold) for migrated users; the Redis values for conflicts. */
    readonly by_outcome: Readonly<Record<string, Credits>>;
    /** Credits in rows this run inserted or updated (in a dry-run: would). */
    readonly written: Credits;
  };
}

interface OutcomeRow {
  outcome: string | null;
  reason: string | null;
  valid: boolean;
  n: number;
  source: bigint;
  topup: bigint;
  used: bigint;
  topped: number;
}

const MIGRATED = new Set(['inserted', 'updated', 'unchanged', 'kept_app_change']);

/** Counts and credit sums of classified records, kept in memory per (outcome, reason): a handful of groups. */
export class Tally {
  private readonly groups = new Map<string, OutcomeRow>();
  count = 0;

  add(outcome: string, reason: string | null, sourceCredits: bigint, topup: bigint, used: bigint): void {
    const key = `${outcome}\u0000${reason ?? ''}`;
    const row = this.groups.get(key) ?? { outcome, reason, valid: true, n: 0, source: 0n, topup: 0n, used: 0n, topped: 0 };
    row.n++;
    row.source += sourceCredits;
    row.topup += topup;
    row.used += used;
    if (topup > 0n) row.topped++;
    this.groups.set(key, row);
    this.count++;
  }

  /** Records settled together (see triage): their sums, with no reason. */
  addSums(outcome: string, sums: Sums): void {
    const key = `${outcome}\u0000`;
    const row = this.groups.get(key) ?? { outcome, reason: null, valid: true, n: 0, source: 0n, topup: 0n, used: 0n, topped: 0 };
    row.n += sums.n;
    row.source += sums.source;
    row.topup += sums.topup;
    row.used += sums.used;
    row.topped += sums.topped;
    this.groups.set(key, row);
    this.count += sums.n;
  }

  rows(): OutcomeRow[] {
    return [...this.groups.values()];
  }

  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const row of this.groups.values()) if (row.outcome) out[row.outcome] = (out[row.outcome] ?? 0) + row.n;
    return out;
  }
}

interface ReportBase {
  run_id: string;
  mode: Mode;
  started: Date;
  scanDuplicates: number;
  status: RunStatus;
  retries: { count: number };
  resumedFrom: string | null;
  resumedSkipped: number;
}

/** What a run that could not finish had done: the decisions made (and, in apply mode, committed). */
export function partialReport(base: ReportBase, tally: Tally): MigrateReport {
  return build(base, tally.rows(), 0);
}

/**
 * Counts and credit totals: classified records from the tally, records held back before classification
 * (invalid, duplicates across keys) from the stage. Every staged record must be in exactly one of the two.
 */
export async function summarise(db: Kysely<unknown>, stage: string, base: ReportBase, tally: Tally): Promise<MigrateReport> {
  const staged = await sql<{ outcome: string | null; reason: string | null; valid: boolean; n: string; source: string; topup: string; used: string; topped: string }>`
    select outcome, reason, valid, count(*)::text as n,
      coalesce(sum(source_credits), 0)::text as source, coalesce(sum(topup), 0)::text as topup,
      coalesce(sum(total_credits_used), 0)::text as used, count(*) filter (where topup > 0)::text as topped
    from ${sql.raw(stage)} group by outcome, reason, valid`.execute(db);
  const classifiable = staged.rows.filter((r) => r.outcome === null).reduce((n, r) => n + Number(r.n), 0);
  if (base.status === 'finished' && classifiable !== tally.count + base.resumedSkipped) {
    throw new Error(`internal error: ${classifiable} staged records to classify, ${tally.count} classified`);
  }
  const held: OutcomeRow[] = [
    ...staged.rows
      .filter((r) => r.outcome !== null)
      .map((r) => ({ ...r, n: Number(r.n), source: BigInt(r.source), topup: BigInt(r.topup), used: BigInt(r.used), topped: Number(r.topped) })),
  ];
  const pending = classifiable - tally.count - base.resumedSkipped;
  return build(base, [...held, ...tally.rows()], pending);
}

function build(base: ReportBase, rows: readonly OutcomeRow[], pending: number): MigrateReport {
  const count = (test: (r: OutcomeRow) => boolean) => rows.filter(test).reduce((n, r) => n + r.n, 0);
  const total = (test: (r: OutcomeRow) => boolean, pick: (r: OutcomeRow) => bigint) =>
    rows.filter(test).reduce((n, r) => n + pick(r), 0n);

  const reasons: Record<string, number> = {};
  for (const r of rows) if (r.reason) reasons[r.reason] = (reasons[r.reason] ?? 0) + r.n;

  const byOutcome: Record<string, Credits> = {};
  for (const outcome of [...MIGRATED, 'conflict']) {
    const of = (r: OutcomeRow) => r.outcome === outcome;
    const withTopup = MIGRATED.has(outcome);
    byOutcome[outcome] = {
      current: money(total(of, (r) => r.source + (withTopup ? r.topup : 0n))),
      used: money(total(of, (r) => r.used)),
    };
  }
  const migrated = (r: OutcomeRow) => r.outcome !== null && MIGRATED.has(r.outcome);
  const written = (r: OutcomeRow) => r.outcome === 'inserted' || r.outcome === 'updated';
  const finished = new Date();
  const seconds = (finished.getTime() - base.started.getTime()) / 1000;
  const scanned = count(() => true) + pending + base.resumedSkipped;
  return {
    run_id: base.run_id,
    mode: base.mode,
    status: base.status,
    retries: base.retries.count,
    resumed_from: base.resumedFrom,
    started_at: base.started.toISOString(),
    finished_at: finished.toISOString(),
    duration_seconds: Number(seconds.toFixed(3)),
    users_per_second: seconds > 0 ? Math.round(scanned / seconds) : scanned,
    counts: {
      scanned,
      valid: count((r) => r.valid) + pending + base.resumedSkipped,
      invalid: count((r) => !r.valid),
      inserted: count((r) => r.outcome === 'inserted'),
      updated: count((r) => r.outcome === 'updated'),
      unchanged: count((r) => r.outcome === 'unchanged'),
      kept_app_changes: count((r) => r.outcome === 'kept_app_change'),
      conflicts: count((r) => r.outcome === 'conflict'),
      whitelist_topups: rows.filter(migrated).reduce((n, r) => n + r.topped, 0),
      scan_duplicates: base.scanDuplicates,
      pending,
      resumed_skipped: base.resumedSkipped,
    },
    reasons,
    credits: {
      read: {
        current: money(total((r) => r.valid, (r) => r.source)),
        used: money(total((r) => r.valid, (r) => r.used)),
      },
      whitelist_topup: money(total(migrated, (r) => r.topup)),
      by_outcome: byOutcome,
      written: {
        current: money(total(written, (r) => r.source + r.topup)),
        used: money(total(written, (r) => r.used)),
      },
    },
  };
}

/** JSON numbers when exact; a decimal string beyond 2^53 so no credit is ever rounded away. */
export function money(value: bigint): number | string {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
}
