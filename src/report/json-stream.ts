import { TextFile } from './text-file.js';

/**
 * A JSON object written as it is produced: arrays of any length are streamed item by item, so a report
 * listing every difference of a million users never sits in memory. Created 0600 (it holds emails).
 */
export class JsonObjectStream {
  private first = true;
  private inArray = false;
  private firstItem = true;

  private constructor(private readonly file: TextFile) {}

  static async open(path: string): Promise<JsonObjectStream> {
    const stream = new JsonObjectStream(await TextFile.open(path));
    await stream.file.write('{');
    return stream;
  }

  async field(name: string, value: unknown): Promise<void> {
    await this.closeArray();
    await this.file.write(`${this.first ? '\n' : ',\n'}  ${JSON.stringify(name)}: ${JSON.stringify(value)}`);
    this.first = false;
  }

  async beginArray(name: string): Promise<void> {
    await this.closeArray();
    await this.file.write(`${this.first ? '\n' : ',\n'}  ${JSON.stringify(name)}: [`);
    this.first = false;
    this.inArray = true;
    this.firstItem = true;
  }

  async item(value: unknown): Promise<void> {
    await this.file.write(`${this.firstItem ? '\n' : ',\n'}    ${JSON.stringify(value)}`);
    this.firstItem = false;
  }

  async close(): Promise<void> {
    await this.closeArray();
    await this.file.write('\n}\n');
    await this.file.close();
  }

  private async closeArray(): Promise<void> {
    if (!this.inArray) return;
    await this.file.write(this.firstItem ? ']' : '\n  ]');
    this.inArray = false;
  }
}
