import { readFileSync } from 'node:fs';
import { AcceptList, parseAcceptList } from '../core/accept-list.js';
import type { Problems } from './config.js';

/** `--accept FILE`, read and checked with the other flags: a bad file is a usage error naming the file and line. */
export function readAcceptFile(path: string | undefined, problems: Problems): AcceptList | undefined {
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : String(code ?? error);
    problems.add(`cannot read --accept ${path}: ${why}`);
    return undefined;
  }
  const parsed = parseAcceptList(text);
  for (const problem of parsed.problems.slice(0, 10)) problems.add(`--accept ${path} ${problem}`);
  if (parsed.problems.length > 10) problems.add(`--accept ${path}: ${parsed.problems.length - 10} more bad lines`);
  return new AcceptList(path, parsed.entries);
}
