#!/usr/bin/env bash
# The official postgres image's entrypoint interface, for the stand-in: on the first start
# (no PG_VERSION in PGDATA) initdb with POSTGRES_USER (default postgres) and POSTGRES_PASSWORD
# (or POSTGRES_PASSWORD_FILE; required unless POSTGRES_HOST_AUTH_METHOD=trust), password
# authentication (scram-sha-256) for every network client, POSTGRES_DB created (default: the
# user's name), /docker-entrypoint-initdb.d/*.sql and *.sh run on a server that listens on the
# Unix socket only; then `exec postgres`, listening on every interface. Run as root it gives
# PGDATA to postgres and drops to it; run as postgres (compose's `user:`) it needs no
# capability at all.
set -Eeuo pipefail

say() { printf '%s [entrypoint] %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

# POSTGRES_X or the content of the file POSTGRES_X_FILE names (not both).
file_env() {
  local var="$1" file="${1}_FILE" default="${2:-}"
  if [[ -n "${!var:-}" && -n "${!file:-}" ]]; then
    say "error: both $var and $file are set (but are exclusive)"; exit 1
  fi
  local value="$default"
  if [[ -n "${!var:-}" ]]; then value="${!var}"; elif [[ -n "${!file:-}" ]]; then value="$(<"${!file}")"; fi
  export "$var"="$value"
  unset "$file"
}

# `docker run image -c shared_buffers=32MB` means postgres with those options.
if [[ "${1:0:1}" == "-" ]]; then set -- postgres "$@"; fi
if [[ "$1" != "postgres" ]]; then exec "$@"; fi
# postgres --version / -V / --help / --describe-config: no database needed
for arg in "${@:2}"; do
  case "$arg" in -'?'|--help|--describe-config|-V|--version) exec "$@" ;; esac
done

if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA"
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
export POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  if [[ -z "$POSTGRES_PASSWORD" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
    say "error: the database is uninitialized and no superuser password is set:"
    say "  set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE)"
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  say "initdb in $PGDATA for user $POSTGRES_USER"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" \
    ${POSTGRES_INITDB_ARGS:-} >/dev/null
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
  # The setup server: Unix socket only, so no client sees a half-made database.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" >/dev/null <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) say "running $f"; . "$f" ;;
      *.sql) say "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" >/dev/null ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  say "PostgreSQL init process complete; ready for start up"
fi

exec "$@"
