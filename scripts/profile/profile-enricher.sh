#!/usr/bin/env bash
# CPU profile of the enricher and of the bare enricher draining the same filled topic (Apache
# Kafka, the stand-in analysis API answering in DELAY ms): perf samples with DWARF call graphs
# over each one's drain, summarised as the share of a few groups (JSON, allocator, HTTP, Kafka
# client, TLS, kernel, ...) and the top functions by self time.
#
#   scripts/profile/profile-enricher.sh OUT_PREFIX [records=30000] [delay ms=20]
#
# Writes OUT_PREFIX-enricher.txt and OUT_PREFIX-bare.txt (and .folded when inferno is
# installed: cargo install inferno). Release binaries (symbols, no line tables). PERF_KEEP=DIR
# keeps the perf data there (enricher.data, bare.data) for `perf report -i`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
records=${2:-30000}
delay=${3:-20}
in_flight=$(sed -n 's/^max_in_flight = \([0-9]*\)$/\1/p' deploy/config/enricher.toml)
. scripts/lib.sh
require_free_ports 18480 18482 19490 19491 19492 19493
build_release voicehub-ingress voicehub-enricher voicehub-devstack

start_broker 19492 kafka
fill_analysis_ready "$records" "$delay"

# summarise PERF_DATA OUT: group shares and the top self-time functions.
summarise() {
  perf report -i "$1" --no-children --sort symbol --percent-limit 0.3 --stdio 2>/dev/null |
    grep -E '^ +[0-9]' >"$work/top"
  perf report -i "$1" --no-children --sort dso --percent-limit 0.5 --stdio 2>/dev/null |
    grep -E '^ +[0-9]' >"$work/dso"
  # Inclusive time of the bridge's own functions (and its libraries' entry points).
  perf report -i "$1" --children --sort symbol --percent-limit 1 --stdio -g none 2>/dev/null |
    grep -E '^ +[0-9]' | grep -E 'voicehub|serde_json::(de|ser)::|rd_kafka_(poll|consume|produce)|reqwest|hyper::client' \
    >"$work/inclusive" || true
  python3 - "$work/top" "$work/inclusive" "$work/dso" >"$2" <<'PY'
import re, sys
rows = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*([\d.]+)%\s+\S+\s+(.*)$", line)
    if m:
        rows.append((float(m.group(1)), m.group(2).strip()))
print("share of samples by object (kernel, the binary, libc):")
for line in open(sys.argv[3]):
    print("  " + " ".join(line.split()))
print()
groups = [
    ("allocator", r"je_|jemalloc|malloc|free|realloc|memcpy|memmove|calloc"),
    ("JSON (serde_json)", r"serde_json|serde::|serde_path_to_error|_serde|indexmap|hash"),
    ("Kafka client (librdkafka)", r"rd_kafka|rdk|lz4|LZ4|crc32"),
    ("HTTP (hyper, reqwest)", r"hyper|reqwest|http::|h2::|httparse"),
    ("TLS", r"rustls|ring::|aws_lc"),
    ("async runtime (tokio)", r"tokio"),
    ("metrics (prometheus)", r"prometheus"),
    ("logging (tracing)", r"tracing"),
    ("url", r"url::"),
]
shares = {name: 0.0 for name, _ in groups}
other = 0.0
for pct, sym in rows:
    for name, pattern in groups:
        if re.search(pattern, sym):
            shares[name] += pct
            break
    else:
        other += pct
print("share of samples by group of functions (self time; functions under 0.3 % not counted):")
for name, _ in groups:
    print(f"  {name:28} {shares[name]:5.1f} %")
print(f"  {'other':28} {other:5.1f} %")
print("\ntop functions by self time:")
for pct, sym in rows[:40]:
    print(f"  {pct:5.2f} %  {sym[:110]}")
print("\nthe bridge's functions by inclusive time (children, self):")
for line in list(open(sys.argv[2]))[:40]:
    print("  " + " ".join(line.split())[:130])
PY
}

# The enricher: samples from its start to its last record.
enricher_extra=$(printf '[consumer]\nmax_in_flight = %s\ngroup_id = "profile-enricher"\n' "$in_flight")
start_enricher 19491 19492 127.0.0.1:18482 bench-key
perf record -q -F 499 --call-graph dwarf,16384 -p "$enricher" -o "$work/enricher.data" 2>/dev/null &
perf_pid=$!
until [ "$(curl -sf http://127.0.0.1:19491/metrics |
  awk '/^voicehub_enricher_records_total\{outcome="enriched"\}/ {print int($2)}')" -ge "$filled" ]; do
  sleep 0.2
done
kill -INT "$perf_pid"
wait "$perf_pid" || true
stop_pid "$enricher"
summarise "$work/enricher.data" "$out-enricher.txt"

# The bare enricher on the same records, run under perf (attached to it, perf lost it).
perf record -q -F 499 --call-graph dwarf,16384 -o "$work/bare.data" -- \
  "$bin/voicehub-load" bare-enricher --brokers 127.0.0.1:19492 --input voicehub.analysis-result-ready.v1 \
  --group profile-bare --in-flight "$in_flight" --count "$filled" >"$work/bare.out" 2>&1 &
perf_pid=$!
until grep -q '"done"' "$work/bare.out"; do sleep 0.2; done
pkill -TERM -P "$perf_pid" || true
wait "$perf_pid" || true
summarise "$work/bare.data" "$out-bare.txt"

if command -v inferno-collapse-perf >/dev/null; then
  for target in enricher bare; do
    perf script -i "$work/$target.data" 2>/dev/null | inferno-collapse-perf >"$out-$target.folded"
  done
fi
[[ -z ${PERF_KEEP:-} ]] || cp "$work/enricher.data" "$work/bare.data" "$PERF_KEEP/"
echo "wrote $out-enricher.txt and $out-bare.txt ($filled records, API $delay ms)"
