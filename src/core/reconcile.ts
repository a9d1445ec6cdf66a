import { sql, type Kysely } from 'kysely';
import type { CellValue } from '../compare/compare-rows.js';
import { publicRow, rowFromRecord } from '../compare/compare-rows.js';
import { canonicalColumns } from '../db/canonical.js';
import { SECRET_COLUMNS, type UserColumn } from '../map/user-row.js';
import { money } from '../report/report.js';
import { CLASSES, SETTLED, type ClassTotals, type ReconcileClass, type ReconcileEntry, type ReconcileReport } from '../results/reconcile-report.js';
import { migrate, type MigrateIo, type MigrateOptions } from './migrate.js';
import type { ClassifiedEntry, Take } from './process-chunk.js';
import { logResolutions } from '../sink/apply-chunk.js';
import { sameAsReviewed } from './take-review.js';

export interface ReconcileIo extends MigrateIo {
  /** Receives every user that is not in sync (for --conflicts and the per-class listing). */
  readonly onEntry?: ((entry: ReconcileEntry) => Promise<void>) | undefined;
}

/**
 * reconcile: migrate's own classification (same mapping, comparison, ledger and write path), reported per
 * class, plus the rows PostgreSQL has and Redis no longer has. Read-only unless `apply`.
 */
export async function reconcile(options: MigrateOptions & { apply: boolean }, io: ReconcileIo): Promise<ReconcileReport> {
  const totals = new Map<ReconcileClass, { users: number; redis: bigint; postgres: bigint }>(CLASSES.map((c) => [c, { users: 0, redis: 0n, postgres: 0n }]));
  const count = (c: ReconcileClass, redis: bigint, postgres: bigint) => {
    const t = totals.get(c);
    if (!t) return;
    t.users++;
    t.redis += redis;
    t.postgres += postgres;
  };
  let remaining = 0;
  const emit = async (entry: ReconcileEntry) => {
    if (!SETTLED.has(entry.class) && !entry.applied && !entry.resolved_by) remaining++;
    if (entry.class !== 'in_sync') await io.onEntry?.(entry);
  };

  const earlyLoginRows = new Set<string>();
  const report = await migrate(
    // Never resumes: the per-class accounting needs every user classified in this run.
    { ...options, dryRun: !options.apply, command: 'reconcile', neverResumes: true },
    {
      ...io,
      onClassified: async (classified) => {
        // The new-app row of an early login is that user's row: listed with them, not as a signup of its own.
        if (classified.fact.owner && (classified.outcome === 'merged' || classified.reason === 'early_login')) {
          earlyLoginRows.add(classified.fact.owner.row.user_id);
        }
        const entry = toEntry(classified, options.apply);
        // An early login's PostgreSQL side is the new-app row holding its email.
        const postgres = classified.fact.actual ?? (entry.class === 'early_login' ? classified.fact.owner?.row : null);
        count(entry.class, BigInt(classified.fact.expected.current_credits), BigInt(postgres?.current_credits ?? 0));
        await emit(entry);
      },
      withStage: async (db, stage, runId) => {
        const take = options.apply ? options.take : undefined;
        for await (const row of rowsMissingFromRedis(db, stage)) {
          if (earlyLoginRows.has(row.entry.user_id ?? '')) continue;
          count(row.class, 0n, row.credits);
          await emit(await settleDeletedInRedis(db, row.entry, take, runId));
        }
      },
    },
  );
  // Records held back before classification: invalid ones, and valid ones claimed by another key.
  const invalid = totals.get('invalid_in_redis');
  const other = totals.get('other_conflict');
  if (invalid && other) {
    invalid.users += report.counts.invalid;
    const duplicates = (report.reasons.duplicate_email ?? 0) + (report.reasons.duplicate_user_id ?? 0);
    other.users += duplicates;
    remaining += report.counts.invalid + duplicates;
  }
  const classes = Object.fromEntries(
    CLASSES.map((c) => {
      const t = totals.get(c) ?? { users: 0, redis: 0n, postgres: 0n };
      return [c, { users: t.users, redis_credits: money(t.redis), postgres_credits: money(t.postgres) }];
    }),
  ) as Record<ReconcileClass, ClassTotals>;
  return { ...report, command: 'reconcile', applied: options.apply, classes, remaining };
}

