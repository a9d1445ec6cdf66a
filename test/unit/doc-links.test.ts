/**
 * Every relative link of the documentation resolves: the file (or folder) exists, and a `#anchor` is the anchor
 * GitHub gives one of the target page's headings (lower-case, punctuation other than "-" and "_" dropped, spaces
 * to "-", a repeated heading numbered -1, -2).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Slugs } from '../../src/cli/cli-doc.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PAGES = [
  'README.md',
  'CONTRIBUTING.md',
  'CHANGELOG.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((n) => n.endsWith('.md'))
    .map((n) => `docs/${n}`),
];

/** The page without fenced code blocks, and without code spans on the lines left. */
function prose(text: string): string[] {
  let fenced = false;
  return text.split('\n').map((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return '';
    }
    return fenced ? '' : line.replace(/(`+)[^`]*?\1/g, '');
  });
}

/** A page's headings (link text for a link, escapes undone), outside fenced code blocks. */
function headings(text: string): string[] {
  let fenced = false;
  return text.split('\n').flatMap((line) => {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6} +(.*?)#*\s*$/.exec(line);
    return heading ? [(heading[1] ?? '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/\\(.)/g, '$1')] : [];
  });
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)]));
}

/** The anchors of a page's headings, as GitHub makes them. */
function anchors(text: string): Set<string> {
  const slugs = new Slugs();
  return new Set(headings(text).map((heading) => slugs.take(heading)));
}

interface Link {
  readonly page: string;
  readonly line: number;
  readonly target: string;
}

function links(page: string, text: string): Link[] {
  return prose(text).flatMap((line, i) =>
    [...line.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)/g)].map((m) => ({
      page,
      line: i + 1,
      target: m[1] ?? m[2] ?? '',
    })),
  );
}

/** Why a link does not resolve, or undefined when it does (links to other sites are not checked). */
function broken(link: Link, read: (path: string) => string | undefined): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(link.target)) return undefined;
  const [path = '', anchor] = link.target.split('#');
  const file = path === '' ? join(ROOT, link.page) : resolve(dirname(join(ROOT, link.page)), decodeURIComponent(path));
  const text = read(file);
  if (text === undefined) return `${relative(ROOT, file)} does not exist`;
  if (anchor === undefined) return undefined;
  if (!file.endsWith('.md')) return `#${anchor} in a file that is not Markdown`;
  return anchors(text).has(anchor) ? undefined : `${relative(ROOT, file)} has no heading whose anchor is #${anchor}`;
}

function readPage(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  return statSync(path).isDirectory() ? '' : readFileSync(path, 'utf8');
}

describe('documentation links', () => {
  it('every relative link in README.md, CONTRIBUTING.md, CHANGELOG.md and docs/*.md resolves', () => {
    const all = PAGES.flatMap((page) => links(page, readFileSync(join(ROOT, page), 'utf8')));
    expect(all.length).toBeGreaterThan(100);
    const bad = all.flatMap((link) => {
      const why = broken(link, readPage);
      return why === undefined ? [] : [`${link.page}:${link.line}: (${link.target}) ${why}`];
    });
    expect(bad).toEqual([]);
  });

  it('every page and heading the source names (docs/reports.md "Report format") exists', () => {
    const files = ['src', 'test', 'bin', 'scripts'].flatMap((dir) => walk(join(ROOT, dir))).concat(join(ROOT, '.ci/run'));
    const named = files.flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/\b(README|CONTRIBUTING\.md|docs\/[a-z-]+\.md) "([^"]+)"/g)].map((m) => ({
        where: relative(ROOT, file),
        page: m[1] === 'README' ? 'README.md' : (m[1] ?? ''),
        heading: m[2] ?? '',
      })),
    );
    expect(named.length).toBeGreaterThan(15);
    const bad = named.filter(({ page, heading }) => {
      const text = readPage(join(ROOT, page));
      const shown = text === undefined ? [] : headings(text).map((h) => h.replace(/`/g, ''));
      return !shown.some((h) => h === heading || h.startsWith(`${heading} (`));
    });
    expect(bad).toEqual([]);
  });

  it('finds a missing file, a missing anchor, and ignores links in code', () => {
    const page = '# Title\n\n## Exit codes (`--report`)\n\n[a](#exit-codes---report) [b](#nowhere) [c](missing.md)\n`[d](#no)`\n```\n[e](#no)\n```\n';
    const found = links('docs/x.md', page);
    expect(found.map((l) => l.target)).toEqual(['#exit-codes---report', '#nowhere', 'missing.md']);
    const read = (path: string) => (path === join(ROOT, 'docs/x.md') ? page : undefined);
    expect(found.map((l) => broken(l, read))).toEqual([undefined, 'docs/x.md has no heading whose anchor is #nowhere', 'docs/missing.md does not exist']);
  });

  it('numbers repeated headings and skips headings in code blocks', () => {
    expect([...anchors('# A\n## `--report <path>`\n### `--report <path>`\n```\n# A\n```\n# A\n')]).toEqual(['a', '--report-path', '--report-path-1', 'a-1']);
  });
});

describe('.ci/run', () => {
  it('runs exactly the test commands README "Running the tests" gives a newcomer', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Running the tests\n'));
    const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
    const commands = (text: string) =>
      text
        .split(/\n|&&/)
        .map((c) => c.trim())
        .filter((c) => c !== '' && !c.startsWith('#'));
    const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
    const marker = '# README "Running the tests", exactly:\n';
    expect(ci).toContain(marker);
    expect(commands(block)).toEqual(['npm ci', 'npm test']);
    expect(commands(ci.slice(ci.indexOf(marker) + marker.length))).toEqual(commands(block));
  });
});
