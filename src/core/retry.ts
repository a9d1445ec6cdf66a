import { setTimeout as sleep } from 'node:timers/promises';
import { describe, isConnectionFailure } from '../errors.js';
import type { Logger } from '../log.js';

export interface RetryPolicy {
  /** Retries after the first attempt; 0 = fail at once. */
  readonly retries: number;
  /** First delay; doubled each time, capped at 30 s, with ±50% jitter so reconnecting clients do not stampede. */
  readonly baseDelayMs: number;
}

export const NO_RETRY: RetryPolicy = { retries: 0, baseDelayMs: 0 };

/** Counts retries across a run, for the report. */
export class RetryCounter {
  count = 0;
}

export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const exponential = Math.min(30_000, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(exponential * (0.5 + random()));
}

/**
 * Runs `fn` again after a lost or unreachable server, up to the policy's bound. Only connection failures
 * are retried: every other error is a fact about the data or the setup, and retrying would hide it.
 */
export async function withRetries<T>(
  what: string,
  policy: RetryPolicy,
  counter: RetryCounter,
  log: Logger,
  fn: (attempt: number) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (!isConnectionFailure(error) || attempt > policy.retries || signal?.aborted) throw error;
      const delay = backoffMs(policy, attempt);
      counter.count++;
      log.warn({ what, attempt, retries: policy.retries, delayMs: delay, err: describe(error) }, 'connection lost; retrying');
      await sleep(delay);
    }
  }
}
