// Another client's GET latency during the reading phase of a dry-run, per read setting, on a throwaway
// redis-server holding N synthetic users (docs/performance.md "Redis impact"). After `npm run build`:
//   node scripts/read-latency.mjs 1000000 '' '--fast-read' '--concurrency 1'   (each setting runs twice)
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import pg from 'pg';
import { startRedis } from '../dist/bench/servers.js';
import { generateUsers } from '../dist/seed/generate.js';
const N = Number(process.argv[2] ?? 1000000);
const configs = process.argv.slice(3).map((c) => c.split(' ').filter(Boolean));
const redis = await startRedis();
const r = new Redis(redis.url);
let pipe = r.pipeline();
let i = 0;
for (const e of generateUsers({ count: N, prefix: 'bench:user:email:', seed: 1 })) {
  if (e.kind === 'hash') pipe.hset(e.key, 'json', e.value);
  else pipe.set(e.key, e.value);
  if (++i % 5000 === 0) {
    await pipe.exec();
    pipe = r.pipeline();
  }
}
await pipe.exec();
const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1/postgres' });
await admin.connect();
await admin.query('drop database if exists mu_lat with (force)');
await admin.query('create database mu_lat');
await admin.end();
const db = 'postgres://postgres@127.0.0.1/mu_lat';
await new Promise((res) =>
  spawn(process.execPath, ['bin/migrate-users', 'schema', 'apply'], { env: { ...process.env, DATABASE_URL: db }, stdio: 'ignore' }).on('close', res),
);
await r.set('probe', 'x');
for (let rep = 0; rep < 2; rep++)
  for (const extra of configs) {
    const times = [];
    let reading = false;
    let running = true;
    const loop = (async () => {
      while (running) {
        const t = process.hrtime.bigint();
        await r.get('probe');
        if (reading) times.push(Number(process.hrtime.bigint() - t) / 1e6);
        await new Promise((s) => setTimeout(s, 2));
      }
    })();
    const child = spawn(
      process.execPath,
      ['bin/migrate-users', '--dry-run', '--match', 'bench:user:email:*', '--no-progress', '--log-format', 'json', '--log-level', 'info', ...extra],
      { env: { ...process.env, DATABASE_URL: db, REDIS_URL: redis.url }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let t0 = 0,
      t1 = 0;
    let buf = '';
    child.stderr.on('data', (d) => {
      buf += d;
      for (const line of buf.split('\n').slice(0, -1)) {
        if (line.includes('"run started"')) {
          t0 = Date.now();
          reading = true;
        }
        if (line.includes('read every key')) {
          t1 = Date.now();
          reading = false;
        }
      }
      buf = buf.slice(buf.lastIndexOf('\n') + 1);
    });
    await new Promise((res) => child.on('close', res));
    running = false;
    await loop;
    const s = times.sort((a, b) => a - b);
    const at = (q) => (s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0).toFixed(2);
    console.log(
      `${(extra.join(' ') || 'default').padEnd(28)} read ${((t1 - t0) / 1000).toFixed(2)} s  GET p50 ${at(0.5)} p99 ${at(0.99)} p99.9 ${at(0.999)} max ${at(1)} ms (n=${s.length})`,
    );
  }
r.disconnect();
await redis.stop();
const cleanup = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1/postgres' });
await cleanup.connect();
await cleanup.query('drop database if exists mu_lat with (force)');
await cleanup.end();
