import { once } from 'node:events';
import { sql, type Kysely } from 'kysely';
import { from as copyFrom } from 'pg-copy-streams';
import type { Session } from '../db/database.js';
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
  /** mu_stage (TEMP), or migrate_users.stage_<run>. */
  readonly table: string;
  readonly persistent: boolean;
}

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

/** A TEMP stage (dry-run, verify), or a persistent one named after the run (writing runs). */
export async function createStage(session: Session, persistentFor?: string): Promise<Stage> {
  const table = persistentFor ? `migrate_users.stage_${persistentFor.replace(/[^a-z0-9_]/g, '')}` : STAGE_TABLE;
  await sql`
    create ${sql.raw(persistentFor ? 'unlogged' : 'temp')} table ${sql.raw(table)} (
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
    ) ${sql.raw(persistentFor ? '' : 'on commit drop')}`.execute(session.db);
  return { table, persistent: persistentFor !== undefined };
}

export async function dropStage(db: Kysely<unknown>, table: string): Promise<void> {
  if (!/^migrate_users\.stage_[a-z0-9_]+$/.test(table)) throw new Error(`refusing to drop ${table}: not a stage table`);
  await sql`drop table if exists ${sql.raw(table)}, ${sql.raw(triageTable(table))}, ${sql.raw(emailsTable(table))}`.execute(db);
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

function copyLine(record: StagedRecord): string {
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
  if (options.userIdIndex) await sql`create index on ${t} (user_id)`.execute(db);
  // Statistics only for what queries filter, join or group on: sampling every column cost twice as much.
  await sql`analyze ${t} (seq, valid, outcome, user_id, email)`.execute(db);
  return { scanDuplicates: Number(removed.numAffectedRows ?? 0n) };
}
