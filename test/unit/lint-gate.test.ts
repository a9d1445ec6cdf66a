/**
 * `npm run lint` is a gate only if its rules fire: eslint.config.js and .prettierrc.json, run through the same
 * APIs the CLIs use, on snippets placed where they would live in the tree. Each check has its passing twin,
 * so the test fails if a rule stops firing and if it fires on correct code.
 */
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import * as prettier from 'prettier';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

let eslint: ESLint;

beforeAll(() => {
  eslint = new ESLint({ cwd: ROOT });
});

// The project service type-checks files its tsconfig includes: each snippet stands in for the text of a real file
// of the layer it is about (nothing is written to disk).
const CORE = 'src/core/bounded.ts';
const CLI = 'src/cli/progress.ts';

/** The rules that report on `code` as if it were the file at `path` (relative to the checkout). */
async function rulesFired(code: string, path: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${ROOT}${path}` });
  return (result?.messages ?? []).map((m) => m.ruleId ?? `fatal: ${m.message}`);
}

const save = `declare function save(): Promise<void>;\n`;

describe('eslint', () => {
  it('fails on a floating promise, not on an awaited one', async () => {
    expect(await rulesFired(`${save}export function run(): void {\n  save();\n}\n`, CORE)).toEqual(['@typescript-eslint/no-floating-promises']);
    expect(await rulesFired(`${save}export async function run(): Promise<void> {\n  await save();\n}\n`, CORE)).toEqual([]);
  });

  it('fails on a promise where a callback must return nothing', async () => {
    expect(await rulesFired(`${save}export function run(keys: string[]): void {\n  keys.forEach(async () => save());\n}\n`, CORE)).toEqual([
      '@typescript-eslint/no-misused-promises',
    ]);
  });

  it('fails on a switch over a union that misses a member, even with a default', async () => {
    const code = (cases: string) =>
      `type Outcome = 'inserted' | 'updated' | 'conflict';\nexport function label(o: Outcome): string {\n  switch (o) {\n${cases}  }\n}\n`;
    const some = `    case 'inserted':\n      return 'new';\n    default:\n      return 'other';\n`;
    const all = `    case 'inserted':\n      return 'new';\n    case 'updated':\n    case 'conflict':\n      return 'other';\n`;
    expect(await rulesFired(code(some), CORE)).toEqual(['@typescript-eslint/switch-exhaustiveness-check']);
    expect(await rulesFired(code(all), CORE)).toEqual([]);
  });

  it('fails on console outside the CLI layer only', async () => {
    const code = `export function hello(): void {\n  console.log('hello');\n}\n`;
    expect(await rulesFired(code, CORE)).toEqual(['no-console']);
    expect(await rulesFired(code, CLI)).toEqual([]);
  });
});

describe('prettier', () => {
  it('fails on an unformatted file, not on a formatted one', async () => {
    const path = `${ROOT}${CORE}`;
    const options = { ...(await prettier.resolveConfig(path)), filepath: path };
    expect(await prettier.check(`export const x = {a:1, b:"two"}\n`, options)).toBe(false);
    expect(await prettier.check(`export const x = { a: 1, b: 'two' };\n`, options)).toBe(true);
  });
});
