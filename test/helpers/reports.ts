import { expect } from 'vitest';
import { creditsClose } from '../../src/report/report.js';
import type { Credits, MigrateReport } from '../../src/results/migrate-report.js';

/**
 * The report's equations (docs/reports.md "Report format"): every record counted once, and the credits close, worked
 * out here as well as by the tool's own creditsClose (a test of the report must not trust the report's code).
 */
export function expectReportAddsUp(report: MigrateReport): void {
  const c = report.counts;
  expect(c.scanned, 'scanned = valid + invalid').toBe(c.valid + c.invalid);
  expect(c.valid, 'valid = every outcome + pending').toBe(
    c.inserted + c.updated + c.unchanged + c.kept_app_changes + c.deleted_by_app + c.merged + c.conflicts + c.pending,
  );
  const k = report.credits;
  const sum = (pick: (x: Credits) => number | string) => Object.values(k.by_outcome).reduce((n, x) => n + BigInt(pick(x)), 0n);
  const read = BigInt(k.read.current) + BigInt(k.whitelist_topup) + BigInt(k.app_difference.current) + BigInt(k.merge_difference.current);
  expect(read, `credits: ${JSON.stringify(k)}`).toBe(sum((x) => x.current));
  expect(BigInt(k.read.used) + BigInt(k.app_difference.used) + BigInt(k.merge_difference.used), `credits used: ${JSON.stringify(k)}`).toBe(sum((x) => x.used));
  expect(creditsClose(report), JSON.stringify(k)).toBe(true);
}
