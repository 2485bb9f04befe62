#!/usr/bin/env bash
# Enricher benchmark: enriched records per second with a stand-in analysis API answering in
# 20 ms, at the default concurrency (16 in flight), and the enricher's peak RSS.
#
#   crates/devstack/bench-enricher.sh [records=5000] [api delay ms=20]
#
# The input topic is filled first (through the ingress), then the enricher starts on it, so
# the rate is the enricher's alone; it is measured from its first to its last record.
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-5000}
delay=${2:-20}

for port in 18480 18482 19490 19491 19492; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use (an earlier run still going?); its figures would be wrong" >&2
    exit 1
  fi
done

cargo build --release --locked -p voicehub-ingress -p voicehub-enricher -p voicehub-devstack >&2
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
wait_http() { for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
enriched() {
  curl -sf http://127.0.0.1:19491/metrics |
    awk '/^voicehub_enricher_records_total\{outcome="enriched"\}/ {print $2}' | head -1
}

"$bin/voicehub-dev" --broker-only --broker-port 19492 >"$work/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^topics' "$work/broker.log" && break; sleep 0.1; done
"$bin/voicehub-load" analysis-api --listen 127.0.0.1:18482 --delay-ms "$delay" >/dev/null 2>&1 &
pids+=($!)

cat >"$work/ingress.toml" <<TOML
[http]
listen = "127.0.0.1:18480"
[sources.default]
secret_envs = ["BENCH_SECRET"]
[kafka]
bootstrap_servers = "127.0.0.1:19492"
[admin]
listen = "127.0.0.1:19490"
[log]
level = "warn"
TOML
BENCH_SECRET=bench "$bin/voicehub-ingress" --config "$work/ingress.toml" >"$work/ingress.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:19490/readyz
fill=$("$bin/voicehub-load" run --url http://127.0.0.1:18480/webhooks/voicehub --secret bench \
  --concurrency 16 --seconds 600 --count "$records" --analysis-url http://127.0.0.1:18482/api/v1/r)
filled=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ok'])" "$fill")

cat >"$work/enricher.toml" <<TOML
[sources.default]
api_key_env = "BENCH_API_KEY"
allowed_hosts = ["127.0.0.1:18482"]
allow_http = true
[kafka]
bootstrap_servers = "127.0.0.1:19492"
[admin]
listen = "127.0.0.1:19491"
[log]
level = "warn"
TOML
BENCH_API_KEY=bench-key "$bin/voicehub-enricher" --config "$work/enricher.toml" >"$work/enricher.log" 2>&1 &
enricher=$!
pids+=($enricher)
wait_http http://127.0.0.1:19491/livez

first_at=""
while :; do
  done_now=$(enriched || true)
  done_now=${done_now:-0}
  now=$(date +%s.%N)
  if [ -z "$first_at" ] && [ "${done_now%.*}" -gt 0 ]; then first_at=$now; first_count=${done_now%.*}; fi
  [ "${done_now%.*}" -ge "$filled" ] && break
  sleep 0.1
done
rate=$(python3 -c "print(round(($filled - $first_count) / ($now - $first_at), 1))")
ceiling=$(python3 -c "print(round(16 / ($delay / 1000), 1))")

cat <<TABLE
| measure | value |
|---|---|
| records enriched | $filled |
| enriched records/s (16 in flight, API answering in $delay ms) | $rate |
| ceiling for 16 in flight at $delay ms per fetch | $ceiling |
| enricher peak RSS (VmHWM) | $(peak_rss_mib "$enricher") MiB |
TABLE
