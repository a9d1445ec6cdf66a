import cliProgress from 'cli-progress';
import type { Progress } from '../core/migrate.js';

/** A progress bar on stderr when it is a terminal; nothing in CI, in pipes, or with --no-progress. */
export function createProgress(enabled: boolean): Progress | undefined {
  if (!enabled || !process.stderr.isTTY || process.env.CI) return undefined;
  let bar: cliProgress.SingleBar | undefined;
  let counted = 0;
  return {
    phase(name, total) {
      bar?.stop();
      counted = 0;
      const format = total === undefined
        ? `${name.padEnd(14)} {value} keys | {duration_formatted}`
        : `${name.padEnd(14)} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted}`;
      bar = new cliProgress.SingleBar(
        { format, stream: process.stderr, hideCursor: true, etaBuffer: 50, noTTYOutput: false },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total ?? 0, 0);
    },
    advance(count) {
      counted += count;
      bar?.update(counted);
    },
    done() {
      bar?.stop();
      bar = undefined;
    },
  };
}
