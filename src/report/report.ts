import { sql, type Kysely } from 'kysely';
import type { Credits, MigrateReport, Mode, RdbFileInfo, RunStatus, SourceInfo, WhitelistInfo } from '../results/migrate-report.js';
import type { Sums } from '../results/sums.js';

interface OutcomeRow {
  outcome: string | null;
  reason: string | null;
  valid: boolean;
  n: number;
  /** Credits as Redis holds them, what the whitelist rule added, credits used as Redis holds them. */
  source: bigint;
  topup: bigint;
  used: bigint;
  topped: number;
  /** The balance and credits used this outcome leaves in PostgreSQL (Redis's, held back, for conflicts). */
  held: bigint;
  heldUsed: bigint;
  /** The row is a merge of a Redis account into a new-app row (this run's or an earlier one's). */
  merged: boolean;
  /** Merges of this run: the new-app row's balance and credits used before, and the bonus withheld. */
  mergedPostgres: bigint;
  mergedPostgresUsed: bigint;
  withheld: bigint;
}

const MIGRATED = new Set(['inserted', 'updated', 'unchanged', 'kept_app_change', 'deleted_by_app', 'merged']);

/** One decided record's figures: Redis's, and PostgreSQL's balance where it differs (a kept app change). */
export interface RecordCredits {
  readonly source: bigint;
  readonly topup: bigint;
  readonly used: bigint;
  /** What PostgreSQL holds when the app's row is kept; default: Redis's plus the top-up. */
  readonly postgres?: { readonly current: bigint; readonly used: bigint } | undefined;
  /** The row is a merge (see OutcomeRow.merged); `before`/`withheld` for a merge done now. */
  readonly merged?: { readonly before?: { readonly current: bigint; readonly used: bigint }; readonly withheld?: bigint } | undefined;
}

/** Counts and credit sums of classified records, kept in memory per (outcome, reason): a handful of groups. */
export class Tally {
  private readonly groups = new Map<string, OutcomeRow>();
  count = 0;

  add(outcome: string, reason: string | null, credits: RecordCredits): void {
    const row = this.group(outcome, reason, credits.merged !== undefined);
    row.mergedPostgres += credits.merged?.before?.current ?? 0n;
    row.mergedPostgresUsed += credits.merged?.before?.used ?? 0n;
    row.withheld += credits.merged?.withheld ?? 0n;
    row.n++;
    row.source += credits.source;
    row.topup += credits.topup;
    row.used += credits.used;
    if (credits.topup > 0n) row.topped++;
    // A conflict holds back what Redis has (the top-up is granted only with a row).
    row.held += credits.postgres?.current ?? credits.source + (outcome === 'conflict' ? 0n : credits.topup);
    row.heldUsed += credits.postgres?.used ?? credits.used;
    this.count++;
  }

  /** Records settled together (see triage): their sums, with no reason. PostgreSQL holds what Redis says. */
  addSums(outcome: string, sums: Sums): void {
    const row = this.group(outcome, null);
    row.n += sums.n;
    row.source += sums.source;
    row.topup += sums.topup;
    row.used += sums.used;
    row.topped += sums.topped;
    row.held += sums.source + sums.topup;
    row.heldUsed += sums.used;
    this.count += sums.n;
  }

  merge(other: Tally): void {
    for (const r of other.groups.values()) {
      const row = this.group(r.outcome ?? '', r.reason, r.merged);
      row.mergedPostgres += r.mergedPostgres;
      row.mergedPostgresUsed += r.mergedPostgresUsed;
      row.withheld += r.withheld;
      row.n += r.n;
      row.source += r.source;
      row.topup += r.topup;
      row.used += r.used;
      row.topped += r.topped;
      row.held += r.held;
      row.heldUsed += r.heldUsed;
    }
    this.count += other.count;
  }

  /** For migrate_users.runs.job_tally: credits as decimal strings (money is never a float). */
  toJSON(): object {
    return [...this.groups.values()].map((r) => ({
      ...r,
      source: r.source.toString(),
      topup: r.topup.toString(),
      used: r.used.toString(),
      held: r.held.toString(),
      heldUsed: r.heldUsed.toString(),
      mergedPostgres: r.mergedPostgres.toString(),
      mergedPostgresUsed: r.mergedPostgresUsed.toString(),
      withheld: r.withheld.toString(),
    }));
  }

  static fromJSON(json: unknown): Tally {
    const tally = new Tally();
    if (!Array.isArray(json)) return tally;
    for (const r of json as Record<string, string | number | boolean | null>[]) {
      const row = tally.group(String(r.outcome), r.reason === null ? null : String(r.reason), r.merged === true);
      row.mergedPostgres += BigInt(String(r.mergedPostgres ?? 0));
      row.mergedPostgresUsed += BigInt(String(r.mergedPostgresUsed ?? 0));
      row.withheld += BigInt(String(r.withheld ?? 0));
      row.n += Number(r.n);
      row.source += BigInt(String(r.source ?? 0));
      row.topup += BigInt(String(r.topup ?? 0));
      row.used += BigInt(String(r.used ?? 0));
      row.topped += Number(r.topped);
      row.held += BigInt(String(r.held ?? 0));
      row.heldUsed += BigInt(String(r.heldUsed ?? 0));
      tally.count += Number(r.n);
    }
    return tally;
  }

