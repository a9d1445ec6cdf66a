/**
 * Secrets never reach output. pino's `redact` only works on key paths and never looks inside strings,
 * so any text that might hold a connection URL (error messages, stacks, reports) goes through `scrub` first.
 *
 * A secret is cut out where it stands (a URL's `user:PASSWORD@`, a `password=` field), never wherever its
 * text happens to occur: a password that is an ordinary word ("wrong", "Redis", "run") would otherwise be
 * cut out of the tool's own sentences and report fields, and the gap would show what the password is.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return scrub(url);
  }
}

// scheme://user:PASSWORD@host: the password runs to the authority's last '@' (as URL parsers read it), or,
// in a URL too broken to parse (a raw '/' in the password), to the next '@'.
const URL_USERINFO = /(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*:)(?:[^\s/?#]*|[^\s@]*)@/gi;
// password=... in a URL's query (pg and ioredis read it there) or a libpq keyword string, quoted or bare.
const PASSWORD_FIELD = /(\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s&;,'"]+)/gi;
// "password": "..." in JSON written into a message.
const PASSWORD_JSON = /("password"\s*:\s*)"(?:[^"\\]|\\.)*"/gi;

export function scrub(text: string): string {
  return text.replace(URL_USERINFO, '$1***@').replace(PASSWORD_FIELD, '$1***').replace(PASSWORD_JSON, '$1"***"');
}

/**
 * A logged object or a serialized error, every string in it scrubbed. ioredis attaches the command a reply
 * error answered to the error (`command: { name, args }`): for AUTH and HELLO the password is an argument of
 * its own, which is where it stands there.
 */
export function scrubValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrub(value);
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => scrubValue(item, depth + 1));
  // Plain objects only: an Error goes through pino's serializer (and then here), a Date or a Buffer stays as it is.
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value;
  const entries = Object.entries(value as Record<string, unknown>).map(([key, item]) => [key, scrubValue(item, depth + 1)] as const);
  const out = Object.fromEntries(entries) as Record<string, unknown>;
  if (typeof out.name === 'string' && Array.isArray(out.args)) out.args = redisCommandArgs(out.name, out.args);
  return out;
}

/** AUTH [user] password; HELLO protover AUTH user password [SETNAME name]. */
function redisCommandArgs(name: string, args: readonly unknown[]): unknown[] {
  const command = name.toLowerCase();
  if (command === 'auth') return args.map((arg, i) => (i === args.length - 1 ? '***' : arg));
  if (command === 'hello') {
    const at = args.findIndex((arg) => typeof arg === 'string' && arg.toUpperCase() === 'AUTH');
    return at < 0 ? [...args] : args.map((arg, i) => (i === at + 2 ? '***' : arg));
  }
  return [...args];
}
