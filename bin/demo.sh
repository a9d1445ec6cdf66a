#!/usr/bin/env bash
# `npm run demo`: the whole operator flow on synthetic data against the local servers.
# Uses its own database (migrate_users_demo) and its own Redis keys (demo:user:email:*), so it never
# touches anything else; safe to run again (the seed writes the same users each time).
set -u
cd "$(dirname "$0")/.."
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/migrate_users_demo}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export LOG_LEVEL="${LOG_LEVEL:-warn}"
export WHITELIST_EMAILS="${WHITELIST_EMAILS:-vip1@demo.test,vip2@demo.test}"
MATCH='demo:user:email:*'
COUNT="${DEMO_USERS:-5000}"
run() { echo; echo "\$ $*"; "$@"; echo "(exit code $?)"; }

db_name="${DATABASE_URL##*/}"
admin_url="${DATABASE_URL%/*}/postgres"
if ! psql "$admin_url" -tAc "select 1 from pg_database where datname = '$db_name'" | grep -q 1; then
  psql "$admin_url" -qc "create database $db_name" || exit 3
fi
run node bin/migrate-users schema apply || exit $?
run node bin/migrate-users seed --count "$COUNT" --match "$MATCH" --force || exit $?
run node bin/migrate-users --dry-run --match "$MATCH" --report demo-dry-run.json --rejects demo-rejects.ndjson
run node bin/migrate-users --match "$MATCH" --report demo-report.json --rejects demo-rejects.ndjson
run node bin/migrate-users --match "$MATCH"
run node bin/migrate-users verify --match "$MATCH" --show 5
echo
echo "Reports: demo-dry-run.json, demo-report.json; records not migrated: demo-rejects.ndjson"
