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
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? scrubber.scrub(a) : a)) as Parameters<typeof method>);
        },
      },
    },
    pino.destination({ fd: destination, sync: true }),
  );
}
