#!/usr/bin/env bash
# Memory under hostile traffic: the ingress's RSS (release build, real broker) after a warm-up
# of valid webhooks, then after each of: rounds of wrong-secret requests (every one must be
# 401), and hundreds of slowloris connections held open at once (each must be cut off).
# Bounded memory shows as RSS that stops growing between rounds. Not in CI.
#
#   crates/devstack/hostile-rss.sh [requests per round=100000]
set -euo pipefail
cd "$(dirname "$0")/../.."
per_round=${1:-100000}

for port in 18680 19690 19692; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use (an earlier run still going?)" >&2
    exit 1
  fi
done
cargo build --release --locked -p voicehub-ingress -p voicehub-devstack >&2
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
wait_http() { for _ in $(seq 200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

"$bin/voicehub-dev" --broker-only --broker-port 19692 >"$work/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^topics' "$work/broker.log" && break; sleep 0.1; done
cat >"$work/ingress.toml" <<TOML
[http]
listen = "127.0.0.1:18680"
[sources.default]
secret_envs = ["HOSTILE_SECRET"]
[kafka]
bootstrap_servers = "127.0.0.1:19692"
[kafka.provision]
create_topics = true
partitions = 3
replication_factor = 1
[admin]
listen = "127.0.0.1:19690"
[log]
level = "error"
TOML
HOSTILE_SECRET=right "$bin/voicehub-ingress" --config "$work/ingress.toml" >"$work/ingress.log" 2>&1 &
ingress=$!
pids+=($ingress)
wait_http http://127.0.0.1:19690/readyz

rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$ingress/status"; }
load() { # secret count
  "$bin/voicehub-load" run --url http://127.0.0.1:18680/webhooks/voicehub --secret "$1" \
    --concurrency 32 --seconds 600 --count "$2"
}
load right 10000 >/dev/null
echo "after 10,000 valid webhooks: RSS $(rss) MiB"
for round in 1 2 3; do
  result=$(load "wrong-$round" "$per_round")
  echo "after wrong-secret round $round ($per_round requests): RSS $(rss) MiB; $result"
done
python3 - <<'PY'
import socket, time
# 500 connections that send headers and then trickle a body: the ingress must cut each off.
body = b'{"eventType":"CallStatusChanged","eventId":"slow","callId":"c","status":"started"}'
head = (b"POST /webhooks/voicehub HTTP/1.1\r\nhost: x\r\nx-webhook-secret: right\r\n"
        b"content-length: %d\r\n\r\n" % len(body))
sockets = []
for _ in range(500):
    s = socket.create_connection(("127.0.0.1", 18680))
    s.sendall(head)
    sockets.append(s)
cut = 0
for i in range(60):
    for s in list(sockets):
        try:
            s.sendall(body[i:i + 1])
        except OSError:
            sockets.remove(s)
            cut += 1
    if not sockets:
        break
    time.sleep(0.2)
print(f"slowloris: {cut} of 500 connections cut off by the server, {len(sockets)} still open after {i * 0.2:.0f} s")
PY
echo "after 500 slowloris connections: RSS $(rss) MiB"
auth=$(curl -sf http://127.0.0.1:19690/metrics | awk '/^voicehub_ingress_auth_failures_total/ {s += $2} END {print s}')
echo "auth failures counted: $auth"
