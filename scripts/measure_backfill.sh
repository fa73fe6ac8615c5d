#!/usr/bin/env bash
# Development aid: pre-load N surveys in a fresh namespace, start a worker, print progress
# every second (consumed surveys, indicator rows written). Needs `palliwatch services up`.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-30000}
tag=m$(date +%s)
export PALLIWATCH_TOPIC_NAMESPACE=$tag PALLIWATCH_APP_ID=palliwatch-$tag PALLIWATCH_WEB_PORT=16066
export PALLIWATCH_STATE_DIR=$PWD/.palliwatch/measure/$tag
.venv/bin/palliwatch simulate --backfill "$N" >/dev/null 2>&1
mkdir -p "$PALLIWATCH_STATE_DIR"
.venv/bin/palliwatch worker > "$PALLIWATCH_STATE_DIR/worker.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
start=$(date +%s.%N); last=-1; same=0
while true; do
  sleep 1
  m=$(curl -s 127.0.0.1:16066/metrics || true)
  c=$(echo "$m" | awk '/^palliwatch_records_consumed_total\{topic="registry.death-surveys.v1"\}/{print $2}')
  v=$(echo "$m" | awk '/^palliwatch_valid_total\{topic="registry.death-surveys.v1"\}/{print $2}')
  r=$(echo "$m" | awk '/^palliwatch_indicator_rows_written_total /{print $2}')
  t=$(echo "$(date +%s.%N) - $start" | bc)
  echo "t=${t%.*}s consumed=${c:-0} admitted=${v:-0} rows=${r:-0}"
  if [ "${r:-0}" = "$last" ] && [ "${c:-0}" = "${lastc:-x}" ] && [ "${r:-0}" != "0.0" ]; then same=$((same+1)); else same=0; fi
  last=${r:-0}; lastc=${c:-0}
  [ $same -ge 3 ] && break
done
