import type pg from 'pg';
import { UsageError } from '../errors.js';
import { USER_COLUMNS, type UserColumn } from '../map/user-row.js';

/**
 * What the tool knows about the table it writes: `public.users` as the catalog describes it, whoever created
 * it (the app team's DDL, or sql/001_users.sql). The mapper takes its limits from here, the writer relies on
 * the checks made here, and `schema check` prints it: one truth about the target.
 */
export interface TargetColumn {
  readonly name: string;
  /** As PostgreSQL prints it: `character varying(100)`, `integer`, `timestamp without time zone`. */
  readonly type: string;
  /** varchar(n) / char(n): n characters; null for no limit. */
  readonly maxLength: number | null;
  readonly notNull: boolean;
  readonly default: string | null;
}

export interface Target {
  readonly columns: ReadonlyMap<string, TargetColumn>;
  readonly checks: readonly { readonly name: string; readonly definition: string }[];
  readonly uniques: readonly { readonly name: string; readonly columns: readonly string[] }[];
  readonly triggers: readonly { readonly name: string; readonly definition: string }[];
  /** Row level security and who else can read or write the table, as the connected role sees it. */
  readonly access: TargetAccess;
  /** The connected role's timeouts (see timeoutNotes). */
  readonly timeouts: RoleTimeouts;
  /** Why the tool cannot write this table (empty when it can). */
  readonly problems: readonly string[];
  /** Differences that matter but do not stop the tool. */
  readonly notes: readonly string[];
}

export interface TargetAccess {
  /** The connected role (current_user). */
  readonly role: string;
  readonly owner: string;
  readonly rls: boolean;
  readonly forced: boolean;
  /** Why the role sees every row whatever the policies (null: it does not). */
  readonly bypass: 'superuser' | 'bypassrls' | 'owner' | null;
  /** The role may write the table (INSERT or UPDATE granted): it needs every row for writing too. */
  readonly writes: boolean;
  /** Commands for which the policies do not give the role every row (under RLS, without a bypass). */
  readonly blinded: readonly string[];
  /** Roles other than the owner (and superusers) granted privileges on the table. */
  readonly grantees: readonly string[];
}

/** As `current_setting` prints them ('0' when unset): what the role or database sets for every session. */
export interface RoleTimeouts {
  readonly statement_timeout: string;
  readonly lock_timeout: string;
  readonly idle_in_transaction_session_timeout: string;
}

/** The largest value each column can hold, as the mapper checks it before anything is written. */
export interface ColumnLimits {
  /** Characters, for text columns with a length limit. */
  readonly length: Readonly<Partial<Record<UserColumn, number>>>;
  /** Columns the tool may leave null that the table declares NOT NULL. */
  readonly required?: readonly UserColumn[];
  /** For credit columns narrower than the tool's own bound. */
  readonly max: Readonly<Partial<Record<UserColumn, bigint>>>;
}

const TEXT_TYPES = /^(text|character varying(\(\d+\))?|varchar(\(\d+\))?|citext)$/;
const WHAT: Readonly<Record<UserColumn, { readonly kind: 'text' | 'integer' | 'boolean' | 'timestamp'; readonly what: string }>> = {
  user_id: { kind: 'text', what: "the old app's user_id (up to 128 characters)" },
  email: { kind: 'text', what: 'the normalised email (up to 254 characters)' },
  username: { kind: 'text', what: 'text or null' },
  avatar: { kind: 'text', what: 'text or null' },
  password_hash: { kind: 'text', what: 'text or null (the hash as Redis holds it)' },
  current_credits: { kind: 'integer', what: 'whole credits, 0 to 2,147,483,647' },
  total_credits_used: { kind: 'integer', what: 'whole credits, 0 to 2,147,483,647' },
  signup_bonus_granted: { kind: 'boolean', what: 'always true' },
  current_plan_id: { kind: 'text', what: 'text or null' },
  plan_renew_at: { kind: 'timestamp', what: 'a timestamp or null (microseconds, UTC)' },
  created_at: { kind: 'timestamp', what: 'a timestamp or null (microseconds, UTC)' },
  last_login: { kind: 'timestamp', what: 'a timestamp or null (microseconds, UTC)' },
};
const INTEGER_MAX: Readonly<Record<string, bigint>> = { smallint: 32_767n, integer: 2_147_483_647n, bigint: 9_223_372_036_854_775_807n };
const NULLABLE: ReadonlySet<UserColumn> = new Set(['username', 'avatar', 'password_hash', 'current_plan_id', 'plan_renew_at', 'created_at', 'last_login']);

