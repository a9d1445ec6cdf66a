/**
 * docs/cli.md is generated from the commander definitions (`npm run docs:cli`): it fails here as soon as a
 * command, a flag or a help text changes without the page being generated again.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { renderCliDoc, slug } from '../../src/cli/cli-doc.js';
import { buildProgram } from '../../src/cli/main.js';

const CLI_MD = new URL('../../docs/cli.md', import.meta.url);
const program = () => buildProgram(() => async () => undefined);

function everyCommand(command: Command): Command[] {
  return [command, ...command.commands.flatMap((c) => everyCommand(c))];
}

function pathOf(command: Command): string {
  return command.parent ? `${pathOf(command.parent)} ${command.name()}` : command.name();
}

/** The flag terms a command's --help lists under "Options:" (`--batch-size <n>`, `-h, --help`). */
function helpFlags(command: Command): string[] {
  const text = command.helpInformation();
  const options = text.slice(text.indexOf('\nOptions:\n') + '\nOptions:\n'.length).split('\n\n')[0] ?? '';
  return options.split('\n').flatMap((line) => /^ {2}(-\S.*?)(?: {2,}|$)/.exec(line)?.[1] ?? []);
}

describe('docs/cli.md', () => {
  it('is what `npm run docs:cli` writes from the commander definitions', () => {
    const doc = readFileSync(CLI_MD, 'utf8');
    expect(renderCliDoc(doc, program()), 'docs/cli.md is out of date: run `npm run docs:cli`').toBe(doc);
  });

  it('has a heading for every command and for every flag its --help lists', () => {
    const doc = readFileSync(CLI_MD, 'utf8');
    const headings = new Set(doc.split('\n').flatMap((line) => /^#{2,4} `(.+)`$/.exec(line)?.[1] ?? []));
    const commands = everyCommand(program());
    expect(commands.map(pathOf).filter((name) => !headings.has(name))).toEqual([]);
    const flags = commands.flatMap((c) => helpFlags(c).map((flag) => ({ command: pathOf(c), flag })));
    expect(flags.length).toBeGreaterThan(60);
    expect(flags.filter(({ flag }) => !headings.has(flag))).toEqual([]);
  });

  it('goes out of date when a help text changes', () => {
    const doc = readFileSync(CLI_MD, 'utf8');
    const changed = program();
    const verify = changed.commands.find((c) => c.name() === 'verify');
    const strict = verify?.options.find((o) => o.long === '--strict');
    if (!strict) throw new Error('verify --strict not found');
    strict.description = 'a different text';
    const rendered = renderCliDoc(doc, changed);
    expect(rendered).not.toBe(doc);
    expect(rendered).toContain('a different text');
  });

  it('keeps the hand-written text around the generated part', () => {
    const doc = readFileSync(CLI_MD, 'utf8');
    const edited = doc.replace('# Command line', '# Command line\n\nA hand-written line.');
    expect(renderCliDoc(edited, program())).toBe(edited);
    expect(() => renderCliDoc('# no markers\n', program())).toThrow(/no generated part/);
  });

  it('names anchors as GitHub does', () => {
    expect(slug('--batch-size <n>')).toBe('--batch-size-n');
    expect(slug('-h, --help')).toBe('-h---help');
    expect(slug('migrate-users schema apply')).toBe('migrate-users-schema-apply');
  });
});
