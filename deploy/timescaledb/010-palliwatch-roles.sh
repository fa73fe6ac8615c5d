#!/usr/bin/env bash
# palliwatch's login roles, made once when the timescaledb container initialises an empty data
# volume: the image's entrypoint runs /docker-entrypoint-initdb.d/* as its superuser over the
# local socket, after its own 000_install_timescaledb.sh created the extension in POSTGRES_DB.
#
#   palliwatch_owner   owns the database (and so its public schema): runs the migrations and
#                      `palliwatch db roles`, which creates the reader roles of
#                      schemas/audiences.py (hence CREATEROLE). Not a superuser.
#   palliwatch_writer  the worker's login: no superuser, no DDL (owns nothing, may create no
#                      role or database); its table grants come from the migrations.
#
# The superuser stays for the container's own use: a pg_hba.conf line put first refuses it over
# the network, so it logs in only over the socket inside the container (this script,
# `docker compose exec timescaledb psql -U postgres`). Passwords come from Docker secrets
# (deploy/make-secrets.sh), never from this file or the environment. To change one later:
# ALTER ROLE ... PASSWORD as the superuser, then write the same value into its secret file
# and the matching *_url file (deploy/make-secrets.sh rewrites the URLs from the passwords).
# A data volume initialised before this script existed keeps its old roles: this runs only on
# an empty one.
set -euo pipefail

fail() { echo "010-palliwatch-roles: $*" >&2; exit 1; }

read_password() {  # read_password FILE: its content, which must be URL-safe (it goes into URLs)
    [ -s "$1" ] || fail "$1 is missing or empty: run deploy/make-secrets.sh on the host"
    local value
    value=$(cat "$1")
    [[ "$value" =~ ^[A-Za-z0-9._~-]+$ ]] ||
        fail "$1 holds characters other than A-Z a-z 0-9 . _ ~ - (it is used inside a database URL): make it with deploy/make-secrets.sh"
    printf '%s' "$value"
}

owner_password=$(read_password "${PALLIWATCH_DB_OWNER_PASSWORD_FILE:?set PALLIWATCH_DB_OWNER_PASSWORD_FILE (deploy/compose.yaml)}")
writer_password=$(read_password "${PALLIWATCH_DB_WRITER_PASSWORD_FILE:?set PALLIWATCH_DB_WRITER_PASSWORD_FILE (deploy/compose.yaml)}")
db=${POSTGRES_DB:?set by the image entrypoint}
superuser=${POSTGRES_USER:?set by the image entrypoint}

# The passwords are checked above to hold no quote, so they can stand in SQL literals; they go
# in on stdin, not on psql's command line (which other processes could read).
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$superuser" --dbname "$db" <<SQL
CREATE ROLE palliwatch_owner LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS
    PASSWORD '$owner_password';
CREATE ROLE palliwatch_writer LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
    PASSWORD '$writer_password';
ALTER DATABASE "$db" OWNER TO palliwatch_owner;
SQL

# First line wins in pg_hba.conf: the superuser over TCP (any address, with or without TLS) is
# refused before the image's "host all all all scram-sha-256" line could let it in.
hba="${PGDATA:?set by the image}/pg_hba.conf"
rules=$(mktemp)
{
    echo "# palliwatch (deploy/timescaledb/010-palliwatch-roles.sh): the superuser only over the socket"
    echo "host all \"$superuser\" all reject"
    cat "$hba"
} > "$rules"
cat "$rules" > "$hba"
rm -f "$rules"
echo "010-palliwatch-roles: palliwatch_owner and palliwatch_writer created; $superuser refused over TCP"
