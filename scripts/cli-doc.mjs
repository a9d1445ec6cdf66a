// Writes the generated part of docs/cli.md from the commander definitions: `npm run docs:cli` (which builds
// first). test/unit/cli-doc.test.ts fails while docs/cli.md differs from what this writes.
import { readFileSync, writeFileSync } from 'node:fs';
import { renderCliDoc } from '../dist/cli/cli-doc.js';
import { buildProgram } from '../dist/cli/main.js';

const path = new URL('../docs/cli.md', import.meta.url);
const before = readFileSync(path, 'utf8');
const after = renderCliDoc(
  before,
  buildProgram(() => async () => undefined),
);
writeFileSync(path, after);
console.log(after === before ? 'docs/cli.md is up to date' : 'docs/cli.md written');
