#!/usr/bin/env bash
# Instructions per webhook, counted by valgrind's callgrind (repeatable, unlike CPU time on a
# shared 2-core machine): each target runs under callgrind against Apache Kafka, takes COUNT
# webhooks (unique eventIds, 8 connections) after 500 for warm-up, and is stopped; the
# instructions of the COUNT are the total minus a run that takes only the warm-up. Targets
# (COUNT_TARGETS, default all four), as in bench-ingress.sh:
#   bare           the bare bridge (voicehub-load bare-bridge), unkeyed
#   bare-keyed     the same, keyed over 100 keys
#   bare-contract  bare-keyed writing the record contract's nine headers too
#   ingress        voicehub-ingress with its defaults
# Prints each target's figure, then the ingress's ratio to each bare bridge. CALLGRIND_KEEP=PATH
# keeps each target's profile as PATH.TARGET and that of its warm-up-only run as
# PATH.TARGET.base (for callgrind_annotate: the difference is the COUNT webhooks' own).
#
#   scripts/bench/count-ingress.sh [count=5000] [BIN_DIR=target/release]
#
# BIN_DIR holds the voicehub-ingress to count (and the bare bridges' voicehub-load, if it has
# one; otherwise target/release's).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
count=${1:-5000}
export BENCH_BIN=${2:-target/release}
targets=" ${COUNT_TARGETS:-bare bare-keyed bare-contract ingress} "
secret=bench-webhook-secret
. scripts/lib.sh
require_free_ports 18380 19390 19392 19393
load_tool=target/release/voicehub-load
[[ -x $load_tool ]] || build_release voicehub-devstack
# The bare bridges from the ingress's build directory when it has them.
bare_tool=$bin/voicehub-load
[[ -x $bare_tool ]] || bare_tool=$load_tool

# instructions TARGET N: the target's total instructions from start to stop with N webhooks
# taken.
instructions() {
  start_broker 19392 kafka
  local url pid
  local callgrind=(valgrind --tool=callgrind --callgrind-out-file="$work/cg.out")
  if [[ $1 == ingress ]]; then
    {
      printf '[http]\nlisten = "127.0.0.1:18380"\n[admin]\nlisten = "127.0.0.1:19390"\n'
      printf '[sources.default]\nsecret_envs = ["SCRIPT_SECRET"]\n[log]\nlevel = "info"\n'
      kafka_toml 19392
    } >"$work/ingress.toml"
    SCRIPT_SECRET=$secret "${callgrind[@]}" "$bin/voicehub-ingress" --config "$work/ingress.toml" \
      >"$work/target.log" 2>"$work/valgrind.log" &
    pid=$!
    for _ in $(seq 600); do curl -sf http://127.0.0.1:19390/readyz >/dev/null 2>&1 && break; sleep 0.2; done
    url=http://127.0.0.1:18380/webhooks/voicehub
  else
    start_bare "$1" 18380 "${callgrind[@]}"
    pid=$bare
    url=http://127.0.0.1:18380/
  fi
  "$load_tool" run --url "$url" --secret "$secret" --concurrency 8 --count 500 --seconds 600 >/dev/null
  if (($2 > 0)); then
    "$load_tool" run --url "$url" --secret "$secret" --concurrency 8 --count "$2" --seconds 600 >/dev/null
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  stop_broker 19392
  if [[ -n ${CALLGRIND_KEEP:-} ]]; then
    local kept=$CALLGRIND_KEEP.$1
    (($2 > 0)) || kept+=.base
    cp "$work/cg.out" "$kept"
  fi
  local total
  # printf, not print: awk would write a sum past 2^31 in scientific notation.
  total=$(awk '/^summary:/ {s += $2; n++} END {if (!n) exit 1; printf "%.0f\n", s}' "$work/cg.out"*)
  rm -f "$work/cg.out"*
  echo "$total"
}
declare -A per_webhook
for target in bare bare-keyed bare-contract ingress; do
  [[ $targets == *" $target "* ]] || continue
  base=$(instructions "$target" 0)
  with=$(instructions "$target" "$count")
  per_webhook[$target]=$(((with - base) / count))
  python3 -c "print(f'$target: instructions per webhook: {($with - $base) / $count:,.0f} ({$count} webhooks; {$base:,} for start, warm-up and stop)')"
done
if [[ -n ${per_webhook[ingress]:-} ]]; then
  for bare in bare bare-keyed bare-contract; do
    [[ -z ${per_webhook[$bare]:-} ]] ||
      python3 -c "print(f'ingress / $bare: {${per_webhook[ingress]} / ${per_webhook[$bare]}:.2f}x')"
  done
fi
