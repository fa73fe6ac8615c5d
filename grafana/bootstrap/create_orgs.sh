#!/usr/bin/env bash
# Create palliwatch's Grafana organisations (orgs.tsv, generated from grafana/orgs.py) with the
# ids Grafana's file provisioning names them by. Provisioning fails at start-up on an
# organisation that does not exist, and Grafana cannot provision organisations itself, so
# deploy/compose.yaml runs this first, in a one-shot container of the Grafana image that shares
# Grafana's data volume: it starts Grafana without provisioning on the loopback interface,
# creates what is missing, checks every id, and stops it.
#
# Idempotent. Organisation 1 (Grafana's "Main Org.") is renamed to the public organisation, so
# anonymous viewers and new users land where only the public layer is. A new organisation gets
# the next free id, so the ids match only on a Grafana holding no other organisations: any
# mismatch stops this script (and so the stack) with a message, never a datasource in the
# wrong organisation.
#
# GRAFANA_URL: talk to that Grafana instead of starting one (an existing server; the tests).
# GF_SECURITY_ADMIN_USER / GF_SECURITY_ADMIN_PASSWORD: a server admin (defaults admin/admin).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
table=${PALLIWATCH_ORGS_TABLE:-$here/orgs.tsv}
auth="${GF_SECURITY_ADMIN_USER:-admin}:${GF_SECURITY_ADMIN_PASSWORD:-admin}"
url=${GRAFANA_URL:-}
out=$(mktemp)

if [ -z "$url" ]; then
    empty=$(mktemp -d)
    mkdir -p "$empty/datasources" "$empty/dashboards" "$empty/alerting" "$empty/plugins"
    GF_PATHS_PROVISIONING=$empty GF_SERVER_HTTP_ADDR=127.0.0.1 GF_SERVER_HTTP_PORT=3000 \
        GF_AUTH_ANONYMOUS_ENABLED=false /run.sh &
    pid=$!
    trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
    url=http://127.0.0.1:3000
    for _ in $(seq 180); do
        curl -sf "$url/api/health" >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { echo "create_orgs: Grafana did not start" >&2; exit 1; }
        sleep 1
    done
else
    trap 'rm -f "$out"' EXIT
fi

# api METHOD PATH [JSON]: prints the HTTP status; the body is in $out.
api() {
    local args=(-sS -u "$auth" -o "$out" -w '%{http_code}' -X "$1" "$url$2")
    if [ $# -gt 2 ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$3")
    fi
    curl "${args[@]}"
}

fail() {  # fail MESSAGE: stop with it
    echo "create_orgs: $*" >&2
    exit 1
}

answered_ok() {  # answered_ok WHAT: stop unless the last api call answered 200
    [ "$code" = 200 ] || fail "$1: HTTP $code $(cat "$out")"
}

field() {  # field NAME: a string or number field of the JSON body in $out
    sed -n "s/.*\"$1\": *\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p" "$out" | head -n 1
}

while IFS=$'\t' read -r id key name; do
    case "$id" in ''|'#'*) continue ;; esac
    body="{\"name\":\"$name\"}"
    if [ "$id" = 1 ]; then
        code=$(api PUT /api/orgs/1 "$body")
        answered_ok "renaming org 1"
    fi
    code=$(api GET "/api/orgs/$id")
    if [ "$code" = 404 ]; then
        code=$(api POST /api/orgs "$body")
        answered_ok "creating '$name'"
        got=$(field orgId)
        [ "$got" = "$id" ] || fail "'$name' ($key) was created with id $got, provisioning expects $id"
        echo "created organisation $id: $name"
        continue
    fi
    answered_ok "reading org $id"
    have=$(field name)
    [ "$have" = "$name" ] || fail "organisation $id is '$have', provisioning expects '$name' ($key)"
    echo "organisation $id: $name"
done < "$table"
