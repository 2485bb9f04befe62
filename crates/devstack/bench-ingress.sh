#!/usr/bin/env bash
# Ingress benchmark: accepted webhooks per second against a local broker with acks=all, latency
# at half that rate, peak RSS and CPU per 10,000 webhooks, and the same load against a bare
# actix handler (the HTTP ceiling). Prints a Markdown table for docs/benchmarks.md.
#
#   crates/devstack/bench-ingress.sh [concurrency=32] [seconds=20] [broker storage=sqlite|memory]
set -euo pipefail
cd "$(dirname "$0")/../.."
concurrency=${1:-32}
seconds=${2:-20}
storage=${3:-sqlite}
secret=bench-secret

. crates/devstack/script-lib.sh
require_free_ports 18380 18381 19390 19392
build_release voicehub-ingress voicehub-devstack
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['$2'], 2))" "$1"; }

start_broker 19392 "$storage"
start_ingress 18380 19390 19392 "$secret" info
url=http://127.0.0.1:18380/webhooks/voicehub

"$bin/voicehub-load" run --url "$url" --secret "$secret" --concurrency "$concurrency" --seconds 3 >/dev/null
cpu_before=$(cpu_seconds "$ingress")
max=$("$bin/voicehub-load" run --url "$url" --secret "$secret" --concurrency "$concurrency" --seconds "$seconds")
cpu_after=$(cpu_seconds "$ingress")
max_rate=$(field "$max" ok_per_second)
accepted=$(field "$max" ok)
half=$(python3 -c "print(max(1, round($max_rate / 2)))")
paced=$("$bin/voicehub-load" run --url "$url" --secret "$secret" --rate "$half" --seconds "$seconds")
rss=$(peak_rss_mib "$ingress")
cpu_per_10k=$(python3 -c "print(round(($cpu_after - $cpu_before) / $accepted * 10000, 2))")

"$bin/voicehub-load" baseline --listen 127.0.0.1:18381 >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
"$bin/voicehub-load" run --url http://127.0.0.1:18381/ --concurrency "$concurrency" --seconds 3 >/dev/null
ceiling=$("$bin/voicehub-load" run --url http://127.0.0.1:18381/ --concurrency "$concurrency" --seconds "$seconds")
ceiling_rate=$(field "$ceiling" ok_per_second)

cat <<TABLE
| measure | value |
|---|---|
| accepted webhooks/s (closed loop, concurrency $concurrency, ${seconds} s, acks=all, $storage broker) | $max_rate |
| non-2xx / errors at that load | $(field "$max" other_status) / $(field "$max" errors) |
| p50 / p99 latency at $half req/s (open loop) | $(field "$paced" p50_ms) ms / $(field "$paced" p99_ms) ms |
| ingress peak RSS (VmHWM) | $rss MiB |
| ingress CPU per 10,000 accepted webhooks | $cpu_per_10k s |
| bare actix handler, same load (HTTP ceiling) | $ceiling_rate req/s |
| ingress / ceiling | $(python3 -c "print(round($max_rate / $ceiling_rate * 100, 1))") % |
TABLE
echo "raw: max=$max paced=$paced ceiling=$ceiling" >&2
