import { writeFile } from 'node:fs/promises';
import { Command } from 'commander';
import { stagedRecord } from '../core/stage-source.js';
import { mapRecord, type MapContext, type Mapped } from '../map/map-record.js';
import { rowDigest } from '../map/user-row.js';
import { generateUsers } from '../seed/generate.js';
import type { SourceRecord } from '../source/redis-reader.js';
import { copyLine, type StagedRecord } from '../stage/stage.js';

/**
 * `npm run bench:map`: the Node work every read does per record, alone: no Redis, no PostgreSQL, no I/O. The
 * seeded values are held in memory and each part runs over all of them, timed by the process's CPU time
 * (user + system), which a shared machine moves far less than wall time. The inner loop for the Node levers of
 * the performance work: seconds, where `npm run bench` takes minutes.
 */

interface Options {
  readonly users: number;
  readonly rounds: number;
  readonly json?: string;
}

interface Part {
  readonly name: string;
  readonly what: string;
  /** Runs the part over every record once; returns something of each so no work is optimised away. */
  readonly run: () => number;
}

const program = new Command('bench:map')
  .description('CPU time per record of the per-record Node work (parse, map, digest, COPY line)')
  .option('--users <n>', 'seeded values held in memory', (v) => Number(v), 200_000)
  .option('--rounds <k>', 'timed passes per part (the fastest is reported)', (v) => Number(v), 3)
  .option('--json <path>', 'write the figures as JSON here');

const PREFIX = 'bench:user:email:';

function main(): Promise<void> {
  program.parse();
  const options = program.opts<Options>();
  const ctx: MapContext = { whitelist: new Set(['vip1@demo.test', 'vip2@demo.test']), whitelistCredits: 500n };
  const records: SourceRecord[] = [];
  for (const entry of generateUsers({ count: options.users, prefix: PREFIX, seed: 1 })) {
    // A hash is a wrong_type reject the reader makes itself; the records a run maps are strings.
    if (entry.kind === 'string') records.push({ key: entry.key, ok: true, keyEmail: entry.key.slice(PREFIX.length), value: entry.value });
  }
  const mapped = records.flatMap((r) => {
    const m = r.ok ? mapRecord(r.keyEmail, r.value, ctx) : undefined;
    return m?.ok ? [m] : [];
  });
  const staged: StagedRecord[] = records.map((r, i) => stagedRecord(i + 1, r, ctx));

  const parts: Part[] = [
    { name: 'parse', what: 'JSON.parse of the value', run: () => sum(records, (r) => (r.ok ? parses(r.value) : 0)) },
    { name: 'map', what: 'mapRecord (parse included)', run: () => sum(records, (r) => (r.ok && mapRecord(r.keyEmail, r.value, ctx).ok ? 1 : 0)) },
    { name: 'digest', what: 'rowDigest of the mapped row', run: () => sum(mapped, (m: Mapped) => rowDigest(m.row, m.sourceCredits).length) },
    { name: 'copy_line', what: "the stage's COPY text line", run: () => sum(staged, (s) => copyLine(s).length) },
    {
      name: 'all',
      what: 'what a read does per record: map, digest, COPY line',
      run: () => sum(records, (r, i) => copyLine(stagedRecord(i + 1, r, ctx)).length),
    },
  ];

  const results: Record<string, { cpu_us: number; wall_us: number }> = {};
  for (const part of parts) {
    part.run(); // warm-up: the JIT compiles what the timed passes run
    let best = { cpu: Infinity, wall: Infinity };
    for (let round = 0; round < options.rounds; round++) {
      const cpu = process.cpuUsage();
      const wall = process.hrtime.bigint();
      part.run();
      const used = process.cpuUsage(cpu);
      const wallNs = Number(process.hrtime.bigint() - wall);
      const cpuUs = used.user + used.system;
      if (cpuUs < best.cpu) best = { cpu: cpuUs, wall: wallNs / 1000 };
    }
    results[part.name] = { cpu_us: round2(best.cpu / records.length), wall_us: round2(best.wall / records.length) };
  }

  const lines = [
    `bench:map: ${records.length.toLocaleString('en-US')} seeded values in memory, fastest of ${options.rounds} passes, Node ${process.version}`,
    '',
    '| part | CPU µs / record | wall µs / record | what |',
    '|---|---:|---:|---|',
    ...parts.map((p) => {
      const r = results[p.name] ?? { cpu_us: NaN, wall_us: NaN };
      return `| ${p.name} | ${r.cpu_us.toFixed(2)} | ${r.wall_us.toFixed(2)} | ${p.what} |`;
    }),
    '',
  ];
  process.stdout.write(lines.join('\n'));
  if (!options.json) return Promise.resolve();
  return writeFile(
    options.json,
    `${JSON.stringify({ users: records.length, rounds: options.rounds, node: process.version, cpu_us_per_record: results }, null, 2)}\n`,
  );
}

function sum<T>(items: readonly T[], f: (item: T, index: number) => number): number {
  let total = 0;
  for (let i = 0; i < items.length; i++) total += f(items[i] as T, i);
  return total;
}

function parses(value: string): number {
  try {
    return JSON.parse(value) === null ? 0 : 1;
  } catch {
    return 0; // a seeded not_json record
  }
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:map failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
