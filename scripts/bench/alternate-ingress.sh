#!/usr/bin/env bash
# CPU per webhook of several targets in alternation on one warm Apache Kafka, for comparisons
# finer than one bench-ingress.sh run can make (CPU time on this shared machine moves by
# +-5 ms per 1,000 between identical runs). Each round starts each target in turn, warms it
# 3 s, then loads it SECONDS at CONNECTIONS connections (default 64; unique eventIds) and
# reads the target process's user + system time and its threads' context switches. The broker is warmed 20 s
# first, so no round runs on a cold JVM. Prints one line per target per round, then each
# target's means and standard deviations.
#
#   [CONNECTIONS=8] scripts/bench/alternate-ingress.sh ROUNDS SECONDS TARGET...
#
# TARGET: bare | bare-keyed | bare-contract | bare-parsed (the bare bridges of scripts/lib.sh's
# start_bare), or the path of a voicehub-ingress binary (run with its defaults, spool off),
# e.g. two builds to compare.
set -euo pipefail
cd "$(dirname "$0")/../.."
(($# >= 3)) || {
  sed -n '2,14p' "$0" >&2
  exit 2
}
rounds=$1 seconds=$2
shift 2
secret=bench-webhook-secret
. scripts/lib.sh
prepare_targets "$@"

start_broker 19392 kafka
start_target bare
load_closed 20 >/dev/null
stop_pid "$target_pid"

declare -A figures users systems switch_counts
for round in $(seq "$rounds"); do
  for target in "$@"; do
    start_target "$target"
    load_closed 3 >/dev/null
    read -r user0 sys0 cs0 <<<"$(cpu_split "$target_pid")"
    out=$(load_closed "$seconds")
    read -r user1 sys1 cs1 <<<"$(cpu_split "$target_pid")"
    stop_pid "$target_pid"
    figure=$(python3 -c "
import json, sys
o = json.loads(sys.argv[1])
per = 1e6 / o['ok']
user, system = ($user1 - $user0) * per, ($sys1 - $sys0) * per
print(round(user + system, 1), round(user, 1), round(system, 1), round(($cs1 - $cs0) * per / 1e3),
      round(o['ok_per_second']), o['other_status'] + o['errors'])" "$out")
    read -r cpu user system switches rate failed <<<"$figure"
    echo "round $round $target: $cpu ms CPU per 1,000 webhooks (user $user, system $system)," \
      "$switches context switches per 1,000, $rate webhooks/s, $failed non-2xx or errors"
    figures[$target]="${figures[$target]:-} $cpu"
    users[$target]="${users[$target]:-} $user"
    systems[$target]="${systems[$target]:-} $system"
    switch_counts[$target]="${switch_counts[$target]:-} $switches"
  done
done
for target in "$@"; do
  python3 -c "
import statistics as s, sys
def line(v):
    v = [float(x) for x in v.split()]
    return f'{s.mean(v):.1f} (sd {s.stdev(v) if len(v) > 1 else 0:.1f})'
name, cpu, user, system, switches = sys.argv[1:]
print(f'{name}: CPU ms per 1,000 webhooks {line(cpu)}, user {line(user)}, system {line(system)};',
      f'context switches per 1,000 {line(switches)}; over {len(cpu.split())} rounds')" \
    "$target" "${figures[$target]}" "${users[$target]}" "${systems[$target]}" "${switch_counts[$target]}"
done
