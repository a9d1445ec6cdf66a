/** Exit codes are part of the CLI contract (README "Exit codes"). */
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

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);

/** SQLSTATE classes 08 (connection), 57P0x (server shutting down / terminated), 53 (out of resources). */
export function isConnectionFailure(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (CONNECTION_CODES.has(code) || /^(08|57P0|53)/.test(code))) return true;
    // node-postgres and ioredis say some of these only in words (no code), e.g. a pooled client whose server died.
    if (/Connection terminated|not queryable|connect ETIMEDOUT|Connection is closed|ECONNREFUSED|timeout exceeded when trying to connect|terminating connection/i.test(e.message)) {
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
    parts.push(e instanceof Error ? e.message : String(e));
    if (parts.length > 5) break;
  }
  return parts.filter((p) => p.length > 0).join(': ');
}
