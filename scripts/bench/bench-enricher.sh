#!/usr/bin/env bash
# Enricher benchmark, beside a bare enricher in the same run: enriched records per second, CPU
# per 1,000 records and peak RSS of `voicehub-enricher` (its defaults; IN_FLIGHT=N for another
# consumer.max_in_flight) and of `voicehub-load bare-enricher` (a librdkafka consumer, one
# reqwest GET per record, the body produced as it came, keyed, offsets stored after delivery:
# no validation, retries, metrics or per-partition ordering), against a stand-in analysis API
# answering in DELAY ms.
#
#   scripts/bench/bench-enricher.sh [records=10000] [api delay ms=20] [broker=kafka|sqlite] [rounds=3]
#
# The input topic is filled once (through the ingress); then each round runs each target in
# turn (the order alternating between rounds) on the whole topic with a consumer group of its
# own, so each reads the same records. Rates and CPU are measured from a target's first record
# to its last (user + system time from /proc). BENCH_BIN=DIR runs the binaries of another build.
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-10000}
delay=${2:-20}
storage=${3:-kafka}
rounds=${4:-3}
in_flight=${IN_FLIGHT:-$(sed -n 's/^max_in_flight = \([0-9]*\)$/\1/p' deploy/config/enricher.toml)}
input_topic=voicehub.analysis-result-ready.v1

. scripts/lib.sh
require_free_ports 18480 18482 19490 19491 19492 19493
build_release voicehub-ingress voicehub-enricher voicehub-devstack
start_broker 19492 "$storage"
fill_analysis_ready "$records" "$delay"

# measure_enricher ROUND: the enricher in a group of its own; appends "enricher rate cpu rss
# switches".
measure_enricher() {
  drain_enricher "bench-enricher-$1" >"$work/drained"
  echo "enricher $(cat "$work/drained")" >>"$work/results"
}

# measure_bare ROUND: the bare enricher in a group of its own; appends "bare rate cpu rss
# switches".
measure_bare() {
  "$bin/voicehub-load" bare-enricher --brokers 127.0.0.1:19492 --input "$input_topic" \
    --group "bench-bare-$1" --in-flight "$in_flight" --count "$filled" >"$work/bare.out" 2>&1 &
  local bare=$! first_at now user0 sys0 cs0 user1 sys1 cs1
  pids+=($bare)
  until grep -q '"first"' "$work/bare.out"; do kill -0 "$bare" || { cat "$work/bare.out" >&2; exit 1; }; sleep 0.1; done
  first_at=$(date +%s.%N)
  read -r user0 sys0 cs0 <<<"$(cpu_split "$bare")"
  until grep -q '"done"' "$work/bare.out"; do sleep 0.1; done
  now=$(date +%s.%N)
  read -r user1 sys1 cs1 <<<"$(cpu_split "$bare")"
  if grep '"done"' "$work/bare.out" | grep -vq '"failed":0'; then
    echo "the bare enricher failed records: $(grep '"done"' "$work/bare.out")" >&2
    exit 1
  fi
  echo "bare $(figures "$first_at" "$now" "$filled" "$user0" "$sys0" "$user1" "$sys1") $(peak_rss_mib "$bare") $(((cs1 - cs0) * 1000 / filled))" >>"$work/results"
  stop_pid "$bare"
}

: >"$work/results"
for round in $(seq "$rounds"); do
  if ((round % 2)); then
    measure_enricher "$round"
    measure_bare "$round"
  else
    measure_bare "$round"
    measure_enricher "$round"
  fi
done

python3 - "$work/results" "$filled" "$delay" "$in_flight" "$storage" <<'PY'
import statistics, sys
path, filled, delay, in_flight, storage = sys.argv[1:]
runs = {}
for line in open(path):
    target, rate, cpu, rss, switches = line.split()
    runs.setdefault(target, []).append((float(rate), float(cpu), float(rss), float(switches)))
med = {t: [statistics.median(v[i] for v in rs) for i in range(4)] for t, rs in runs.items()}
print(f"| target ({filled} records, {storage} broker, API {delay} ms, {in_flight} in flight) "
      "| records/s, per round | median | CPU ms per 1,000, per round | median | peak RSS MiB "
      "| context switches per 1,000 |")
print("|---|---|---|---|---|---|---|")
for target in ("bare", "enricher"):
    rs = runs[target]
    print(f"| {target} | {', '.join(str(r[0]) for r in rs)} | {med[target][0]:.1f} "
          f"| {', '.join(str(r[1]) for r in rs)} | {med[target][1]:.1f} | {max(r[2] for r in rs):.1f} "
          f"| {med[target][3]:.0f} |")
print(f"\nenricher / bare: records/s {med['enricher'][0] / med['bare'][0]:.2f}x, "
      f"CPU per record {med['enricher'][1] / med['bare'][1]:.2f}x")
PY
