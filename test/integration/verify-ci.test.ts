import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Difference, VerifyReport } from '../../src/results/verify-report.js';
import { runCli } from '../helpers/cli.js';
import { asTheToolsOwnWrite, createTestDatabase, createTestKeys, REDIS_URL, type TestDatabase, type TestKeys } from '../helpers/servers.js';

/** verify's outputs as a CI job reads them: JUnit, markdown, exit codes; --accept. */

let db: TestDatabase;
let keys: TestKeys;
let dir: string;

const env = () => ({ DATABASE_URL: db.url, REDIS_URL });

interface TestCase {
  name: string;
  failure?: { message: string; body: string };
  skipped?: string;
  out?: string;
}

/** The test cases of a JUnit file, read with regular expressions: enough for the flat XML verify writes. */
function testCases(xml: string): TestCase[] {
  const unescape = (text: string) =>
    text
      .replace(/&quot;/g, '"')
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&amp;/g, '&');
  return [...xml.matchAll(/<testcase classname="[^"]*" name="([^"]*)" time="0">([\s\S]*?)<\/testcase>/g)].map(([, name = '', inner = '']) => {
    const failure = /<failure message="([^"]*)">([\s\S]*?)<\/failure>/.exec(inner);
    const skipped = /<skipped message="([^"]*)"\/>/.exec(inner);
    const out = /<system-out>([\s\S]*?)<\/system-out>/.exec(inner);
    return {
      name: unescape(name),
      ...(failure ? { failure: { message: unescape(failure[1] ?? ''), body: unescape(failure[2] ?? '') } } : {}),
      ...(skipped ? { skipped: unescape(skipped[1] ?? '') } : {}),
      ...(out ? { out: unescape(out[1] ?? '') } : {}),
    };
  });
}

const byName = (cases: TestCase[], start: string) => {
  const found = cases.find((t) => t.name.startsWith(start));
  if (!found) throw new Error(`no test case "${start}" in ${cases.map((t) => t.name).join(', ')}`);
  return found;
};

const mode = async (path: string) => (await stat(path)).mode & 0o777;

async function verify(extra: string[] = [], overrides: Record<string, string> = {}) {
  const paths = {
    report: join(dir, `report-${Math.random()}.json`),
    junit: join(dir, `junit-${Math.random()}.xml`),
    markdown: join(dir, `summary-${Math.random()}.md`),
  };
  const run = await runCli(['verify', '--match', keys.match, '--report', paths.report, '--junit', paths.junit, '--markdown', paths.markdown, ...extra], {
    ...env(),
    ...overrides,
  });
  const read = async (path: string) => (existsSync(path) ? readFile(path, 'utf8') : undefined);
  const report = await read(paths.report);
  const junit = await read(paths.junit);
  return {
    ...run,
    paths,
    report: report === undefined ? undefined : (JSON.parse(report) as VerifyReport & { readonly differences: readonly Difference[] }),
    junit,
    cases: junit === undefined ? [] : testCases(junit),
    markdown: await read(paths.markdown),
  };
}

beforeEach(async () => {
  db = await createTestDatabase();
  keys = await createTestKeys();
  dir = mkdtempSync(join(tmpdir(), 'mu-verify-ci-'));
  for (let i = 0; i < 12; i++) {
    await keys.putUser(`user${i}@example.com`, { user_id: `usr_${i}`, current_credits: 100 + i, credits_used: i, password_hash: `hash-secret-${i}` });
  }
  const migrated = await runCli(['--match', keys.match], env());
  expect(migrated.code).toBe(0);
});

