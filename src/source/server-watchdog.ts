import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/**
 * The watchdog between the tool and the server: its stdin is a pipe from the tool, so when the tool ends,
 * however it ends (kill -9 included), the pipe closes and the watchdog kills the server's process group (the
 * server, or a wrapper script and the server it started), removes the private folder and exits. It runs in a session of its own: a Ctrl-C at the terminal reaches the tool (which
 * finishes its batches, still reading) but neither the watchdog nor the server. It reports on stdout, one
 * JSON line each: the server's pid once started, and how it ended, with the end of its log.
 */
const WATCHDOG = `'use strict';
const { spawn } = require('node:child_process');
const { openSync, readFileSync, rmSync } = require('node:fs');
const [dir, bin, ...args] = process.argv.slice(2);
const logFile = dir + '/server.log';
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);
const say = (message) => { try { process.stdout.write(JSON.stringify(message) + '\\n'); } catch {} };
const finish = (code) => { try { rmSync(dir, { recursive: true, force: true }); } catch {} process.exit(code); };
const out = openSync(logFile, 'a');
// A process group of its own: a --redis-server wrapper that does not exec keeps the real server as its
// child, and killing the wrapper alone would leave that server running.
const server = spawn(bin, args, { stdio: ['ignore', out, out], detached: true });
let stopping = false;
const killGroup = () => { try { process.kill(-server.pid, 'SIGKILL'); } catch {} };
const stop = () => {
  stopping = true;
  if (server.pid !== undefined) killGroup();
  if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
};
server.on('spawn', () => say({ pid: server.pid }));
server.on('error', (error) => { say({ error: String(error.code || error.message) }); finish(127); });
server.on('exit', (code, signal) => {
  // Whatever the wrapper left behind goes with it.
  killGroup();
  let log = '';
  try { log = readFileSync(logFile, 'utf8').slice(-16000); } catch {}
  say({ exit: code, signal, stopped: stopping, log });
  finish(0);
});
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.on('error', stop);
process.stdin.resume();
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, stop);
`;

export interface Ended {
  readonly exit: number | null;
  readonly signal: string | null;
  readonly stopped: boolean;
  readonly log: string;
}

export type Message = { pid: number } | { error: string } | Ended;

/** A watchdog started with its server, and what it reports. */
export interface Watchdog {
  readonly process: ChildProcess;
  /** The server's pid, or why it could not start. */
  readonly first: Promise<Message>;
  /** How the server ended (also when the watchdog ended without saying: then its stderr is the log). Never rejects. */
  readonly ended: Promise<Ended>;
  /** The watchdog process has exited: the server is gone and the folder removed. */
  readonly gone: Promise<unknown>;
}

/** Starts `bin args` under a watchdog that owns `dir` (the server's private folder) and removes it at the end. */
export function startWatchdog(dir: string, bin: string, args: readonly string[]): Watchdog {
  // A file of its own rather than `node -e`, so that `ps` shows what it is.
  const script = join(dir, 'watchdog.cjs');
  writeFileSync(script, WATCHDOG, { mode: 0o600 });
  const child = spawn(process.execPath, [script, dir, bin, ...args], { detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  child.stdin.on('error', () => undefined);
  const gone = once(child, 'exit');
  const messages = readMessages(child);
  const ended = messages.ended.then((how) => how ?? { exit: null, signal: null, stopped: false, log: stderr });
  return { process: child, first: messages.first.then((m) => m ?? { error: `the watchdog ended: ${stderr.trim() || 'no message'}` }), ended, gone };
}

function readMessages(watchdog: ChildProcess): { first: Promise<Message | undefined>; ended: Promise<Ended | undefined> } {
  let resolveFirst: (m: Message | undefined) => void = () => undefined;
  let resolveEnded: (m: Ended | undefined) => void = () => undefined;
  const first = new Promise<Message | undefined>((resolve) => (resolveFirst = resolve));
  const ended = new Promise<Ended | undefined>((resolve) => (resolveEnded = resolve));
  if (!watchdog.stdout) throw new Error('the watchdog has no stdout');
  const lines = createInterface({ input: watchdog.stdout });
  lines.on('line', (line) => {
    let message: Message;
    try {
      message = JSON.parse(line) as Message;
    } catch {
      return;
    }
    resolveFirst(message);
    if ('exit' in message) resolveEnded(message);
  });
  lines.on('close', () => {
    resolveFirst(undefined);
    resolveEnded(undefined);
  });
  return { first, ended };
}
