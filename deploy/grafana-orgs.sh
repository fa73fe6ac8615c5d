#!/usr/bin/env bash
# The grafana-orgs job of deploy/compose.yaml: grafana/bootstrap/create_orgs.sh with Grafana's
# admin password from its Docker secret. create_orgs.sh logs in with GF_SECURITY_ADMIN_PASSWORD
# (falling back to admin/admin when unset, for a test Grafana), and the Grafana it starts
# (/run.sh) creates the admin user with the same variable on a new data volume. Compose passes
# only GF_SECURITY_ADMIN_PASSWORD__FILE, so this reads the file, refuses an empty password and
# exports the variable in its place (run.sh refuses both set at once).
set -euo pipefail

file=${GF_SECURITY_ADMIN_PASSWORD__FILE:?set GF_SECURITY_ADMIN_PASSWORD__FILE to the admin password secret (deploy/compose.yaml)}
[ -s "$file" ] || { echo "grafana-orgs: $file is missing or empty: run deploy/make-secrets.sh" >&2; exit 1; }
GF_SECURITY_ADMIN_PASSWORD=$(cat "$file")
export GF_SECURITY_ADMIN_PASSWORD
unset GF_SECURITY_ADMIN_PASSWORD__FILE
exec bash "${PALLIWATCH_CREATE_ORGS:-/palliwatch/create_orgs.sh}"
