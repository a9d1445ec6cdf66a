/**
 * The report's arithmetic (docs/reports.md "Report format"), property-based: random mixes of decided records and
 * settled groups, part of them decided by an earlier run whose tally went through the checkpoint's JSON,
 * must give counts that add up, credits that close, and exactly the sums an independent model computes.
 *
 * Only the tally side of the report can be built without PostgreSQL: partialReport always reports
 * `pending: 0`, and every tally row is valid (invalid records and the conflicts real runs record come from
 * the stage, which only `summarise` reads). Conflicts are added here through the tally with no top-up,
 * as the stage reports them: held back at Redis's balance. Merges (reconcile --merge) are left out: creditsClose
 * does not yet count merge_difference, so a report with a merged row never closes (see docs/reports.md "Report format").
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { creditsClose, money, partialReport, Tally, type ReportBase } from '../../src/report/report.js';
import type { MigrateReport } from '../../src/results/migrate-report.js';
import type { Sums } from '../../src/results/sums.js';

const MAX_CREDITS = 2n ** 31n - 1n;
const MIGRATED = ['inserted', 'updated', 'unchanged', 'kept_app_change'] as const;
type Outcome = (typeof MIGRATED)[number] | 'conflict';
const CONFLICT_REASONS = ['email_taken', 'changed_in_both', 'row_not_written_by_tool', 'deleted_in_postgres', 'changed_during_run'];

/** One record classified in a batch (Tally.add). */
interface Decided {
  readonly outcome: Outcome;
  readonly reason: string | null;
  readonly source: bigint;
  readonly topup: bigint;
  readonly used: bigint;
  /** kept_app_change: what the app left in PostgreSQL, unlike Redis's (plus top-up). */
  readonly postgres?: { readonly current: bigint; readonly used: bigint };
  /** Decided by the run this one resumed (its tally came back through toJSON / fromJSON). */
  readonly earlier: boolean;
}

/** Records triage settled in one pass (Tally.addSums). */
interface Settled {
  readonly outcome: 'inserted' | 'unchanged';
  readonly sums: Sums;
  readonly earlier: boolean;
}

const credit = fc.bigInt({ min: 0n, max: MAX_CREDITS });

const decided: fc.Arbitrary<Decided> = fc
  .record({
    outcome: fc.constantFrom<Outcome>(...MIGRATED, 'conflict'),
    reason: fc.constantFrom(...CONFLICT_REASONS),
    source: credit,
    used: credit,
    // By how much the whitelist rule, max(Redis, whitelist credits), raises the balance: none, a little, a lot.
    raise: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 3n }), credit),
    app: fc.record({ current: credit, used: credit }),
    earlier: fc.boolean(),
  })
  .map(({ outcome, reason, source, used, raise, app, earlier }) => {
    // Whitelist credits never exceed the limit either. A conflict is held back at Redis's balance.
    const topup = outcome === 'conflict' ? 0n : raise < MAX_CREDITS - source ? raise : MAX_CREDITS - source;
    const base = { outcome, reason: outcome === 'conflict' ? reason : null, source, topup, used, earlier };
    if (outcome !== 'kept_app_change') return base;
    // The app changed the row: its balance differs from what the tool wrote.
    const current = app.current === source + topup ? (app.current + 1n) % (MAX_CREDITS + 1n) : app.current;
    return { ...base, postgres: { current, used: app.used } };
  });

/** `n` records' sums, each record within the credit limits. */
const settled = (maxN: number): fc.Arbitrary<Settled> =>
  fc.integer({ min: 0, max: maxN }).chain((n) =>
    fc.record({
      outcome: fc.constantFrom<'inserted' | 'unchanged'>('inserted', 'unchanged'),
      sums: fc.record({
        n: fc.constant(n),
        source: fc.bigInt({ min: 0n, max: BigInt(n) * MAX_CREDITS }),
        topup: fc.bigInt({ min: 0n, max: BigInt(n) * MAX_CREDITS }),
        used: fc.bigInt({ min: 0n, max: BigInt(n) * MAX_CREDITS }),
        topped: fc.integer({ min: 0, max: n }),
      }),
      earlier: fc.boolean(),
    }),
  );

function base(): ReportBase {
  return {
    run_id: 'run_test',
    mode: 'apply',
    started: new Date(),
    scanDuplicates: 0,
    status: 'finished',
    retries: { count: 0 },
    resumedFrom: null,
    resumedSkipped: 0,
    resumable: false,
    source: null,
    whitelist: null,
    unnormalisedEmails: null,
  };
}

/**
 * The way a run builds its tally: the earlier run's tally saved as JSON with the checkpoint and read back;
 * then this run's settled groups and batches, each a tally of its own merged in.
 */
function tallyOf(records: readonly Decided[], groups: readonly Settled[], batchSize: number): Tally {
  const earlier = new Tally();
  for (const g of groups.filter((g) => g.earlier)) earlier.addSums(g.outcome, g.sums);
  for (const r of records.filter((r) => r.earlier)) earlier.add(r.outcome, r.reason, r);
  const tally = Tally.fromJSON(JSON.parse(JSON.stringify(earlier)));
  for (const g of groups.filter((g) => !g.earlier)) {
    const one = new Tally();
    one.addSums(g.outcome, g.sums);
    tally.merge(one);
  }
  const own = records.filter((r) => !r.earlier);
  for (let i = 0; i < own.length; i += batchSize) {
    const batch = new Tally();
    for (const r of own.slice(i, i + batchSize)) batch.add(r.outcome, r.reason, r);
    tally.merge(batch);
  }
  return tally;
}

