#!/bin/bash
# Entrypoint of mlops-postgres: the environment contract of the official `postgres` image, so the
# chart (and a user) can switch between the two without changing anything else.
#
#   POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE   required when PGDATA is empty
#   POSTGRES_USER                                 superuser created by initdb (default postgres)
#   POSTGRES_DB                                   database created for it (default: POSTGRES_USER)
#   POSTGRES_INITDB_ARGS                          extra initdb arguments, e.g. "--data-checksums"
#   PGDATA                                        data directory (default /var/lib/postgresql/data/pgdata)
#
# On an empty PGDATA: initdb (scram-sha-256 for every connection, the password from the
# environment), listen on all addresses, allow password logins from any host, create POSTGRES_DB.
# With a PGDATA that already holds a cluster nothing is changed (a new password or user in the
# environment does not apply to it, as with the official image): the server just starts.
# Either way PostgreSQL is exec'd in the foreground. Not supported: /docker-entrypoint-initdb.d,
# POSTGRES_HOST_AUTH_METHOD, POSTGRES_INITDB_WALDIR.
set -Eeuo pipefail

log() { printf '%s mlops-postgres: %s\n' "$(date -u +'%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# VAR or VAR_FILE (a mounted Secret), never both.
file_env() {
  local var=$1 file_var="${1}_FILE"
  if [[ -n ${!var:-} && -n ${!file_var:-} ]]; then
    die "both $var and $file_var are set; set one"
  fi
  if [[ -n ${!file_var:-} ]]; then
    [[ -r ${!file_var} ]] || die "$file_var=${!file_var} is not readable"
    export "$var"="$(<"${!file_var}")"
  fi
  unset "$file_var"
}

# An SQL identifier in double quotes, embedded quotes doubled.
quote_ident() { printf '"%s"' "${1//\"/\"\"}"; }

# initdb, configuration and the database, into the directory $1.
init_cluster() {
  local dir=$1
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list, as in the official image
  initdb --pgdata="$dir" --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
    ${POSTGRES_INITDB_ARGS:-} >/dev/null
  {
    echo
    echo "# mlops-postgres: clients in other pods connect over TCP with a password."
    echo "listen_addresses = '*'"
  } >>"$dir/postgresql.conf"
  {
    echo
    echo "# mlops-postgres: any address, with the password (the chart's NetworkPolicy decides who gets here)."
    echo "host all all all scram-sha-256"
  } >>"$dir/pg_hba.conf"
  if [[ $POSTGRES_DB != postgres ]]; then
    # Single-user mode: no server, no socket and no password needed yet. exit_on_error: an SQL
    # error ends it with a non-zero status (it would exit 0 otherwise).
    printf 'CREATE DATABASE %s;\n' "$(quote_ident "$POSTGRES_DB")" |
      postgres --single -j -D "$dir" -c exit_on_error=on postgres >/dev/null
  fi
}

if [[ ${1:-} == -* ]]; then
  set -- postgres "$@"
fi

# `postgres --version`, `--help`, `-C setting` and the like only print something.
wants_help() {
  local arg
  for arg; do
    case $arg in -'?' | --help | --describe-config | -V | --version | -C | -C*) return 0 ;; esac
  done
  return 1
}

if [[ ${1:-} == postgres ]] && ! wants_help "$@" && [[ ! -s ${PGDATA:?PGDATA is not set}/PG_VERSION ]]; then
  file_env POSTGRES_PASSWORD
  [[ -n ${POSTGRES_PASSWORD:-} ]] ||
    die "PGDATA ($PGDATA) holds no database and POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is not set"
  : "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  if [[ -d $PGDATA && -n $(ls -A "$PGDATA") ]]; then
    die "PGDATA ($PGDATA) is neither empty nor a database; use an empty directory, e.g. one below the volume's mount point"
  fi
  log "initialising a new database cluster in $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
  if [[ -d $PGDATA ]] && ! rmdir "$PGDATA" 2>/dev/null; then
    # PGDATA is a mount point: initialise it in place.
    init_cluster "$PGDATA"
  else
    # Initialise beside PGDATA and rename it into place: a restart after a crash half-way sees
    # either no database (and starts over) or a complete one, never a half-made one.
    staging="$PGDATA.initdb"
    rm -rf "$staging"
    init_cluster "$staging"
    mv "$staging" "$PGDATA"
  fi
  log "initialised; starting PostgreSQL"
fi

# The password stays out of the server's environment (and so out of every backend's).
unset POSTGRES_PASSWORD POSTGRES_PASSWORD_FILE
exec "$@"
