#!/usr/bin/env bash
# Spool benchmark, in one run: the ingress with spool.mode off, fallback and always, each on a
# fresh local broker (acks=all) and a fresh spool directory on this machine's disk. Per mode:
# accepted webhooks/s (closed loop), p50/p99 latency at half the `off` rate (open loop), CPU
# per webhook (the forwarder's work included), Kafka acknowledgements/s during the closed-loop
# run (in `always` the broker's pace, not the HTTP answers', is the sustained rate: the spool
# absorbs the difference), the mean fsync batch and fsync latency, and what was still spooled
# at the end and how long it took to drain. Prints a Markdown table for docs/benchmarks.md.
#
#   scripts/bench/bench-spool.sh [concurrency=32] [seconds=20] [broker=sqlite|memory|kafka]
set -euo pipefail
cd "$(dirname "$0")/../.."
concurrency=${1:-32}
seconds=${2:-20}
storage=${3:-sqlite}
secret=bench-webhook-secret

. scripts/lib.sh
require_free_ports 18380 19390 19392 19393 18480 19490 19492 19493 18580 19590 19592 19593
build_release voicehub-ingress voicehub-devstack
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['$2'], 2))" "$1"; }
metric() {
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 == name {print $2}'
}

echo "| spool.mode ($storage broker) | accepted webhooks/s (concurrency $concurrency, ${seconds} s) | vs off | Kafka acks/s in that run | p50 / p99 at the paced rate | CPU per webhook | mean fsync batch (appends per fsync) | fsync p50 / p99 | still spooled at the end / drained after |"
echo "|---|---|---|---|---|---|---|---|---|"
off_rate=
paced_rate=
offset=0
for mode in off fallback always; do
  http=$((18380 + offset)) admin=$((19390 + offset)) broker_port=$((19392 + offset))
  offset=$((offset + 100))
  start_broker "$broker_port" "$storage"
  mkdir -p "$work/spool-$mode"
  ingress_extra=$(printf '[spool]\nmode = "%s"\ndir = "%s"\n' "$mode" "$work/spool-$mode")
  start_ingress "$http" "$admin" "$broker_port" "$secret"
  url=http://127.0.0.1:$http/webhooks/voicehub

  "$bin/voicehub-load" run --url "$url" --secret "$secret" --concurrency "$concurrency" --seconds 3 >/dev/null
  cpu_before=$(cpu_seconds "$ingress")
  acks_before=$(metric "$admin" voicehub_ingress_produce_duration_seconds_count)
  max=$("$bin/voicehub-load" run --url "$url" --secret "$secret" --concurrency "$concurrency" --seconds "$seconds")
  acks_after=$(metric "$admin" voicehub_ingress_produce_duration_seconds_count)
  rate=$(field "$max" ok_per_second)
  acks_rate=$(python3 -c "print(round(($acks_after - $acks_before) / $(field "$max" seconds)))")
  [[ -n $off_rate ]] || off_rate=$rate
  [[ -n $paced_rate ]] || paced_rate=$(python3 -c "print(max(1, round($rate / 2)))")
  paced=$("$bin/voicehub-load" run --url "$url" --secret "$secret" --rate "$paced_rate" --seconds "$seconds")
  accepted=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ok'] + json.loads(sys.argv[2])['ok'])" "$max" "$paced")
  left=$(metric "$admin" voicehub_ingress_spool_records)
  waited=0
  while [[ $(metric "$admin" voicehub_ingress_spool_records) != 0 ]] && ((waited < 1800)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  cpu_after=$(cpu_seconds "$ingress")
  cpu_per=$(python3 -c "print(round(($cpu_after - $cpu_before) / $accepted * 1e6))")
  syncs=$(metric "$admin" voicehub_ingress_spool_fsync_batch_records_count)
  appended=$(metric "$admin" voicehub_ingress_spool_fsync_batch_records_sum)
  batch=$(python3 -c "print('-' if $syncs == 0 else round($appended / $syncs, 1))")
  fsync=$(curl -sf "http://127.0.0.1:$admin/metrics" | python3 -c "
import sys
buckets = [(float(l.split('le=\"')[1].split('\"')[0].replace('+Inf', 'inf')), float(l.split()[-1]))
           for l in sys.stdin if l.startswith('voicehub_ingress_spool_fsync_duration_seconds_bucket')]
total = buckets[-1][1] if buckets else 0
at = lambda q: next(f'<= {le * 1000:g} ms' for le, n in buckets if n >= total * q)
print('-' if not total else f'{at(0.5)} / {at(0.99)}')")
  vs=$(python3 -c "print(round($rate / $off_rate, 2))")
  echo "| $mode | $rate | ${vs}x | $acks_rate | $(field "$paced" p50_ms) ms / $(field "$paced" p99_ms) ms at $paced_rate/s | $cpu_per µs | $batch | $fsync | $left / $(python3 -c "print($waited / 10)") s |"
  echo "raw $mode: max=$max paced=$paced" >&2
  stop_pid "$ingress"
  stop_broker "$broker_port"
done
echo "(CPU per webhook: the ingress process's user+system time over both runs, divided by the webhooks accepted; paced rate: half the off rate.)"
