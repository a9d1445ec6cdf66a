import { describe, expect, it } from 'vitest';
import { parseReview } from '../../src/core/take-review.js';
import { CONFLICT_CSV_HEADER, conflictCsvLines } from '../../src/report/reconcile-output.js';
import { csvRow } from '../../src/report/csv.js';
import type { ReconcileEntry } from '../../src/results/reconcile-report.js';

const entry = (over: Partial<ReconcileEntry>): ReconcileEntry => ({
  class: 'changed_in_both',
  user_id: 'u1',
  email: 'a@x.test',
  key: 'user:email:a@x.test',
  reason: 'changed_in_both',
  detail: 'Redis changed, and the app, "both"',
  columns: [
    { column: 'current_credits', base: '500', redis: '700', postgres: '450' },
    { column: 'username', base: null, redis: '=HYPERLINK("x")', postgres: 'b, c' },
  ],
  applied: false,
  review: { redis_digest: 'abc123', row_version: '7781' },
  ...over,
});

describe('--take reads back the review it is given', () => {
  it('the NDJSON review: each user with the state reviewed', () => {
    const text = [
      JSON.stringify(entry({})),
      JSON.stringify(entry({ user_id: 'u2', class: 'deleted_in_postgres', review: { redis_digest: 'd2', row_version: null } })),
    ].join('\n');
    const { users, problems } = parseReview(`${text}\n`, 'take.ndjson');
    expect(problems).toEqual([]);
    expect(Object.fromEntries(users)).toEqual({ u1: { redisDigest: 'abc123', rowVersion: '7781' }, u2: { redisDigest: 'd2', rowVersion: null } });
  });

  it('the CSV review as written (quotes, formula guards, several lines a user), a user_id with a guarded first character', () => {
    const csv =
      csvRow(CONFLICT_CSV_HEADER) +
      conflictCsvLines(entry({})) +
      conflictCsvLines(entry({ user_id: '-odd', columns: [], review: { redis_digest: null, row_version: '9' } }));
    const { users, problems } = parseReview(csv, 'take.csv');
    expect(problems).toEqual([]);
    expect(Object.fromEntries(users)).toEqual({ u1: { redisDigest: 'abc123', rowVersion: '7781' }, '-odd': { redisDigest: null, rowVersion: '9' } });
  });

  it('a bare list of user_ids is refused, saying how to make a review; so is a review without the reviewed state', () => {
    expect(parseReview('u1\nu2\n', 'ids.txt').problems).toEqual([
      expect.stringContaining('--users ids.txt is a bare list of user_ids: --take applies only the state you reviewed'),
    ]);
    const old = JSON.stringify({ ...entry({}), review: undefined });
    expect(parseReview(old, 'old.ndjson').problems).toEqual([expect.stringContaining('carries no reviewed state')]);
    expect(parseReview('', 'empty.ndjson').problems).toEqual(['--users empty.ndjson holds no user of a review']);
  });

  it('one user in two reviews with different states is refused', () => {
    const text = [JSON.stringify(entry({})), JSON.stringify(entry({ review: { redis_digest: 'other', row_version: '7781' } }))].join('\n');
    expect(parseReview(text, 'mixed.ndjson').problems).toEqual([expect.stringContaining('u1 appears with two different reviewed states')]);
  });
});
