import { rmSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { makeCertificates, startTlsPostgres, startTlsRedis, type Certificates, type TlsServer } from '../helpers/tls.js';

// A PostgreSQL that accepts TLS only (as Supabase with "enforce SSL") and a Redis that speaks TLS only, both
// started here with a CA of this file's own; Redis with an ACL user, a password and a numbered database.
let certs: Certificates;
let postgres: TlsServer;
let redisServer: TlsServer;
let redis: Redis;
const PASSWORD = 'Sup3r-s3cret-redis-pw';
const USERS = 300;

const pgUrl = (query: string) => `postgres://postgres@127.0.0.1:${postgres.port}/postgres${query}`;
const redisUrl = () => `rediss://mu_tls:${PASSWORD}@127.0.0.1:${redisServer.port}/3`;

beforeAll(async () => {
  certs = makeCertificates();
  postgres = await startTlsPostgres(certs);
  redisServer = await startTlsRedis(certs);
  redis = new Redis({ host: '127.0.0.1', port: redisServer.port, tls: { ca: readFileSync(certs.ca) } });
  await redis.call('ACL', 'SETUSER', 'mu_tls', 'on', `>${PASSWORD}`, '~user:email:*', '+@read', '+eval_ro', '+ping', '+info', '+select');
  await redis.select(3);
  const pipeline = redis.pipeline();
  for (let i = 0; i < USERS; i++) pipeline.set(`user:email:t${i}@example.com`, JSON.stringify({ user_id: `usr_${i}`, credits: i }));
  await pipeline.exec();
  const schema = await runCli(['schema', 'apply'], { DATABASE_URL: pgUrl('?sslmode=verify-full'), DATABASE_CA: certs.ca });
  expect(schema.stderr).toBe('');
  expect(schema.code).toBe(0);
}, 60_000);

afterAll(async () => {
  // beforeAll may have failed before setting these, whatever their declared types say.
  /* eslint-disable @typescript-eslint/no-unnecessary-condition */
  redis?.disconnect();
  await redisServer?.stop();
  await postgres?.stop();
  if (certs) rmSync(certs.dir, { recursive: true, force: true });
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
});

const run = (args: string[], env: Record<string, string>) => runCli([...args, '--no-progress'], { REDIS_URL: redisUrl(), REDIS_CA: certs.ca, ...env });

describe('TLS to PostgreSQL and Redis', () => {
  it('migrates and verifies over TLS to both, with certificates verified against the CA given', async () => {
    const migrate = await run([], { DATABASE_URL: pgUrl('?sslmode=verify-full'), DATABASE_CA: certs.ca });
    expect(migrate.stderr).toBe('');
    expect(migrate.code).toBe(0);
    // The CA as a flag, and sslmode=require (encrypted; with a CA given, the chain is checked as libpq does).
    const verify = await runCli(['verify', '--no-progress', '--database-ca', certs.ca, '--redis-ca', certs.ca], {
      DATABASE_URL: pgUrl('?sslmode=require'),
      REDIS_URL: redisUrl(),
    });
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/match\s+300/);
  });

  it('sslmode=require without a CA encrypts without verifying (libpq semantics)', async () => {
    const dry = await run(['--dry-run'], { DATABASE_URL: pgUrl('?sslmode=require') });
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
  });

  it('says clearly what to change when TLS is off, the CA is wrong, or the mode is unsupported (exit 2, no secret shown)', async () => {
    const plain = await run(['verify'], { DATABASE_URL: pgUrl('') });
    expect(plain.code).toBe(2);
    expect(plain.stderr).toContain('PostgreSQL accepts only TLS connections');
    expect(plain.stderr).toContain('sslmode=verify-full');

    const wrongCa = await run(['verify'], { DATABASE_URL: pgUrl('?sslmode=verify-full'), DATABASE_CA: certs.otherCa });
    expect(wrongCa.code).toBe(2);
    expect(wrongCa.stderr).toMatch(/PostgreSQL's TLS certificate was not accepted \(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
    expect(wrongCa.stderr).toContain('--database-ca');

    const prefer = await run(['verify'], { DATABASE_URL: pgUrl('?sslmode=prefer') });
    expect(prefer.code).toBe(2);
    expect(prefer.stderr).toContain('sslmode=prefer is not supported');

    const redisWrongCa = await run(['verify'], { DATABASE_URL: pgUrl('?sslmode=require'), REDIS_CA: certs.otherCa });
    expect(redisWrongCa.code).toBe(2);
    expect(redisWrongCa.stderr).toContain("Redis's TLS certificate was not accepted");
    expect(redisWrongCa.stderr).toContain('--redis-ca');

    for (const result of [plain, wrongCa, prefer, redisWrongCa]) {
      expect(result.stdout + result.stderr).not.toContain(PASSWORD);
    }
  });
});
