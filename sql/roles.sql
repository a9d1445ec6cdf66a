-- Least-privilege roles for migrate-users. Run once per database, after the schema files, as the owner
-- (psql -f sql/roles.sql, or paste into the Supabase SQL editor). Safe to run again.
--
-- They are NOLOGIN group roles; give them to login roles of your own, for example:
--   create role migrate_runner login password '...' in role migrate_users_writer;
--   create role migrate_checker login password '...' in role migrate_users_reader;
-- (on Supabase, connect through the pooler in session mode as <role>.<project-ref>).

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'migrate_users_reader') then
    create role migrate_users_reader nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'migrate_users_writer') then
    create role migrate_users_writer nologin;
  end if;
end
$$;

-- dry-run, verify, reconcile without --apply: read both tables; TEMP for the run's own stage.
grant usage on schema public, migrate_users to migrate_users_reader;
grant select on public.users, migrate_users.ledger, migrate_users.runs, migrate_users.merges to migrate_users_reader;
do $$ begin execute format('grant temporary on database %I to migrate_users_reader', current_database()); end $$;

-- migrate, reconcile --apply: everything the reader has, plus writing users and the bookkeeping, and
-- creating (and dropping) the run's stage table in migrate_users.
grant migrate_users_reader to migrate_users_writer;
grant select, insert, update on public.users to migrate_users_writer;
grant select, insert, update on migrate_users.ledger, migrate_users.runs, migrate_users.resolutions, migrate_users.merges to migrate_users_writer;
grant create on schema migrate_users to migrate_users_writer;