/**
 * Reads `public.users` from the catalog. Fails (exit 2) when there is no such table, or (unless `ledger` is
 * false: `schema check` before `schema apply`) no bookkeeping schema.
 */
export async function readTarget(pool: Pick<pg.Pool, 'query'>, { ledger = true } = {}): Promise<Target> {
  const { rows: found } = await pool.query<{ oid: number | null; ledger: string | null; current: boolean; db: string }>(
    `select to_regclass('public.users')::oid::int as oid, to_regclass('migrate_users.ledger')::text as ledger, current_database() as db,
       exists (select 1 from pg_attribute where attrelid = to_regclass('migrate_users.ledger') and attname = 'source_used' and not attisdropped) as current`,
  );
  const oid = found[0]?.oid ?? null;
  const missing = [oid === null && 'public.users', ledger && !found[0]?.ledger && 'migrate_users.ledger'].filter(Boolean);
  if (missing.length > 0) {
    throw new UsageError(`table ${missing.join(' and ')} not found in database "${found[0]?.db ?? '?'}": run \`migrate-users schema apply\` first`);
  }
  if (ledger && !found[0]?.current) {
    throw new UsageError(
      'the bookkeeping schema migrate_users is older than this version: run `migrate-users schema apply` (it only adds columns, and never alters public.users)',
    );
  }
  const [columns, checks, uniques, triggers] = await Promise.all([
    pool.query<{ name: string; type: string; typmod: number; not_null: boolean; default: string | null }>(
      `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type, a.atttypmod as typmod, a.attnotnull as not_null,
         pg_get_expr(d.adbin, d.adrelid) as default
       from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
       where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped and a.attgenerated = '' order by a.attnum`,
      [oid],
    ),
    pool.query<{ name: string; definition: string }>(
      `select conname as name, pg_get_constraintdef(oid) as definition from pg_constraint where conrelid = $1 and contype = 'c' order by 1`,
      [oid],
    ),
    pool.query<{ name: string; columns: string[] }>(
      `select c.relname as name, array(select a.attname::text from unnest(i.indkey) k join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k) as columns
       from pg_index i join pg_class c on c.oid = i.indexrelid
       where i.indrelid = $1 and i.indisunique and i.indpred is null and i.indexprs is null order by 1`,
      [oid],
    ),
    pool.query<{ name: string; definition: string }>(
      `select tgname as name, pg_get_triggerdef(oid) as definition from pg_trigger where tgrelid = $1 and not tgisinternal order by 1`,
      [oid],
    ),
  ]);
  const byName = new Map<string, TargetColumn>(
    columns.rows.map((c) => [
      c.name,
      { name: c.name, type: c.type, maxLength: /^(character varying|character)\(/.test(c.type) ? c.typmod - 4 : null, notNull: c.not_null, default: c.default },
    ]),
  );
  const uniqueList = uniques.rows.map((u) => ({ name: u.name, columns: u.columns }));
  const [access, timeouts] = await Promise.all([readAccess(pool, oid as number), readTimeouts(pool)]);
  const assessed = assess(byName, uniqueList);
  return {
    columns: byName,
    checks: checks.rows,
    uniques: uniqueList,
    triggers: triggers.rows,
    access,
    timeouts,
    problems: [...assessed.problems, ...accessProblems(access)],
    notes: [...assessed.notes, ...accessNotes(access), ...timeoutNotes(access.role, timeouts)],
  };
}

async function readTimeouts(pool: Pick<pg.Pool, 'query'>): Promise<RoleTimeouts> {
  const { rows } = await pool.query<RoleTimeouts>(
    `select current_setting('statement_timeout') as statement_timeout, current_setting('lock_timeout') as lock_timeout,
       current_setting('idle_in_transaction_session_timeout') as idle_in_transaction_session_timeout`,
  );
  const t = rows[0];
  if (!t) throw new Error('reading the role timeouts: no row');
  return t;
}

/**
 * A role's timeouts are meant for the app's queries (Supabase sets 3 s / 8 s on its API roles): the tool lifts
 * them with SET LOCAL in each transaction it opens, which every pooler allows, so they never end a run; only
 * a batch keeps statement_timeout, and is split into smaller batches when it hits it.
 */
function timeoutNotes(role: string, timeouts: RoleTimeouts): string[] {
  const set = (Object.entries(timeouts) as [string, string][]).filter(([, value]) => value !== '0');
  if (set.length === 0) return [];
  return [
    `role ${role} has ${set.map(([name, value]) => `${name} = ${value}`).join(', ')}: meant for the app's queries. ` +
      'The tool lifts lock_timeout and idle_in_transaction_session_timeout (SET LOCAL) in every transaction it opens, and statement_timeout ' +
      'for its stage-wide statements; a batch that hits statement_timeout is split into smaller batches',
  ];
}

/**
 * Row level security as it applies to the connected role (PostgreSQL's own rule: a superuser, a BYPASSRLS role
 * and the table's owner, unless RLS is forced, see every row; anyone else only the rows a permissive policy with
 * `true` and no restrictive one gives for each command). A role that sees no row would take every user for
 * missing, so this is read before any work.
 */
async function readAccess(pool: Pick<pg.Pool, 'query'>, oid: number): Promise<TargetAccess> {
  const { rows } = await pool.query<{
    role: string;
    owner: string;
    rls: boolean;
    forced: boolean;
    superuser: boolean;
    bypassrls: boolean;
    owns: boolean;
    writes: boolean;
    grantees: string[];
  }>(
    `select current_user as role, pg_get_userbyid(c.relowner) as owner, c.relrowsecurity as rls, c.relforcerowsecurity as forced,
       r.rolsuper as superuser, r.rolbypassrls as bypassrls, pg_has_role(current_user, c.relowner, 'USAGE') as owns,
       has_table_privilege(c.oid, 'INSERT') or has_table_privilege(c.oid, 'UPDATE') as writes,
       array(select distinct case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee)::text end
             from aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
             left join pg_roles g on g.oid = a.grantee
             where a.grantee <> c.relowner and not coalesce(g.rolsuper, false) order by 1)::text[] as grantees
     from pg_class c join pg_roles r on r.rolname = current_user where c.oid = $1`,
    [oid],
  );
  const a = rows[0];
  if (!a) throw new Error('reading row level security of public.users: no row');
  const bypass = a.superuser ? 'superuser' : a.bypassrls ? 'bypassrls' : a.owns && !a.forced ? 'owner' : null;
  let blinded: string[] = [];
  if (a.rls && bypass === null) {
    const { rows: policies } = await pool.query<{ cmd: string; permissive: string; qual: string | null; with_check: string | null; applies: boolean }>(
      `select p.cmd, p.permissive, p.qual, p.with_check,
         exists (select 1 from unnest(p.roles) x where x = 'public' or pg_has_role(current_user, x, 'USAGE')) as applies
       from pg_policies p where p.schemaname = 'public' and p.tablename = 'users'`,
    );
    const mine = policies.filter((p) => p.applies);
    const every = (cmd: 'SELECT' | 'INSERT' | 'UPDATE') => {
      const forCmd = mine.filter((p) => p.cmd === cmd || p.cmd === 'ALL');
      const all = (text: string | null) => text === 'true';
      const grants = forCmd.some(
        (p) =>
          p.permissive === 'PERMISSIVE' &&
          (cmd === 'INSERT' ? all(p.with_check ?? p.qual) : all(p.qual) && (cmd === 'SELECT' || p.with_check === null || all(p.with_check))),
      );
      const narrowed = forCmd.some((p) => p.permissive === 'RESTRICTIVE' && !(all(p.qual ?? 'true') && all(p.with_check ?? 'true')));
      return grants && !narrowed;
    };
    blinded = (a.writes ? (['SELECT', 'INSERT', 'UPDATE'] as const) : (['SELECT'] as const)).filter((cmd) => !every(cmd));
  }
  return { role: a.role, owner: a.owner, rls: a.rls, forced: a.forced, bypass, writes: a.writes, blinded, grantees: a.grantees };
}

function accessProblems(a: TargetAccess): string[] {
  if (a.blinded.length === 0) return [];
  return [
    `row level security is ${a.forced ? 'forced' : 'enabled'} on public.users and role ${a.role} does not bypass it: its policies do not give it ` +
      `every row for ${a.blinded.join(', ')}, so the tool would take the users it cannot see for missing and the rows it cannot write for the app's. ` +
      `Connect as the table's owner (${a.owner}; on Supabase the project's postgres role, through the pooler), or give ${a.role} BYPASSRLS ` +
      `(\`alter role ${a.role} bypassrls\`, which Supabase lets its postgres role grant); membership in service_role is not enough: role attributes are not inherited`,
  ];
}

function accessNotes(a: TargetAccess): string[] {
  if (a.rls || a.grantees.length === 0) return [];
  return [
    `public.users has no row level security and roles other than its owner may use it (${a.grantees.join(', ')}): it holds every password hash. ` +
      "On Supabase anon and authenticated are the public API: `alter table public.users enable row level security` (and policies of the app team's)",
  ];
}

/** What stops the tool, and what an operator should know, about a table. */
function assess(columns: ReadonlyMap<string, TargetColumn>, uniques: Target['uniques']): { problems: string[]; notes: string[] } {
  const problems: string[] = [];
  const notes: string[] = [];
  for (const name of USER_COLUMNS) {
    const column = columns.get(name);
    const need = WHAT[name];
    if (!column) {
      problems.push(`column ${name} is missing (the tool writes ${need.what})`);
      continue;
    }
    if (!typeFits(need.kind, column.type)) problems.push(`column ${name} is ${column.type}, which cannot hold ${need.what}`);
    if (column.notNull && NULLABLE.has(name)) notes.push(`column ${name} is NOT NULL: records without a ${name} are rejected (value_missing)`);
    if (!column.notNull && need.kind === 'integer') notes.push(`column ${name} is nullable: a NULL the app writes there is counted as 0`);
    if (column.maxLength !== null && column.maxLength < 254 && (name === 'email' || name === 'user_id')) {
      notes.push(`column ${name} is ${column.type}: longer values are rejected (value_too_long)`);
    }
  }
  for (const column of columns.values()) {
    if (!(USER_COLUMNS as readonly string[]).includes(column.name) && column.notNull && column.default === null) {
      problems.push(`column ${column.name} is NOT NULL without a default, and the tool does not fill it`);
    }
  }
  if (!uniques.some((u) => u.columns.length === 1 && u.columns[0] === 'user_id')) problems.push('user_id has no primary key or unique index');
  if (!uniques.some((u) => u.columns.length === 1 && u.columns[0] === 'email')) {
    notes.push("email has no unique index: an email the new app signs up during a run is found by the tool's checks, not by PostgreSQL");
  }
  return { problems, notes };
}

function typeFits(kind: 'text' | 'integer' | 'boolean' | 'timestamp', type: string): boolean {
  switch (kind) {
    case 'text':
      return TEXT_TYPES.test(type);
    case 'integer':
      return type in INTEGER_MAX || /^numeric(\(\d+(,0)?\))?$/.test(type);
    case 'boolean':
      return type === 'boolean';
    case 'timestamp':
      return /^timestamp(\(\d\))? with(out)? time zone$/.test(type);
  }
}

/** The limits the mapper checks, so a value the column cannot hold is a reject, never a failed batch. */
export function columnLimits(target: Target): ColumnLimits {
  const length: Partial<Record<UserColumn, number>> = {};
  const max: Partial<Record<UserColumn, bigint>> = {};
  const required: UserColumn[] = [];
  for (const name of USER_COLUMNS) {
    const column = target.columns.get(name);
    if (!column) continue;
    if (column.notNull && NULLABLE.has(name)) required.push(name);
    if (column.maxLength !== null) length[name] = column.maxLength;
    const numeric = /^numeric\((\d+)(?:,0)?\)$/.exec(column.type);
    const bound = INTEGER_MAX[column.type] ?? (numeric ? 10n ** BigInt(numeric[1] ?? '0') - 1n : undefined);
    if (bound !== undefined && bound < 2_147_483_647n) max[name] = bound;
  }
  return { length, max, required };
}

/** Stops every command at once (exit 2) when the table cannot hold what the tool writes. */
export function assertWritable(target: Target): void {
  const blind = accessProblems(target.access);
  const shape = target.problems.filter((p) => !blind.includes(p));
  if (shape.length > 0) {
    throw new UsageError(`public.users cannot hold what migrate-users writes: ${shape.join('; ')} (see \`migrate-users schema check\`)`);
  }
  // Everything else pre-flight found about the role, so one refusal names all there is to fix or know.
  if (blind.length > 0) throw new UsageError([...blind, ...timeoutNotes(target.access.role, target.timeouts)].join('; '));
}

/** `schema check`: the table as it is, beside what the tool needs, in plain words. */
export function describeTarget(target: Target): string {
  const rows: [string, string, string][] = [['column', 'in PostgreSQL', 'the tool writes']];
  for (const name of USER_COLUMNS) {
    const column = target.columns.get(name);
    const flags = column ? `${column.type}${column.notNull ? ' not null' : ''}${column.default ? ` default ${column.default}` : ''}` : 'MISSING';
    rows.push([name, flags, WHAT[name].what]);
  }
  for (const column of target.columns.values()) {
    if ((USER_COLUMNS as readonly string[]).includes(column.name)) continue;
    const flags = `${column.type}${column.notNull ? ' not null' : ''}${column.default ? ` default ${column.default}` : ''}`;
    rows.push([
      column.name,
      flags,
      column.notNull && column.default === null ? 'nothing: NOT NULL without default stops the tool' : 'nothing (left to its default)',
    ]);
  }
  const widths = [0, 1].map((i) => Math.max(...rows.map((r) => r[i]?.length ?? 0)));
  const table = rows.map((r) => `  ${r[0].padEnd(widths[0] ?? 0)}  ${r[1].padEnd(widths[1] ?? 0)}  ${r[2]}`.trimEnd());
  const list = (title: string, items: readonly string[]) => (items.length > 0 ? ['', `  ${title}:`, ...items.map((i) => `    ${i}`)] : []);
  return [
    target.problems.length === 0
      ? 'public.users can hold what migrate-users writes.'
      : target.problems.length === accessProblems(target.access).length
        ? `public.users can hold what migrate-users writes, but role ${target.access.role} cannot use it:`
        : 'public.users CANNOT hold what migrate-users writes:',
    ...target.problems.map((p) => `  - ${p}`),
    '',
    ...table,
    ...list(
      'unique indexes',
      target.uniques.map((u) => `${u.name} (${u.columns.join(', ')})`),
    ),
    ...list(
      'check constraints (a row they refuse is reported as refused_by_database)',
      target.checks.map((c) => `${c.name}: ${c.definition}`),
    ),
    ...list(
      'triggers (the tool needs none: it recognises its own rows by their row version, xmin)',
      target.triggers.map((t) => t.definition),
    ),
    ...list('notes', target.notes),
    '',
  ].join('\n');
}
