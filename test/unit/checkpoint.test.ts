import { describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/core/migrate.js';

describe('Checkpoint (how far a run with batches side by side is decided)', () => {
  it('moves only past batches done in order, over the gaps no batch needed, and to the end at last', () => {
    // Batches start after seq 0, 1000 and 5000; 2000..5000 and 6000..8000 needed none.
    const checkpoint = new Checkpoint([0, 1000, 5000], 8000);
    expect(checkpoint.done(1000)).toBeUndefined();
    expect(checkpoint.done(0)).toBe(5000);
    expect(checkpoint.done(5000)).toBe(8000);
  });
});
