-- What migrate-users remembers of its own writes. Kept in its own schema so the Supabase API
-- (which exposes `public`) never serves it. Safe to run more than once.
create schema if not exists migrate_users;

-- One row per user the tool wrote (or found already identical): which Redis key it came from, a
-- digest of the Redis record it wrote from, and the row's version right after the write (row_xmin, added
-- below; row_updated_at is what earlier versions compared). A later run compares the row's xmin with
-- row_xmin to know whether the app has touched the row since.
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

-- The row as the tool wrote it, as JSON text (canonical values; the password hash only as a sha256 digest),
-- so reconcile can show base / Redis / PostgreSQL per column for a user changed on both sides. Text, not
-- jsonb: building jsonb for every written row cost more than inserting the users row itself.
alter table migrate_users.ledger add column if not exists base text;
-- Set when an operator resolved a conflict in favour of PostgreSQL (`reconcile --take postgres`): the app's
-- row (or its deletion) stands until Redis changes again.
alter table migrate_users.ledger add column if not exists postgres_owns boolean not null default false;

-- Every conflict an operator resolved by choosing a side: who won, for which user, in which run.
create table if not exists migrate_users.resolutions (
  id            bigint generated always as identity primary key,
  user_id       text not null,
  side          text not null check (side in ('redis', 'postgres')),
  reason        text not null,
  run_id        text not null,
  resolved_at   timestamptz not null default now(),
  redis_digest  text not null
);

-- Resume after a crash or an interrupt: a writing run stages Redis into an UNLOGGED table of its own
-- (stage_table) and records how many records it holds once complete (stage_rows), what configuration
-- produced it (config_digest), and the last batch committed (last_seq). The next run with the same
-- configuration continues from there instead of reading Redis again. Correctness never depends on it.
alter table migrate_users.runs add column if not exists stage_table text;
alter table migrate_users.runs add column if not exists stage_rows bigint;
alter table migrate_users.runs add column if not exists last_seq bigint;
alter table migrate_users.runs add column if not exists config_digest text;
alter table migrate_users.runs add column if not exists resumed_from text;

-- The write guard. PostgreSQL gives every row version a new xmin (the writing transaction's id), whatever
-- triggers or column types the app's table has: a row whose xmin is still the one the tool's write returned
-- is a row nobody has written since. (xmin is a 32-bit id: only ever compared for equality.) row_updated_at
-- is no longer written: updated_at depends on the app's trigger, which may be missing or fire on UPDATE only.
alter table migrate_users.ledger add column if not exists row_xmin xid;
alter table migrate_users.ledger alter column row_updated_at drop not null;
-- The whitelist credits this user was granted (null: never topped up). A top-up is granted once: later runs
-- keep it whatever their own whitelist says.
alter table migrate_users.ledger add column if not exists granted_credits bigint;

-- Which source a run read (a resume continues only a stage read from the same source), the whitelist it
-- used, and the counts and credit sums of every record decided up to its checkpoint (a resumed run reports
-- the whole job).
alter table migrate_users.runs add column if not exists source jsonb;
alter table migrate_users.runs add column if not exists whitelist jsonb;
alter table migrate_users.runs add column if not exists job_tally jsonb;

-- One row per merge (`reconcile --apply --merge`): an old user who signed in to the new app before the
-- migration reached them got a fresh row there; their Redis account was merged into it. old_user_id ->
-- user_id is the map other tables need to re-key the old user_id. Both balances before, the bonus withheld,
-- the result. The ledger entry of user_id names the Redis key and carries merged_from.
create table if not exists migrate_users.merges (
  old_user_id        text primary key,
  user_id            text not null,
  redis_key          text not null,
  redis_credits      bigint not null,
  redis_used         bigint not null,
  postgres_credits   bigint not null,
  postgres_used      bigint not null,
  bonus_withheld     bigint not null,
  merged_credits     bigint not null,
  merged_used        bigint not null,
  run_id             text not null,
  merged_at          timestamptz not null default now()
);
create index if not exists merges_user_id on migrate_users.merges (user_id);
alter table migrate_users.ledger add column if not exists merged_from text;

-- The money columns as the tool's write left them. A row counts as untouched since the tool wrote it only
-- when its xmin AND these still match: xids are reused (after wraparound, or in a cluster restored from a
-- dump), and a reused xid must never let a catch-up overwrite a balance the app changed.
alter table migrate_users.ledger add column if not exists row_credits bigint;
alter table migrate_users.ledger add column if not exists row_used bigint;

-- The Redis side's own balance (before the whitelist rule) and credits used when the tool last wrote the user:
-- what `reconcile --combine` and a merge-aware `--take redis` measure the old app's change by (Redis now minus
-- this), so a change made on both sides is added up, and a top-up or a merge is never granted twice.
alter table migrate_users.ledger add column if not exists source_credits bigint;
alter table migrate_users.ledger add column if not exists source_used bigint;
