import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isConnectionFailure } from '../../src/errors.js';
import { backoffMs } from '../../src/core/retry.js';
import { redactUrl, scrub } from '../../src/redact.js';
import { csvCell } from '../../src/report/csv.js';
import { isRefusal } from '../../src/core/process-chunk.js';

describe('isConnectionFailure', () => {
  it.each([
    ['refused', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })],
    ['terminated by an administrator', Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })],
    ['a pooled client whose server died', new Error('Client has encountered a connection error and is not queryable')],
    ['wrapped', new Error('processing records', { cause: new Error('Connection terminated unexpectedly') })],
    ['ioredis', new Error('Connection is closed.')],
  ])('retries: %s', (_name, error) => expect(isConnectionFailure(error)).toBe(true));

  it.each([
    ['a unique violation', Object.assign(new Error('duplicate key'), { code: '23505' })],
    ['permission denied', Object.assign(new Error('permission denied for table users'), { code: '42501' })],
    ['a bug', new TypeError('x is undefined')],
  ])('does not retry: %s', (_name, error) => expect(isConnectionFailure(error)).toBe(false));
});

describe('backoffMs', () => {
  it('doubles from the base, caps at 30 s, and jitters by ±50%', () => {
    const policy = { retries: 5, baseDelayMs: 500 };
    expect([1, 2, 3].map((a) => backoffMs(policy, a, () => 0.5))).toEqual([500, 1000, 2000]);
    expect(backoffMs(policy, 20, () => 0.5)).toBe(30_000);
    expect(backoffMs(policy, 1, () => 0)).toBe(250);
    expect(backoffMs(policy, 1, () => 0.999)).toBe(750);
  });
});

describe('secrets and spreadsheets', () => {
  it('strips passwords from URLs, raw or percent-encoded, where they stand (test/unit/redact.test.ts has the rest)', () => {
    expect(redactUrl('postgres://app:p%40ss@db.example.com:5432/x')).toBe('postgres://app:***@db.example.com:5432/x');
    expect(scrub('failed: postgres://app:p%40ss-word@db/x and postgres://app:p@ss-word@db/x')).toBe(
      'failed: postgres://app:***@db/x and postgres://app:***@db/x',
    );
  });

  it('escapes CSV cells a spreadsheet would run, but not numbers', () => {
    expect(csvCell('=1+2')).toBe("'=1+2");
    expect(csvCell('+cmd')).toBe("'+cmd");
    expect(csvCell('-x')).toBe("'-x");
    expect(csvCell('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvCell('-5')).toBe('-5');
    expect(csvCell('a,"b"')).toBe('"a,""b"""');
    expect(csvCell(null)).toBe('');
  });
});

describe('logs', () => {
  it.each(['json', 'text'] as const)('never carry a password: not in messages, string fields, or errors (%s)', async (format) => {
    const { mkdtempSync, openSync, readFileSync, closeSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { createLogger } = await import('../../src/log.js');
    const file = join(mkdtempSync(join(tmpdir(), 'mu-log-')), 'log.ndjson');
    const fd = openSync(file, 'w');
    const log = createLogger({ level: 'info', format, screen: fd });
    log.info('connecting to postgres://app:Hunter2-Secret@db.example.com/x');
    log.warn({ err: 'failed: host=db password=Hunter2-Secret rejected', attempt: 1 }, 'retrying');
    log.error({ err: new Error('boom at postgres://app:Hunter2-Secret@h/x') }, 'failed');
    log.info({ password_hash: '$2b$12$abc', user: { password: 'x' } }, 'record');
    closeSync(fd);
    const text = readFileSync(file, 'utf8');
    expect(text.split('\n').filter(Boolean)).toHaveLength(4);
    expect(text).not.toContain('Hunter2-Secret');
    expect(text).not.toContain('$2b$12$abc');
    if (format === 'text') {
      expect(text).toContain('migrate-users warning: retrying (err=failed: host=db password=*** rejected, attempt=1)');
      expect(text).not.toMatch(/^\{/m);
    }
  });

  it('text logs at a terminal default to warnings and errors; --log-file takes every line as JSON', async () => {
    const { mkdtempSync, readFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { createLogger } = await import('../../src/log.js');
    const dir = mkdtempSync(join(tmpdir(), 'mu-log-'));
    const printed: string[] = [];
    const screen = { print: (line: string) => void printed.push(line) };
    const quiet = createLogger({ level: undefined, format: 'text', screen });
    quiet.info('run started');
    quiet.warn('whitelist differs');
    expect(printed).toEqual(['migrate-users warning: whitelist differs\n']);

    printed.length = 0;
    const file = join(dir, 'run.log');
    const both = createLogger({ level: 'debug', format: 'text', file, screen });
    both.debug('detail');
    both.info('run started');
    both.error('lost');
    expect(printed).toEqual(['migrate-users error: lost\n']);
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string });
    expect(lines.map((l) => l.msg)).toEqual(['detail', 'run started', 'lost']);
  });
});

describe('isRefusal: what PostgreSQL refuses for one row, not a bug of the tool', () => {
  const pgError = (code: string) => Object.assign(new Error(`server says ${code}`), { code });
  it.each([
    ['23514', true, 'check constraint'],
    ['23502', true, 'not-null'],
    ['22001', true, 'value too long'],
    ['22003', true, 'numeric out of range'],
    ['P0001', true, 'an app trigger raising'],
    ['23505', false, 'unique violation: a concurrent write, decided again'],
    ['22P02', false, "invalid text representation: the tool's own SQL"],
    ['42P01', false, 'undefined table'],
  ])('%s -> %s (%s)', (code, expected) => {
    expect(isRefusal(new Error('processing', { cause: pgError(code) }))).toBe(expected);
  });
});
