import cliProgress from 'cli-progress';
import type { Progress } from '../core/migrate.js';

/** Thousands separators in every number a person reads. */
export function count(n: number | bigint): string {
  return n.toLocaleString('en-US');
}

/**
 * stderr as a person sees it: at most one live progress bar, and log lines printed above it, never
 * through it. Everything the tool writes to stderr while a bar may be showing goes through `print`.
 */
export class Screen {
  private bars: cliProgress.MultiBar | undefined;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  /** A person is watching: stderr is a terminal and this is not a CI job. */
  get interactive(): boolean {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-boolean-literal-compare -- typed boolean, but undefined on a stream that is not a terminal
    return this.stream.isTTY === true && !process.env.CI;
  }

  print(text: string): void {
    if (!this.bars) {
      this.stream.write(text);
      return;
    }
    this.bars.log(text.endsWith('\n') ? text : `${text}\n`);
    // Writes the line above the bar now and draws the bar again below it.
    this.bars.update();
  }

  /** Shows a bar for one phase; the previous one stays on screen as a finished line. */
  show(format: string, total: number, payload: Record<string, string>): cliProgress.SingleBar {
    this.close();
    this.bars = new cliProgress.MultiBar(
      {
        format,
        stream: this.stream,
        hideCursor: true,
        etaBuffer: 50,
        gracefulExit: false,
        formatValue: (value, _options, type) => (type === 'value' || type === 'total' ? count(value) : String(value)),
      },
      cliProgress.Presets.shades_classic,
    );
    return this.bars.create(total, 0, payload);
  }

  close(): void {
    if (!this.bars) return;
    // stop() does not print what log() buffered: update() does.
    this.bars.update();
    this.bars.stop();
    this.bars = undefined;
  }
}

/** The one screen of this process: the progress bar and the human log lines share it. */
export const terminal = new Screen();

/**
 * A progress bar for every phase, on stderr when a person is watching; nothing in CI, in pipes, or with
 * --no-progress. Each phase shows its name, the count, the rate and, where a total is known, the ETA.
 * A total that is an estimate (the key count of the source database while reading) is labelled as such.
 * `interrupted`: the run's Ctrl-C / SIGTERM signal.
 */
export function createProgress(enabled: boolean, interrupted?: AbortSignal, screen: Screen = terminal): Progress | undefined {
  if (!enabled || !screen.interactive) return undefined;
  let bar: cliProgress.SingleBar | undefined;
  let counted = 0;
  let total = 0;
  let started = 0;
  let estimated = false;
  const rate = () => {
    const seconds = (Date.now() - started) / 1000;
    return seconds < 0.1 ? '-' : count(Math.round(counted / seconds));
  };
  // A phase that ran to its end: an estimated total becomes the count actually read (100%). One stopped
  // by Ctrl-C stays where it got to, against the estimate: it did not read everything.
  const finish = () => {
    if (estimated && bar && interrupted?.aborted !== true) bar.setTotal(counted);
    estimated = false;
  };
  return {
    phase(name, phaseTotal, estimate = false) {
      finish();
      counted = 0;
      started = Date.now();
      estimated = estimate;
      total = phaseTotal ?? 0;
      const label = name.padEnd(16);
      const format =
        phaseTotal === undefined
          ? `${label} {value} records | {rate}/s | {duration_formatted}`
          : estimate
            ? `${label} [{bar}] {percentage}% | {value} of ~{total} keys (estimated from the key count) | {rate}/s | ETA {eta_formatted}`
            : `${label} [{bar}] {percentage}% | {value}/{total} | {rate}/s | ETA {eta_formatted}`;
      bar = screen.show(format, total, { rate: '-' });
    },
    step(name) {
      finish();
      bar = screen.show(`${name.padEnd(16)} ... {duration_formatted}`, 0, {});
    },
    advance(n) {
      counted += n;
      // An estimate may fall short (keys written since it was taken): the total follows the count.
      if (estimated && counted > total) {
        total = counted;
        bar?.setTotal(total);
      }
      bar?.update(counted, { rate: rate() });
    },
    done() {
      finish();
      screen.close();
      bar = undefined;
    },
  };
}
