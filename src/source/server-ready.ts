import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { InterruptedError } from '../errors.js';

/** Until the server answers PING (it answers LOADING while it loads), it exits, or the run is interrupted. */
export async function untilLoaded(
  socket: string,
  ended: Promise<unknown>,
  signal: AbortSignal | undefined,
  progress: (percent: number | undefined) => void,
): Promise<void> {
  let exited = false;
  // Only a flag for the loop below; `ended` never rejects (see Watchdog.ended).
  void ended.then(() => (exited = true));
  let said = Date.now();
  for (;;) {
    if (signal?.aborted) throw new InterruptedError('stopped while the snapshot was loading: nothing was read or written');
    const state = await probe(socket);
    if (state.ready) return;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the then() above, which TS's narrowing of a let does not see
    if (exited) throw new Error('the server exited while loading');
    if (state.loading && Date.now() - said > 10_000) {
      progress(state.percent);
      said = Date.now();
    }
    await Promise.race([sleep(100), ended]);
  }
}

async function probe(socket: string): Promise<{ ready: boolean; loading: boolean; percent?: number }> {
  const reply = await ask(socket, 'PING');
  if (reply === undefined) return { ready: false, loading: false };
  if (reply.startsWith('+PONG')) return { ready: true, loading: false };
  if (!reply.startsWith('-LOADING')) return { ready: false, loading: false };
  const percent = /^loading_loaded_perc:([\d.]+)/m.exec((await ask(socket, 'INFO persistence')) ?? '')?.[1];
  return { ready: false, loading: true, ...(percent ? { percent: Number(percent) } : {}) };
}

/**
 * One inline command on a connection of its own; the reply as text (a simple reply, or a bulk one read
 * whole), undefined when there is no server to ask yet. Short of a client: no timer outlives it.
 */
function ask(socket: string, command: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const connection = createConnection({ path: socket });
    let text = '';
    const done = (reply: string | undefined) => {
      connection.destroy();
      resolve(reply);
    };
    connection.setTimeout(5000, () => done(undefined));
    connection.on('error', () => done(undefined));
    connection.on('close', () => done(text === '' ? undefined : text));
    connection.on('connect', () => connection.write(`${command}\r\n`));
    connection.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const bulk = /^\$(-?\d+)\r\n/.exec(text);
      if (bulk ? text.length >= bulk[0].length + Number(bulk[1]) + 2 : text.includes('\r\n')) done(text);
    });
  });
}
