#!/usr/bin/env bash
# CPU profile of the ingress under the benchmark's load (CONNECTIONS connections, default 64;
# unique eventIds; Apache Kafka from deploy/ci/kafka.sh): perf samples with DWARF call graphs for
# SECONDS, folded into a flame graph (SVG) and a text summary of where the time goes (self time by
# function, and the share of a few groups: allocator, JSON, Kafka client, logging, metrics).
#
#   scripts/profile/profile-ingress.sh OUT_PREFIX [seconds=12]
#
# The ingress is loaded for BENCH_WARMUP seconds first (default 20, as in bench-ingress.sh: a
# fresh Kafka is slow while its JVM compiles, and the deduplication table fills).
#
# Builds the `profiling` profile (release with line tables). Needs perf (Debian linux-perf)
# and inferno (cargo install inferno).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
seconds=${2:-12}
secret=bench-webhook-secret
warmup=${BENCH_WARMUP:-20}
export BENCH_BIN=${BENCH_BIN:-target/profiling}
. scripts/lib.sh
require_free_ports 18380 19390 19392 19393
# BENCH_BIN=DIR profiles DIR/voicehub-ingress as it is (an earlier build kept aside).
if [[ $BENCH_BIN == target/profiling ]]; then
  cargo build --profile profiling --locked -p voicehub-ingress >&2
fi
build_release voicehub-devstack
load_tool=target/release/voicehub-load

start_broker 19392 kafka
start_ingress 18380 19390 19392 "$secret" info
url=http://127.0.0.1:18380/webhooks/voicehub
load_closed "$warmup" >/dev/null
load_closed $((seconds + 4)) >"$work/load.json" &
load=$!
sleep 2
perf record -q -F 499 --call-graph dwarf,16384 -p "$ingress" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
wait "$load"
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/folded"
inferno-flamegraph --minwidth 2 --title "voicehub-ingress, ${CONNECTIONS:-64} connections, Apache Kafka" <"$work/folded" >"$out.svg"

python3 - "$work/folded" >"$out.txt" <<'PY'
import collections, re, sys
total = 0
leaf = collections.Counter()
groups = collections.Counter()
patterns = [
    ("allocator (malloc/free/realloc, mimalloc)", r"malloc|free|realloc|_mi_|mi_(heap|page|segment|free)|cfree|__libc_|_int_"),
    ("JSON (serde_json)", r"serde_json|serde::"),
    ("Kafka client (librdkafka, rdkafka)", r"rd_kafka|rdkafka|lz4|LZ4"),
    ("logging (tracing, the JSON line format)", r"tracing_subscriber|tracing_core|tracing::|json_log|log_writer"),
    ("metrics (prometheus)", r"prometheus::"),
    ("HTTP (actix, http, h1)", r"actix|http::|h1|httparse"),
    ("kernel (syscalls, network)", r"\[kernel|entry_SYSCALL|tcp_|sys_|do_syscall|__x64_sys"),
]
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    n = int(count)
    total += n
    frames = stack.split(";")
    leaf[frames[-1][:110]] += n
    for name, pattern in patterns:
        if any(re.search(pattern, f) for f in frames[-4:]):
            groups[name] += n
            break
print(f"samples: {total}")
print("share by group (a sample counts for the first group among its 4 innermost frames):")
for name, n in groups.most_common():
    print(f"  {100 * n / total:5.1f} %  {name}")
print("top 25 functions by self time:")
for name, n in leaf.most_common(25):
    print(f"  {100 * n / total:5.1f} %  {name}")
PY
echo "load: $(cat "$work/load.json")" >>"$out.txt"
cat "$out.txt"
