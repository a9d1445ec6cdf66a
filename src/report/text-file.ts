import { createWriteStream, type WriteStream } from 'node:fs';
import { appendFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { once } from 'node:events';

/**
 * A text file written with backpressure, created 0600 (exports name users: personal data). It is written
 * beside its path and put in place by `close()`: a run that never gets going (`discard()`) leaves the
 * previous run's file as it was, so the files of one run always belong together.
 */
export class TextFile {
  private failure: Error | undefined;

  private constructor(
    private readonly stream: WriteStream,
    private readonly temp: string,
    private readonly path: string,
  ) {
    stream.on('error', (err) => {
      this.failure ??= err;
    });
  }

  static async open(path: string): Promise<TextFile> {
    const temp = join(dirname(path), `.${basename(path)}.${process.pid}.partial`);
    const stream = createWriteStream(temp, { mode: 0o600 });
    await Promise.race([once(stream, 'open'), once(stream, 'error').then(([err]) => Promise.reject(err as Error))]);
    return new TextFile(stream, temp, path);
  }

  /** Drops what was written: the file at `path` stays as it was. */
  async discard(): Promise<void> {
    await this.end();
    await unlink(this.temp).catch(() => undefined);
  }

  async write(text: string): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.stream.write(text)) await once(this.stream, 'drain');
  }

  /** Finishes the file and puts it in place. */
  async close(): Promise<void> {
    if (this.stream.closed) return;
    await this.end();
    if (this.failure) throw this.failure;
    await rename(this.temp, this.path);
  }

  private async end(): Promise<void> {
    if (this.stream.closed) return;
    const closed = once(this.stream, 'close');
    this.stream.end();
    await closed;
  }
}

/** A whole file written at once, in place only when complete, and 0600 (a file already there is replaced). */
export async function writePrivateFile(path: string, text: string): Promise<void> {
  const file = await TextFile.open(path);
  try {
    await file.write(text);
  } catch (error) {
    await file.discard();
    throw error;
  }
  await file.close();
}

/**
 * Appends to a file that may be someone else's (`$GITHUB_STEP_SUMMARY`): created 0600 when it is not there; a
 * file already there keeps its owner and mode.
 */
export async function appendPrivateFile(path: string, text: string): Promise<void> {
  await appendFile(path, text, { mode: 0o600 });
}
