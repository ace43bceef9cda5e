#!/usr/bin/env bash
# Starts a private PostgreSQL server on loopback for the test suite and
# prints its URL on stdout (everything else goes to stderr), so that
# `make test` can run the store's PostgreSQL half against a real server:
#
#   CONFAB_TEST_PG_URL="$(./scripts/postgres.sh)" cargo test -p confab-api
#
# Installs PostgreSQL with apt-get when it is missing, creates a cluster of
# its own in a private data directory (never the system's cluster), starts it
# on 127.0.0.1 only, and creates the `confab_test` role and database.
# Idempotent: when the server is already up it only checks the role and the
# database and prints the URL. PostgreSQL refuses to run as root, so under
# root the server runs as the `postgres` system user.
#
# Settings (environment): CONFAB_PG_PORT (default 55432), CONFAB_PG_DIR
# (default /var/tmp/confab-pg-$PORT), CONFAB_PG_ACTION=stop stops it.
set -euo pipefail

PORT="${CONFAB_PG_PORT:-55432}"
DIR="${CONFAB_PG_DIR:-/var/tmp/confab-pg-$PORT}"
DB=confab_test
ROLE=confab_test
# A test-only password on a loopback-only server; not a secret.
PASSWORD=confab_test

log() { echo "postgres.sh: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

find_bindir() {
  local d
  # Newest installed major version first.
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

BINDIR="$(find_bindir || true)"
if [ -z "$BINDIR" ]; then
  log "PostgreSQL not found; installing it with apt-get"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
  BINDIR="$(find_bindir)" || { log "PostgreSQL binaries not found after installing"; exit 1; }
fi

# Runs a command as the user that owns the cluster.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u postgres -- "$@"
    else
      su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

if [ "${CONFAB_PG_ACTION:-start}" = stop ]; then
  if [ -f "$DIR/postmaster.pid" ]; then
    as_owner "$BINDIR/pg_ctl" -D "$DIR" -m fast -w stop >&2
  fi
  exit 0
fi

ready() { "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" >/dev/null 2>&1; }

if ! ready; then
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    log "creating the postgres system user"
    useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
  fi
  if [ ! -f "$DIR/PG_VERSION" ]; then
    log "creating a private cluster in $DIR"
    mkdir -p "$DIR"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres: "$DIR"
    fi
    chmod 700 "$DIR"
    # trust on loopback only: this server exists for the test suite and
    # listens on 127.0.0.1 alone (listen_addresses below).
    as_owner "$BINDIR/initdb" -D "$DIR" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=trust >"$DIR.initdb.log" 2>&1 \
      || { cat "$DIR.initdb.log" >&2; exit 1; }
  fi
  log "starting PostgreSQL on 127.0.0.1:$PORT"
  # fsync=off: a throwaway test cluster, where speed matters and a crash
  # loses nothing of value.
  as_owner "$BINDIR/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c max_connections=200" \
    start >&2 || { tail -n 20 "$DIR/server.log" >&2 || true; exit 1; }
fi

psql_admin() {
  "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"
}

if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
  log "creating role $ROLE"
  psql_admin -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >&2
fi
if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  log "creating database $DB"
  psql_admin -c "CREATE DATABASE $DB OWNER $ROLE" >&2
fi

echo "postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
