#!/usr/bin/env bash
# Instructions per webhook of the ingress, counted by valgrind's callgrind (repeatable, unlike
# CPU time on a shared 2-core machine): the ingress runs under callgrind against Apache Kafka,
# takes COUNT webhooks (unique eventIds, 8 connections) after 500 for warm-up, and is stopped;
# the instructions of the COUNT are the total minus a run that takes only the warm-up.
#
#   crates/devstack/count-ingress.sh [count=5000] [BIN_DIR=target/release]
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-5000}
export BENCH_BIN=${2:-target/release}
secret=bench-secret
. crates/devstack/script-lib.sh
require_free_ports 18380 19390 19392 19393
load_tool=target/release/voicehub-load
[[ -x $load_tool ]] || build_release voicehub-devstack

# instructions N: the ingress's total instructions from start to stop with N webhooks taken.
instructions() {
  start_broker 19392 kafka
  {
    printf '[http]\nlisten = "127.0.0.1:18380"\n[admin]\nlisten = "127.0.0.1:19390"\n'
    printf '[sources.default]\nsecret_envs = ["SCRIPT_SECRET"]\n[log]\nlevel = "info"\n'
    kafka_toml 19392
  } >"$work/ingress.toml"
  SCRIPT_SECRET=$secret valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$bin/voicehub-ingress" --config "$work/ingress.toml" >"$work/ingress.log" 2>"$work/valgrind.log" &
  local pid=$!
  for _ in $(seq 600); do curl -sf http://127.0.0.1:19390/readyz >/dev/null 2>&1 && break; sleep 0.2; done
  local url=http://127.0.0.1:18380/webhooks/voicehub
  "$load_tool" run --url "$url" --secret "$secret" --concurrency 8 --count 500 --seconds 600 >/dev/null
  if (($1 > 0)); then
    "$load_tool" run --url "$url" --secret "$secret" --concurrency 8 --count "$1" --seconds 600 >/dev/null
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  stop_broker 19392
  [[ -z ${CALLGRIND_KEEP:-} ]] || cp "$work/cg.out" "$CALLGRIND_KEEP"
  awk '/^summary:/ {print $2}' "$work/cg.out"*
}
base=$(instructions 0)
with=$(instructions "$count")
python3 -c "print(f'instructions per webhook: {($with - $base) / $count:,.0f} ({$count} webhooks; {$base:,} for start, warm-up and stop)')"
