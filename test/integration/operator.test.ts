import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, runCli, startCli, type CliResult } from '../helpers/cli.js';
import { freePort, startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.js';
import { createTestDatabase, createTestKeys, REDIS_URL, type TestDatabase, type TestKeys } from '../helpers/servers.js';

/**
 * The mistakes an operator makes at night, each answered in one line naming the problem and the fix,
 * before any record is read: the real CLI as a child process, its exit code and its words.
 */

const STACK = /^\s+at /m;

let db: TestDatabase;
let keys: TestKeys;
let dir: string;

beforeAll(async () => {
  db = await createTestDatabase();
  keys = await createTestKeys();
  dir = mkdtempSync(join(tmpdir(), 'mu-operator-'));
  for (let i = 0; i < 3000; i++) {
    await keys.putUser(`u${i}@op.test`, {
      user_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      email: `u${i}@op.test`,
      current_credits: 10,
      total_credits_used: 0,
    });
  }
});

afterAll(async () => {
  await keys.cleanup();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

const timed = async (args: string[], env: Record<string, string> = {}): Promise<CliResult & { ms: number }> => {
  const started = Date.now();
  const result = await runCli(args, env);
  return { ...result, ms: Date.now() - started };
};

describe('the command line as people expect it', () => {
  it('an unknown command is named, with the nearest one, not "too many arguments"', async () => {
    const result = await runCli(['verfy', '--database-url', db.url]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("unknown command 'verfy' (did you mean verify?)");
    expect(result.stderr).not.toContain('too many arguments');
    const far = await runCli(['frobnicate']);
    expect(far.code).toBe(2);
    expect(far.stderr).toContain("unknown command 'frobnicate'");
    expect(far.stderr).not.toContain('did you mean');
  });

  it('help [command] shows that command: only its flags, examples, exit codes', async () => {
    const verify = await runCli(['help', 'verify']);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toContain('--junit');
    expect(verify.stdout).toContain('Examples:');
    expect(verify.stdout).toContain('Exit codes: 0 ');
    const seed = await runCli(['help', 'seed']);
    expect(seed.stdout).toContain('--count');
    expect(seed.stdout).not.toContain('--database-url');
    const check = await runCli(['schema', 'check', '--help']);
    expect(check.stdout).toContain('--database-url');
    expect(check.stdout).not.toContain('--redis-url');
    expect(check.stdout).not.toContain('--match');
    const top = await runCli(['help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/help \[command\]/);
  });
});

describe('mistakes in the command line and the URLs', () => {
  it('extra words are refused, not ignored; a command given to migrate is named as one', async () => {
    const stray = await runCli(['reconcile', 'apply']);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain("too many arguments for 'reconcile'");
    const nested = await runCli(['migrate', 'verify']);
    expect(nested.code).toBe(2);
    expect(nested.stderr).toContain("'verify' is a command of its own");
  });

  it('a Redis database number the server does not have, or that is no number, is refused (not read as database 0)', async () => {
    const none = await runCli(['--dry-run', '--database-url', db.url, '--redis-url', `${REDIS_URL.replace(/\/\d*$/, '')}/16`, '--match', keys.match]);
    expect(none.code, none.stderr).toBe(2);
    expect(none.stderr).toContain('it has no database 16');
    const word = await runCli(['--dry-run', '--redis-url', 'redis://127.0.0.1:6379/abc']);
    expect(word.code).toBe(2);
    expect(word.stderr).toContain('names database "abc"');
  });

  it('an output path whose folder takes no new file is refused before any work', async () => {
    const result = await runCli(['--dry-run', '--database-url', db.url, '--match', keys.match, '--report', '/proc/mu-report.json'], { REDIS_URL });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--report /proc/mu-report.json: the folder /proc cannot take a new file (creating one there fails with ');
  });
});

describe('a server that cannot be reached: which one, what happened, exit 2, at once', () => {
  it('a Redis address that accepts the connection and never answers: exit 2 after the connect timeout, not a hang', { timeout: 60_000 }, async () => {
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    try {
      const result = await timed(['--dry-run', '--database-url', db.url, '--redis-url', `redis://127.0.0.1:${port}`, '--match', keys.match]);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain('no answer within the connection timeout');
      expect(result.ms).toBeLessThan(30_000);
    } finally {
      silent.close();
    }
  });

  it('PostgreSQL: no such host, refused, no such database', async () => {
    const port = await freePort();
    const cases: [string, string][] = [
      ['postgres://postgres@no-such-host.invalid:5432/x', 'no such host'],
      [`postgres://postgres@127.0.0.1:${port}/x`, 'connection refused'],
      [db.url.replace(/\/[^/]*$/, '/no_such_database_here'), 'does not exist'],
    ];
    for (const [url, words] of cases) {
      const result = await timed(['--dry-run', '--database-url', url, '--redis-url', `redis://127.0.0.1:${port}`, '--match', keys.match]);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain('cannot connect to PostgreSQL at postgres://postgres@');
      expect(result.stderr).toContain(words);
      expect(result.stderr).not.toMatch(STACK);
      expect(result.ms).toBeLessThan(8000);
    }
  });

  it('PostgreSQL asking for a password: "password required", or "wrong", never the password itself', async () => {
    const bouncer: PgBouncer = await startPgBouncer({ mode: 'session', poolSize: 2, users: ['postgres'], password: 'Pw-Sekret-42' });
    try {
      const none = await timed(['schema', 'check', '--database-url', bouncer.through(db.url)]);
      expect(none.code, none.stderr).toBe(2);
      expect(none.stderr).toContain('cannot connect to PostgreSQL');
      expect(none.stderr).toContain('password required');
      expect(none.stderr).not.toMatch(STACK);
      const wrongUrl = new URL(bouncer.through(db.url));
      wrongUrl.password = 'Not-The-Pw-99';
      const wrong = await timed(['schema', 'check'], { DATABASE_URL: wrongUrl.toString() });
      expect(wrong.code, wrong.stderr).toBe(2);
      expect(wrong.stderr).toContain('wrong user name or password');
      expect(wrong.stderr).not.toContain('Not-The-Pw-99');
      const right = new URL(bouncer.through(db.url));
      right.password = 'Pw-Sekret-42';
      const ok = await runCli(['schema', 'check'], { DATABASE_URL: right.toString() });
      expect(ok.code, ok.stderr).toBe(0);
    } finally {
      await bouncer.stop();
    }
  });

  it('Redis: refused, no such host, password required or wrong; a stack trace only at --log-level debug', async () => {
    const port = await freePort();
    const refused = await timed(['--dry-run', '--database-url', db.url, '--redis-url', `redis://127.0.0.1:${port}`, '--match', keys.match]);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`cannot connect to Redis at redis://127.0.0.1:${port}`);
    expect(refused.stderr).toContain('connection refused');
    expect(refused.stderr).not.toContain('Connection is closed');
    expect(refused.stderr).not.toMatch(STACK);
    expect(refused.ms).toBeLessThan(5000);

    const nohost = await timed([
      '--dry-run',
      '--database-url',
      db.url,
      '--redis-url',
      'redis://no-such-host.invalid:6379',
      '--match',
      keys.match,
      '--log-level',
      'debug',
    ]);
    expect(nohost.code).toBe(2);
    expect(nohost.stderr).toContain('no such host');
    expect(nohost.stderr).toMatch(STACK);

    const server = await startRedisWithPassword('Rd-Sekret-77');
    try {
      const none = await runCli(['--dry-run', '--database-url', db.url, '--redis-url', `redis://127.0.0.1:${server.port}`, '--match', keys.match]);
      expect(none.code, none.stderr).toBe(2);
      expect(none.stderr).toContain('password required');
      const wrong = await runCli(['--dry-run', '--database-url', db.url, '--match', keys.match], {
        REDIS_URL: `redis://default:Wrong-Pw-55@127.0.0.1:${server.port}`,
      });
      expect(wrong.code, wrong.stderr).toBe(2);
      expect(wrong.stderr).toContain('wrong user name or password');
      expect(wrong.stderr).not.toContain('Wrong-Pw-55');
    } finally {
      await server.stop();
    }
  });
});

describe('logs and the progress bar', () => {
  it('at a terminal: the bar for every phase, no JSON log line, warnings as sentences above the bar, the summary clean', async () => {
    const url = new URL(db.url);
    url.password = 'Pw-On-Command-Line';
    const screen = underTerminal([BIN, 'migrate', '--database-url', url.toString(), '--match', keys.match]);
    expect(screen.code, screen.text).toBe(0);
    expect(screen.text).not.toMatch(/\{"level"/);
    expect(screen.text).not.toContain('Pw-On-Command-Line');
    // The warning about the password on the command line, as a sentence on a line of its own.
    expect(screen.text).toMatch(/^migrate-users warning: --database-url carries a password/m);
    expect(screen.text).toMatch(/reading Redis .*of ~[\d,]+ keys \(estimated from the key count\)/);
    expect(screen.text).toContain('indexing, triage');
    expect(screen.text).toMatch(/writing .*100% \| 3,000\/3,000/);
    expect(screen.text).toMatch(/^Migration run_\w+ finished\.$/m);
    expect(screen.text).toMatch(/^ {2}inserted +3,000$/m);
  });

  it(
    'Ctrl-C while reading: the reading bar stays where it got to (not 100%), and verify says "not checked (interrupted)", not "(sample)"',
    { timeout: 120_000 },
    async () => {
      const own = await createTestDatabase();
      try {
        // The estimate is the database's key count (other tests' keys included).
        const slow = ['--database-url', own.url, '--match', keys.match, '--max-rate', '500', '--batch-size', '100'];
        const reading = /reading Redis +\[[^\]]*\] (\d+)% \| ([\d,]+) of ~([\d,]+) keys \(estimated from the key count\)/g;
        const readSoFar = (text: string) => Number(([...text.matchAll(reading)].pop()?.[2] ?? '0').replace(/,/g, ''));
        const junit = join(dir, 'interrupted.xml');
        const markdown = join(dir, 'interrupted.md');
        for (const command of [['migrate'], ['verify', '--junit', junit, '--markdown', markdown]]) {
          const screen = await ctrlCUnderTerminal([BIN, ...command, ...slow], (text) => readSoFar(text) >= 300);
          expect(screen.code, screen.text).toBe(130);
          const [, percent = '', value = '', total = ''] = [...screen.text.matchAll(reading)].pop() ?? [];
          // Stopped where it was: what was read against the estimate, never the count read passed off as 100%.
          expect(Number(percent), screen.text).toBeLessThan(100);
          expect(total, screen.text).not.toBe(value);
          const summary = command[0] === 'verify' ? /^ {2}keys checked +([\d,]+)$/m : /^ {2}keys scanned +([\d,]+)$/m;
          expect(summary.exec(screen.text)?.[1], screen.text).toBe(value);
          if (command[0] === 'verify') {
            expect(screen.text).toMatch(/^VERIFY FAILED: interrupted before every key was compared \[[\d,]+ keys read before the interruption, not all\]$/m);
            expect(screen.text).toMatch(/^ {2}only in PostgreSQL \(allowed\) +not checked \(interrupted\)$/m);
            expect(screen.text).not.toContain('(sample)');
            expect(screen.text).not.toContain('[all keys]');
            expect(readFileSync(junit, 'utf8')).toContain('not checked: interrupted before every key was read');
            expect(readFileSync(junit, 'utf8')).not.toContain('in a sample');
            expect(readFileSync(markdown, 'utf8')).toMatch(/> \*\*Interrupted\*\*: [\d,]+ keys read, not all/);
            expect(readFileSync(markdown, 'utf8')).not.toContain('Every key checked');
          } else {
            // Stopped while reading: nothing to resume, and the summary says so (issue 31).
            expect(screen.text).toMatch(
              /INTERRUPTED while reading Redis \([\d,]+ keys read\): nothing was written; the next run reads Redis again from the start\./,
            );
          }
        }
      } finally {
        await own.drop();
      }
    },
  );

  it('--log-file takes the JSON lines; stderr keeps warnings and errors only', async () => {
    const logFile = join(dir, 'run.log');
    const result = await runCli(['--dry-run', '--database-url', db.url, '--match', keys.match, '--log-file', logFile], { LOG_LEVEL: '', REDIS_URL });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    const lines = readFileSync(logFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string });
    expect(lines.map((l) => l.msg)).toContain('run started');
    const bad = await runCli(['--dry-run', '--log-file', join(dir, 'no', 'such', 'dir', 'run.log')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--log-file');
    expect(bad.stderr).toContain('does not exist');
  });
});

describe('a resumed run at a terminal', () => {
  it('its summary names the run it resumed, and its writing bar reaches 100%', { timeout: 300_000 }, async () => {
    const big = await createTestKeys();
    const bigDb = await createTestDatabase();
    try {
      const pipe = big.redis.pipeline();
      for (let i = 0; i < 20_000; i++) {
        const email = `r${i}@resume.test`;
        pipe.set(big.userKey(email), JSON.stringify({ user_id: `resume-${i}`, email, current_credits: 1, total_credits_used: 0 }));
      }
      await pipe.exec();
      const args = ['--match', big.match, '--batch-size', '200', '--write-concurrency', '1'];
      const first = startCli([...args, '--no-progress'], { DATABASE_URL: bigDb.url, REDIS_URL, LOG_LEVEL: 'info' });
      for (let i = 0; i < 2400 && !first.stderr.includes('triage done'); i++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 200));
      first.child.kill('SIGINT');
      expect(await first.exit, first.stderr).toBe(130);
      expect(first.stdout).toMatch(/INTERRUPTED: [\d,]+ records not decided yet\. Run the same command again to resume\./);

      const screen = underTerminal([BIN, ...args, '--database-url', bigDb.url]);
      expect(screen.code, screen.text).toBe(0);
      expect(screen.text).toMatch(/^Migration run_\w+ finished\. It resumed run_\w+ \([\d,]+ records were done before\)\.$/m);
      expect(screen.text).toMatch(/writing .*100% \| ([\d,]+)\/\1 /);
      expect(screen.text).not.toMatch(/\{"level"/);
    } finally {
      await big.cleanup();
      await bigDb.drop();
    }
  });
});

/** Runs the CLI under a pseudo-terminal (util-linux `script`) and returns the screen's text, escapes removed. */
function underTerminal(argv: readonly string[], extraEnv: Record<string, string> = { REDIS_URL }): { code: number | null; text: string } {
  const { args, env, out } = terminalCommand(argv, extraEnv);
  const result = spawnSync('script', args, { env, encoding: 'utf8', timeout: 180_000 });
  return { code: result.status, text: screenText(readFileSync(out, 'utf8')) };
}

/**
 * As underTerminal, and presses Ctrl-C once the screen shows what `ready` looks for: `script` passes the
 * keystroke to the pseudo-terminal, whose line discipline sends SIGINT to the tool, as a terminal does.
 */
async function ctrlCUnderTerminal(
  argv: readonly string[],
  ready: (text: string) => boolean,
  extraEnv: Record<string, string> = { REDIS_URL },
): Promise<{ code: number | null; text: string }> {
  const { args, env, out } = terminalCommand(argv, extraEnv);
  const child = spawn('script', args, { env, stdio: ['pipe', 'ignore', 'ignore'] });
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  const screen = () => screenText(existsSync(out) ? readFileSync(out, 'utf8') : '');
  try {
    for (const deadline = Date.now() + 60_000; !ready(screen());) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the screen never showed what the test waits for:\n${screen()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.stdin.write('\x03');
    const code = await Promise.race([exit, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000))]);
    if (code === 'timeout') throw new Error(`the tool did not stop after Ctrl-C:\n${screen()}`);
    return { code, text: screen() };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

function terminalCommand(argv: readonly string[], extraEnv: Record<string, string>): { args: string[]; env: NodeJS.ProcessEnv; out: string } {
  const command = [process.execPath, ...argv].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const out = join(dir, `screen-${Date.now()}-${Math.random().toString(36).slice(2)}.txt`);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'xterm', COLUMNS: '160', ...extraEnv };
  return { args: ['-qfec', command, out], env, out };
}

/** What a terminal shows: escapes gone, a carriage return starts the line over. */
function screenText(raw: string): string {
  return (
    raw
      // eslint-disable-next-line no-control-regex -- terminal escape sequences start with ESC
      .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
      .split('\n')
      .map(
        (line) =>
          line
            .split('\r')
            .filter((part) => part.length > 0)
            .pop() ?? '',
      )
      .filter((line) => !line.startsWith('Script '))
      .join('\n')
  );
}

async function startRedisWithPassword(password: string): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', password],
    {
      stdio: 'ignore',
    },
  );
  const probe = new Redis({ port, host: '127.0.0.1', password, lazyConnect: true, retryStrategy: () => null });
  probe.on('error', () => undefined);
  for (let i = 0; i < 100; i++) {
    try {
      await probe.connect();
      await probe.ping();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  probe.disconnect();
  return {
    port,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}
