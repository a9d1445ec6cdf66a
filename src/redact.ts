/**
 * Secrets never reach output. pino's `redact` only works on key paths and never looks inside strings,
 * so any text that might hold a connection URL (error messages, stacks) goes through `scrub` first.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/(\/\/[^:/@\s]*:)[^@\s]*@/g, '$1***@');
  }
}

export class Scrubber {
  private readonly secrets: string[] = [];

  /** Remembers the password of a URL (raw and percent-decoded) so it can be cut out of any text. */
  addUrl(url: string): void {
    try {
      const { password } = new URL(url);
      if (password) this.add(password, decodeURIComponent(password));
    } catch {
      // An unparsable URL is reported by config validation; the generic pattern below still applies.
    }
  }

  add(...secrets: string[]): void {
    for (const secret of secrets) if (secret.length >= 3 && !this.secrets.includes(secret)) this.secrets.push(secret);
  }

  scrub(text: string): string {
    let out = text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@');
    for (const secret of this.secrets) out = out.split(secret).join('***');
    return out;
  }
}
