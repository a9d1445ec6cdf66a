import { pino, type Logger } from 'pino';
import type { Scrubber } from './redact.js';

export type { Logger };

/** JSON logs on stderr (stdout carries the human summary). Error text is scrubbed of secrets. */
export function createLogger(level: string, scrubber: Scrubber, destination: number = 2): Logger {
  return pino(
    {
      level,
      base: { name: 'migrate-users' },
      redact: { paths: ['password', '*.password', 'password_hash', '*.password_hash'], censor: '***' },
      serializers: {
        err: (err: unknown) => {
          const serialized = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
          return JSON.parse(scrubber.scrub(JSON.stringify(serialized))) as unknown;
        },
      },
      hooks: {
        // Strings, and string fields of logged objects (e.g. `{ err: describe(error) }`), lose any secret.
        logMethod(args, method) {
          const clean = args.map((a) => {
            if (typeof a === 'string') return scrubber.scrub(a);
            if (a && typeof a === 'object' && !(a instanceof Error)) {
              return Object.fromEntries(Object.entries(a).map(([k, v]) => [k, typeof v === 'string' ? scrubber.scrub(v) : v]));
            }
            return a;
          });
          method.apply(this, clean as Parameters<typeof method>);
        },
      },
    },
    pino.destination({ fd: destination, sync: true }),
  );
}
