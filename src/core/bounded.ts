import pLimit from 'p-limit';

/**
 * Runs `fn` over an async source with at most `concurrency` calls in flight, pulling from the source
 * only when a slot frees up: the source (a SCAN) never runs ahead of the consumers, so memory stays flat.
 */
export async function forEachBounded<T>(source: AsyncIterable<T>, concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  const limit = pLimit(concurrency);
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  for await (const item of source) {
    if (failure !== undefined) break;
    const task = limit(() => fn(item));
    inflight.add(task);
    task.then(
      () => inflight.delete(task),
      (error: unknown) => {
        inflight.delete(task);
        failure ??= error;
      },
    );
    if (inflight.size >= concurrency) await Promise.race(inflight).catch(() => undefined);
  }
  await Promise.allSettled(inflight);
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- the first task's own rejection, rethrown as it was
  if (failure !== undefined) throw failure;
}
