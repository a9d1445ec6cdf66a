import { once } from 'node:events';
import { sql, type Kysely } from 'kysely';
import { from as copyFrom } from 'pg-copy-streams';
import { unboundedTransaction, type Session } from '../db/database.js';
import type { UserRow } from '../map/user-row.js';
import { USER_COLUMNS } from '../map/user-row.js';

/**
 * Every scanned key lands here first, valid or not, so memory stays flat however many users there are,
 * and duplicates across the whole keyspace (SCAN repeats, emails differing only by case, a user_id under
 * two emails) are found with set-based SQL, not with an in-memory map. For dry-run and verify it is the
 * TEMP table `mu_stage`, dropped when the run's one transaction ends (nothing persistent is written); for a
 * writing run it is an UNLOGGED table in migrate_users, which survives a crash so the next run can resume.
 * Queries name `stage.table`: no session state, so a pooler in transaction mode works too.
 */
export const STAGE_TABLE = 'mu_stage';

/**
 * The triage kind of stage row `alias`, as a scalar subquery: one primary-key probe per row whatever the
 * planner estimates (a join with the triage table was estimated at one row and planned as nested loops
 * over CTEs, quadratic in the batch size; or as a hash join over the whole triage, per batch).
 */
export function triageKind(alias: string, stage: string) {
  return sql`(select t.kind from ${sql.raw(triageTable(stage))} t where t.seq = ${sql.raw(alias)}.seq)`;
}

/** The stage's triage table (see core/facts.ts: triage). */
export function triageTable(stage: string): string {
  return stage === STAGE_TABLE ? 'mu_triage' : `${stage}_triage`;
}

/** The stage's list of app rows whose email is not stored normalised (see core/facts.ts: prepareFacts). */
export function emailsTable(stage: string): string {
  return stage === STAGE_TABLE ? 'mu_emails' : `${stage}_emails`;
}

export interface Stage {
  /** mu_stage (TEMP), or migrate_users.stage_f<format>_<run>. */
  readonly table: string;
  readonly persistent: boolean;
}

/**
 * Bumped whenever the stage tables' columns or meaning change: an older stage is never resumed or reused (a
 * persistent stage's name carries it, and so does the digest a resume must match, see core/checkpoint.ts).
 */
export const STAGE_FORMAT = 2;
const PERSISTENT = /^migrate_users\.stage_[a-z0-9_]+$/;
const REUSABLE = `stage_f${STAGE_FORMAT}_`;

export interface StagedRecord {
  readonly seq: number;
  readonly key: string;
  readonly userId: string | null;
  readonly mapped?: { readonly row: UserRow; readonly sourceCredits: bigint; readonly topup: bigint; readonly digest: string };
  readonly reject?: { readonly reason: string; readonly detail: string };
  /** See copySafe: the mapped row's cells need no COPY escaping. */
  readonly copySafe?: boolean;
}

const STAGE_COLUMNS = ['seq', 'key', 'valid', 'outcome', 'reason', 'detail', ...USER_COLUMNS, 'source_credits', 'topup', 'digest'] as const;

/**
 * A TEMP stage (dry-run, verify), or a persistent one named after the run (writing runs), each with its triage
 * and emails tables (see core/facts.ts), all made in one transaction: on Supabase every CREATE TABLE outside
 * pg_temp sends the API a `NOTIFY pgrst, 'reload schema'`, so a persistent stage is made once (one reload) and
 * then reused, emptied, by the role's later runs (see reuseStage).
 */
