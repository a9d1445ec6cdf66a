import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, createReadStream } from 'node:fs';
import { once } from 'node:events';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import pg from 'pg';
import { Redis } from 'ioredis';
import { from as copyFrom } from 'pg-copy-streams';
import { applySchema } from '../db/schema.js';
import { mapRecord } from '../map/map-record.js';
import { USER_COLUMNS } from '../map/user-row.js';
import { generateUsers } from '../seed/generate.js';
import { appTeamUsersDdl } from './app-team-table.js';
import { barePipeline, copyRowLine } from './bare-pipeline.js';
import { phasesFromLog, type Phases } from './phases.js';
import { scanKeys, ValueReader } from '../source/redis-reader.js';
import { startDelayProxy, startRedis } from './servers.js';
import { cpuMeter, cpuSince, type Cpu, type CpuMeter } from './cpu.js';

const BIN = fileURLToPath(new URL('../../bin/migrate-users', import.meta.url));
const MATCH = 'bench:user:email:*';
const PREFIX = 'bench:user:email:';

interface Options {
  users: number;
  json?: string;
  skip3n?: boolean;
  skipSlowLink?: boolean;
  repeat: number;
  loopSample: number;
}

const program = new Command('bench')
  .option('--users <n>', 'users to migrate', (v) => Number(v), 1_000_000)
  .option('--json <path>', 'write the figures as JSON here')
  .option('--skip-3n', 'skip the peak-memory run at 3N')
  .option('--skip-slow-link', 'skip the run through the 20 ms proxy')
  .option('--repeat <k>', 'repeat each migrate-users measurement k times and report medians', (v) => Number(v), 1)
  .option('--loop-sample <n>', 'users for the hand-written loop', (v) => Number(v), 20_000);

const admin = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const log = (text: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);

