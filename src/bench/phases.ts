/** Seconds of one CLI run per phase, from its own JSON log lines (pino's `time`, epoch ms). */
export interface Phases {
  /** From the process's start to the last key staged: connecting, SCAN, reading, mapping, COPY into the stage. */
  readonly read: number;
  /** SCAN repeats, duplicate emails and user_ids over the stage, its statistics. */
  readonly finish: number;
  /** The ledger's grants, unnormalised app emails, and triage's joins with users and the ledger. */
  readonly triage: number;
  /** Batches (writing or comparing), the report and the end of the process. */
  readonly rest: number;
}

const MARKS = ['read every key; classifying', 'stage indexed; duplicates across keys marked', 'triage done'] as const;

/** Undefined when a mark is missing (a resumed run, a log level that hides them). */
export function phasesFromLog(stderr: string, startedMs: number, endedMs: number): Phases | undefined {
  const at = new Map<string, number>();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: unknown; time?: unknown };
      if (typeof entry.msg === 'string' && typeof entry.time === 'number' && !at.has(entry.msg)) at.set(entry.msg, entry.time);
    } catch {
      // not a log line
    }
  }
  const [read, finish, triage] = MARKS.map((mark) => at.get(mark));
  if (read === undefined || finish === undefined || triage === undefined) return undefined;
  const s = (ms: number) => Number((ms / 1000).toFixed(2));
  return { read: s(read - startedMs), finish: s(finish - read), triage: s(triage - finish), rest: s(endedMs - triage) };
}
