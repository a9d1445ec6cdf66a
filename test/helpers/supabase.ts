import pg from 'pg';
import { adminQuery, databaseUrl, uniqueName } from './servers.js';

/**
 * A database that looks, to a tool connecting to it, the way a Supabase project's does (the facts of
 * shared/supabase/README.md, from supabase/postgres's init scripts and Supabase's docs):
 * - `owner`: the project's `postgres` role: LOGIN, CREATEDB, CREATEROLE, BYPASSRLS, not a superuser; owns the
 *   database and what it creates;
 * - `anon`, `authenticated` (NOLOGIN, statement_timeout 3 s / 8 s) and `serviceRole` (NOLOGIN, BYPASSRLS): every
 *   table the owner creates in `public` is granted ALL to the three (the public API);
 * - `auth.uid()` reads the request's JWT claim: NULL on a plain connection;
 * - the event triggers that send PostgREST `NOTIFY pgrst, 'reload schema'` on DDL, with the filters of Supabase's
 *   (supabase/postgres migration 20260923021047): CREATE/ALTER TABLE and the like, and drops, outside pg_temp.
 * Every role name carries a suffix of its own, so tests run side by side.
 */
export interface SupabaseLike {
  readonly name: string;
  readonly owner: string;
  readonly anon: string;
  readonly authenticated: string;
  readonly serviceRole: string;
  /** The database URL as `role` (trust auth). */
  urlAs(role: string): string;
  /** As a superuser (the test's own view). */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[]): Promise<R[]>;
  /** A login role of the test's, dropped with the database. */
  loginRole(prefix: string, attributes?: string): Promise<string>;
  /** The privileges sql/roles.sql gives its reader (or writer) group, given to `role` directly. */
  grantTool(role: string, kind: 'reader' | 'writer'): Promise<void>;
  drop(): Promise<void>;
}

export async function createSupabaseLike(): Promise<SupabaseLike> {
  const suffix = uniqueName('sb');
  const name = `mu_${suffix}`;
  const [owner, anon, authenticated, serviceRole] = ['owner', 'anon', 'authenticated', 'service_role'].map((r) => `${r}_${suffix}`) as [
    string,
    string,
    string,
    string,
  ];
  const roles = [owner, anon, authenticated, serviceRole];
  await adminQuery(`
    create role ${owner} login nosuperuser createdb createrole bypassrls;
    create role ${anon} nologin;
    create role ${authenticated} nologin;
    create role ${serviceRole} nologin bypassrls;
    alter role ${anon} set statement_timeout = '3s';
    alter role ${authenticated} set statement_timeout = '8s';
    grant ${anon}, ${authenticated}, ${serviceRole} to ${owner} with admin option`);
  await adminQuery(`create database ${name} owner ${owner}`);
  const pool = new pg.Pool({ connectionString: databaseUrl(name), max: 2 });
  pool.on('error', () => undefined);
  const query = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => (await pool.query<R>(text, values)).rows;
  await query(`
    grant usage on schema public to ${anon}, ${authenticated}, ${serviceRole};
    alter default privileges for role ${owner} in schema public grant all on tables to ${anon}, ${authenticated}, ${serviceRole};
    create schema auth authorization ${owner};
    create function auth.uid() returns text language sql stable as $$ select nullif(current_setting('request.jwt.claim.sub', true), '') $$;
    grant usage on schema auth to ${anon}, ${authenticated}, ${serviceRole};
    create function public.pgrst_ddl_watch_${suffix}() returns event_trigger language plpgsql as $$
    declare cmd record;
    begin
      for cmd in select * from pg_event_trigger_ddl_commands() loop
        if cmd.command_tag in ('CREATE SCHEMA', 'ALTER SCHEMA', 'CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE',
            'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'CREATE VIEW', 'ALTER VIEW', 'CREATE MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW',
            'CREATE FUNCTION', 'ALTER FUNCTION', 'CREATE TYPE', 'ALTER TYPE', 'CREATE RULE', 'COMMENT')
          and coalesce(cmd.schema_name, '') not in ('pg_temp', 'auth')
          or (cmd.command_tag = 'CREATE TRIGGER' and cmd.object_identity not like '% pg\\_temp.%') then
          notify pgrst, 'reload schema';
        end if;
      end loop;
    end $$;
    create function public.pgrst_drop_watch_${suffix}() returns event_trigger language plpgsql as $$
    declare obj record;
    begin
      for obj in select * from pg_event_trigger_dropped_objects() loop
        if obj.object_type in ('schema', 'table', 'foreign table', 'view', 'materialized view', 'function', 'type', 'rule')
          and obj.is_temporary is false and coalesce(obj.schema_name, '') not in ('auth') then
          notify pgrst, 'reload schema';
        end if;
      end loop;
    end $$;
    create event trigger pgrst_ddl_watch_${suffix} on ddl_command_end execute procedure public.pgrst_ddl_watch_${suffix}();
    create event trigger pgrst_drop_watch_${suffix} on sql_drop execute procedure public.pgrst_drop_watch_${suffix}()`);
  const urlAs = (role: string) => {
    const url = new URL(databaseUrl(name));
    url.username = role;
    return url.toString();
  };
  return {
    name,
    owner,
    anon,
    authenticated,
    serviceRole,
    urlAs,
    query,
    loginRole: async (prefix, attributes = '') => {
      const role = `${prefix}_${suffix}`;
      await adminQuery(`create role ${role} login ${attributes}`);
      roles.push(role);
      return role;
    },
    grantTool: async (role, kind) => {
      await query(`grant usage on schema public, migrate_users to ${role};
        grant select on public.users, migrate_users.ledger, migrate_users.runs, migrate_users.merges to ${role};
        grant temporary on database ${name} to ${role}`);
      if (kind === 'writer') {
        await query(`grant select, insert, update on public.users to ${role};
          grant select, insert, update on migrate_users.ledger, migrate_users.runs, migrate_users.resolutions, migrate_users.merges to ${role};
          grant create on schema migrate_users to ${role}`);
      }
    },
    drop: async () => {
      await pool.end();
      await adminQuery(`drop database if exists ${name} with (force)`);
      for (const role of roles.reverse()) await adminQuery(`drop role if exists ${role}`);
    },
  };
}