function toEntry(c: ClassifiedEntry, apply: boolean): ReconcileEntry {
  const base = c.fact.ledger?.base ?? null;
  const merge = c.merge;
  const owner = c.fact.owner?.row;
  // A merge shows, per column it changes, Redis's value, the new-app row's, and the merged one.
  const redis = publicRow(c.fact.expected);
  const before = owner ? publicRow(owner) : null;
  const columns =
    merge && before
      ? c.diffs.map((d) => ({ column: d.column, base: undefined, redis: redis[d.column], postgres: before[d.column], merged: d.expected }))
      : c.diffs.map((d) => ({
          column: d.column,
          base: base ? shownBase(d.column, base[d.column]) : undefined,
          // Redis's own balance, so a reviewer sees what Redis changed; the whitelist rule's result beside it.
          ...(d.column === 'current_credits' && c.fact.topup > 0n
            ? { redis: c.fact.sourceCredits.toString(), redis_whitelisted: d.expected }
            : { redis: d.expected }),
          postgres: d.actual,
        }));
  const written = apply && (c.outcome === 'inserted' || c.outcome === 'updated');
  const common = {
    user_id: c.fact.expected.user_id,
    email: c.fact.expected.email,
    key: c.fact.key,
    reason: c.reason,
    detail: c.detail,
    columns,
    applied: written && !c.resolvedBy,
    ...(c.resolvedBy ? { resolved_by: c.resolvedBy } : {}),
    review: { redis_digest: c.fact.digest, row_version: c.fact.observedVersion },
  };
  if (c.resolvedBy) return { ...common, class: c.fact.actual === null ? 'deleted_in_postgres' : 'changed_in_both' };
  // Added up from both sides (--combine): a conflict settled by this run.
  if (c.combined) return { ...common, class: 'changed_in_both', applied: apply };
  switch (c.outcome) {
    case 'merged':
      return { ...common, class: 'early_login', applied: apply };
    case 'inserted':
      return { ...common, class: 'only_in_redis' };
    case 'updated':
      return { ...common, class: 'changed_in_redis' };
    case 'unchanged':
      return { ...common, class: 'in_sync' };
    case 'kept_app_change':
      return { ...common, class: 'changed_in_postgres' };
    case 'deleted_by_app':
      return { ...common, class: 'deleted_by_app' };
    case 'conflict':
      if (c.reason === 'changed_in_both' || c.reason === 'changed_after_merge') return { ...common, class: 'changed_in_both' };
      if (c.reason === 'deleted_in_postgres') return { ...common, class: 'deleted_in_postgres' };
      if (c.reason === 'early_login') return { ...common, class: 'early_login' };
      return { ...common, class: 'other_conflict' };
  }
}

function shownBase(column: UserColumn, value: CellValue | undefined): CellValue | undefined {
  return SECRET_COLUMNS.has(column) && value !== null && value !== undefined ? '(set)' : value;
}

/**
 * A user the tool wrote whose Redis record is gone has nothing to take from Redis: `--take postgres` keeps
 * the row (the ledger records the choice, and the user is settled from then on), `--take redis` is refused.
 */
async function settleDeletedInRedis(db: Kysely<unknown>, entry: ReconcileEntry, take: Take | undefined, runId: string): Promise<ReconcileEntry> {
  const reviewed = entry.user_id ? take?.users.get(entry.user_id) : undefined;
  if (entry.class !== 'deleted_in_redis' || entry.resolved_by || !take || !entry.user_id || !reviewed) return entry;
  if (!sameAsReviewed(reviewed, { redisDigest: entry.review.redis_digest, rowVersion: entry.review.row_version })) {
    return { ...entry, detail: `${entry.detail ?? 'the Redis record is gone'}; changed since your review (--take skipped it): look again` };
  }
  if (take.side === 'redis') {
    return {
      ...entry,
      detail: `${entry.detail ?? 'the Redis record is gone'}; --take redis cannot settle it (there is no Redis record to take): --take postgres keeps the row`,
    };
  }
  // Only while the row is still the version reviewed: a change the app makes meanwhile is looked at again.
  const kept = await sql`
    update migrate_users.ledger l set postgres_owns = true, row_xmin = null, run_id = ${runId}, written_at = now()
    where l.user_id = ${entry.user_id} and not l.postgres_owns
      and exists (select 1 from public.users u where u.user_id = l.user_id and u.xmin::text = ${entry.review.row_version})`.execute(db);
  if (Number(kept.numAffectedRows ?? 0n) === 0) return entry;
  await logResolutions(db, [{ userId: entry.user_id, side: 'postgres', reason: 'deleted_in_redis', digest: '(no Redis record)' }], runId);
  return { ...entry, resolved_by: 'postgres' };
}

/** PostgreSQL rows with no Redis record: new-app signups, or users the tool wrote whose Redis record is gone. */
async function* rowsMissingFromRedis(db: Kysely<unknown>, stage: string) {
  for (let after = ''; ;) {
    const { rows } = await sql<
      Record<string, unknown> & { a_xmin: string; had_ledger: boolean; postgres_owns: boolean | null; base: Record<string, CellValue> | null }
    >`
      select ${canonicalColumns('u', 'a_')}, u.xmin::text as a_xmin, l.user_id is not null as had_ledger, l.postgres_owns, l.base
      from public.users u left join migrate_users.ledger l on l.user_id = u.user_id
      where u.user_id > ${after} and not exists (select 1 from ${sql.raw(stage)} s where s.user_id = u.user_id)
        -- A row a staged record was merged into is that record's row.
        and not exists (select 1 from migrate_users.merges m join ${sql.raw(stage)} s on s.user_id = m.old_user_id where m.user_id = u.user_id)
      order by u.user_id limit 2000`.execute(db);
    for (const row of rows) {
      const pg = publicRow(rowFromRecord(row, 'a_'));
      const cls: ReconcileClass = row.had_ledger ? 'deleted_in_redis' : 'only_in_postgres';
      const entry: ReconcileEntry = {
        class: cls,
        user_id: String(pg.user_id),
        email: String(pg.email),
        key: null,
        reason: cls,
        detail: row.had_ledger ? 'the tool migrated this user; the Redis record is gone now' : 'no Redis record: created by the new app',
        columns: [],
        applied: false,
        review: { redis_digest: null, row_version: row.a_xmin },
        // An operator kept this row before (`--take postgres`): settled.
        ...(row.postgres_owns ? { resolved_by: 'postgres' as const } : {}),
      };
      yield { class: cls, credits: BigInt(String(pg.current_credits)), entry };
    }
    const last = rows[rows.length - 1];
    if (!last) return;
    after = String(last.a_user_id);
  }
}
