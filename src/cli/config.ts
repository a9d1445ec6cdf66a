import { accessSync, closeSync, constants, existsSync, openSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { UsageError } from '../errors.js';
import { MAX_CREDITS, normaliseEmail } from '../map/map-record.js';

export const DEFAULTS = {
  redisUrl: 'redis://127.0.0.1:6379',
  databaseUrl: 'postgres://postgres@127.0.0.1:5432/postgres',
  match: 'user:email:*',
  batchSize: 1000,
  concurrency: 4,
  gentleConcurrency: 2,
  writeConcurrency: 2,
  scanCount: 1000,
  readChunk: 100,
  maxValueBytes: 1_048_576,
  whitelistCredits: 100_000,
} as const;

export interface ConnectionConfig {
  readonly redisUrl: string;
  readonly databaseUrl: string;
  /** TLS for PostgreSQL as the URL's sslmode asks (false: none); pass with `databaseUrl` to the pool. */
  readonly databaseSsl: false | ConnectionOptions;
  /** TLS options for a rediss:// URL (a CA of its own, if given). */
  readonly redisTls: ConnectionOptions | undefined;
  readonly redisCluster: boolean;
  readonly match: string;
}

/** Collects every problem in the flags before failing, so the operator fixes them in one go. */
export class Problems {
  private readonly list: string[] = [];

  add(problem: string): void {
    this.list.push(problem);
  }

  get none(): boolean {
    return this.list.length === 0;
  }

  throwIfAny(): void {
    if (this.list.length > 0) throw new UsageError(this.list.join('; '));
  }

  /** An output file: checked before any work, so a typo in a path never costs a whole run. */
  outputPath(name: string, path: string | undefined): string | undefined {
    if (path === undefined) return undefined;
    const full = resolve(path);
    const dir = dirname(full);
    let step: 'folder' | 'file' | 'create' = 'folder';
    try {
      if (statSync(full, { throwIfNoEntry: false })?.isDirectory()) {
        this.add(`${name} ${path} is a directory: give a file name`);
        return path;
      }
      if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      accessSync(dir, constants.W_OK);
      // The file is written beside its path and renamed over it: a file there must be ours to replace,
      // and the folder must take a new file (root passes access checks, not a read-only mount or /proc).
      if (existsSync(full)) {
        step = 'file';
        accessSync(full, constants.W_OK);
      }
      step = 'create';
      const probe = join(dir, `.migrate-users-probe-${process.pid}`);
      closeSync(openSync(probe, 'wx', 0o600));
      unlinkSync(probe);
    } catch (error) {
      this.add(`${name} ${path}: ${unwritable(step, dir, error)}`);
    }
    return path;
  }

  integer(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
    if (raw === undefined) return fallback;
    const text = raw.trim();
    const value = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
      this.add(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  }
}

/** Why an output file cannot be written, in words: `step` is how far the checks got. */
function unwritable(step: 'folder' | 'file' | 'create', dir: string, error: unknown): string {
  const code = String((error as NodeJS.ErrnoException).code ?? error);
  const denied = code === 'EACCES' || code === 'EPERM';
  if (step === 'file') return denied || code === 'EROFS' ? 'the file is not writable' : `the file cannot be replaced (${code})`;
  if (code === 'EROFS') return `the folder ${dir} is on a read-only file system`;
  if (denied) return `the folder ${dir} is not writable`;
  if (step === 'folder')
    return code === 'ENOENT'
      ? `the folder ${dir} does not exist`
      : code === 'ENOTDIR'
        ? `${dir} is not a folder`
        : `the folder ${dir} cannot be used (${code})`;
  // The folder is there and writable, yet refuses a new file: /proc, /sys, a full disk.
  if (code === 'ENOSPC') return `the folder ${dir} cannot take a new file: its file system is full`;
  if (code === 'EDQUOT') return `the folder ${dir} cannot take a new file: the disk quota is used up`;
  return `the folder ${dir} cannot take a new file (creating one there fails with ${code})`;
}

/** Why an input file cannot be read, in words naming it and the flag that gave it. */
export function unreadable(what: string, path: string, flag: string, error: unknown): string {
  const code = String((error as NodeJS.ErrnoException).code ?? error);
  if (code === 'ENOENT') return `${what} ${path} not found (${flag})`;
  if (code === 'EACCES' || code === 'EPERM') return `${what} ${path} is not readable: permission denied (${flag})`;
  if (code === 'EISDIR') return `${what} ${path} is a folder, not a file (${flag})`;
  return `${what} ${path} cannot be read (${code}) (${flag})`;
}

export function connectionConfig(
  opts: {
    redisUrl?: string;
    databaseUrl?: string;
    match?: string;
    databaseCa?: string;
    redisCa?: string;
    redisCluster?: boolean;
    rdb?: string[] | undefined;
  },
  env: NodeJS.ProcessEnv,
  problems: Problems,
): ConnectionConfig {
  const databaseUrl = opts.databaseUrl ?? env.DATABASE_URL ?? DEFAULTS.databaseUrl;
  checkUrl('--database-url / DATABASE_URL', databaseUrl, ['postgres:', 'postgresql:'], problems);
  const match = checkMatch(opts.match ?? DEFAULTS.match, problems);
  const tls = databaseTls(databaseUrl, opts.databaseCa ?? env.DATABASE_CA, problems);
  const postgres = { databaseUrl: tls.url, databaseSsl: tls.ssl, match };
  // --rdb reads no live Redis: REDIS_URL and REDIS_CA in the environment (production's, exported in the
  // operator's shell) are not looked at, and the flags are refused with --rdb (snapshot-options.ts).
  if (opts.rdb !== undefined && opts.rdb.length > 0) return { ...postgres, redisUrl: DEFAULTS.redisUrl, redisTls: undefined, redisCluster: false };
  const redisUrl = opts.redisUrl ?? env.REDIS_URL ?? DEFAULTS.redisUrl;
  checkUrl('--redis-url / REDIS_URL', redisUrl, ['redis:', 'rediss:'], problems);
  const redisCa = opts.redisCa ?? env.REDIS_CA;
  let redisTls: ConnectionOptions | undefined;
  if (redisUrl.startsWith('rediss:')) {
    const ca = redisCa === undefined ? undefined : readCa('--redis-ca / REDIS_CA', redisCa, problems);
    redisTls = ca === undefined ? {} : { ca };
  } else if (redisCa !== undefined) {
    problems.add('--redis-ca / REDIS_CA is given but the Redis URL is not rediss:// (TLS)');
  }
  return { ...postgres, redisUrl, redisTls, redisCluster: opts.redisCluster === true };
}

function checkMatch(match: string, problems: Problems): string {
  // The email is what the final `*` matches; any other glob character would make that ambiguous.
  if (!match.endsWith('*') || /[*?[\]\\]/.test(match.slice(0, -1)) || match.length < 2) {
    problems.add(`--match must be a literal prefix followed by one "*" (like "user:email:*"), got "${match}"`);
  }
  return match;
}

function readCa(name: string, path: string, problems: Problems): string | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    if (!text.includes('-----BEGIN CERTIFICATE-----')) problems.add(`${name} ${path} holds no PEM certificate`);
    return text;
  } catch (error) {
    problems.add(unreadable('CA file', path, name, error));
    return undefined;
  }
}