/** What the report must say, computed from the records themselves. */
function model(records: readonly Decided[], groups: readonly Settled[]) {
  const n: Record<Outcome, number> = { inserted: 0, updated: 0, unchanged: 0, kept_app_change: 0, conflict: 0 };
  const held: Record<Outcome, { current: bigint; used: bigint }> = {
    inserted: { current: 0n, used: 0n },
    updated: { current: 0n, used: 0n },
    unchanged: { current: 0n, used: 0n },
    kept_app_change: { current: 0n, used: 0n },
    conflict: { current: 0n, used: 0n },
  };
  const read = { current: 0n, used: 0n };
  const appDifference = { current: 0n, used: 0n };
  const reasons: Record<string, number> = {};
  let topup = 0n;
  let topped = 0;
  for (const g of groups) {
    n[g.outcome] += g.sums.n;
    read.current += g.sums.source;
    read.used += g.sums.used;
    topup += g.sums.topup;
    topped += g.sums.topped;
    held[g.outcome].current += g.sums.source + g.sums.topup;
    held[g.outcome].used += g.sums.used;
  }
  for (const r of records) {
    n[r.outcome] += 1;
    read.current += r.source;
    read.used += r.used;
    topup += r.topup;
    if (r.topup > 0n) topped += 1;
    const current = r.postgres?.current ?? r.source + r.topup;
    const used = r.postgres?.used ?? r.used;
    held[r.outcome].current += current;
    held[r.outcome].used += used;
    if (r.outcome === 'kept_app_change') {
      appDifference.current += current - r.source - r.topup;
      appDifference.used += used - r.used;
    }
    if (r.reason) reasons[r.reason] = (reasons[r.reason] ?? 0) + 1;
  }
  return { n, held, read, appDifference, reasons, topup, topped };
}

const asMoney = (c: { current: bigint; used: bigint }) => ({ current: money(c.current), used: money(c.used) });

function expectArithmetic(report: MigrateReport): void {
  const c = report.counts;
  expect(c.scanned).toBe(c.valid + c.invalid);
  // `merged` (reconcile --merge) is an outcome of its own; none is built here (see the note at the top).
  expect(c.merged).toBe(0);
  expect(c.valid).toBe(c.inserted + c.updated + c.unchanged + c.kept_app_changes + c.merged + c.conflicts + c.pending);
  expect(creditsClose(report), JSON.stringify(report.credits)).toBe(true);
}

describe('report arithmetic', () => {
  it("counts add up, credits close and every figure is the model's, through checkpoint JSON and merges", () => {
    fc.assert(
      fc.property(
        fc.array(decided, { maxLength: 300 }),
        fc.array(settled(5000), { maxLength: 6 }),
        fc.integer({ min: 1, max: 50 }),
        (records, groups, batchSize) => {
          const report = partialReport(base(), tallyOf(records, groups, batchSize));
          expectArithmetic(report);

          const m = model(records, groups);
          expect(report.counts).toMatchObject({
            scanned: records.length + groups.reduce((s, g) => s + g.sums.n, 0),
            invalid: 0,
            pending: 0,
            inserted: m.n.inserted,
            updated: m.n.updated,
            unchanged: m.n.unchanged,
            kept_app_changes: m.n.kept_app_change,
            conflicts: m.n.conflict,
            whitelist_topups: m.topped,
          });
          expect(report.reasons).toEqual(m.reasons);
          expect(report.credits.read).toEqual(asMoney(m.read));
          expect(report.credits.whitelist_topup).toBe(money(m.topup));
          expect(report.credits.app_difference).toEqual(asMoney(m.appDifference));
          for (const outcome of [...MIGRATED, 'conflict'] as const) {
            expect(report.credits.by_outcome[outcome], outcome).toEqual(asMoney(m.held[outcome]));
          }
          expect(report.credits.written).toEqual(
            asMoney({
              current: m.held.inserted.current + m.held.updated.current,
              used: m.held.inserted.used + m.held.updated.used,
            }),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a tally read back from the checkpoint reports exactly what it reported before', () => {
    fc.assert(
      fc.property(fc.array(decided, { maxLength: 100 }), fc.array(settled(5000), { maxLength: 4 }), (records, groups) => {
        const direct = tallyOf(
          records.map((r) => ({ ...r, earlier: false })),
          groups.map((g) => ({ ...g, earlier: false })),
          1000,
        );
        const saved = Tally.fromJSON(JSON.parse(JSON.stringify(direct)));
        const timeless = ({ counts, reasons, credits }: MigrateReport) => ({ counts, reasons, credits });
        expect(timeless(partialReport(base(), saved))).toEqual(timeless(partialReport(base(), direct)));
        expect(saved.count).toBe(direct.count);
      }),
      { numRuns: 200 },
    );
  });

  it('past 2^53 the sums stay exact (decimal strings) and still close', () => {
    fc.assert(
      fc.property(fc.array(settled(20_000_000), { minLength: 1, maxLength: 4 }), fc.array(decided, { maxLength: 20 }), (groups, records) => {
        const report = partialReport(base(), tallyOf(records, groups, 7));
        expectArithmetic(report);
        const m = model(records, groups);
        expect(report.credits.read).toEqual(asMoney(m.read));
        if (m.read.current > BigInt(Number.MAX_SAFE_INTEGER)) expect(typeof report.credits.read.current).toBe('string');
      }),
      { numRuns: 100 },
    );
  });
});
