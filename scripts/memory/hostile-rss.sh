#!/usr/bin/env bash
# Memory under hostile traffic: the ingress's RSS (release build, real broker) after a warm-up
# of valid webhooks, then after each of: rounds of wrong-secret requests (every one must be
# 401), and hundreds of slowloris connections held open at once (each must be cut off).
# Bounded memory shows as RSS that stops growing between rounds. Not in CI.
#
#   scripts/memory/hostile-rss.sh [requests per round=100000]
set -euo pipefail
cd "$(dirname "$0")/../.."
per_round=${1:-100000}

. scripts/lib.sh
require_free_ports 18680 19690 19692
build_release voicehub-ingress voicehub-devstack
start_broker 19692
start_ingress 18680 19690 19692 right-webhook-secret error

load() { # secret count
  "$bin/voicehub-load" run --url http://127.0.0.1:18680/webhooks/voicehub --secret "$1" \
    --concurrency 32 --seconds 600 --count "$2"
}
load right-webhook-secret 10000 >/dev/null
echo "after 10,000 valid webhooks: RSS $(rss_mib "$ingress") MiB"
for round in 1 2 3; do
  result=$(load "wrong-$round" "$per_round")
  echo "after wrong-secret round $round ($per_round requests): RSS $(rss_mib "$ingress") MiB; $result"
done
for round in 1 2; do
python3 - <<'PY'
import socket, time
# 500 connections that send headers and then trickle a body: the ingress must cut each off.
body = b'{"eventType":"CallStatusChanged","eventId":"slow","callId":"c","status":"started"}'
head = (b"POST /webhooks/voicehub HTTP/1.1\r\nhost: x\r\nx-webhook-secret: right-webhook-secret\r\n"
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
echo "after slowloris round $round (500 connections): RSS $(rss_mib "$ingress") MiB"
done
auth=$(curl -sf http://127.0.0.1:19690/metrics | awk '/^voicehub_ingress_auth_failures_total/ {s += $2} END {print s}')
echo "auth failures counted: $auth"