async function main(): Promise<void> {
  program.parse();
  const opts = program.opts<Options>();
  const n = opts.users;
  const redis = await startRedis();
  const dbName = `mu_bench_${process.pid}`;
  const dbUrl = withDatabase(admin, dbName);
  const appDbName = `mu_bench_app_${process.pid}`;
  const appDbUrl = withDatabase(admin, appDbName);
  for (const name of [dbName, appDbName]) {
    await adminQuery(`drop database if exists ${name}`);
    await adminQuery(`create database ${name}`);
  }
  const pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
  const appPool = new pg.Pool({ connectionString: appDbUrl, max: 2 });
  const work = mkdtempSync(join(tmpdir(), 'mu-bench-'));
  const seconds: Record<string, number> = {};
  const cpu: Record<string, Cpu> = {};
  const meter = await cpuMeter(pool, redis.url);
  const cli = (args: string[], env: Record<string, string>) => timeCli(args, env, meter);
  const rss: Record<string, number> = {};
  const phases: Record<string, Phases | undefined> = {};
  try {
    await applySchema(pool);
    // The app team's table (varchar limits, integer credits, timestamp without time zone, no trigger):
    // schema apply leaves it as it is and adds only migrate_users.
    await appPool.query(appTeamUsersDdl({ trigger: false }));
    await applySchema(appPool);
    log(`seeding ${n} users into a throwaway Redis`);
    await seed(redis.url, n, 1);

    // The COPY baseline is the median of three, taken before, between and after the commands: one slow COPY
    // on a shared machine does not move every ratio.
    const copies: { shipped: number[]; app: number[] } = { shipped: [], app: [] };
    const copyBaselines = async (when: string) => {
      log(`COPY baseline (${when})`);
      copies.shipped.push(await copyBaseline(pool, n, work, 'public.users_set_updated_at'));
      log(`  ${(copies.shipped.at(-1) ?? 0).toFixed(2)} s`);
      log(`COPY baseline, app-team table (${when})`);
      copies.app.push(await copyBaseline(appPool, n, work));
      log(`  ${(copies.app.at(-1) ?? 0).toFixed(2)} s`);
    };
    await copyBaselines('1 of 3, before the commands');
    // Their medians are known at the end; the keys go first, where the table and the JSON show them.
    seconds.copy_baseline = copies.shipped[0] ?? 0;
    seconds.app_copy_baseline = copies.app[0] ?? 0;
    log('Redis read baseline');
    seconds.redis_read = await redisReadBaseline(redis.url);
    log(`  ${seconds.redis_read.toFixed(2)} s`);
    const ctx = { whitelist: new Set(['vip1@demo.test']), whitelistCredits: 100_000n };
    const bareRedis = new Redis(redis.url);
    try {
      log('bare pipeline (SCAN + read + JSON.parse + map + COPY into an empty users)');
      seconds.bare_pipeline = await barePipeline(pool, bareRedis, { match: MATCH, table: 'public.users', trigger: 'public.users_set_updated_at', ctx });
      log(`  ${seconds.bare_pipeline.toFixed(2)} s`);
      log('bare pipeline, app-team table');
      seconds.app_bare_pipeline = await barePipeline(appPool, bareRedis, { match: MATCH, table: 'public.users', ctx });
      log(`  ${seconds.app_bare_pipeline.toFixed(2)} s`);
    } finally {
      bareRedis.disconnect();
    }
    log(`hand-written GET + INSERT loop on ${Math.min(opts.loopSample, n)} users`);
    const loop = await handLoop(pool, redis.url, Math.min(opts.loopSample, n));
    seconds.hand_loop_sample = loop;

    const env = { DATABASE_URL: dbUrl, REDIS_URL: redis.url, LOG_LEVEL: 'info', LOG_FORMAT: 'json', WHITELIST_EMAILS: 'vip1@demo.test' };
    const args = ['--match', MATCH, '--no-progress'];
    log('GET latency of another Redis client: idle');
    const idle = await probeLatency(redis.url, () => sleep(3000));
    let during: Latency | undefined;
    const commands = async (label: string, target: pg.Pool, targetEnv: Record<string, string>, probe: boolean) => {
      const runs: Record<string, CliRun[]> = { migrate: [], rerun: [], dry_run: [], verify: [] };
      for (let k = 0; k < opts.repeat; k++) {
        await target.query('truncate public.users, migrate_users.ledger, migrate_users.runs');
        log(`${label}migrate (fresh) #${k + 1}`);
        if (k === 0 && probe) {
          let result: CliRun | undefined;
          during = await probeLatency(redis.url, async () => {
            result = await cli(args, targetEnv);
          });
          if (result) runs.migrate?.push(result);
        } else {
          runs.migrate?.push(await cli(args, targetEnv));
        }
        log(`${label}re-run #${k + 1}`);
        runs.rerun?.push(await cli(args, targetEnv));
        log(`${label}dry-run #${k + 1}`);
        runs.dry_run?.push(await cli([...args, '--dry-run'], targetEnv));
        log(`${label}verify #${k + 1}`);
        runs.verify?.push(await cli(['verify', ...args], targetEnv));
      }
      const prefix = label === '' ? '' : 'app_';
      for (const [name, list] of Object.entries(runs)) {
        const mid = medianRun(list);
        seconds[prefix + name] = mid.s;
        if (mid.cpu) cpu[prefix + name] = mid.cpu;
        phases[prefix + name] = mid.phases;
        rss[prefix + name] = Math.max(...list.map((r) => r.rss));
      }
    };
    await commands('', pool, env, true);
    await copyBaselines('2 of 3, between the commands');
    await commands('app-team table: ', appPool, { ...env, DATABASE_URL: appDbUrl }, false);
    await copyBaselines('3 of 3, after the commands');
    seconds.copy_baseline = median(copies.shipped);
    seconds.app_copy_baseline = median(copies.app);
    rss.n = rss.migrate ?? 0;

    // The live read's two settings side by side: the default (short read commands) and --fast-read (one per
    // batch), each with another client's GET latency; then the same users read from an RDB snapshot.
    log('migrate (fresh) with --fast-read');
    await pool.query('truncate public.users, migrate_users.ledger, migrate_users.runs');
    let fast: { s: number; rss: number } | undefined;
    const duringFast = await probeLatency(redis.url, async () => {
      fast = await cli([...args, '--fast-read'], env);
    });
    if (fast) seconds.migrate_fast_read = fast.s;
    log('migrate (fresh) from an RDB snapshot of the same users');
    const saver = new Redis(redis.url);
    await saver.save();
    // `dir` may not be changed at run time (a protected config): the file is where the server keeps it.
    const [, dir] = (await saver.config('GET', 'dir')) as [string, string];
    const [, file] = (await saver.config('GET', 'dbfilename')) as [string, string];
    saver.disconnect();
    const snapshot = join(dir, file);
    await pool.query('truncate public.users, migrate_users.ledger, migrate_users.runs');
    const { REDIS_URL: _live, ...snapshotEnv } = env;
    seconds.migrate_rdb = (await cli([...args, '--rdb', snapshot], snapshotEnv)).s;

    let slowFraction: number | null = null;
    if (!opts.skipSlowLink) {
      log('migrate through a 10 ms-each-way proxy');
      await pool.query('truncate public.users, migrate_users.ledger, migrate_users.runs');
      const target = new URL(dbUrl);
      const proxy = await startDelayProxy({ host: target.hostname, port: Number(target.port || 5432) }, 10);
      try {
        target.port = String(proxy.port);
        const slow = await cli(args, { ...env, DATABASE_URL: target.toString() });
        seconds.slow_link = slow.s;
        slowFraction = seconds.migrate !== undefined ? seconds.migrate / slow.s : null;
      } finally {
        await proxy.stop();
      }
    }
    if (!opts.skip3n) {
      log(`peak memory at 3N: seeding ${2 * n} more users`);
      await seed(redis.url, 2 * n, 2, n);
      await pool.query('truncate public.users, migrate_users.ledger, migrate_users.runs');
      const big = await cli(args, env);
      seconds.migrate_3n = big.s;
      rss.n3 = big.rss;
    }

    const copy = seconds.copy_baseline;
    const appCopy = seconds.app_copy_baseline;
    const result = {
      users: n,
      machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model ?? '', memory_gb: Math.round(totalmem() / 2 ** 30), node: process.version },
      seconds: round(seconds),
      // The three COPY baselines of each table; `seconds` holds their medians.
      copy_baselines_seconds: { shipped: copies.shipped.map((v) => Number(v.toFixed(3))), app: copies.app.map((v) => Number(v.toFixed(3))) },
      users_per_second: round(
        Object.fromEntries(
          Object.entries(seconds).map(([k, s]) => [k, (k === 'hand_loop_sample' ? Math.min(opts.loopSample, n) : k === 'migrate_3n' ? 3 * n : n) / s]),
        ),
      ),
      ratios: round({ ...ratiosOf(seconds, '', copy), hand_loop: seconds.hand_loop_sample / Math.min(opts.loopSample, n) / (copy / n) }),
      // Against the COPY baseline into the app-team table itself.
      app_ratios: round(ratiosOf(seconds, 'app_', appCopy)),
      // Seconds per phase of the median run, and microseconds per user.
      phases: Object.fromEntries(Object.entries(phases).map(([name, p]) => [name, p ? { seconds: p, us_per_user: perUser(p, n) } : null])),
      // CPU of the median run per process kind, microseconds per user (see cpu.ts).
      cpu_us_per_user: Object.fromEntries(
        Object.entries(cpu).map(([name, c]) => [name, { node: usPerUser(c.node, n), postgres: usPerUser(c.postgres, n), redis: usPerUser(c.redis, n) }]),
      ),
      peak_rss_mb: {
        n: rss.n,
        n3: rss.n3 ?? null,
        rerun: rss.rerun ?? null,
        dry_run: rss.dry_run ?? null,
        verify: rss.verify ?? null,
        app_migrate: rss.app_migrate ?? null,
      },
      slow_link_fraction: slowFraction === null ? null : Number(slowFraction.toFixed(3)),
      redis_get_latency_ms: { idle, during_migrate: during ?? null, during_migrate_fast_read: duringFast },
      repeat: opts.repeat,
    };
    printTable(result);
    if (during) {
      process.stdout.write(
        `  GET latency of another Redis client, p50 / p99 / max ms: idle ${idle.p50} / ${idle.p99} / ${idle.max}; ` +
          `during migrate ${during.p50} / ${during.p99} / ${during.max} (default, --read-chunk 100); ` +
          `during migrate --fast-read ${duringFast.p50} / ${duringFast.p99} / ${duringFast.max}\n`,
      );
    }
    if (opts.json) await writeFile(opts.json, `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    meter.close();
    await pool.end();
    await appPool.end();
    await redis.stop();
    await adminQuery(`drop database if exists ${dbName} with (force)`);
    await adminQuery(`drop database if exists ${appDbName} with (force)`);
    rmSync(work, { recursive: true, force: true });
  }
}

async function seed(url: string, count: number, seed: number, offset = 0): Promise<void> {
  const redis = new Redis(url);
  let pipe = redis.pipeline();
  let i = 0;
  for (const entry of generateUsers({ count, prefix: PREFIX, seed })) {
    // A second data set (for 3N) gets its own emails and user_ids so that it adds users rather than conflicts.
    const key = offset === 0 ? entry.key : `${PREFIX}s${seed}.${entry.key.slice(PREFIX.length)}`;
    const value = offset === 0 ? entry.value : entry.value.replace(/"email":"\s*/i, `$&s${seed}.`);
    if (entry.kind === 'hash') pipe.hset(key, 'json', value);
    else pipe.set(key, value);
    if (++i % 5000 === 0) {
      await pipe.exec();
      pipe = redis.pipeline();
    }
  }
  await pipe.exec();
  redis.disconnect();
}

/**
 * The PostgreSQL ingest limit: the same N mapped rows, COPYed into an empty copy of users (keys, indexes and,
 * where `trigger` names the function, the shipped table's trigger).
 */
async function copyBaseline(pool: pg.Pool, n: number, work: string, trigger?: string): Promise<number> {
  const file = join(work, 'rows.copy');
  const out = createWriteStream(file);
  const ctx = { whitelist: new Set(['vip1@demo.test']), whitelistCredits: 100_000n };
  const emails = new Set<string>();
  for (const entry of generateUsers({ count: n, prefix: PREFIX, seed: 1 })) {
    if (entry.kind !== 'string') continue;
    const mapped = mapRecord(entry.key.slice(PREFIX.length), entry.value, ctx);
    // Only rows migrate would write: the deliberate duplicate-email twins are held back by it.
    if (!mapped.ok || emails.has(mapped.row.email)) continue;
    emails.add(mapped.row.email);
    if (!out.write(copyRowLine(mapped.row))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  const client = await pool.connect();
  try {
    await client.query('drop table if exists public.users_copy_baseline');
    await client.query('create table public.users_copy_baseline (like public.users including all)');
    if (trigger)
      await client.query(`create trigger users_copy_baseline_updated_at before insert or update on public.users_copy_baseline
      for each row execute function ${trigger}()`);
    const started = process.hrtime.bigint();
    await pipeline(createReadStream(file), client.query(copyFrom(`copy public.users_copy_baseline (${USER_COLUMNS.join(', ')}) from stdin`)));
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    await client.query('drop table public.users_copy_baseline');
    return elapsed;
  } finally {
    client.release();
  }
}

async function redisReadBaseline(url: string): Promise<number> {
  const redis = new Redis(url);
  const reader = new ValueReader(redis);
  const started = process.hrtime.bigint();
  let parsed = 0;
  const inflight = new Set<Promise<void>>();
  for await (const keys of scanKeys(redis, { match: MATCH, scanCount: 1000, batchSize: 1000 })) {
    const p = reader.read(keys, PREFIX.length, 1_048_576).then((records) => {
      for (const r of records)
        if (r.ok) {
          try {
            JSON.parse(r.value);
            parsed++;
          } catch {
            // the deliberately broken records
          }
        }
    });
    inflight.add(p);
    // A failure of p is reported by the race or Promise.all below; the copy of it finally() makes would be unhandled.
    p.finally(() => inflight.delete(p)).catch(() => undefined);
    if (inflight.size >= 4) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  redis.disconnect();
  if (parsed === 0) throw new Error('Redis read baseline parsed nothing');
  return elapsed;
}

/** The quick script: GET one user, INSERT one row, repeat. */
async function handLoop(pool: pg.Pool, url: string, sample: number): Promise<number> {
  const redis = new Redis(url);
  const keys: string[] = [];
  for await (const batch of scanKeys(redis, { match: MATCH, scanCount: 1000, batchSize: 1000 })) {
    keys.push(...batch.map((k) => k.toString()));
    if (keys.length >= sample) break;
  }
  await pool.query('create table public.users_loop (like public.users including all)');
  const ctx = { whitelist: new Set<string>(), whitelistCredits: 100_000n };
  const started = process.hrtime.bigint();
  for (const key of keys.slice(0, sample)) {
    // The seed holds one deliberately wrong-typed key (a hash): skipped, as a script would have to.
    const value = await redis.get(key).catch((error: unknown) => {
      if (error instanceof Error && error.message.startsWith('WRONGTYPE')) return null;
      throw error;
    });
    if (value === null) continue;
    const mapped = mapRecord(key.slice(PREFIX.length), value, ctx);
    if (!mapped.ok) continue;
    await pool.query(
      `insert into public.users_loop (${USER_COLUMNS.join(', ')}) values (${USER_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')}) on conflict do nothing`,
      USER_COLUMNS.map((c) => mapped.row[c]),
    );
  }
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  await pool.query('drop table public.users_loop');
  redis.disconnect();
  return elapsed;
}

/** One run of the CLI: wall seconds, peak RSS (MB), and its phases. */
interface CliRun {
  s: number;
  rss: number;
  phases: Phases | undefined;
  /** CPU seconds per process kind (see cpu.ts). */
  cpu?: Cpu | undefined;
}

/** Longest a single CLI run may take before the benchmark gives up on it (BENCH_STEP_TIMEOUT_S). */
const STEP_TIMEOUT_MS = Number(process.env.BENCH_STEP_TIMEOUT_S ?? 3600) * 1000;

/** Runs the real CLI; wall time and peak RSS (VmHWM, polled from /proc). */
async function timeCli(args: string[], env: Record<string, string>, meter: CpuMeter): Promise<CliRun> {
  const before = await meter.snapshot();
  const started = process.hrtime.bigint();
  const startedMs = Date.now();
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const deadline = setTimeout(() => child.kill('SIGKILL'), STEP_TIMEOUT_MS);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let peak = 0;
  const poll = setInterval(() => {
    // No pid: the process never started, and waiting for its exit below reports why.
    if (child.pid === undefined) return;
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
      peak = Math.max(peak, kb);
    } catch {
      // exited between polls
    }
  }, 50);
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  clearInterval(poll);
  clearTimeout(deadline);
  if (signal === 'SIGKILL') throw new Error(`migrate-users ${args.join(' ')} took over ${STEP_TIMEOUT_MS / 1000} s: ${stderr.slice(-2000)}`);
  const s = Number(process.hrtime.bigint() - started) / 1e9;
  if (code !== 0 && code !== 1) throw new Error(`migrate-users ${args.join(' ')} exited ${code ?? signal ?? '?'}: ${stderr.slice(-2000)}`);
  const split = phasesFromLog(stderr, startedMs, Date.now());
  const cpu = cpuSince(before, await meter.snapshot());
  const parts = split ? ` (read ${split.read}, finish stage ${split.finish}, triage ${split.triage}, rest ${split.rest})` : '';
  const used = `CPU s node ${cpu.node.toFixed(2)}, postgres ${cpu.postgres.toFixed(2)}, redis ${cpu.redis.toFixed(2)}`;
  log(`  ${s.toFixed(2)} s${parts}, ${used}, peak RSS ${(peak / 1024).toFixed(0)} MB (exit ${code})`);
  return { s, rss: Math.round(peak / 1024), phases: split, cpu };
}

