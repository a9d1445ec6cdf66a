-- The users table of the new app. Safe to run more than once (psql -f, Supabase SQL editor, or
-- `migrate-users schema apply`, which runs this file unchanged).
do $$
begin
  if to_regclass('public.users') is null then
    create table public.users (
      user_id              text primary key,
      email                text not null,
      username             text,
      avatar               text,
      password_hash        text,
      current_credits      bigint not null default 0,
      total_credits_used   bigint not null default 0,
      signup_bonus_granted boolean not null default false,
      current_plan_id      text,
      plan_renew_at        timestamptz,
      -- Nullable: some old records carry no creation time, and inventing one would be a lie.
      created_at           timestamptz default now(),
      last_login           timestamptz,
      updated_at           timestamptz not null default now(),
      constraint users_email_key unique (email),
      constraint users_current_credits_check check (current_credits >= 0),
      constraint users_total_credits_used_check check (total_credits_used >= 0)
    );
    -- On Supabase every new table in public is granted ALL to the roles of the public API (anon,
    -- authenticated) by the database's default privileges: without row level security anyone holding the
    -- project's anon key could read every password hash and add credits. Where the new table is granted to any
    -- role but its owner, RLS is enabled with no policy (those roles see nothing until the app team adds its
    -- own). An existing table is never altered.
    if exists (select 1 from pg_class c, aclexplode(c.relacl) a where c.oid = 'public.users'::regclass and a.grantee <> c.relowner) then
      alter table public.users enable row level security;
    end if;
  end if;
end
$$;

create or replace function public.users_set_updated_at() returns trigger
language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end;
$$;

-- Every write, by the app or by the migration, moves updated_at: the migration's "has the app
-- changed this row since I wrote it" check depends on it.
create or replace trigger users_set_updated_at
  before insert or update on public.users
  for each row execute function public.users_set_updated_at();