const SSL_PARAMS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'ssl', 'uselibpqcompat'];

/**
 * libpq's sslmode, done here rather than by node-postgres (which treats `require` as `verify-full`, and
 * lets the URL's ssl settings override any given beside it): the ssl parameters are taken out of the URL.
 * - disable (the default without a CA): no TLS. A server that demands TLS says so; see errors.ts.
 * - require: encrypted; the certificate is checked against the CA if one is given (as libpq does).
 * - verify-ca: encrypted, certificate chain checked (the CA given, else the system's).
 * - verify-full: as verify-ca, and the certificate must name the host (the default when a CA is given).
 * - allow, prefer: refused: they fall back to plain text without saying so.
 */
function databaseTls(url: string, caPath: string | undefined, problems: Problems): { url: string; ssl: false | ConnectionOptions } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { url, ssl: false };
  }
  const params = parsed.searchParams;
  const rootCert = params.get('sslrootcert');
  const mode = params.get('sslmode') ?? (caPath !== undefined || rootCert !== null ? 'verify-full' : 'disable');
  if (params.has('sslcert') || params.has('sslkey')) problems.add('client certificates (sslcert, sslkey) are not supported');
  for (const name of SSL_PARAMS) params.delete(name);
  const stripped = parsed.toString();
  const caFile = caPath ?? (rootCert === null || rootCert === 'system' ? undefined : rootCert);
  const ca = caFile === undefined ? undefined : readCa('--database-ca / DATABASE_CA', caFile, problems);
  const withCa = ca === undefined ? {} : { ca };
  switch (mode) {
    case 'disable':
      if (caFile !== undefined) problems.add('a CA is given (--database-ca, DATABASE_CA or sslrootcert) but sslmode=disable turns TLS off');
      return { url: stripped, ssl: false };
    case 'require':
      return { url: stripped, ssl: ca === undefined ? { rejectUnauthorized: false } : { ...withCa, checkServerIdentity: () => undefined } };
    case 'verify-ca':
      return { url: stripped, ssl: { ...withCa, checkServerIdentity: () => undefined } };
    case 'verify-full':
      return { url: stripped, ssl: withCa };
    case 'allow':
    case 'prefer':
      problems.add(`sslmode=${mode} is not supported (it falls back to plain text silently): use sslmode=require, verify-full or disable`);
      return { url: stripped, ssl: false };
    default:
      problems.add(`sslmode must be disable, require, verify-ca or verify-full, got "${mode}"`);
      return { url: stripped, ssl: false };
  }
}

