/**
 * The app team's own `public.users`, as BRIEF.md describes it: varchar limits, integer credits, `timestamp
 * without time zone`, and an updated_at trigger on UPDATE only, or none. The benchmark measures the tool on
 * it beside the table sql/001_users.sql ships, and the target-table tests run every command against it.
 */
export function appTeamUsersDdl({ trigger }: { readonly trigger: boolean }): string {
  return `
    create table public.users (
      user_id              varchar(64) primary key,
      email                varchar(255) unique not null,
      username             varchar(100),
      avatar               text,
      password_hash        varchar(255),
      current_credits      integer default 100,
      total_credits_used   integer default 0,
      signup_bonus_granted boolean default false,
      current_plan_id      varchar(50),
      plan_renew_at        timestamp without time zone,
      created_at           timestamp without time zone default now(),
      last_login           timestamp without time zone,
      updated_at           timestamp not null default now()
    );
    ${
      trigger
        ? `create function public.app_touch_updated_at() returns trigger language plpgsql as $$
           begin new.updated_at := now(); return new; end $$;
           create trigger app_touch_updated_at before update on public.users
             for each row execute function public.app_touch_updated_at();`
        : ''
    }`;
}
