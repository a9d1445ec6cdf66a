/** Exit codes are part of the CLI contract (docs/troubleshooting.md "Exit codes"). */
export const EXIT = {
  ok: 0,
  differences: 1,
  usage: 2,
  unfinished: 3,
} as const;

/** Bad flags, bad config, unreadable files, schema not applied: the operator must change something. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A server could not be reached or was lost: nothing wrong with the input, the run could not finish. */
export class UnfinishedError extends Error {
  override readonly name = 'UnfinishedError';
}

/** Stopped by Ctrl-C / SIGTERM before there was anything to report (say, while a snapshot was loading). */
export class InterruptedError extends Error {
  override readonly name = 'InterruptedError';
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);

/** SQLSTATE classes 08 (connection), 57P0x (server shutting down / terminated), 53 (out of resources). */
export function isConnectionFailure(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (CONNECTION_CODES.has(code) || /^(08|57P0|53)/.test(code))) return true;
    // node-postgres and ioredis say some of these only in words (no code), e.g. a pooled client whose server died.
    if (
      /Connection terminated|not queryable|connect ETIMEDOUT|Connection is closed|ECONNREFUSED|timeout exceeded when trying to connect|terminating connection/i.test(
        e.message,
      )
    ) {
      return true;
    }
  }
  return false;
}

export function pgCode(error: unknown): string | undefined {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

export function describe(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e !== undefined && e !== null; e = e instanceof Error ? e.cause : undefined) {
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- whatever was thrown, shown as JavaScript shows it
    parts.push(e instanceof Error ? e.message : String(e));
    if (parts.length > 5) break;
  }
  return parts.filter((p) => p.length > 0).join(': ');
}

const CERTIFICATE_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** What went wrong with TLS to `server`, said so that the operator knows which setting to change. */
export function tlsFailure(error: unknown, server: string, caFlag: string): string | undefined {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CERTIFICATE_CODES.has(code)) {
      return (
        `${server}'s TLS certificate was not accepted (${code}: ${e.message}): give the CA that signed it with ${caFlag}` +
        (code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? ', and connect by a host name the certificate names' : '')
      );
    }
    if (/server does not support SSL/i.test(e.message)) {
      return `${server} does not offer TLS, but the URL's sslmode asks for it`;
    }
    if (code === '28000' && e.message.includes('no encryption')) {
      return `${server} accepts only TLS connections (${e.message}): add sslmode=verify-full and ${caFlag} (or sslmode=require) to the URL`;
    }
  }
  return undefined;
}

/**
 * What stopped a first connection, in words: `server` at `address` (host and port, never a password) and
 * the cause an operator can act on. A server never reached is a configuration problem (exit 2); one lost
 * after the run got going is not (exit 3, elsewhere).
 */
export function connectFailure(error: unknown, server: 'PostgreSQL' | 'Redis', address: string): UsageError {
  return new UsageError(`cannot connect to ${server} at ${address}: ${connectCause(error, server)}`);
}

function connectCause(error: unknown, server: 'PostgreSQL' | 'Redis'): string {
  const variable = server === 'PostgreSQL' ? 'DATABASE_URL' : 'REDIS_URL';
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    const message = e.message;
    if (code === 'ENOTFOUND') return 'no such host (check the host name in the URL)';
    if (code === 'EAI_AGAIN') return 'the host name could not be looked up (DNS did not answer): try again, or check the name';
    if (code === 'ECONNREFUSED') return 'connection refused: nothing listens on that port (is the server running, is the port right?)';
    if (code === 'ETIMEDOUT' || /timeout exceeded when trying to connect|connect ETIMEDOUT/i.test(message)) {
      return 'no answer within the connection timeout (a firewall, a wrong host, or a server that is down)';
    }
    if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'the host cannot be reached from this machine (no route)';
    if (/client password must be a string|NOAUTH/i.test(message)) {
      return `password required: the server asks for one and the URL has none (put it in ${variable}, not on the command line)`;
    }
    if (code === '28P01' || /WRONGPASS|invalid username-password|SASL authentication failed|password authentication failed/i.test(message)) {
      return `wrong user name or password (${message})`;
    }
    if (code === '28000') return `not allowed to connect: ${message}`;
    if (code === '3D000') return `${message} (check the database name in the URL)`;
    if (code === '53300') return `too many connections: ${message}`;
    if (/ECONNRESET|Connection terminated unexpectedly|socket hang up/i.test(message)) {
      return 'the server closed the connection at once (a TLS setting that does not match the server, or a pooler that refused this client?)';
    }
  }
  return describe(error);
}

/** Which server a connection failure mid-run came from, where the error says so (ioredis and pg word them apart). */
export function lostServer(error: unknown): 'Redis' | 'PostgreSQL' | undefined {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (/Connection is closed|Stream isn't writeable|MaxRetriesPerRequest|slots cache/i.test(e.message)) return 'Redis';
    if (
      (typeof code === 'string' && /^(08|57P0)/.test(code)) ||
      /Connection terminated|terminating connection|not queryable|Client has encountered a connection error/i.test(e.message)
    ) {
      return 'PostgreSQL';
    }
  }
  return undefined;
}