function checkUrl(name: string, url: string, protocols: readonly string[], problems: Problems): void {
  try {
    const parsed = new URL(url);
    if (!protocols.includes(parsed.protocol)) problems.add(`${name} must start with ${protocols.join(' or ')}//`);
    // A Redis URL's path is its database number: anything else would be read as database 0.
    const db = parsed.pathname.replace(/^\//, '');
    if (parsed.protocol.startsWith('redis') && db !== '' && !/^\d{1,5}$/.test(db)) {
      problems.add(`${name} names database "${db}": a Redis database is a number (redis://host:6379/3)`);
    }
  } catch {
    problems.add(`${name} is not a valid URL`);
  }
}

/** Emails given on the command line or in env, or a whitelist file: one email per line, `#` comments. */
export function loadWhitelist(file: string | undefined, envList: string | undefined, problems: Problems): Set<string> {
  const emails = new Set<string>();
  const take = (raw: string, where: string) => {
    const email = normaliseEmail(raw);
    if (email === '') return;
    if (!/^[^\s@]+@[^\s@]+$/.test(email)) problems.add(`whitelist entry ${where} is not an email: "${raw.trim()}"`);
    else emails.add(email);
  };
  if (file !== undefined) {
    let text: string | undefined;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      problems.add(unreadable('whitelist file', file, '--whitelist-file', error));
    }
    text?.split(/\r?\n/).forEach((line, i) => {
      const content = line.trim().startsWith('#') ? '' : line.replace(/\s#.*$/, '');
      take(content, `at ${file}:${i + 1}`);
    });
  }
  envList?.split(',').forEach((entry, i) => take(entry, `#${i + 1} of WHITELIST_EMAILS`));
  return emails;
}

export function whitelistCredits(raw: string | undefined, problems: Problems): bigint {
  return BigInt(problems.integer('--whitelist-credits', raw, DEFAULTS.whitelistCredits, 0, Number(MAX_CREDITS)));
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LogSettings {
  /** As asked (flag or LOG_LEVEL), or undefined: the format's default. */
  readonly level: string | undefined;
  readonly format: 'json' | 'text';
  readonly file: string | undefined;
}

/**
 * Logs for a person at a terminal are sentences, warnings and errors only, printed above the progress bar;
 * JSON lines (every level from info) when stderr is not a terminal, in CI, or with --log-format json.
 */
export function logSettings(
  flags: { logLevel?: string | undefined; logFormat?: string | undefined; logFile?: string | undefined },
  env: NodeJS.ProcessEnv,
  interactive: boolean,
  problems: Problems,
): LogSettings {
  const level = flags.logLevel ?? (env.LOG_LEVEL || undefined);
  if (level !== undefined && !LOG_LEVELS.includes(level)) problems.add(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  const format = flags.logFormat ?? (env.LOG_FORMAT || (interactive ? 'text' : 'json'));
  if (format !== 'json' && format !== 'text') problems.add(`--log-format must be json or text, got "${format}"`);
  const file = problems.outputPath('--log-file', flags.logFile);
  return {
    level: level !== undefined && LOG_LEVELS.includes(level) ? level : undefined,
    format: format === 'text' ? 'text' : 'json',
    file,
  };
}
