import { describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/core/classify.js';
import { Tally } from '../../src/report/report.js';

function decided(outcome: string, n: number): Tally {
  const tally = new Tally();
  for (let i = 0; i < n; i++) tally.add(outcome, null, { source: 10n, topup: 0n, used: 1n });
  return tally;
}

describe('Checkpoint (how far a run with batches side by side is decided)', () => {
  it('moves only past batches done in order, over the gaps no batch needed, and to the end at last', () => {
    // Batches start after seq 0, 1000 and 5000; 2000..5000 and 6000..8000 needed none.
    const checkpoint = new Checkpoint([0, 1000, 5000], 8000);
    expect(checkpoint.done(1000)).toBeUndefined();
    expect(checkpoint.done(0)).toBe(5000);
    expect(checkpoint.done(5000)).toBe(8000);
    expect(checkpoint.finish()).toBeUndefined();
  });

  it('carries the counts of exactly what it passed: batches and the settled ranges between them', () => {
    const settled = [0, 1000, 2000, 3000, 4000].map((start) => ({ start, tally: decided('unchanged', 5) }));
    const inherited = decided('inserted', 7);
    const checkpoint = new Checkpoint([1000, 3000], 5000, inherited, settled);
    expect(checkpoint.done(3000, decided('updated', 2))).toBeUndefined();
    expect(inherited.count).toBe(7);
    // Past the batch after 1000, up to the next batch (after 3000): settled ranges 0, 1000, 2000.
    expect(checkpoint.done(1000, decided('updated', 3))).toBe(5000);
    expect(checkpoint.committed.counts()).toEqual({ inserted: 7, unchanged: 25, updated: 5 });
    // Round trip through the runs table's JSON keeps every figure.
    expect(Tally.fromJSON(JSON.parse(JSON.stringify(checkpoint.committed))).rows()).toEqual(checkpoint.committed.rows());
  });

  it('with no batch at all, finish passes every settled range', () => {
    const checkpoint = new Checkpoint([], 3000, new Tally(), [
      { start: 0, tally: decided('unchanged', 4) },
      { start: 1000, tally: decided('unchanged', 6) },
    ]);
    expect(checkpoint.finish()).toBe(3000);
    expect(checkpoint.committed.count).toBe(10);
  });
});