afterEach(async () => {
  await keys.cleanup();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('verify JUnit: each check lists only its own failures, in sentences', () => {
  it('one test case per check; a failure names its own records with what differs, never JSON', async () => {
    await db.query(`update users set current_credits = 5, username = 'Bo, the "second"' where user_id = 'usr_3'`);
    await db.query(`delete from users where user_id = 'usr_5'`);
    await db.query(`insert into users (user_id, email, current_credits, signup_bonus_granted) values ('usr_app', 'app@example.com', 100, true)`);
    await keys.putUser('broken@example.com', '{"user_id": "usr_broken", "credits": -3}');
    await asTheToolsOwnWrite(db);
    const run = await verify(['--strict']);
    expect(run.code).toBe(1);
    expect(run.junit).toContain('<testsuites name="migrate-users verify" tests="10" failures="5" errors="0" skipped="0">');
    expect(byName(run.cases, 'verification ran').failure).toBeUndefined();
    expect(byName(run.cases, 'every row holds what migrate would write').failure?.message).toBe(
      '1 user differs between Redis and PostgreSQL: user3@example.com (username: Redis none, PostgreSQL "Bo, the \\"second\\""; current_credits: Redis 103, PostgreSQL 5).',
    );
    expect(byName(run.cases, 'every valid Redis user has a row').failure?.message).toBe(
      '1 user in Redis has no row in PostgreSQL: user5@example.com (user_id usr_5).',
    );
    expect(byName(run.cases, 'every Redis record can be migrated').failure?.message).toBe(
      `1 Redis record cannot be migrated: ${keys.userKey('broken@example.com')} (negative_credits).`,
    );
    expect(byName(run.cases, 'no rows only in PostgreSQL').failure?.message).toBe(
      '1 row is only in PostgreSQL, with no Redis record (--strict): app@example.com (user_id usr_app).',
    );
    expect(byName(run.cases, 'every row the tool wrote still has its Redis record').failure).toBeUndefined();
    for (const t of run.cases) expect(t.failure?.body ?? '').not.toMatch(/[{}]|secret/);
    expect(byName(run.cases, 'every Redis record can be migrated').failure?.body).toContain('(negative_credits: credits is negative: -3)');
    // The body lists the same records one a line.
    expect(byName(run.cases, 'every row holds').failure?.body).toBe(
      '1 user differs between Redis and PostgreSQL:\n  - user3@example.com (username: Redis none, PostgreSQL "Bo, the \\"second\\""; current_credits: Redis 103, PostgreSQL 5)',
    );
  });

  it('lists at most --show records per check, then says how many more', async () => {
    await db.query(`update users set current_credits = 0 where user_id in ('usr_1', 'usr_2', 'usr_3', 'usr_4', 'usr_6')`);
    await asTheToolsOwnWrite(db);
    const run = await verify(['--show', '2']);
    expect(run.code).toBe(1);
    const failure = byName(run.cases, 'every row holds').failure;
    expect(failure?.message).toMatch(
      /^5 users differ between Redis and PostgreSQL: user\d@example\.com \(current_credits: Redis 10\d, PostgreSQL 0\), user\d@example\.com \(current_credits: Redis 10\d, PostgreSQL 0\), and 3 more\.$/,
    );
    expect(failure?.body).toMatch(/\n {2}and 3 more \(all of them are in the --report\)$/);
    expect(run.report?.differences).toHaveLength(5);
  });
});

describe('verify CI files when the run fails before comparing', () => {
  it('PostgreSQL unreachable: exit 2 as for any run, JUnit with one failing check saying so, markdown too, no password, 0600', async () => {
    const run = await verify([], { DATABASE_URL: 'postgres://ci:pw-never-shown@127.0.0.1:1/x' });
    expect(run.code).toBe(2);
    expect(run.junit).toContain('<testsuites name="migrate-users verify" tests="1" failures="1" errors="0" skipped="0">');
    expect(run.cases).toHaveLength(1);
    expect(run.cases[0]?.name).toBe('verification ran');
    expect(run.cases[0]?.failure?.message).toMatch(/^verify could not finish: .*PostgreSQL.*127\.0\.0\.1:1.*refused/);
    expect(run.markdown).toMatch(/^## ❌ migrate-users verify: could not finish\n\nverify could not finish: .*PostgreSQL.*127\.0\.0\.1:1/);
    // The same words as stderr.
    expect(run.stderr).toContain(run.cases[0]?.failure?.message.replace('verify could not finish: ', ''));
    expect(run.report).toMatchObject({ ok: false });
    for (const text of [run.junit, run.markdown, run.stdout, run.stderr, JSON.stringify(run.report)]) expect(text).not.toContain('pw-never-shown');
    expect(await mode(run.paths.junit)).toBe(0o600);
    expect(await mode(run.paths.markdown)).toBe(0o600);
  });

  it('Redis unreachable: the same exit code as without CI files, the JUnit names Redis', async () => {
    const run = await verify(['--sample', '3'], { REDIS_URL: 'redis://:pw-never-shown@127.0.0.1:1' });
    const plain = await runCli(['verify', '--match', keys.match, '--sample', '3'], { ...env(), REDIS_URL: 'redis://:pw-never-shown@127.0.0.1:1' });
    expect(plain.code).toBeGreaterThan(1);
    expect(run.code).toBe(plain.code);
    expect(run.cases).toEqual([{ name: 'verification ran (sample)', failure: expect.anything() }]);
    expect(run.cases[0]?.failure?.message).toMatch(/^verify could not finish: .*Redis.*127\.0\.0\.1:1/);
    expect(run.junit).toContain('<testsuite name="migrate-users verify (sample)"');
    expect(run.markdown).toMatch(/^## ❌ migrate-users verify \(sample\): could not finish/);
    expect([run.junit, run.markdown, run.stderr].join('')).not.toContain('pw-never-shown');
  });
});

describe('verify CI files: modes and samples', () => {
  it('--junit and --markdown are 0600, even where a readable JUnit file was left by an earlier run', async () => {
    const junit = join(dir, 'old-junit.xml');
    await writeFile(junit, 'old');
    await chmod(junit, 0o644);
    const markdown = join(dir, 'new-summary.md');
    const run = await runCli(['verify', '--match', keys.match, '--junit', junit, '--markdown', markdown], env());
    expect(run.code).toBe(0);
    expect(await mode(junit)).toBe(0o600);
    expect(await readFile(junit, 'utf8')).toContain('<testsuites name="migrate-users verify" tests="10" failures="0"');
    expect(await mode(markdown)).toBe(0o600);
  });

  it('a sampled run says "sample" in every headline: summary, markdown, JUnit suite and test cases', async () => {
    await db.query(`update users set current_credits = 0`);
    await asTheToolsOwnWrite(db);
    const run = await verify(['--sample', '4']);
    expect(run.code).toBe(1);
    expect(run.stdout.split('\n')[0]).toMatch(/^VERIFY FAILED \(SAMPLE\): 4 problems found \[SAMPLE of 4 of about 12 keys/);
    expect(run.markdown?.split('\n')[0]).toBe('## ❌ migrate-users verify (sample): 4 problems found');
    expect(run.junit).toContain('<testsuites name="migrate-users verify (sample)"');
    expect(run.junit).toContain('<testsuite name="migrate-users verify (sample)"');
    expect(run.cases.length).toBeGreaterThan(3);
    for (const t of run.cases) expect(t.name).toMatch(/ \(sample\)$/);
    expect(byName(run.cases, 'every row the tool wrote').skipped).toBe('not checked in a sample');

    await db.query(`update users set current_credits = 100 + substr(user_id, 5)::int`);
    await asTheToolsOwnWrite(db);
    const ok = await verify(['--sample', '4']);
    expect(ok.code).toBe(0);
    expect(ok.stdout.split('\n')[0]).toMatch(/^VERIFY OK \(SAMPLE\): the sample matches Redis \[SAMPLE of 4/);
    expect(ok.markdown?.split('\n')[0]).toBe('## ✅ migrate-users verify (sample): the sample matches Redis');
  });
});

describe('verify --accept', () => {
  const acceptFile = async (text: string) => {
    const path = join(dir, `accept-${Math.random()}.txt`);
    await writeFile(path, text);
    return path;
  };

  it('an accepted difference passes (exit 0), shown and counted apart; an entry with no problem is "fine now"; a new problem still fails', async () => {
    await db.query(`update users set current_credits = 5 where user_id = 'usr_3'`);
    await db.query(`update users set username = 'kept' where user_id = 'usr_8'`);
    await asTheToolsOwnWrite(db);
    const accept = await acceptFile(
      [
        '# known problems, accepted by the billing team',
        `${keys.userKey('user3@example.com')}  [mismatch:current_credits]  refund pending, OPS-12`,
        '',
        `usr_8 app-side rename, accepted`,
        `${keys.userKey('user7@example.com')}  fixed last week`,
      ].join('\n'),
    );
    const run = await verify(['--accept', accept]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout.split('\n')[0]).toBe('VERIFY OK: PostgreSQL matches Redis (2 accepted known problems not counted) [all keys]');
    expect(run.stdout).toMatch(/differ \(users\) +2 \(2 accepted\)/);
    expect(run.stdout).toContain(`accepted in ${accept} (known problems, not failing): first 2 of 2 differences:`);
    expect(run.stdout).toMatch(/usr_3 +user3@example\.com +current_credits +103 +5 +line 2: refund pending, OPS-12/);
    expect(run.stdout).toContain(`accepted but fine now: 1 of the entries in ${accept} matched no problem (remove them):`);
    expect(run.stdout).toContain(`line 5: ${keys.userKey('user7@example.com')} fixed last week`);

    expect(run.report).toMatchObject({
      ok: true,
      counts: {
        mismatch: 2,
        failing: 0,
        accepted: { mismatch: 2, missing: 0, not_migratable: 0, deleted_in_redis: 0, only_in_postgres: 0, changed_by_app: 0, stale: 0 },
      },
      accepted: { file: accept, entries: 3, fine_now: [{ line: 5, key: keys.userKey('user7@example.com'), reason: 'fixed last week' }] },
    });
    expect(run.report?.differences).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ user_id: 'usr_3', column: 'current_credits', accepted: { line: 2, reason: 'refund pending, OPS-12' } }),
        expect.objectContaining({ user_id: 'usr_8', column: 'username', accepted: { line: 4, reason: 'app-side rename, accepted' } }),
      ]),
    );
    const identical = byName(run.cases, 'every row holds');
    expect(identical.failure).toBeUndefined();
    expect(identical.out).toContain('2 accepted in');
    expect(identical.out).toContain('user3@example.com (current_credits: Redis 103, PostgreSQL 5) (accepted, line 2: refund pending, OPS-12)');
    expect(byName(run.cases, 'every accepted problem still exists').skipped).toBe(
      `1 entry of ${accept} has no problem any more, accepted but fine now (remove it): ${keys.userKey('user7@example.com')} (line 5).`,
    );
    expect(run.markdown).toContain(`### Accepted in ${accept} (known problems, not failing)`);

    // New problems: another column of the accepted user, and a missing row. Only they fail, each in its own check.
    await db.query(`update users set total_credits_used = 99 where user_id = 'usr_3'`);
    await db.query(`delete from users where user_id = 'usr_4'`);
    await asTheToolsOwnWrite(db);
    const worse = await verify(['--accept', accept]);
    expect(worse.code).toBe(1);
    expect(worse.report?.counts).toMatchObject({ mismatch: 2, missing: 1, failing: 2, accepted: { mismatch: 1 } });
    expect(byName(worse.cases, 'every row holds').failure?.message).toBe(
      '1 user differs between Redis and PostgreSQL: user3@example.com (current_credits: Redis 103, PostgreSQL 5 [accepted]; total_credits_used: Redis 3, PostgreSQL 99).',
    );
    expect(byName(worse.cases, 'every valid Redis user has a row').failure?.message).toBe(
      '1 user in Redis has no row in PostgreSQL: user4@example.com (user_id usr_4).',
    );
    expect(worse.stdout.split('\n')[0]).toBe('VERIFY FAILED: 2 problems found (1 accepted known problem not counted) [all keys]');
  });

  it('a malformed accept file is a usage error naming file and line, before any work (exit 2, no file written)', async () => {
    const bad = await acceptFile(
      ['# comment', 'user:email:a@x.test [mismatch:credits] typo in the column', 'user:email:b@x.test', 'user:email:c@x.test [wrong] why'].join('\n'),
    );
    const down = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x', REDIS_URL: 'redis://127.0.0.1:1' };
    const run = await verify(['--accept', bad], down);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`--accept ${bad} line 2: [mismatch:credits]: "credits" is not a column`);
    expect(run.stderr).toContain(`--accept ${bad} line 3: "user:email:b@x.test" has no reason`);
    expect(run.stderr).toContain(
      `--accept ${bad} line 4: [wrong]: the kind must be one of mismatch, stale, conflict, changed_by_app, deleted_by_app, missing, not_migratable, deleted_in_redis, only_in_postgres`,
    );
    expect(run.stderr).not.toMatch(/ECONNREFUSED|could not finish/);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect([run.report, run.junit, run.markdown]).toEqual([undefined, undefined, undefined]);

    const missing = await verify(['--accept', join(dir, 'nope.txt')], down);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`cannot read --accept ${join(dir, 'nope.txt')}: no such file`);
  });
});
