#!/usr/bin/env bash
# Instructions per record, counted by valgrind's callgrind (repeatable, unlike CPU time on a
# shared 2-core machine), of the enricher and of the bare enricher (as in bench-enricher.sh):
# each runs under callgrind against Apache Kafka and the stand-in analysis API (answering in
# 20 ms), drains a topic of 500 analysis-ready records (warm-up only), or of 500 + COUNT, in a
# consumer group of its own, and is stopped; the instructions of the COUNT are the difference.
# CALLGRIND_KEEP=PATH keeps each target's profile as PATH.TARGET and that of its warm-up-only
# run as PATH.TARGET.base (for callgrind_annotate).
#
#   scripts/bench/count-enricher.sh [count=3000] [BIN_DIR=target/release]
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
count=${1:-3000}
export BENCH_BIN=${2:-target/release}
in_flight=$(sed -n 's/^max_in_flight = \([0-9]*\)$/\1/p' deploy/config/enricher.toml)
input_topic=voicehub.analysis-result-ready.v1
. scripts/lib.sh
require_free_ports 18480 18482 19490 19491 19492 19493
[[ -x $bin/voicehub-enricher && -x $bin/voicehub-load && -x $bin/voicehub-ingress ]] ||
  build_release voicehub-ingress voicehub-enricher voicehub-devstack

# instructions TARGET RECORDS: the target's total instructions from start to stop, having
# drained a fresh topic of RECORDS records.
instructions() {
  local target=$1 records=$2 pid
  # A subshell ($(...)): what it starts is stopped by its own trap, whatever ends it.
  trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
        [[ ! -d $work/kafka-19492 ]] || deploy/ci/kafka.sh kill "$work/kafka-19492"' EXIT
  start_broker 19492 kafka
  fill_analysis_ready "$records" 20
  local callgrind=(valgrind --tool=callgrind --callgrind-out-file="$work/cg.out")
  if [[ $target == enricher ]]; then
    {
      printf '[admin]\nlisten = "127.0.0.1:19491"\n[log]\nlevel = "warn"\n'
      printf '[sources.default]\napi_key_env = "SCRIPT_API_KEY"\n'
      printf 'allowed_hosts = [{ host = "127.0.0.1:18482", allow_private_addresses = true }]\n'
      printf 'allow_http = true\n[consumer]\nmax_in_flight = %s\n' "$in_flight"
      kafka_toml 19492
    } >"$work/enricher.toml"
    SCRIPT_API_KEY=bench-key "${callgrind[@]}" "$bin/voicehub-enricher" \
      --config "$work/enricher.toml" >"$work/target.log" 2>"$work/valgrind.log" &
    pid=$!
    pids+=($pid)
    local done_now=0
    for _ in $(seq 3000); do
      done_now=$(curl -sf http://127.0.0.1:19491/metrics | awk '
        /^voicehub_enricher_records_total\{outcome="enriched"\}/ {n = $2}
        END {printf "%d\n", n}' || true)
      ((done_now < filled)) || break
      sleep 0.2
    done
    ((done_now >= filled)) || {
      echo "the enricher enriched $done_now of $filled" >&2
      exit 1
    }
  else
    "${callgrind[@]}" "$bin/voicehub-load" bare-enricher --brokers 127.0.0.1:19492 \
      --input "$input_topic" --group count-bare --in-flight "$in_flight" --count "$filled" \
      >"$work/target.log" 2>"$work/valgrind.log" &
    pid=$!
    pids+=($pid)
    for _ in $(seq 3000); do grep -q '"done"' "$work/target.log" && break; sleep 0.2; done
    grep '"done"' "$work/target.log" | grep -q '"failed":0' || {
      echo "the bare enricher did not drain: $(cat "$work/target.log")" >&2
      exit 1
    }
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  stop_broker 19492
  if [[ -n ${CALLGRIND_KEEP:-} ]]; then
    local kept=$CALLGRIND_KEEP.$target
    ((records > 500)) || kept+=.base
    cp "$work/cg.out" "$kept"
  fi
  # printf, not print: awk would write a sum past 2^31 in scientific notation.
  awk '/^summary:/ {s += $2; n++} END {if (!n) exit 1; printf "%.0f\n", s}' "$work/cg.out"*
  rm -f "$work/cg.out"*
}

declare -A per_record
for target in bare enricher; do
  base=$(instructions "$target" 500)
  with=$(instructions "$target" $((500 + count)))
  per_record[$target]=$(((with - base) / count))
  python3 -c "print(f'$target: instructions per record: {($with - $base) / $count:,.0f} ({$count} records; {$base:,} for start, 500 records and stop)')"
done
python3 -c "print(f'enricher / bare: {${per_record[enricher]} / ${per_record[bare]}:.2f}x')"
