-- What migrate-users remembers of its own writes. Kept in its own schema so the Supabase API
-- (which exposes `public`) never serves it. Safe to run more than once.
create schema if not exists migrate_users;

-- One row per user the tool wrote (or found already identical): which Redis key it came from, a
-- digest of the row it wrote, and the row's updated_at right after the write. A later run compares
-- users.updated_at with row_updated_at to know whether the app has touched the row since.
create table if not exists migrate_users.ledger (
  user_id        text primary key,
  source_key     text not null,
  source_digest  text not null,
  row_updated_at timestamptz not null,
  run_id         text not null,
  written_at     timestamptz not null default now()
);

-- One row per real (not dry) run: an audit trail of who moved what, when.
create table if not exists migrate_users.runs (
  run_id      text primary key,
  command     text not null,
  started_at  timestamptz not null default now(),
  finished_at timestamptz,
  status      text not null default 'running',
  counts      jsonb
);
