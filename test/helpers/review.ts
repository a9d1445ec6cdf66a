import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

let reviews = 0;

/**
 * What an operator does before `reconcile --apply --take`: review (`reconcile --conflicts`, run by `review`
 * into the path it is given), then keep the review's lines of the users chosen, in a file of their own.
 */
export async function reviewOf(dir: string, userIds: readonly string[], review: (conflicts: string) => Promise<unknown>): Promise<string> {
  const conflicts = join(dir, `review-${(reviews += 1)}.ndjson`);
  await review(conflicts);
  const wanted = new Set(userIds);
  const lines = (await readFile(conflicts, 'utf8')).split('\n').filter((line) => line && wanted.has((JSON.parse(line) as { user_id: string }).user_id));
  if (lines.length !== wanted.size) throw new Error(`the review lists ${lines.length} of ${[...wanted].join(', ')}`);
  const chosen = join(dir, `take-${reviews}.ndjson`);
  await writeFile(chosen, `${lines.join('\n')}\n`);
  return chosen;
}
