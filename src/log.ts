import { openSync } from 'node:fs';
import { pino, type DestinationStream, type Level, type Logger, type StreamEntry } from 'pino';
import { scrub, scrubValue } from './redact.js';

export type { Logger };

export type LogFormat = 'json' | 'text';

/** Where log lines go on stderr; the CLI's screen prints them above a progress bar, never through it. */
export interface LogScreen {
  print(text: string): void;
}

export interface LogOptions {
  /** The level asked for (--log-level / LOG_LEVEL), or undefined: info for JSON, warn for text. */
  readonly level: string | undefined;
  readonly format: LogFormat;
  /** --log-file: every line at the level, as JSON, appended here; stderr then shows warnings and errors. */
  readonly file?: string | undefined;
  /** stderr; a file descriptor for tests. */
  readonly screen?: LogScreen | number | undefined;
}

/**
 * Logs on stderr (stdout carries the human summary). JSON lines, as machines read them; or, for a person at
 * a terminal, warnings and errors as plain sentences. Error text is scrubbed of secrets either way.
 */
export function createLogger(options: LogOptions): Logger {
  const asked = options.level;
  const streams: StreamEntry[] = [];
  if (options.file) {
    streams.push({ level: (asked ?? 'info') as Level, stream: pino.destination({ fd: openSync(options.file, 'a', 0o600), sync: true }) });
  }
  const screenLevel = options.file ? higher(asked ?? 'warn', 'warn') : (asked ?? (options.format === 'text' ? 'warn' : 'info'));
  streams.push({ level: screenLevel as Level, stream: screenStream(options.screen ?? 2, options.format) });
  const open = streams.filter((s) => (s.level as string) !== 'silent');
  const minimum = open.map((s) => s.level as string).reduce((a, b) => (rank(a) <= rank(b) ? a : b), 'silent');
  return pino(
    {
      level: minimum,
      base: { name: 'migrate-users' },
      redact: { paths: ['password', '*.password', 'password_hash', '*.password_hash'], censor: '***' },
      serializers: {
        err: (err: unknown) => {
          const serialized = pino.stdSerializers.err(err as Error) as unknown;
          // Through JSON: pino's serialized error is no plain object (scrubValue walks only those).
          return serialized === undefined ? serialized : scrubValue(JSON.parse(JSON.stringify(serialized)));
        },
      },
      hooks: {
        // Strings, and the strings in logged objects (e.g. `{ err: describe(error) }`), lose any secret.
        logMethod(args, method) {
          const clean = args.map((a) => (typeof a === 'string' ? scrub(a) : a instanceof Error ? a : scrubValue(a)));
          method.apply(this, clean as Parameters<typeof method>);
        },
      },
    },
    pino.multistream(open),
  );
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const rank = (level: string) => LEVELS.indexOf(level);
const higher = (a: string, b: string) => (rank(a) >= rank(b) ? a : b);

function screenStream(screen: LogScreen | number, format: LogFormat): DestinationStream {
  if (typeof screen === 'number') {
    const fd = pino.destination({ fd: screen, sync: true });
    return format === 'json' ? fd : { write: (line: string) => void fd.write(humanLine(line)) };
  }
  return { write: (line: string) => screen.print(format === 'json' ? line : humanLine(line)) };
}

const NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warning', 50: 'error', 60: 'fatal' };
const QUIET = new Set(['level', 'time', 'name', 'msg', 'pid', 'hostname']);

/** `warning: <message> (key=value, …)`: one line a person reads; an error's stack only at debug. */
export function humanLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const level = NAMES[Number(entry.level)] ?? 'log';
  const details = Object.entries(entry)
    .filter(([key]) => !QUIET.has(key))
    .map(([key, value]) => `${key}=${detail(value, Number(entry.level) <= 20)}`);
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a pino line's msg is a string
  return `migrate-users ${level}: ${String(entry.msg ?? '')}${details.length > 0 ? ` (${details.join(', ')})` : ''}\n`;
}

function detail(value: unknown, verbose: boolean): string {
  if (value && typeof value === 'object' && 'message' in value) {
    const err = value as { message: unknown; stack?: unknown };
    return verbose && typeof err.stack === 'string' ? err.stack : String(err.message);
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}
