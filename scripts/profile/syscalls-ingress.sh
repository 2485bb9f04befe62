#!/usr/bin/env bash
# Where a target's system time goes: its system calls per webhook by kind, and each of its
# threads' CPU per 1,000 webhooks, under CONNECTIONS connections (default 64; unique eventIds) on
# one warm Apache Kafka. Each target is started in turn, loaded for a warm-up (BENCH_WARMUP
# seconds, default 20: the ingress's deduplication table is full by then) and then for SECONDS,
# over which perf counts the system calls (syscall tracepoints) and /proc gives each thread's user
# + system time.
#
#   scripts/profile/syscalls-ingress.sh SECONDS TARGET...
#
# TARGET: bare | bare-keyed | bare-contract, or the path of a voicehub-ingress binary (as in
# alternate-ingress.sh). Needs perf (Debian linux-perf) and permission to trace.
set -euo pipefail
cd "$(dirname "$0")/../.."
(($# >= 2)) || {
  sed -n '2,12p' "$0" >&2
  exit 2
}
seconds=$1
shift
secret=bench-webhook-secret
warmup=${BENCH_WARMUP:-20}
. scripts/lib.sh
prepare_targets "$@"

calls=(write writev sendto sendmsg recvfrom recvmsg read futex epoll_wait epoll_pwait poll ppoll
  sched_yield nanosleep clock_nanosleep mmap munmap madvise mprotect brk)
events=raw_syscalls:sys_enter,context-switches
for call in "${calls[@]}"; do events+=,syscalls:sys_enter_$call; done
# threads PID: "tid:name cpu_ticks" per thread, sorted.
threads() {
  for task in /proc/"$1"/task/*; do
    echo "${task##*/}:$(tr ' ' _ <"$task/comm") $(awk '{print $14 + $15}' "$task/stat")"
  done | sort
}

start_broker 19392 kafka
for target in "$@"; do
  start_target "$target"
  load_closed "$warmup" >/dev/null
  threads "$target_pid" >"$work/before"
  load_closed "$seconds" >"$work/load.json" &
  load=$!
  perf stat -x, -e "$events" -p "$target_pid" -- sleep "$seconds" 2>"$work/perf.csv"
  wait "$load"
  threads "$target_pid" >"$work/after"
  stop_pid "$target_pid"
  ok=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['ok'])" "$work/load.json")
  echo "== $target: $ok webhooks in $seconds s"
  python3 - "$work/perf.csv" "$ok" <<'PY'
import sys
ok = int(sys.argv[2])
print("  system calls (and context switches) per webhook:")
for line in open(sys.argv[1]):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].isdigit() and int(fields[0]) >= ok / 200:
        name = fields[2].removeprefix("syscalls:sys_enter_")
        name = "(all system calls)" if name == "raw_syscalls:sys_enter" else name
        print(f"    {name:28s} {int(fields[0]) / ok:.3f}")
PY
  echo "  CPU ms per 1,000 webhooks, by thread:"
  join "$work/before" "$work/after" | awk -v ok="$ok" -v hz="$(getconf CLK_TCK)" '
    { ms = ($3 - $2) / hz * 1e6 / ok; total += ms
      if (ms >= 0.05) printf "    %-28s %.2f\n", substr($1, index($1, ":") + 1), ms }
    END { printf "    %-28s %.2f\n", "(all threads)", total }'
done
