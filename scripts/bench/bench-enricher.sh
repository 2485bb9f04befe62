#!/usr/bin/env bash
# Enricher benchmark: enriched records per second with a stand-in analysis API answering in
# 20 ms, at the default concurrency (consumer.max_in_flight, or IN_FLIGHT=N), and the enricher's
# peak RSS.
#
#   scripts/bench/bench-enricher.sh [records=5000] [api delay ms=20] [broker=kafka|sqlite]
#
# The input topic is filled first (through the ingress), then the enricher starts on it, so
# the rate is the enricher's alone; it and the enricher's CPU time (user + system) are
# measured from its first to its last record. BENCH_BIN=DIR runs the binaries of another build.
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-5000}
delay=${2:-20}
storage=${3:-kafka}
in_flight=${IN_FLIGHT:-$(sed -n 's/^max_in_flight = \([0-9]*\)$/\1/p' deploy/config/enricher.toml)}
enricher_extra=$(printf '[consumer]\nmax_in_flight = %s\n' "$in_flight")

. scripts/lib.sh
require_free_ports 18480 18482 19490 19491 19492 19493
build_release voicehub-ingress voicehub-enricher voicehub-devstack
enriched() {
  curl -sf http://127.0.0.1:19491/metrics |
    awk '/^voicehub_enricher_records_total\{outcome="enriched"\}/ {print $2}' | head -1
}

start_broker 19492 "$storage"
"$bin/voicehub-load" analysis-api --listen 127.0.0.1:18482 --delay-ms "$delay" >/dev/null 2>&1 &
pids+=($!)

start_ingress 18480 19490 19492 bench-webhook-secret
fill=$("$bin/voicehub-load" run --url http://127.0.0.1:18480/webhooks/voicehub --secret bench-webhook-secret \
  --concurrency 16 --seconds 600 --count "$records" --analysis-url http://127.0.0.1:18482/api/v1/r)
filled=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ok'])" "$fill")

start_enricher 19491 19492 127.0.0.1:18482 bench-key

first_at=""
while :; do
  done_now=$(enriched || true)
  done_now=${done_now:-0}
  now=$(date +%s.%N)
  if [ -z "$first_at" ] && [ "${done_now%.*}" -gt 0 ]; then
    first_at=$now first_count=${done_now%.*}
    read -r user0 sys0 _ <<<"$(cpu_split "$enricher")"
  fi
  [ "${done_now%.*}" -ge "$filled" ] && break
  sleep 0.1
done
read -r user1 sys1 _ <<<"$(cpu_split "$enricher")"
rate=$(python3 -c "print(round(($filled - $first_count) / ($now - $first_at), 1))")
cpu=$(python3 -c "print(round(($user1 + $sys1 - $user0 - $sys0) * 1e6 / max($filled - $first_count, 1), 1))")
ceiling=$(python3 -c "print(round($in_flight / ($delay / 1000), 1))")

cat <<TABLE
| measure | value |
|---|---|
| records enriched ($storage broker) | $filled |
| enriched records/s ($in_flight in flight, API answering in $delay ms) | $rate |
| ceiling for $in_flight in flight at $delay ms per fetch | $ceiling |
| enricher CPU ms per 1,000 records (user + system) | $cpu |
| enricher peak RSS (VmHWM) | $(peak_rss_mib "$enricher") MiB |
TABLE
