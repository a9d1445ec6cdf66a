import { TextFile } from './text-file.js';

export interface RecordSink {
  write(entry: object): Promise<void>;
}

/** One JSON object per line, in a 0600 file (it names users' emails: personal data). */
export class NdjsonFile implements RecordSink {
  lines = 0;

  private constructor(private readonly file: TextFile) {}

  static async open(path: string): Promise<NdjsonFile> {
    return new NdjsonFile(await TextFile.open(path));
  }

  async write(entry: object): Promise<void> {
    this.lines++;
    await this.file.write(`${JSON.stringify(entry)}\n`);
  }

  close(): Promise<void> {
    return this.file.close();
  }

  discard(): Promise<void> {
    return this.file.discard();
  }
}
