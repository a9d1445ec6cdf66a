import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/migrate-users', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** bin/migrate-users running as a child process. */
export interface CliProcess {
  readonly child: ChildProcess;
  /** The exit code, once the process has exited and its stdout and stderr have been read to their end. */
  readonly exit: Promise<number | null>;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout and stderr so far, labelled: for failure messages. */
  output(): string;
}

/**
 * Starts the real bin/migrate-users, the way operators and CI do, with a bare environment (PATH, HOME,
 * LOG_LEVEL=warn) plus `env`: nothing of the test runner's DATABASE_URL / REDIS_URL leaks in.
 */
export function startCli(args: readonly string[], env: Record<string, string | undefined> = {}): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // 'close', not 'exit': by then stdout and stderr have been read to their end. once() rejects on 'error'.
  const exit = once(child, 'close').then(([code]) => code as number | null);
  return {
    child,
    exit,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    output: () => `stdout:\n${stdout}\nstderr:\n${stderr}`,
  };
}

/** Runs bin/migrate-users to its end. */
export async function runCli(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const cli = startCli(args, env);
  const code = await cli.exit;
  return { code, stdout: cli.stdout, stderr: cli.stderr };
}
