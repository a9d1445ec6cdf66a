import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';

/** A text file written with backpressure, created 0600 (exports name users: personal data). */
export class TextFile {
  private failure: Error | undefined;

  private constructor(private readonly stream: WriteStream) {
    stream.on('error', (err) => {
      this.failure ??= err;
    });
  }

  static async open(path: string): Promise<TextFile> {
    const stream = createWriteStream(path, { mode: 0o600 });
    await Promise.race([once(stream, 'open'), once(stream, 'error').then(([err]) => Promise.reject(err))]);
    return new TextFile(stream);
  }

  async write(text: string): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.stream.write(text)) await once(this.stream, 'drain');
  }

  async close(): Promise<void> {
    if (this.stream.closed) return;
    const closed = once(this.stream, 'close');
    this.stream.end();
    await closed;
    if (this.failure) throw this.failure;
  }
}
