-- The users table of the new app. Safe to run more than once (psql -f, Supabase SQL editor, or
-- `migrate-users schema apply`, which runs this file unchanged).
create table if not exists public.users (
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
