/**
 * `reconcile --take` applies an operator's choice only over the state the operator reviewed: the lines of
 * the review (`reconcile --conflicts`, NDJSON or CSV) for the chosen users carry each user's Redis digest and
 * row version as the review saw them. A user changed on either side since is skipped ("changed since your
 * review"), never taken over in its new state.
 */

/** One user as the review showed them: the Redis record's digest (null: no Redis record) and the row's xmin (null: no row). */
export interface Reviewed {
  readonly redisDigest: string | null;
  readonly rowVersion: string | null;
}

/** The users of a review file, or the reasons it cannot be one. */
export function parseReview(text: string, file: string): { users: Map<string, Reviewed>; problems: string[] } {
  const users = new Map<string, Reviewed>();
  const problems: string[] = [];
  const firstLine = text.split(/\r?\n/, 1)[0] ?? '';
  const rows = firstLine.startsWith('class,user_id,') ? csvReview(text, problems) : ndjsonReview(text, problems);
  for (const { userId, reviewed } of rows) {
    const earlier = users.get(userId);
    if (earlier && (earlier.redisDigest !== reviewed.redisDigest || earlier.rowVersion !== reviewed.rowVersion)) {
      problems.push(`--users ${file}: ${userId} appears with two different reviewed states (from two reviews?): take one review's lines`);
    }
    users.set(userId, reviewed);
  }
  if (problems.length === 0 && users.size === 0) problems.push(`--users ${file} holds no user of a review`);
  return { users, problems: problems.map((p) => (p.startsWith('--users') ? p : `--users ${file} ${p}`)) };
}

/** Whether the state of now is the one reviewed. */
export function sameAsReviewed(reviewed: Reviewed, now: Reviewed): boolean {
  return reviewed.redisDigest === now.redisDigest && reviewed.rowVersion === now.rowVersion;
}

const BARE_LIST =
  'is a bare list of user_ids: --take applies only the state you reviewed. Give it the lines of your review for the users you chose: ' +
  'the NDJSON of `reconcile --conflicts FILE.ndjson` (e.g. grep \'"user_id":"usr_1"\' FILE.ndjson > take.ndjson), or the CSV of ' +
  "`--conflicts FILE.csv` with the other users' lines deleted (header kept)";

function ndjsonReview(text: string, problems: string[]): { userId: string; reviewed: Reviewed }[] {
  const out: { userId: string; reviewed: Reviewed }[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
    const entry = parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined;
    const review = entry?.review !== null && typeof entry?.review === 'object' ? (entry.review as Record<string, unknown>) : undefined;
    if (!entry || typeof entry.user_id !== 'string') {
      if (problems.length === 0) problems.push(entry ? `line ${index + 1} has no user_id` : BARE_LIST);
      return;
    }
    if (!review || !nullableText(review.redis_digest) || !nullableText(review.row_version)) {
      problems.push(
        `line ${index + 1} (${entry.user_id}) carries no reviewed state (review.redis_digest, review.row_version): a review of an older version? review again`,
      );
      return;
    }
    out.push({ userId: entry.user_id, reviewed: { redisDigest: review.redis_digest as string | null, rowVersion: review.row_version as string | null } });
  });
  return out;
}

function csvReview(text: string, problems: string[]): { userId: string; reviewed: Reviewed }[] {
  const [header, ...rows] = parseCsv(text);
  const at = (name: string) => header?.indexOf(name) ?? -1;
  const [user, digest, version] = [at('user_id'), at('redis_digest'), at('row_version')];
  if (digest < 0 || version < 0) {
    problems.push('is a conflicts CSV without the reviewed state (redis_digest, row_version columns): a review of an older version? review again');
    return [];
  }
  return rows
    .filter((cells) => cells.some((c) => c !== ''))
    .map((cells) => ({
      // csvCell puts an apostrophe before a text cell a spreadsheet would run as a formula.
      userId: (cells[user] ?? '').replace(/^'(?=[=+\-@\t\r\0])/, ''),
      reviewed: { redisDigest: cells[digest] || null, rowVersion: cells[version] || null },
    }));
}

function nullableText(value: unknown): boolean {
  return value === null || typeof value === 'string';
}

/** RFC 4180 CSV (what csvRow writes): quoted cells may hold commas, quotes ("") and line breaks. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charAt(i);
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += ch;
  }
  if (cell !== '' || row.length > 0) rows.push([...row, cell]);
  return rows;
}
