import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';

/**
 * A JSON object written as it is produced: arrays of any length are streamed item by item, so a report
 * listing every difference of a million users never sits in memory. Created 0600 (it holds emails).
 */
export class JsonObjectStream {
  private readonly stream: WriteStream;
  private failure: Error | undefined;
  private first = true;
  private inArray = false;
  private firstItem = true;

  private constructor(path: string) {
    this.stream = createWriteStream(path, { mode: 0o600 });
    this.stream.on('error', (err) => {
      this.failure ??= err;
    });
    this.stream.write('{');
  }

  static async open(path: string): Promise<JsonObjectStream> {
    const file = new JsonObjectStream(path);
    await Promise.race([once(file.stream, 'open'), once(file.stream, 'error').then(([err]) => Promise.reject(err))]);
    return file;
  }

  async field(name: string, value: unknown): Promise<void> {
    this.closeArray();
    await this.write(`${this.first ? '\n' : ',\n'}  ${JSON.stringify(name)}: ${JSON.stringify(value)}`);
    this.first = false;
  }

  async beginArray(name: string): Promise<void> {
    this.closeArray();
    await this.write(`${this.first ? '\n' : ',\n'}  ${JSON.stringify(name)}: [`);
    this.first = false;
    this.inArray = true;
    this.firstItem = true;
  }

  async item(value: unknown): Promise<void> {
    await this.write(`${this.firstItem ? '\n' : ',\n'}    ${JSON.stringify(value)}`);
    this.firstItem = false;
  }

  async close(): Promise<void> {
    this.closeArray();
    const closed = once(this.stream, 'close');
    this.stream.end('\n}\n');
    await closed;
    if (this.failure) throw this.failure;
  }

  private closeArray(): void {
    if (!this.inArray) return;
    this.stream.write(this.firstItem ? ']' : '\n  ]');
    this.inArray = false;
  }

  private async write(text: string): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.stream.write(text)) await once(this.stream, 'drain');
  }
}
