#!/usr/bin/env bash
# What TLS and SASL cost per webhook and per enriched record, on the secured, replicated cluster
# of deploy/ci/kafka-cluster.sh (three nodes, replication 3, min.insync.replicas 2, ACLs): the
# same ingress and enricher builds over its PLAINTEXT listener (no TLS, no SASL), SASL_PLAINTEXT
# (SCRAM-SHA-512, no TLS) and SASL_SSL (SCRAM-SHA-512 over TLS: what platform teams run), in
# alternation, each principal granted the same ACLs.
#
#   [RATE=2000] scripts/bench/bench-transport.sh [rounds=3] [seconds=12] [records=10000]
#
# After the fill, a closed-loop load over PLAINTEXT warms the brokers (BENCH_WARMUP seconds,
# default 90). Then each round, for each transport in turn (the order rotating between rounds):
# the ingress (defaults, spool off) loaded at a fixed RATE webhooks/s over 64 connections (open
# loop, unique eventIds; at a fixed rate the cost per webhook is the transport's, not how well
# produces happened to batch), 3 s then SECONDS measured: CPU ms per 1,000 webhooks of the
# ingress, and of the three brokers together; then the enricher (defaults) draining the RECORDS
# analysis-ready records (filled once, over PLAINTEXT) in a group of its own against the
# stand-in analysis API answering in 20 ms: CPU ms per 1,000 records of the enricher and of the
# brokers, records/s. Prints each measurement, then medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3} seconds=${2:-12} records=${3:-10000} rate=${RATE:-2000}
in_flight=$(sed -n 's/^max_in_flight = \([0-9]*\)$/\1/p' deploy/config/enricher.toml)
secret=bench-webhook-secret
transports=(plaintext sasl_plaintext sasl_ssl)

. scripts/lib.sh
require_free_ports 18380 18480 18482 19390 19490 19491 1951{0..5} 1952{0..5} 1953{0..5}
build_release voicehub-ingress voicehub-enricher voicehub-devstack
load_tool=$bin/voicehub-load
url=http://127.0.0.1:18380/webhooks/voicehub

cluster=$work/cluster
stop_cluster() { deploy/ci/kafka-cluster.sh stop "$cluster" >/dev/null 2>&1 || true; }
# The services first (they would wait for brokers at shutdown), then the cluster, then $work.
trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; stop_cluster; cleanup' EXIT
VOICEHUB_KAFKA_CLUSTER_CLEARTEXT=1 deploy/ci/kafka-cluster.sh start 19500 "$cluster" >/dev/null
brokers=$(cat "$cluster"/node{1,2,3}/pid | tr '\n' ' ')
# The same grants for the principal of each transport: ANONYMOUS over PLAINTEXT, the service's
# SCRAM user otherwise.
for principal in ANONYMOUS ingress enricher; do
  deploy/ci/kafka-cluster.sh acl "$cluster" --add --force --allow-principal "User:$principal" \
    --operation All --resource-pattern-type prefixed --topic voicehub. --group bench >/dev/null
  deploy/ci/kafka-cluster.sh acl "$cluster" --add --force --allow-principal "User:$principal" \
    --operation IdempotentWrite --cluster >/dev/null
done

# use TRANSPORT USER: kafka_section for that listener, as USER where it authenticates.
use() {
  local properties=""
  case $1 in
    sasl_plaintext | sasl_ssl)
      properties=$(printf '"security.protocol" = "%s"\n"sasl.mechanism" = "SCRAM-SHA-512"\n"sasl.username" = "%s"\n"sasl.password" = "%s"\n' \
        "${1^^}" "$2" "$(sed -n "s/^$2://p" "$cluster/users")")
      ;;
  esac
  [[ $1 != sasl_ssl ]] || properties+=$'\n'"\"ssl.ca.location\" = \"$cluster/ca.pem\""
  kafka_section=$(printf '[kafka]\nbootstrap_servers = "%s"\n[kafka.provision]\ncreate_topics = true\npartitions = 3\nreplication_factor = 3\n[kafka.properties]\n%s\n' \
    "$(cat "$cluster/bootstrap.$([[ $1 == sasl_ssl ]] && echo sasl || echo "$1")")" "$properties")
}

