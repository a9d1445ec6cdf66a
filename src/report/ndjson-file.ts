import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';

export interface RecordSink {
  write(entry: object): Promise<void>;
}

/**
 * An NDJSON file, created 0600 (it names users' emails: personal data), written with backpressure.
 */
export class NdjsonFile implements RecordSink {
  private readonly stream: WriteStream;
  private failure: Error | undefined;
  lines = 0;

  private constructor(path: string) {
    this.stream = createWriteStream(path, { mode: 0o600, flags: 'w' });
    this.stream.on('error', (err) => {
      this.failure ??= err;
    });
  }

  static async open(path: string): Promise<NdjsonFile> {
    const file = new NdjsonFile(path);
    await Promise.race([once(file.stream, 'open'), once(file.stream, 'error').then(([err]) => Promise.reject(err))]);
    return file;
  }

  async write(entry: object): Promise<void> {
    if (this.failure) throw this.failure;
    this.lines++;
    if (!this.stream.write(`${JSON.stringify(entry)}\n`)) await once(this.stream, 'drain');
  }

  async close(): Promise<void> {
    if (this.stream.closed) return;
    const closed = once(this.stream, 'close');
    this.stream.end();
    await closed;
    if (this.failure) throw this.failure;
  }
}