export async function createStage(session: Session, persistentFor?: string): Promise<Stage> {
  const table = persistentFor ? `migrate_users.${REUSABLE}${persistentFor.replace(/[^a-z0-9_]/g, '')}` : STAGE_TABLE;
  const kind = sql.raw(persistentFor ? 'unlogged' : 'temp');
  const drop = sql.raw(persistentFor ? '' : 'on commit drop');
  const create = async (db: Kysely<unknown>) => {
    await sql`
      create ${kind} table ${sql.raw(table)} (
        seq bigint primary key,
        key text not null,
        valid boolean not null,
        outcome text,
        reason text,
        detail text,
        user_id text,
        email text,
        username text,
        avatar text,
        password_hash text,
        current_credits bigint,
        total_credits_used bigint,
        signup_bonus_granted boolean,
        current_plan_id text,
        plan_renew_at timestamptz,
        created_at timestamptz,
        last_login timestamptz,
        source_credits bigint,
        topup bigint,
        digest text,
        -- The run that recorded a conflict (a resumed run lists those the runs before it found).
        decided_by text
      ) ${drop}`.execute(db);
    await sql`create ${kind} table ${sql.raw(triageTable(table))} (seq bigint primary key, kind text not null) ${drop}`.execute(db);
    await sql`create ${kind} table ${sql.raw(emailsTable(table))} (user_id text not null, email text not null) ${drop}`.execute(db);
    await sql`create index on ${sql.raw(emailsTable(table))} (email)`.execute(db);
  };
  // A TEMP stage lives in the caller's one transaction; a persistent one commits its three tables together.
  if (persistentFor) await unboundedTransaction(session.db, create);
  else await create(session.db);
  return { table, persistent: persistentFor !== undefined };
}

/**
 * A persistent stage of this role's, of this format, that no run can resume any more (the caller holds the
 * write lock and found nothing to resume): emptied for the run at hand, with no DDL the API would reload for.
 */
export async function reuseStage(db: Kysely<unknown>): Promise<Stage | undefined> {
  const { rows } = await sql<{ t: string }>`
    select 'migrate_users.' || s.tablename as t from pg_tables s
    where s.schemaname = 'migrate_users' and s.tableowner = current_user and s.tablename like ${`${REUSABLE.replace(/_/g, '\\_')}%`}
      and s.tablename not like '%\\_triage' and s.tablename not like '%\\_emails'
      and exists (select 1 from pg_tables x where x.schemaname = 'migrate_users' and x.tablename = s.tablename || '_triage' and x.tableowner = current_user)
      and exists (select 1 from pg_tables x where x.schemaname = 'migrate_users' and x.tablename = s.tablename || '_emails' and x.tableowner = current_user)
    order by 1 limit 1`.execute(db);
  const table = rows[0]?.t;
  if (!table) return undefined;
  await emptyStage(db, table);
  // The user_id index only reconcile wants (see finishStage): a migrate's COPY would pay for it.
  await sql`drop index if exists ${sql.raw(userIdIndex(table))}`.execute(db);
  return { table, persistent: true };
}

/** Empties a persistent stage (TRUNCATE is no DDL the API reloads for): no record, no password hash stays. */
export async function emptyStage(db: Kysely<unknown>, table: string): Promise<void> {
  if (!PERSISTENT.test(table)) throw new Error(`refusing to empty ${table}: not a stage table`);
  await sql`truncate ${sql.raw(table)}, ${sql.raw(triageTable(table))}, ${sql.raw(emailsTable(table))}`.execute(db);
}

export async function dropStage(db: Kysely<unknown>, table: string): Promise<void> {
  if (!PERSISTENT.test(table)) throw new Error(`refusing to drop ${table}: not a stage table`);
  await sql`drop table if exists ${sql.raw(table)}, ${sql.raw(triageTable(table))}, ${sql.raw(emailsTable(table))}`.execute(db);
}

export interface StageTable {
  readonly table: string;
  readonly owner: string;
  /** The connected role may drop it (it has its owner's privileges, or owns migrate_users, or is a superuser). */
  readonly mayDrop: boolean;
  /** It holds records (every one with its password hash): an unfinished run's, or one failed too early to empty it. */
  readonly holdsRecords: boolean;
  /** Of this version's format: a later run of its owner may resume or reuse it. */
  readonly current: boolean;
  /** The run recorded with it, if any. */
  readonly run: { readonly id: string; readonly status: string; readonly startedAt: Date } | null;
}

