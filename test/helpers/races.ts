/**
 * One test's world for running the real CLI against a live "app": its own database, Redis key prefix and
 * folder; the CLI started as a child process with its report and rejects files there; "app" connections
 * whose locks the test holds while it polls pg_stat_activity until the tool waits on them, so that every
 * race happens the same way on every run. `close()` kills what is still running and removes it all.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { MigrateReport } from '../../src/results/migrate-report.js';
import { startCli, type CliProcess, type CliResult } from './cli.js';
import { createTestDatabase, createTestKeys, REDIS_URL, type TestDatabase, type TestKeys } from './servers.js';

/** One line of the rejects file (`--rejects`). */
export interface Reject {
  readonly key: string;
  readonly reason: string;
  readonly detail: string;
  readonly user_id?: string;
}

export interface Finished<R> extends CliResult {
  readonly report: R;
  readonly rejects: Reject[];
}

export interface Running extends CliProcess {
  /** Waits for the exit, then reads the JSON report (which must exist) and the rejects. */
  finished<R = MigrateReport>(): Promise<Finished<R>>;
  /** Waits for the exit; reads nothing (a run refused at the start writes no report). */
  ended(): Promise<CliResult>;
}

/** The app: a connection of its own, and its backend pid (to recognise the locks it holds). */
export interface App {
  readonly client: pg.Client;
  readonly pid: number;
}

/** Where the tool waits: pg_stat_activity shows the first 1 kB (track_activity_query_size) of the statement. */
export interface Wait {
  readonly app: App;
  readonly query: string;
  readonly started: string;
}

export interface RaceWorld {
  readonly db: TestDatabase;
  readonly keys: TestKeys;
  readonly dir: string;
  /** bin/migrate-users (migrate, or `verify` / `reconcile` given first) on this test's database and keys,
   * with `--report` and (but for verify) `--rejects` in `dir` unless `args` name their own, and `--match`. */
  start(args: readonly string[], env?: Record<string, string>): Running;
  /** A connection standing in for the new app (its own application_name, so it is never taken for the tool). */
  connectApp(): Promise<App>;
  /** Polls `test` until it holds; fails after `ms` with `what`, the sessions, and the tool's output if given. */
  until(test: () => boolean | Promise<boolean>, what: string, tool?: Running, ms?: number): Promise<void>;
  /** Until a backend of the tool waits on a lock one of `holders` holds, in a statement `statement` accepts. */
  toolBlockedBy(tool: Running, holders: readonly App[], statement?: (query: string) => boolean): Promise<Wait>;
  /** After a kill -9: until PostgreSQL has let go of every session of the dead tool (its write lock with them). */
  toolSessionsGone(): Promise<void>;
  close(): Promise<void>;
}

/** `name` names the temporary folder and the app's connections; `waitMs` bounds every wait. */
export async function createRaceWorld(name: string, waitMs = 30_000): Promise<RaceWorld> {
  const db = await createTestDatabase();
  const keys = await createTestKeys();
  const dir = mkdtempSync(join(tmpdir(), `mu-${name}-`));
  const running: CliProcess[] = [];
  const apps: pg.Client[] = [];
  let files = 0;

  async function sessions(): Promise<string> {
    const rows = await db.query(
      `select pid, application_name as app, state, wait_event_type as wait, pg_blocking_pids(pid) as blocked_by, left(query, 100) as query
       from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()`,
      [db.name],
    );
    return JSON.stringify(rows);
  }

  async function exited(tool: CliProcess): Promise<number | null> {
    const code = await Promise.race([tool.exit, sleep(waitMs).then(() => 'timeout' as const)]);
    if (code !== 'timeout') return code;
    const activity = await sessions();
    tool.child.kill('SIGKILL');
    throw new Error(`the tool did not finish within ${waitMs} ms (sessions: ${activity})\n${tool.output()}`);
  }

  function start(args: readonly string[], env: Record<string, string> = {}): Running {
    files += 1;
    const reportPath = join(dir, `report-${files}.json`);
    const [command, flags] = args[0] === 'verify' || args[0] === 'reconcile' ? [[args[0]], args.slice(1)] : [[], args];
    const given = flags.indexOf('--rejects');
    const rejectsPath = given >= 0 ? flags[given + 1] : command[0] === 'verify' ? undefined : join(dir, `rejects-${files}.ndjson`);
    const extra = [...(flags.includes('--match') ? [] : ['--match', keys.match]), '--report', reportPath];
    if (given < 0 && rejectsPath) extra.push('--rejects', rejectsPath);
    const tool = startCli([...command, '--no-progress', ...extra, ...flags], { DATABASE_URL: db.url, REDIS_URL, ...env });
    running.push(tool);
    return Object.assign(tool, {
      ended: async () => ({ code: await exited(tool), stdout: tool.stdout, stderr: tool.stderr }),
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- a typed JSON.parse: the caller names the report it expects
      finished: async <R>() => {
        const code = await exited(tool);
        const text = await readFile(reportPath, 'utf8').catch(() => null);
        if (text === null) throw new Error(`the tool wrote no report (exit ${String(code)})\n${tool.output()}`);
        const rejects = (rejectsPath ? await readFile(rejectsPath, 'utf8').catch(() => '') : '')
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as Reject);
        return { code, stdout: tool.stdout, stderr: tool.stderr, report: JSON.parse(text) as R, rejects };
      },
    });
  }

  async function until(test: () => boolean | Promise<boolean>, what: string, tool?: Running, ms = waitMs): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await test())) {
      if (tool && tool.child.exitCode !== null) throw new Error(`the tool exited (${tool.child.exitCode}) before ${what}\n${tool.output()}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (sessions: ${await sessions()})${tool ? `\n${tool.output()}` : ''}`);
      await sleep(20);
    }
  }

  return {
    db,
    keys,
    dir,
    start,
    until,
    connectApp: async () => {
      const client = new pg.Client({ connectionString: db.url, application_name: `${name}-app` });
      await client.connect();
      apps.push(client);
      const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
      return { client, pid: rows[0]?.pid ?? -1 };
    },
    toolBlockedBy: async (tool, holders, statement = () => true) => {
      let wait: Wait | undefined;
      await until(
        async () => {
          const rows = await db.query<{ blocked_by: number[]; query: string; started: string }>(
            `select pg_blocking_pids(pid) as blocked_by, query, query_start::text as started from pg_stat_activity
           where datname = $1 and application_name = 'migrate-users' and wait_event_type = 'Lock'`,
            [db.name],
          );
          for (const row of rows) {
            const app = holders.find((h) => row.blocked_by.includes(h.pid));
            if (app && statement(row.query)) wait = { app, query: row.query, started: row.started };
          }
          return wait !== undefined;
        },
        "the tool to wait on the app's lock",
        tool,
      );
      if (!wait) throw new Error('unreachable: until() returned without a wait');
      return wait;
    },
    toolSessionsGone: () =>
      until(async () => {
        const rows = await db.query<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity where datname = $1 and application_name = 'migrate-users'`,
          [db.name],
        );
        return rows[0]?.n === 0;
      }, "the killed tool's sessions to end"),
    close: async () => {
      for (const { child } of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await Promise.all(running.map((tool) => tool.exit.catch(() => undefined)));
      await Promise.all(apps.map((client) => client.end().catch(() => undefined)));
      await keys.cleanup();
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
