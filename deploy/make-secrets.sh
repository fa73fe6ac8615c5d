#!/usr/bin/env bash
# Make the secret files deploy/compose.yaml reads, once per deployment, before the first
# `docker compose up`:
#
#   deploy/make-secrets.sh
#
# Each is a random value (openssl rand) in deploy/secrets/<name>, which git ignores. Existing
# files are kept, so running it again only adds what is missing (a new region's reader, a file
# you deleted to rotate it); the two database URLs are rewritten from the password files each
# time, so they always agree with them. Compose mounts each file at /run/secrets/<name> in the
# services that list it; a file that is missing makes `docker compose up` fail, never start a
# service without it.
#
#   postgres_superuser_password  the timescaledb image's superuser (container init only)
#   db_owner_password            palliwatch_owner: migrations and `palliwatch db roles`
#   db_writer_password           palliwatch_writer: the worker
#   db_owner_url, db_writer_url  their postgresql:// URLs (PALLIWATCH_*DATABASE_URL_FILE)
#   cell_key_secret              the Cell Key Method's secret: back it up and keep it for good
#                                (a new one changes every published figure)
#   grafana_admin_password       Grafana's admin login (user admin)
#   grafana_db_password_<org>    each Grafana organisation's reader role (grafana/bootstrap/orgs.tsv)
#
# Modes: the directory is 0700, so no other user of the host reaches the files; the files are
# 0444 because compose bind-mounts secret files unchanged (it ignores uid/gid/mode for them,
# docker/compose#9648) and the services read them as their own non-root users (postgres,
# grafana, nobody), which a 0600 file owned by you would lock out.
#
# PALLIWATCH_SECRETS_DIR: write there instead of deploy/secrets (the tests).
# PALLIWATCH_SECRETS_DB_HOST: host:port in the URLs (default timescaledb:5432, the compose service).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${PALLIWATCH_SECRETS_DIR:-$here/secrets}
orgs=${PALLIWATCH_ORGS_TABLE:-$here/../grafana/bootstrap/orgs.tsv}
db_host=${PALLIWATCH_SECRETS_DB_HOST:-timescaledb:5432}
db_name=palliwatch

fail() { echo "make-secrets: $*" >&2; exit 1; }
command -v openssl >/dev/null 2>&1 || fail "openssl is not installed (e.g. apt-get install openssl)"
[ -r "$orgs" ] || fail "$orgs not found: run this from a palliwatch checkout"

umask 077
mkdir -p "$dir"
chmod 700 "$dir"
made=()

write() {  # write NAME VALUE: the file, read-only, replaced atomically
    local tmp="$dir/.$1.tmp"
    printf '%s' "$2" > "$tmp"
    chmod 444 "$tmp"
    mv -f "$tmp" "$dir/$1"
}

secret() {  # secret NAME BYTES: a random hex value, unless a non-empty file is there already
    [ -s "$dir/$1" ] && return 0
    write "$1" "$(openssl rand -hex "$2")"
    made+=("$1")
}

password() {  # password NAME: the content of a password file, checked to be URL-safe
    local value
    value=$(cat "$dir/$1")
    [[ "$value" =~ ^[A-Za-z0-9._~-]+$ ]] ||
        fail "$dir/$1 holds characters other than A-Z a-z 0-9 . _ ~ - (it goes into a database URL): delete it and run this again"
    printf '%s' "$value"
}

secret postgres_superuser_password 32
secret db_owner_password 32
secret db_writer_password 32
secret cell_key_secret 32
secret grafana_admin_password 24
while IFS=$'\t' read -r id key _name; do
    case "$id" in ''|'#'*) continue ;; esac
    secret "grafana_db_password_${key//-/_}" 24
done < "$orgs"

# Plain assignments, so that a refused password stops the script (set -e does not reach into
# a command substitution inside another command's arguments).
owner_password=$(password db_owner_password)
writer_password=$(password db_writer_password)
write db_owner_url "postgresql://palliwatch_owner:$owner_password@$db_host/$db_name"
write db_writer_url "postgresql://palliwatch_writer:$writer_password@$db_host/$db_name"

if [ ${#made[@]} -gt 0 ]; then
    echo "made ${#made[@]} secret(s) in $dir: ${made[*]}"
else
    echo "all secrets present in $dir (nothing new)"
fi
if [[ " ${made[*]} " == *" cell_key_secret "* ]]; then
    echo "back up $dir/cell_key_secret: the published figures depend on it for good"
fi
echo "Grafana: user admin, password in $dir/grafana_admin_password"
