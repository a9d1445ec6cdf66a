/**
 * The one-way flow of CONTRIBUTING.md "Layout", as far as a test can hold it: the reports read what the commands return
 * (src/results/) and never reach into the machinery that produced it (src/core/, src/sink/); the results
 * themselves are plain data.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** Every module specifier of a file: static imports and re-exports, `import type`, and dynamic `import()`. */
function specifiers(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/(?:^|[\s;])(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g)) found.push(m[1] ?? '');
  for (const m of text.matchAll(/(?:^|[\s;])import\s*['"]([^'"]+)['"]/g)) found.push(m[1] ?? '');
  for (const m of text.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push(m[1] ?? '');
  return found;
}

/** The src/ folders a folder's files import from (relative imports only; packages are not layers). */
function importedFolders(folder: string): Map<string, string[]> {
  const uses = new Map<string, string[]>();
  for (const name of readdirSync(join(SRC, folder)).filter((n) => n.endsWith('.ts'))) {
    const file = join(SRC, folder, name);
    for (const spec of specifiers(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const target = relative(SRC, resolve(dirname(file), spec));
      const layer = target.includes('/') ? (target.split('/')[0] ?? '') : '(top level)';
      uses.set(layer, [...(uses.get(layer) ?? []), `${folder}/${name} imports ${spec}`]);
    }
  }
  return uses;
}

describe('layering', () => {
  it('finds every kind of import it checks for', () => {
    const text = `import a from './a.js';\nimport type { B } from '../core/b.js';\nimport {\n  c,\n  type D,\n} from '../sink/c.js';\nexport { e } from './e.js';\nimport './f.js';\nconst g = await import('../core/g.js');`;
    expect(specifiers(text)).toEqual(['./a.js', '../core/b.js', '../sink/c.js', './e.js', './f.js', '../core/g.js']);
  });

  it('src/report/ imports nothing from src/core/ or src/sink/', () => {
    const uses = importedFolders('report');
    expect(uses.get('results')?.length, 'the reports read src/results/').toBeGreaterThan(0);
    expect([...(uses.get('core') ?? []), ...(uses.get('sink') ?? [])]).toEqual([]);
  });

  it('src/results/ is plain data: it imports only other result types and the row shapes', () => {
    const uses = importedFolders('results');
    const outside = [...uses.entries()].filter(([layer]) => !['results', 'compare', 'map'].includes(layer));
    expect(outside.flatMap(([, lines]) => lines)).toEqual([]);
  });
});