/** Every persistent stage in migrate_users, whoever owns it (sizes need no privilege on the table). */
export async function listStages(db: Kysely<unknown>): Promise<StageTable[]> {
  const { rows } = await sql<{ t: string; owner: string; may: boolean; holds: boolean; run_id: string | null; status: string | null; started_at: Date | null }>`
    select 'migrate_users.' || s.tablename as t, s.tableowner::text as owner,
      -- DROP takes the owner's privileges (USAGE: a membership that inherits them), or the schema's owner.
      pg_has_role(current_user, s.tableowner, 'USAGE') or pg_has_role(current_user, n.nspowner, 'USAGE')
        or (select rolsuper from pg_roles where rolname = current_user) as may,
      pg_relation_size(('migrate_users.' || quote_ident(s.tablename))::regclass) > 0 as holds,
      r.run_id, r.status, r.started_at
    from pg_tables s
    join pg_namespace n on n.nspname = s.schemaname
    left join lateral (select run_id, status, started_at from migrate_users.runs where stage_table = 'migrate_users.' || s.tablename
                       order by started_at desc limit 1) r on true
    where s.schemaname = 'migrate_users' and s.tablename like 'stage\\_%' and s.tablename not like '%\\_triage' and s.tablename not like '%\\_emails'
    order by 1`.execute(db);
  return rows.map((r) => ({
    table: r.t,
    owner: r.owner,
    mayDrop: r.may,
    holdsRecords: r.holds,
    current: r.t.startsWith(`migrate_users.${REUSABLE}`),
    run: r.run_id && r.status && r.started_at ? { id: r.run_id, status: r.status, startedAt: r.started_at } : null,
  }));
}

function userIdIndex(table: string): string {
  return `${table}_user_id`;
}

/** Streams records into the stage with COPY, honouring backpressure so memory stays bounded. */
export class StageWriter {
  private readonly stream;
  private failure: Error | undefined;

  constructor(session: Session, stage: Stage) {
    this.stream = session.client.query(copyFrom(`copy ${stage.table} (${STAGE_COLUMNS.join(', ')}) from stdin`));
    this.stream.on('error', (err: Error) => {
      this.failure ??= err;
    });
  }

  async write(records: readonly StagedRecord[]): Promise<void> {
    if (this.failure) throw new Error('staging records (COPY)', { cause: this.failure });
    if (records.length === 0) return;
    let chunk = '';
    for (const record of records) chunk += copyLine(record);
    if (!this.stream.write(chunk)) await once(this.stream, 'drain');
  }

  async end(): Promise<void> {
    if (this.failure) throw new Error('staging records (COPY)', { cause: this.failure });
    const done = once(this.stream, 'finish');
    this.stream.end();
    await done;
  }

  /**
   * Gives the COPY up after a failed read: PostgreSQL is told (CopyFail) and answers with an error, which
   * frees the session for the rollback. A COPY left open would hold the session, and the run, forever.
   */
  async abort(reason: unknown): Promise<void> {
    if (this.stream.destroyed) return;
    const closed = new Promise((resolve) => this.stream.once('close', resolve));
    this.stream.destroy(new Error(`reading the source failed: ${reason instanceof Error ? reason.message : String(reason)}`));
    await closed;
  }
}

/**
 * True when no text a record maps to can hold a character COPY must escape (backslash, CR, LF, tab): a
 * JSON text without a backslash decodes to strings without any (JSON has no raw control characters), and
 * the key is checked itself (an email may come from it). Such a record's cells are written as they are.
 */
export function copySafe(key: string, json: string): boolean {
  return !json.includes('\\') && !SPECIAL.test(key);
}