  rows(): OutcomeRow[] {
    return [...this.groups.values()];
  }

  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const row of this.groups.values()) if (row.outcome) out[row.outcome] = (out[row.outcome] ?? 0) + row.n;
    return out;
  }

  private group(outcome: string, reason: string | null, merged = false): OutcomeRow {
    const key = `${outcome}\u0000${reason ?? ''}\u0000${String(merged)}`;
    let row = this.groups.get(key);
    if (!row) {
      row = {
        outcome,
        reason,
        valid: true,
        n: 0,
        source: 0n,
        topup: 0n,
        used: 0n,
        topped: 0,
        held: 0n,
        heldUsed: 0n,
        merged,
        mergedPostgres: 0n,
        mergedPostgresUsed: 0n,
        withheld: 0n,
      };
      this.groups.set(key, row);
    }
    return row;
  }
}

/** The source in words, for summaries and messages. */
export function describeSource(source: SourceInfo): string {
  const file = (f: RdbFileInfo) => `${f.file} (sha256 ${f.sha256.slice(0, 12)}, ${f.bytes.toLocaleString('en-US')} bytes, created ${f.created})`;
  switch (source.kind) {
    case 'rdb':
      return `snapshot ${file(source)}`;
    case 'rdb-cluster':
      return `${source.files.length} snapshots: ${source.files.map(file).join('; ')}`;
    case 'redis':
    case 'redis-cluster':
      return source.url;
  }
}

export interface ReportBase {
  run_id: string;
  mode: Mode;
  started: Date;
  scanDuplicates: number;
  status: RunStatus;
  retries: { count: number };
  resumedFrom: string | null;
  /** Records decided by the runs this one resumed (their counts are in the tally it was given). */
  resumedSkipped: number;
  /** A writing run whose stage is complete and recorded: the next run of the command continues from it. */
  resumable: boolean;
  source: SourceInfo | null;
  whitelist: WhitelistInfo | null;
  unnormalisedEmails: number | null;
}

/** What a run that could not finish had done: the decisions made (and, in apply mode, committed). */
export function partialReport(base: ReportBase, tally: Tally): MigrateReport {
  return build(base, tally.rows(), 0);
}

/**
 * Counts and credit totals: classified records from the tally (which includes what the runs this one resumed
 * decided), records held back before or during classification (invalid, duplicates across keys, conflicts)
 * from the stage. Every staged record must be in exactly one of the two.
 */
export async function summarise(db: Kysely<unknown>, stage: string, base: ReportBase, tally: Tally): Promise<MigrateReport> {
  const staged = await sql<{
    outcome: string | null;
    reason: string | null;
    valid: boolean;
    n: string;
    source: string;
    topup: string;
    used: string;
    topped: string;
  }>`
    select outcome, reason, valid, count(*)::text as n,
      coalesce(sum(source_credits), 0)::text as source, coalesce(sum(topup), 0)::text as topup,
      coalesce(sum(total_credits_used), 0)::text as used, count(*) filter (where topup > 0)::text as topped
    from ${sql.raw(stage)} group by outcome, reason, valid`.execute(db);
  const classifiable = staged.rows.filter((r) => r.outcome === null).reduce((n, r) => n + Number(r.n), 0);
  if (base.status === 'finished' && classifiable !== tally.count) {
    throw new Error(`internal error: ${classifiable} staged records to classify, ${tally.count} classified`);
  }
  const held: OutcomeRow[] = staged.rows
    .filter((r) => r.outcome !== null)
    .map((r) => {
      const source = BigInt(r.source);
      const used = BigInt(r.used);
      return {
        ...r,
        n: Number(r.n),
        source,
        topup: BigInt(r.topup),
        used,
        topped: Number(r.topped),
        held: source,
        heldUsed: used,
        merged: false,
        mergedPostgres: 0n,
        mergedPostgresUsed: 0n,
        withheld: 0n,
      };
    });
  return build(base, [...held, ...tally.rows()], classifiable - tally.count);
}

/** The credit equation of a report: true when it closes exactly (docs/reports.md "Report format"). */
export function creditsClose(report: MigrateReport): boolean {
  const c = report.credits;
  const sum = (pick: (x: Credits) => number | string) => Object.values(c.by_outcome).reduce((n, x) => n + BigInt(pick(x)), 0n);
  return (
    BigInt(c.read.current) + BigInt(c.whitelist_topup) + BigInt(c.app_difference.current) + BigInt(c.merge_difference.current) === sum((x) => x.current) &&
    BigInt(c.read.used) + BigInt(c.app_difference.used) + BigInt(c.merge_difference.used) === sum((x) => x.used)
  );
}

