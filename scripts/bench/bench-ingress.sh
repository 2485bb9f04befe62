#!/usr/bin/env bash
# Ingress benchmark, five targets measured alike in one run, each on a fresh broker:
#   ceiling      an actix handler that reads the body and answers 200 (no broker)
#   bare bridge  actix-web + rdkafka producing the body unparsed, acks=all, idempotent,
#                linger 5 ms, lz4, answering after the acknowledgement (voicehub-load
#                bare-bridge), unkeyed
#   bare-keyed   the same, keyed over 100 keys as the ingress keys by call (--keys 100)
#   bare-contract  bare-keyed writing the record contract's nine CloudEvents headers too
#                (--contract-headers): what any bridge writing this contract pays
#   ingress      voicehub-ingress with its defaults (spool off, every feature on)
# Per target: accepted webhooks/s and p99 closed-loop at 64 and at 8 connections (unique
# eventIds), CPU per 1,000 webhooks at 64 (the target process's user + system time), and peak
# RSS. Prints a Markdown table, then the ingress's ratios to each bare bridge.
#
#   scripts/bench/bench-ingress.sh [seconds=20] [broker=kafka|sqlite|memory]
#
# BENCH_TARGETS="bare ingress" measures a subset (default: all five). BENCH_WARMUP=SECONDS is
# each target's warm-up at 64 connections before it is measured (default 20).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-20}
storage=${2:-kafka}
secret=bench-webhook-secret
targets=" ${BENCH_TARGETS:-ceiling bare bare-keyed bare-contract ingress} "
warmup=${BENCH_WARMUP:-20}

. scripts/lib.sh
require_free_ports 18380 18381 18382 19390 19392 19393
build_release voicehub-ingress voicehub-devstack
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['$2'], 2))" "$1"; }
load() { "$bin/voicehub-load" run --url "$1" --secret "$secret" --concurrency "$2" --seconds "$3"; }

# measure NAME URL PID: one table row; its figures also in the variables rate_NAME, cpu_NAME.
measure() {
  local name=$1 url=$2 pid=$3
  # Warm-up, long enough for a fresh Kafka's JVM to compile its hot paths: on a cold broker
  # every target spends up to 1.5x its CPU per webhook (smaller batches per acknowledgement).
  load "$url" 64 "$warmup" >/dev/null
  local before after at64 at8
  before=$(cpu_seconds "$pid")
  at64=$(load "$url" 64 "$seconds")
  after=$(cpu_seconds "$pid")
  at8=$(load "$url" 8 "$seconds")
  local cpu
  cpu=$(python3 -c "print(round(($after - $before) / $(field "$at64" ok) * 1000 * 1000, 1))")
  printf -v "rate_$name" %s "$(field "$at64" ok_per_second)"
  printf -v "p99_8_$name" %s "$(field "$at8" p99_ms)"
  printf -v "cpu_$name" %s "$cpu"
  printf -v "rss_$name" %s "$(peak_rss_mib "$pid")"
  echo "| $name | $(field "$at64" ok_per_second) | $(field "$at64" p99_ms) ms | $(field "$at8" ok_per_second) | $(field "$at8" p99_ms) ms | $cpu | $(peak_rss_mib "$pid") MiB | $(field "$at64" other_status) / $(field "$at64" errors) |"
  echo "raw $name: at64=$at64 at8=$at8" >&2
}

echo "| target ($storage broker, ${seconds} s per load) | webhooks/s @64 | p99 @64 | webhooks/s @8 | p99 @8 | CPU ms per 1,000 @64 | peak RSS | non-2xx / errors @64 |"
echo "|---|---|---|---|---|---|---|---|"

if [[ $targets == *" ceiling "* ]]; then
  "$bin/voicehub-load" baseline --listen 127.0.0.1:18381 >/dev/null 2>&1 &
  ceiling=$!
  pids+=($ceiling)
  wait_http http://127.0.0.1:18381/
  measure ceiling http://127.0.0.1:18381/ "$ceiling"
  stop_pid "$ceiling"
fi

# bare_target NAME KIND: the bare bridge of that kind (start_bare) on a fresh broker.
bare_target() {
  start_broker 19392 "$storage"
  start_bare "$2" 18382
  measure "$1" http://127.0.0.1:18382/ "$bare"
  stop_pid "$bare"
  stop_broker 19392
}
[[ $targets != *" bare "* ]] || bare_target bare bare
[[ $targets != *" bare-keyed "* ]] || bare_target bare_keyed bare-keyed
[[ $targets != *" bare-contract "* ]] || bare_target bare_contract bare-contract

if [[ $targets == *" ingress "* ]]; then
  start_broker 19392 "$storage"
  start_ingress 18380 19390 19392 "$secret" info
  measure ingress http://127.0.0.1:18380/webhooks/voicehub "$ingress"
  stop_pid "$ingress"
  stop_broker 19392
fi

ratio() { python3 -c "print(round($1 / $2, 2))"; }
# against NAME: the ingress's ratios to that baseline.
against() {
  local rate=rate_$1 cpu=cpu_$1 rss=rss_$1 p99=p99_8_$1
  echo "Ingress / $1: webhooks/s @64 $(ratio "$rate_ingress" "${!rate}")x, CPU per webhook $(ratio "$cpu_ingress" "${!cpu}")x, peak RSS $(ratio "$rss_ingress" "${!rss}")x, p99 @8 $(python3 -c "print(f'{$p99_8_ingress - ${!p99}:+.2f}')") ms."
}
echo
[[ -z ${rate_bare:-} || -z ${rate_ingress:-} ]] || against bare
[[ -z ${rate_bare_keyed:-} || -z ${rate_ingress:-} ]] || against bare_keyed
[[ -z ${rate_bare_contract:-} || -z ${rate_ingress:-} ]] || against bare_contract
[[ -z ${rate_bare:-} || -z ${rate_ceiling:-} ]] || echo "Bare bridge / ceiling: webhooks/s $(ratio "$rate_bare" "$rate_ceiling")x."
