import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ADMIN_DATABASE_URL } from '../helpers/servers.js';

const BENCH = fileURLToPath(new URL('../../dist/bench/main.js', import.meta.url));
const MAP_BENCH = fileURLToPath(new URL('../../dist/bench/map-bench.js', import.meta.url));

/**
 * Keeps `npm run bench` from rotting: a tiny run must produce every figure of the JSON contract. Not a timing
 * test. The hand-written loop's sample covers nearly every key, so it meets the seed's wrong-typed key.
 */
describe('npm run bench (smoke)', () => {
  it('runs end to end on 3,000 users and writes the JSON figures', { timeout: 300_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mu-bench-smoke-'));
    try {
      const json = join(dir, 'bench.json');
      const child = spawn(process.execPath, [BENCH, '--users', '3000', '--loop-sample', '3000', '--json', json], {
        env: { ...process.env, BENCH_DATABASE_URL: ADMIN_DATABASE_URL, BENCH_STEP_TIMEOUT_S: '90' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      // Fail with the bench's own output (which step, how long) rather than a mute test timeout.
      const guard = setTimeout(() => child.kill('SIGTERM'), 240_000);
      const [code] = (await once(child, 'exit')) as [number];
      clearTimeout(guard);
      expect(code, output).toBe(0);
      expect(output).toContain('migrate-users benchmark, 3000 users');
      const figures = JSON.parse(readFileSync(json, 'utf8')) as Record<string, Record<string, unknown> | number>;
      expect(figures.users).toBe(3000);
      const measured = ['copy_baseline', 'redis_read', 'bare_pipeline', 'hand_loop_sample', 'migrate', 'rerun', 'dry_run', 'verify', 'slow_link', 'migrate_3n'];
      // The same four commands, the COPY baseline and the bare pipeline on the app team's table too.
      measured.push('app_copy_baseline', 'app_bare_pipeline', 'app_migrate', 'app_rerun', 'app_dry_run', 'app_verify');
      // The COPY baseline is the median of three, taken before, between and after the commands.
      const copies = figures.copy_baselines_seconds as unknown as { shipped: number[]; app: number[] };
      expect(copies.shipped).toHaveLength(3);
      expect(copies.app).toHaveLength(3);
      expect((figures.seconds as Record<string, number>).copy_baseline).toBe([...copies.shipped].sort((a, b) => a - b)[1]);
      // CPU per user of each command's median run, by process kind.
      const cpu = figures.cpu_us_per_user as unknown as Record<string, { node: number; postgres: number; redis: number }>;
      for (const key of ['migrate', 'rerun', 'dry_run', 'verify', 'app_migrate', 'app_rerun', 'app_dry_run', 'app_verify']) {
        expect(cpu[key]?.node, key).toBeGreaterThan(0);
        expect(cpu[key]?.postgres, key).toBeGreaterThan(0);
        expect(cpu[key]?.redis, key).toBeGreaterThanOrEqual(0);
      }
      for (const key of measured) {
        expect((figures.seconds as Record<string, number>)[key], key).toBeGreaterThan(0);
      }
      for (const key of ['bare_pipeline', 'migrate', 'rerun', 'dry_run', 'verify']) {
        expect((figures.ratios as Record<string, number>)[key], key).toBeGreaterThan(0);
        expect((figures.app_ratios as Record<string, number>)[key], `app ${key}`).toBeGreaterThan(0);
      }
      // Every command's time split into its phases, for both tables.
      const phases = figures.phases as Record<string, { seconds: Record<string, number>; us_per_user: Record<string, number> } | null>;
      for (const key of ['migrate', 'rerun', 'dry_run', 'verify', 'app_migrate', 'app_rerun', 'app_dry_run', 'app_verify']) {
        expect(phases[key]?.seconds, key).toMatchObject({
          read: expect.any(Number),
          finish: expect.any(Number),
          triage: expect.any(Number),
          rest: expect.any(Number),
        });
        expect(phases[key]?.seconds.read, key).toBeGreaterThan(0);
      }
      expect((figures.peak_rss_mb as Record<string, number>).n).toBeGreaterThan(0);
      expect((figures.peak_rss_mb as Record<string, number>).n3).toBeGreaterThan(0);
      expect(figures.slow_link_fraction).toBeGreaterThan(0);
      expect(figures.redis_get_latency_ms).toMatchObject({ idle: { samples: expect.any(Number) }, during_migrate: { samples: expect.any(Number) } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('bench:map measures every part of the per-record work on a small set, in CPU µs per record', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mu-bench-map-'));
    try {
      const json = join(dir, 'map.json');
      const child = spawn(process.execPath, [MAP_BENCH, '--users', '2000', '--rounds', '1', '--json', json], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const [code] = (await once(child, 'exit')) as [number];
      expect(code, output).toBe(0);
      expect(output).toContain('| part | CPU µs / record | wall µs / record | what |');
      const figures = JSON.parse(readFileSync(json, 'utf8')) as { users: number; cpu_us_per_record: Record<string, { cpu_us: number; wall_us: number }> };
      expect(figures.users).toBeGreaterThan(2000);
      for (const part of ['parse', 'map', 'digest', 'copy_line', 'all']) {
        expect(figures.cpu_us_per_record[part]?.wall_us, part).toBeGreaterThan(0);
        expect(figures.cpu_us_per_record[part]?.cpu_us, part).toBeGreaterThanOrEqual(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
