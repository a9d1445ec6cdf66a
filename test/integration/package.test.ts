/**
 * The package as npm ships it: `npm pack`, installed into an empty folder with its dependencies from the
 * registry, and its bin run there, as someone who never saw the checkout would.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../helpers/servers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const exec = promisify(execFile);

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mu-package-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('packs bin, dist and sql; the tarball installs with its dependencies, and its bin runs', { timeout: 300_000 }, async () => {
    // --ignore-scripts: no `prepare` (npm run build). `npm test` has just built dist/, and rebuilding it here
    // would rewrite the files the other tests are running.
    const packed = await exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT });
    const [tarball] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    if (!tarball) throw new Error(`npm pack said nothing about a tarball: ${packed.stdout}`);
    const files = tarball.files.map((f) => f.path);
    expect(files).toEqual(
      expect.arrayContaining(['package.json', 'bin/migrate-users', 'dist/cli/main.js', 'sql/001_users.sql', 'sql/002_migrate_users_bookkeeping.sql']),
    );
    expect(
      files.filter((f) => !/^(package\.json|README\.md|bin\/migrate-users|dist\/.+\.js|sql\/[^/]+\.sql)$/.test(f)),
      'nothing else',
    ).toEqual([]);
    // tsc never deletes: a module removed from src/ would still ship from a dist/ built before.
    const stale = files.filter((f) => f.startsWith('dist/') && !existsSync(join(ROOT, 'src', f.slice('dist/'.length).replace(/\.js$/, '.ts'))));
    expect(stale, 'dist/ files with no source (rebuild dist/ from scratch)').toEqual([]);

    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'installs-migrate-users', private: true }));
    await exec('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(dir, tarball.filename)], { cwd: app });
    const bin = join(app, 'node_modules', '.bin', 'migrate-users');
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };

    // execFile fails on any exit but 0.
    const help = await exec(bin, ['--help'], { cwd: app, env });
    expect(help.stdout).toMatch(/^Usage: migrate-users /);
    for (const command of ['schema', 'verify', 'reconcile', 'seed']) expect(help.stdout).toContain(command);
    expect((await exec(bin, ['--version'], { cwd: app, env })).stdout.trim()).toBe(VERSION);

    // The DDL is read from the package's own sql/ folder.
    const db = await createTestDatabase({ schema: false });
    try {
      await exec(bin, ['schema', 'apply'], { cwd: app, env: { ...env, DATABASE_URL: db.url, LOG_LEVEL: 'warn' } });
      const tables = await db.query<{ t: string }>(
        `select table_schema || '.' || table_name as t from information_schema.tables where table_name in ('users', 'ledger') order by 1`,
      );
      expect(tables.map((r) => r.t)).toEqual(['migrate_users.ledger', 'public.users']);
    } finally {
      await db.drop();
    }
  });
});
