#!/usr/bin/env bash
# Memory under a legal burst: 400 authenticated webhooks of almost 1 MiB (the body limit), all
# at once and slowly (64 KiB every 0.3 s), against the ingress (release build, Apache Kafka),
# first with http.max_in_flight_body_bytes out of the way (1 GiB: as before the budget), then
# with its default (32 MiB). Prints the answers by status and the RSS before, at peak and idle
# a minute later. Not in CI.
#
#   scripts/memory/burst-rss.sh [webhooks=400]
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-400}

. scripts/lib.sh
require_free_ports 18780 19790 19792
build_release voicehub-ingress
start_broker 19792 kafka
for budget in 1073741824 33554432; do
  VOICEHUB_BRIDGE__HTTP__MAX_IN_FLIGHT_BODY_BYTES=$budget start_ingress 18780 19790 19792 burst-secret
  echo "max_in_flight_body_bytes = $budget: $(python3 deploy/ci/hostile-load.py burst 18780 "$ingress" burst-secret "$count" /dev/null)"
  stop_pid "$ingress"
done