function printTable(result: {
  users: number;
  seconds: Record<string, number>;
  users_per_second: Record<string, number>;
  ratios: Record<string, number>;
  peak_rss_mb: Record<string, number | null>;
  slow_link_fraction: number | null;
  phases: Record<string, { seconds: Phases; us_per_user: Record<keyof Phases, number> } | null>;
  cpu_us_per_user: Record<string, { node: number; postgres: number; redis: number }>;
}) {
  const rows = [['measurement', 'seconds', 'users/s', 'x COPY', 'peak RSS MB']];
  const copy = result.seconds.copy_baseline ?? 1;
  // The app-team table's rows against the COPY baseline into that table.
  const appCopy = result.seconds.app_copy_baseline ?? copy;
  const ratio: Record<string, string> = Object.fromEntries(
    Object.entries(result.seconds)
      .filter(([name]) => name !== 'hand_loop_sample' && name !== 'migrate_3n' && name !== 'slow_link')
      .map(([name, s]) => [name, fmt(s / (name.startsWith('app_') ? appCopy : copy))]),
  );
  const mem: Record<string, number | null | undefined> = {
    migrate: result.peak_rss_mb.n,
    migrate_3n: result.peak_rss_mb.n3,
    rerun: result.peak_rss_mb.rerun,
    dry_run: result.peak_rss_mb.dry_run,
    verify: result.peak_rss_mb.verify,
  };
  for (const [name, s] of Object.entries(result.seconds)) {
    rows.push([
      name,
      s.toFixed(2),
      String(Math.round(result.users_per_second[name] ?? 0)),
      ratio[name] ?? '',
      mem[name] === undefined || mem[name] === null ? '' : String(mem[name]),
    ]);
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  process.stdout.write(`\nmigrate-users benchmark, ${result.users} users\n`);
  for (const r of rows) process.stdout.write(`  ${r.map((v, i) => (i === 0 ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0))).join('  ')}\n`);
  if (result.slow_link_fraction !== null)
    process.stdout.write(`  slow link (20 ms RTT): ${(result.slow_link_fraction * 100).toFixed(0)}% of loopback users/s\n`);
  const cpuRows = Object.entries(result.cpu_us_per_user);
  if (cpuRows.length > 0) {
    process.stdout.write('\n  CPU of the median run, microseconds per user: node / postgres / redis (all)\n');
    for (const [name, c] of cpuRows) {
      process.stdout.write(`  ${name.padEnd(16)} ${fmtUs(c.node)} / ${fmtUs(c.postgres)} / ${fmtUs(c.redis)} (${fmtUs(c.node + c.postgres + c.redis)})\n`);
    }
  }
  process.stdout.write('\n  per phase of the median run, seconds (microseconds per user)\n');
  for (const [name, p] of Object.entries(result.phases)) {
    if (!p) continue;
    const cell = (k: keyof Phases) => `${k} ${p.seconds[k].toFixed(2)} (${p.us_per_user[k].toFixed(1)})`;
    process.stdout.write(`  ${name.padEnd(16)} ${cell('read')}  ${cell('finish')}  ${cell('triage')}  ${cell('rest')}\n`);
  }
}

interface Latency {
  samples: number;
  p50: number;
  p99: number;
  max: number;
}

/** Another client's GET latency on the same Redis while `during` runs: one GET every 2 ms. */
async function probeLatency(url: string, during: () => Promise<void>): Promise<Latency> {
  const client = new Redis(url);
  await client.set('bench:probe', 'x');
  const times: number[] = [];
  let running = true;
  const loop = (async () => {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- cleared in the finally below, which TS's narrowing does not see
    while (running) {
      const t = process.hrtime.bigint();
      await client.get('bench:probe');
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
      await sleep(2);
    }
  })();
  try {
    await during();
  } finally {
    running = false;
    await loop;
    client.disconnect();
  }
  const sorted = times.sort((a, b) => a - b);
  const at = (q: number) => Number((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(3));
  return { samples: sorted.length, p50: at(0.5), p99: at(0.99), max: at(1) };
}

const fmt = (v: number | undefined) => (v === undefined ? '' : v.toFixed(2));
/** The bare pipeline's and the four commands' seconds (named with `prefix`) as multiples of `copy`. */
const ratiosOf = (seconds: Record<string, number>, prefix: string, copy: number): Record<string, number> =>
  Object.fromEntries(['bare_pipeline', 'migrate', 'rerun', 'dry_run', 'verify'].map((name) => [name, (seconds[prefix + name] ?? 0) / copy]));

/** The run of median wall time (its phases are reported with it). */
const medianRun = (runs: CliRun[]): CliRun => [...runs].sort((a, b) => a.s - b.s)[Math.floor(runs.length / 2)] ?? { s: 0, rss: 0, phases: undefined };
const perUser = (p: Phases, n: number) =>
  Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Number(((v * 1e6) / n).toFixed(2))])) as Record<keyof Phases, number>;
const round = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Number(v.toFixed(3))]));

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  // A client of the stopped throwaway Redis would keep reconnecting, and the process alive, forever.
  process.exit(1);
});

/** CPU seconds spent on `n` users, as microseconds per user. */
function usPerUser(seconds: number, n: number): number {
  return Number(((seconds * 1e6) / n).toFixed(2));
}

function fmtUs(us: number): string {
  return us.toFixed(1);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}