function build(base: ReportBase, rows: readonly OutcomeRow[], pending: number): MigrateReport {
  const count = (test: (r: OutcomeRow) => boolean) => rows.filter(test).reduce((n, r) => n + r.n, 0);
  const total = (test: (r: OutcomeRow) => boolean, pick: (r: OutcomeRow) => bigint) => rows.filter(test).reduce((n, r) => n + pick(r), 0n);

  const reasons: Record<string, number> = {};
  for (const r of rows) if (r.reason) reasons[r.reason] = (reasons[r.reason] ?? 0) + r.n;

  const byOutcome: Record<string, Credits> = {};
  for (const outcome of [...MIGRATED, 'conflict']) {
    const of = (r: OutcomeRow) => r.outcome === outcome;
    byOutcome[outcome] = { current: money(total(of, (r) => r.held)), used: money(total(of, (r) => r.heldUsed)) };
  }
  const migrated = (r: OutcomeRow) => r.outcome !== null && MIGRATED.has(r.outcome);
  const written = (r: OutcomeRow) => r.outcome === 'inserted' || r.outcome === 'updated';
  // Rows the app changed or deleted, and top-ups granted onto the app's balance (updated): what the app
  // changed since the tool wrote them. Plain inserts and updates hold what Redis says: they add nothing.
  const kept = (r: OutcomeRow) => (r.outcome === 'kept_app_change' || r.outcome === 'deleted_by_app' || r.outcome === 'updated') && !r.merged;
  const mergedRow = (r: OutcomeRow) => r.merged && r.outcome !== 'conflict';
  const mergedNow = (r: OutcomeRow) => r.outcome === 'merged';
  const finished = new Date();
  const seconds = (finished.getTime() - base.started.getTime()) / 1000;
  const scanned = count(() => true) + pending;
  return {
    run_id: base.run_id,
    mode: base.mode,
    status: base.status,
    source: base.source,
    retries: base.retries.count,
    resumed_from: base.resumedFrom,
    resumable: base.status !== 'finished' && base.resumable,
    started_at: base.started.toISOString(),
    finished_at: finished.toISOString(),
    duration_seconds: Number(seconds.toFixed(3)),
    users_per_second: seconds > 0 ? Math.round(scanned / seconds) : scanned,
    counts: {
      scanned,
      valid: count((r) => r.valid) + pending,
      invalid: count((r) => !r.valid),
      inserted: count((r) => r.outcome === 'inserted'),
      updated: count((r) => r.outcome === 'updated'),
      unchanged: count((r) => r.outcome === 'unchanged'),
      kept_app_changes: count((r) => r.outcome === 'kept_app_change'),
      deleted_by_app: count((r) => r.outcome === 'deleted_by_app'),
      merged: count(mergedNow),
      conflicts: count((r) => r.outcome === 'conflict'),
      whitelist_topups: rows.filter(migrated).reduce((n, r) => n + r.topped, 0),
      scan_duplicates: base.scanDuplicates,
      pending,
      resumed_skipped: base.resumedSkipped,
    },
    reasons,
    whitelist: base.whitelist,
    postgres_unnormalised_emails: base.unnormalisedEmails,
    credits: {
      read: {
        current: money(
          total(
            (r) => r.valid,
            (r) => r.source,
          ),
        ),
        used: money(
          total(
            (r) => r.valid,
            (r) => r.used,
          ),
        ),
      },
      whitelist_topup: money(total(migrated, (r) => r.topup)),
      app_difference: {
        current: money(total(kept, (r) => r.held - r.source - r.topup)),
        used: money(total(kept, (r) => r.heldUsed - r.used)),
      },
      merges: {
        redis: money(total(mergedNow, (r) => r.source + r.topup)),
        postgres: money(total(mergedNow, (r) => r.mergedPostgres)),
        bonus_withheld: money(total(mergedNow, (r) => r.withheld)),
        result: money(total(mergedNow, (r) => r.held)),
        used_redis: money(total(mergedNow, (r) => r.used)),
        used_postgres: money(total(mergedNow, (r) => r.mergedPostgresUsed)),
      },
      merge_difference: {
        current: money(total(mergedRow, (r) => r.held - r.source - r.topup)),
        used: money(total(mergedRow, (r) => r.heldUsed - r.used)),
      },
      by_outcome: byOutcome,
      written: {
        current: money(total(written, (r) => r.held)),
        used: money(total(written, (r) => r.heldUsed)),
      },
    },
  };
}

/** JSON numbers when exact; a decimal string beyond 2^53 so no credit is ever rounded away. */
export function money(value: bigint): number | string {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value.toString();
}
