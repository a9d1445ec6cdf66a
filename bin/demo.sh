#!/usr/bin/env bash
# `npm run demo`: the whole operator flow on synthetic data against the local servers.
# It never uses DATABASE_URL / REDIS_URL (an operator may have production's exported): only DEMO_DATABASE_URL
# and DEMO_REDIS_URL, which default to a database of its own (migrate_users_demo) and the local Redis, where
# it writes only keys under demo:user:email:*. It refuses a server that is not on this machine unless
# DEMO_ALLOW_REMOTE=1. Safe to run again: the seed first removes what an earlier seed wrote under that pattern
# (so a smaller DEMO_USERS leaves no stale users), then writes the same users each time.
set -u
cd "$(dirname "$0")/.."
export DATABASE_URL="${DEMO_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/migrate_users_demo}"
export REDIS_URL="${DEMO_REDIS_URL:-redis://127.0.0.1:6379}"
export LOG_LEVEL="${LOG_LEVEL:-warn}"
# The seed's whitelisted users (src/seed/generate.ts DEMO_WHITELIST; test/integration/seed.test.ts checks they agree).
export WHITELIST_EMAILS="vip1@demo.test,vip2@demo.test"
MATCH='demo:user:email:*'
COUNT="${DEMO_USERS:-5000}"

host_of() { node -e 'try { const u = new URL(process.argv[1]); console.log(u.hostname.replace(/^\[|\]$/g, "")) } catch { console.log("?") }' "$1"; }
has_password() { node -e 'try { process.exit(new URL(process.argv[1]).password ? 0 : 1) } catch { process.exit(1) }' "$1"; }
is_local() { case "$1" in 127.*|localhost|::1) return 0 ;; *) return 1 ;; esac; }
for url in "$DATABASE_URL" "$REDIS_URL"; do
  host=$(host_of "$url")
  if ! is_local "$host" && [ "${DEMO_ALLOW_REMOTE:-}" != 1 ]; then
    echo "demo: refusing to write demo data to $host (not this machine); set DEMO_ALLOW_REMOTE=1 if you mean it" >&2
    exit 2
  fi
done
db_name="${DATABASE_URL##*/}"
db_name="${db_name%%\?*}"
admin_url="${DATABASE_URL%/*}/postgres"
echo "demo: PostgreSQL database \"$db_name\" on $(host_of "$DATABASE_URL"), Redis keys $MATCH on $(host_of "$REDIS_URL")"
# The clean-up names the servers this demo used (not the local defaults): by URL, or, for a URL holding a
# password, by the variable that holds it, so that no password is printed.
pg_server="'$admin_url'"
redis_server="'$REDIS_URL'"
secret=""
if has_password "$admin_url"; then pg_server='"${DEMO_DATABASE_URL%/*}/postgres"'; secret="DEMO_DATABASE_URL"; fi
if has_password "$REDIS_URL"; then redis_server='"$DEMO_REDIS_URL"'; secret="${secret:+$secret and }DEMO_REDIS_URL"; fi
echo "demo: to remove it afterwards: dropdb --maintenance-db=$pg_server '$db_name'; redis-cli -u $redis_server --scan --pattern '$MATCH' | xargs -r redis-cli -u $redis_server del"
if [ -n "$secret" ]; then echo "demo: (no password is printed: that command reads it from $secret, exported as you gave it to this demo)"; fi

# Every step is shown with its exit code. Setup steps must succeed; the migration steps exit 1 by design
# (the seed has 9 bad records), so the demo stops only at an exit code above 1.
step() {
  echo; echo "\$ $*"
  "$@"; local code=$?
  echo "(exit code $code)"
  if [ "$code" -gt "${ALLOWED:-0}" ]; then echo "demo: stopped: that step failed with exit code $code" >&2; exit "$code"; fi
}

if ! psql "$admin_url" -tAc "select 1 from pg_database where datname = '$db_name'" | grep -q 1; then
  psql "$admin_url" -qc "create database $db_name" || exit 3
fi
step node bin/migrate-users schema apply
step node bin/migrate-users seed --count "$COUNT" --match "$MATCH" --force
ALLOWED=1 step node bin/migrate-users --dry-run --match "$MATCH" --report demo-dry-run.json --rejects demo-rejects.ndjson
ALLOWED=1 step node bin/migrate-users --match "$MATCH" --report demo-report.json --rejects demo-rejects.ndjson
ALLOWED=1 step node bin/migrate-users --match "$MATCH"
ALLOWED=1 step node bin/migrate-users verify --match "$MATCH" --show 5
echo
echo "Reports: demo-dry-run.json, demo-report.json; records not migrated: demo-rejects.ndjson"