/** A staged record as the stage's COPY text line (exported for `npm run bench:map`). */
export function copyLine(record: StagedRecord): string {
  const m = record.mapped;
  const row = m?.row;
  const plain = m !== undefined && record.copySafe === true;
  // Built by concatenation, not arrays: this runs once per record and dominates the staging CPU time.
  let line = `${record.seq}\t${plain ? record.key : copyCell(record.key)}\t${m ? 't\t\\N' : 'f\trejected'}\t${copyCell(record.reject?.reason ?? null)}\t${copyCell(record.reject?.detail ?? null)}`;
  for (const column of USER_COLUMNS) {
    if (column === 'user_id') {
      line += `\t${plain && record.userId !== null ? record.userId : copyCell(record.userId)}`;
      continue;
    }
    const value = row?.[column];
    line += `\t${value === undefined || value === null ? '\\N' : typeof value === 'boolean' ? (value ? 't' : 'f') : plain ? value : copyCell(value)}`;
  }
  line += m ? `\t${m.sourceCredits}\t${m.topup}\t${m.digest}\n` : '\t\\N\t\\N\t\\N\n';
  return line;
}

const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
const SPECIAL = /[\\\n\r\t]/;

function copyCell(value: string | null): string {
  if (value === null) return '\\N';
  return SPECIAL.test(value) ? value.replace(/[\\\n\r\t]/g, (c) => ESCAPES[c] ?? c) : value;
}

export interface StageSummary {
  readonly scanDuplicates: number;
}

/**
 * After the scan: drops SCAN's repeated keys (keeping the first read), indexes, and marks valid records
 * whose email or user_id is claimed by another key: neither side is migrated, the operator decides.
 */
export async function finishStage(session: Session, stage: Stage, options: { readonly userIdIndex: boolean }): Promise<StageSummary> {
  const db = session.db;
  const t = sql.raw(stage.table);
  // SCAN rarely repeats a key: find the repeats with one hash aggregate, delete only those.
  const removed = await sql`
    delete from ${t} s using (
      select key, min(seq) as first from ${t} group by key having count(*) > 1
    ) d
    where s.key = d.key and s.seq > d.first`.execute(db);
  // The listing of the keys (an ordered aggregate) is built only for the duplicates, found first with a
  // plain hash aggregate: built for every group it cost more than the rest of this function together.
  await sql`
    update ${t} s set outcome = 'conflict', reason = 'duplicate_email',
      detail = 'email ' || s.email || ' is under ' || d.n || ' keys: ' || d.keys
    from (
      select email, count(*) as n,
        array_to_string((array_agg(key || ' (user_id ' || user_id || ')' order by key))[1:10], ', ') as keys
      from ${t} where valid and email in (select email from ${t} where valid group by email having count(*) > 1)
      group by email
    ) d
    where s.valid and s.email = d.email`.execute(db);
  await sql`
    update ${t} s set outcome = 'conflict', reason = 'duplicate_user_id',
      detail = 'user_id ' || s.user_id || ' is under ' || d.n || ' keys: ' || d.keys
    from (
      select user_id, count(*) as n, array_to_string((array_agg(key order by key))[1:10], ', ') as keys
      from ${t} where valid and user_id in (select user_id from ${t} where valid group by user_id having count(*) > 1)
      group by user_id
    ) d
    where s.valid and s.user_id = d.user_id and s.outcome is null`.execute(db);
  // Paged anti-joins on user_id (verify and reconcile list rows only in PostgreSQL) want this index; batches
  // walk the primary key and triage hashes, so migrate and dry-run do without it (1 µs a record).
  if (options.userIdIndex) {
    const name = stage.persistent ? userIdIndex(stage.table).replace(/^migrate_users\./, '') : 'mu_stage_user_id';
    await sql`create index if not exists ${sql.raw(name)} on ${t} (user_id)`.execute(db);
  }
  // Statistics only for what queries filter, join or group on: sampling every column cost twice as much.
  await sql`analyze ${t} (seq, valid, outcome, user_id, email)`.execute(db);
  return { scanDuplicates: Number(removed.numAffectedRows ?? 0n) };
}
