/**
 * Which PostgreSQL and Redis the tests use: the choice made by test/helpers/global-setup.ts, as a pure function
 * of what it found (CONTRIBUTING.md "Running the tests"). Per server: the one TEST_*_URL names (it must answer: it was
 * asked for); else the local default if it answers; else a throwaway container when a Docker engine is
 * reachable (the laptop path); else a message naming the missing server and the three ways to provide one.
 */

export type Server = 'postgres' | 'redis';
export const SERVERS: readonly Server[] = ['postgres', 'redis'];

export const LOCAL_DEFAULTS: Readonly<Record<Server, string>> = {
  postgres: 'postgres://postgres@127.0.0.1:5432/postgres',
  redis: 'redis://127.0.0.1:6379',
};

const VARIABLE: Readonly<Record<Server, string>> = { postgres: 'TEST_DATABASE_URL', redis: 'TEST_REDIS_URL' };
const NAME: Readonly<Record<Server, string>> = { postgres: 'PostgreSQL', redis: 'Redis' };
const LOCAL: Readonly<Record<Server, string>> = {
  postgres: 'PostgreSQL 15 on 127.0.0.1:5432 (user postgres, trust auth)',
  redis: 'Redis 7 on 127.0.0.1:6379',
};

/** The servers the tests use, handed from the global setup to the test files (vitest's provide / inject). */
export interface TestServers {
  readonly databaseUrl: string;
  readonly redisUrl: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    testServers: TestServers;
  }
}

export interface ServerFacts {
  /** TEST_DATABASE_URL / TEST_REDIS_URL as set (an empty value counts as unset). */
  readonly env: Readonly<Record<Server, string | undefined>>;
  /** Why the server the tests would use (the variable's, else the local default) did not answer; null if it did. */
  readonly errors: Readonly<Record<Server, string | null>>;
  /** Whether a Docker engine answers (testcontainers' own detection); only asked when a container could help. */
  readonly docker: boolean;
}

export type Source = { readonly kind: 'url'; readonly url: string } | { readonly kind: 'container' };

export type ServerPlan = { readonly ok: true; readonly sources: Readonly<Record<Server, Source>> } | { readonly ok: false; readonly message: string };

/** The URL the tests would use for `server` before any container: the variable's, else the local default. */
export function configuredUrl(server: Server, env: ServerFacts['env']): string {
  return env[server] || LOCAL_DEFAULTS[server];
}

/** Servers no variable names and whose local default did not answer: what a container could stand in for. */
export function missingLocally(facts: Pick<ServerFacts, 'env' | 'errors'>): Server[] {
  return SERVERS.filter((s) => !facts.env[s] && facts.errors[s] !== null);
}

export function planServers(facts: ServerFacts): ServerPlan {
  const problems: string[] = [];
  for (const s of SERVERS) {
    const error = facts.errors[s];
    if (facts.env[s] && error !== null) {
      problems.push(
        `${NAME[s]} not reachable at ${VARIABLE[s]} (${redact(configuredUrl(s, facts.env))}): ${error}. ` +
          `Start that server, correct ${VARIABLE[s]}, or unset it to use the local default or a container.`,
      );
    }
  }
  const missing = missingLocally(facts);
  if (missing.length > 0 && !facts.docker) {
    for (const s of missing) {
      problems.push(`${NAME[s]}: nothing answers at ${LOCAL_DEFAULTS[s]} (${VARIABLE[s]} is not set): ${facts.errors[s] ?? 'no answer'}`);
    }
    problems.push(
      [
        `Provide ${missing.map((s) => NAME[s]).join(' and ')} in one of three ways:`,
        `  1. start local servers: \`docker compose up -d\` (compose.yaml in this checkout), or your own ${missing.map((s) => LOCAL[s]).join(' and ')};`,
        `  2. set ${missing.map((s) => VARIABLE[s]).join(' / ')} to servers you have;`,
        '  3. have a Docker engine running (DOCKER_HOST or /var/run/docker.sock): the tests then start throwaway',
        '     containers of their own (testcontainers).',
      ].join('\n'),
    );
  }
  if (problems.length > 0) return { ok: false, message: problems.join('\n') };
  const source = (s: Server): Source => (missing.includes(s) ? { kind: 'container' } : { kind: 'url', url: configuredUrl(s, facts.env) });
  return { ok: true, sources: { postgres: source('postgres'), redis: source('redis') } };
}

/** A URL fit for a message: its password replaced. */
export function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
}
