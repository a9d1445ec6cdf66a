import { describe, expect, it } from 'vitest';
import { LOCAL_DEFAULTS, missingLocally, planServers, type ServerFacts, type ServerPlan } from '../helpers/test-servers.js';

const UNSET = { postgres: undefined, redis: undefined };
const ANSWERED = { postgres: null, redis: null };
const DOWN = { postgres: 'Error: connect ECONNREFUSED 127.0.0.1:5432', redis: 'Error: connect ECONNREFUSED 127.0.0.1:6379' };
const OWN = { postgres: 'postgres://ci:s3cret@db.internal:5432/postgres', redis: 'redis://:s3cret@cache.internal:6379' };

const url = (u: string) => ({ kind: 'url', url: u }) as const;
const container = { kind: 'container' } as const;

function message(plan: ServerPlan): string {
  if (plan.ok) throw new Error(`expected a refusal, got ${JSON.stringify(plan)}`);
  return plan.message;
}

describe('planServers: which servers the tests use', () => {
  it.each<[string, ServerFacts, ServerPlan]>([
    [
      'local defaults answer: used, whatever Docker',
      { env: UNSET, errors: ANSWERED, docker: true },
      { ok: true, sources: { postgres: url(LOCAL_DEFAULTS.postgres), redis: url(LOCAL_DEFAULTS.redis) } },
    ],
    [
      'TEST_*_URL set and answering: used',
      { env: OWN, errors: ANSWERED, docker: false },
      { ok: true, sources: { postgres: url(OWN.postgres), redis: url(OWN.redis) } },
    ],
    [
      'nothing local, Docker reachable: two containers',
      { env: UNSET, errors: DOWN, docker: true },
      { ok: true, sources: { postgres: container, redis: container } },
    ],
    [
      'only Redis missing, Docker reachable: the local PostgreSQL and a Redis container',
      { env: UNSET, errors: { postgres: null, redis: DOWN.redis }, docker: true },
      { ok: true, sources: { postgres: url(LOCAL_DEFAULTS.postgres), redis: container } },
    ],
    [
      'an empty variable counts as unset',
      { env: { postgres: '', redis: OWN.redis }, errors: { postgres: DOWN.postgres, redis: null }, docker: true },
      { ok: true, sources: { postgres: container, redis: url(OWN.redis) } },
    ],
  ])('%s', (_, facts, plan) => {
    expect(planServers(facts)).toEqual(plan);
  });

  it('nothing local and no Docker: names both servers and the three ways to provide them', () => {
    const text = message(planServers({ env: UNSET, errors: DOWN, docker: false }));
    expect(text).toContain(`PostgreSQL: nothing answers at ${LOCAL_DEFAULTS.postgres} (TEST_DATABASE_URL is not set): ${DOWN.postgres}`);
    expect(text).toContain(`Redis: nothing answers at ${LOCAL_DEFAULTS.redis} (TEST_REDIS_URL is not set): ${DOWN.redis}`);
    expect(text).toContain('Provide PostgreSQL and Redis in one of three ways:');
    expect(text).toContain('docker compose up -d');
    expect(text).toContain('compose.yaml');
    expect(text).toContain('set TEST_DATABASE_URL / TEST_REDIS_URL');
    expect(text).toContain('Docker engine running');
  });

  it('one server missing and no Docker: names only that one', () => {
    const text = message(planServers({ env: UNSET, errors: { postgres: null, redis: DOWN.redis }, docker: false }));
    expect(text).toContain('Provide Redis in one of three ways:');
    expect(text).toContain('set TEST_REDIS_URL to');
    expect(text).not.toContain('PostgreSQL');
  });

  it('a server TEST_*_URL names that does not answer is an error, never replaced by a container; no password shown', () => {
    const text = message(
      planServers({ env: { postgres: OWN.postgres, redis: undefined }, errors: { postgres: 'Error: timeout', redis: DOWN.redis }, docker: true }),
    );
    expect(text).toContain('PostgreSQL not reachable at TEST_DATABASE_URL (postgres://ci:***@db.internal:5432/postgres): Error: timeout');
    expect(text).not.toContain('s3cret');
    // Redis alone would have had a container: the run stops anyway, on the PostgreSQL it was told to use.
    expect(text).not.toContain('Redis');
  });
});

describe('missingLocally: what a container could stand in for', () => {
  it.each<[string, Pick<ServerFacts, 'env' | 'errors'>, string[]]>([
    ['both answer', { env: UNSET, errors: ANSWERED }, []],
    ['both down, unset', { env: UNSET, errors: DOWN }, ['postgres', 'redis']],
    ['down but named by a variable', { env: OWN, errors: DOWN }, []],
    ['one of each', { env: { postgres: OWN.postgres, redis: undefined }, errors: DOWN }, ['redis']],
  ])('%s', (_, facts, missing) => {
    expect(missingLocally(facts)).toEqual(missing);
  });
});