use plaintext ingress
fill_analysis_ready "$records" 20
echo "filled: $filled analysis-ready records" >&2
# Warm JVMs: a fresh cluster's first minutes cost the brokers and the clients twice as much.
start_ingress 18380 19390 - "$secret"
load_closed "${BENCH_WARMUP:-90}" >/dev/null
stop_pid "$ingress"

# load_at SECONDS: the load tool's open loop at $rate webhooks/s over 64 connections.
load_at() {
  "$load_tool" run --url "$url" --secret "$secret" --concurrency 64 --rate "$rate" --seconds "$1"
}

# measure_ingress TRANSPORT: appends "ingress TRANSPORT cpu brokers-cpu webhooks/s".
measure_ingress() {
  use "$1" ingress
  start_ingress 18380 19390 - "$secret"
  load_at 3 >/dev/null
  local cpu0 brokers0 out cpu1 brokers1
  cpu0=$(cpu_seconds "$ingress") brokers0=$(cpu_of $brokers)
  out=$(load_at "$seconds")
  cpu1=$(cpu_seconds "$ingress") brokers1=$(cpu_of $brokers)
  stop_pid "$ingress"
  python3 -c "
import json, sys
o = json.loads(sys.argv[1])
if o['other_status'] + o['errors']:
    sys.exit(f'{sys.argv[2]}: {o[\"other_status\"] + o[\"errors\"]} webhooks not acknowledged')
per = 1e6 / o['ok']
print('ingress', sys.argv[2], round(($cpu1 - $cpu0) * per, 1), round(($brokers1 - $brokers0) * per, 1),
      round(o['ok_per_second']))" "$out" "$1" >>"$work/results"
}

# measure_enricher TRANSPORT ROUND: appends "enricher TRANSPORT cpu brokers-cpu records/s rss".
measure_enricher() {
  use "$1" enricher
  local drained_rate cpu rss brokers_cpu
  also_measured=$brokers drain_enricher "bench-$1-$2" >"$work/drained"
  read -r drained_rate cpu rss _ brokers_cpu <"$work/drained"
  echo "enricher $1 $cpu $brokers_cpu $drained_rate $rss" >>"$work/results"
}

: >"$work/results"
for round in $(seq "$rounds"); do
  for i in 0 1 2; do
    transport=${transports[$(((i + round) % 3))]}
    measure_ingress "$transport"
    measure_enricher "$transport" "$round"
    tail -2 "$work/results" >&2
  done
done

python3 - "$work/results" "$rounds" "$seconds" "$rate" "$filled" <<'PY'
import statistics, sys
path, rounds, seconds, rate, filled = sys.argv[1:]
runs = {}
for line in open(path):
    service, transport, cpu, brokers, achieved = line.split()[:5]
    runs.setdefault((service, transport), []).append((float(cpu), float(brokers), float(achieved)))
for service, what, unit in (("ingress", f"{rate} webhooks/s for {seconds} s", "webhooks"),
                            ("enricher", f"{filled} records, API at 20 ms", "records")):
    print(f"\n{service} ({what}; medians of {rounds} rounds)")
    print(f"| transport | CPU ms per 1,000 {unit} (rounds' range) | / PLAINTEXT | brokers' CPU ms per 1,000 | / PLAINTEXT | {unit}/s |")
    print("|---|---|---|---|---|---|")
    base = [statistics.median(r[i] for r in runs[(service, "plaintext")]) for i in range(3)]
    for transport in ("plaintext", "sasl_plaintext", "sasl_ssl"):
        med = [statistics.median(r[i] for r in runs[(service, transport)]) for i in range(3)]
        cpus = [r[0] for r in runs[(service, transport)]]
        print(f"| {transport.upper()} | {med[0]:.1f} ({min(cpus):.0f} to {max(cpus):.0f}) "
              f"| {med[0] / base[0]:.2f}x | {med[1]:.1f} "
              f"| {med[1] / base[1]:.2f}x | {med[2]:,.0f} |")
PY
