# Shared by the benchmark and measurement scripts under scripts/; sourced, not run. Gives them:
# $bin (release binaries), $work (a temporary directory, removed at exit) and a trap that stops
# every process whose pid was added to `pids`.

# Refuses to measure next to a leftover run: its figures would be wrong.
require_free_ports() {
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is in use (an earlier run still going?); its figures would be wrong" >&2
      exit 1
    fi
  done
}

# Builds the named packages in release mode.
build_release() {
  local args=()
  for package in "$@"; do args+=(-p "$package"); done
  cargo build --release --locked "${args[@]}" >&2
}

bin=${BENCH_BIN:-target/release}
work=$(mktemp -d)
pids=()
kafkas=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # A broker stop_broker already removed needs no stopping.
  for dir in "${kafkas[@]}"; do [[ ! -d $dir ]] || deploy/ci/kafka.sh kill "$dir"; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

wait_http() {
  for _ in $(seq 200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
  exit 1
}
# cpu_seconds PID: the process's user + system time so far, in seconds.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
# cpu_split PID: its user time, system time (seconds) and context switches (voluntary and
# involuntary, summed over its threads) so far. The switches of threads that have exited are
# not counted (the CPU times are).
cpu_split() {
  local hz switches
  hz=$(getconf CLK_TCK)
  switches=$(cat "/proc/$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}')
  awk -v hz="$hz" -v cs="$switches" '{print $14 / hz, $15 / hz, cs}' "/proc/$1/stat"
}
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# start_broker PORT [sqlite|memory|kafka]: a fresh broker on 127.0.0.1:PORT, ready when this
# returns: voicehub-dev's embedded tansu (SQLite or memory storage), or Apache Kafka from its
# Maven Central jars (deploy/ci/kafka.sh: Java 17 and Maven; its controller takes PORT+1).
# stop_broker PORT stops it.
start_broker() {
  if [[ ${2:-sqlite} == kafka ]]; then
    deploy/ci/kafka.sh start "$1" "$work/kafka-$1" >/dev/null
    kafkas+=("$work/kafka-$1")
    return
  fi
  "$bin/voicehub-dev" --broker-only --storage "${2:-sqlite}" --broker-port "$1" \
    >"$work/broker-$1.log" 2>&1 &
  pids+=($!)
  eval "broker_$1=$!"
  for _ in $(seq 100); do grep -q '^topics' "$work/broker-$1.log" && break; sleep 0.1; done
}
stop_broker() {
  if [[ -d $work/kafka-$1 ]]; then
    deploy/ci/kafka.sh kill "$work/kafka-$1"
    rm -rf "$work/kafka-$1"
    return
  fi
  local pid_var=broker_$1
  stop_pid "${!pid_var}"
}

# stop_pid PID: SIGTERM, and wait until it has exited.
stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# start_bare KIND PORT [WRAPPER...]: a bare bridge (voicehub-load bare-bridge) on
# 127.0.0.1:PORT producing to the broker on 127.0.0.1:19392, run through WRAPPER (valgrind,
# say) when given; listening when this returns, its pid in $bare. KIND: bare (unkeyed),
# bare-keyed (keyed over 100 keys, as the ingress keys by call), bare-contract (keyed, with
# the record contract's nine headers) or bare-parsed (the contract bridge of issue 34's
# measurements: four fields of the body read with a borrowed struct, keyed by callId, the nine
# headers). $bare_tool is the voicehub-load to run (default
# $bin/voicehub-load); its output goes to $work/bare.log, the wrapper's stderr to
# $work/bare.err.
start_bare() {
  local kind=$1 port=$2
  shift 2
  local args=()
  case $kind in
    bare) ;;
    bare-keyed) args=(--keys 100) ;;
    bare-contract) args=(--keys 100 --contract-headers) ;;
    bare-parsed) args=(--contract-headers --parse-body) ;;
    *)
      echo "start_bare: no bare bridge $kind" >&2
      exit 2
      ;;
  esac
  rm -f "$work/bare.log"
  "$@" "${bare_tool:-$bin/voicehub-load}" bare-bridge --listen "127.0.0.1:$port" \
    --brokers 127.0.0.1:19392 "${args[@]}" >"$work/bare.log" 2>"$work/bare.err" &
  bare=$!
  pids+=($bare)
  # Up to two minutes: under valgrind the bridge starts slowly.
  for _ in $(seq 1200); do grep -q listening "$work/bare.log" 2>/dev/null && return; sleep 0.1; done
  echo "$kind did not start: $(cat "$work/bare.log" "$work/bare.err")" >&2
  exit 1
}

# prepare_targets TARGET...: for scripts that start each TARGET with start_target. Checks the
# ports and that each target is a bare bridge's name (bare, bare-keyed, bare-contract,
# bare-parsed) or an executable (a voicehub-ingress build); sets $load_tool (built if missing)
# and $url (where the target takes webhooks).
prepare_targets() {
  require_free_ports 18380 19390 19392 19393
  load_tool=target/release/voicehub-load
  [[ -x $load_tool ]] || build_release voicehub-devstack
  url=http://127.0.0.1:18380/webhooks/voicehub
  for target in "$@"; do
    [[ $target =~ ^bare(-keyed|-contract|-parsed)?$ || -x $target ]] || {
      echo "$target: not a bare bridge name or an executable" >&2
      exit 2
    }
  done
}
# start_target TARGET: that bare bridge, or that voicehub-ingress binary with its defaults
# (spool off), listening on 18380 with the broker on 19392; its pid in $target_pid. Uses
# $load_tool for the bare bridges and $secret for the ingress.
start_target() {
  if [[ $1 == bare* ]]; then
    bare_tool=$load_tool start_bare "$1" 18380
    target_pid=$bare
    return
  fi
  cp "$1" "$work/voicehub-ingress"
  bin=$work start_ingress 18380 19390 19392 "$secret" info
  target_pid=$ingress
}

# load_closed SECONDS: $load_tool's closed loop at $CONNECTIONS connections (default 64;
# unique eventIds) against $url with $secret for SECONDS; its JSON summary on stdout.
load_closed() {
  "$load_tool" run --url "$url" --secret "$secret" --concurrency "${CONNECTIONS:-64}" --seconds "$1"
}

# kafka_toml BROKER_PORT: the [kafka] section, topics created with 3 partitions; or
# $kafka_section, if set (another cluster, its security properties), instead.
kafka_toml() {
  if [[ -n ${kafka_section:-} ]]; then
    printf '%s\n' "$kafka_section"
    return
  fi
  cat <<TOML
[kafka]
bootstrap_servers = "127.0.0.1:$1"
[kafka.provision]
create_topics = true
partitions = 3
replication_factor = 1
TOML
}

# start_ingress HTTP_PORT ADMIN_PORT BROKER_PORT SECRET [LOG_LEVEL]: ready when this returns;
# its pid is in $ingress. $ingress_extra, if set, is appended to its configuration.
start_ingress() {
  {
    printf '[http]\nlisten = "127.0.0.1:%s"\n[admin]\nlisten = "127.0.0.1:%s"\n' "$1" "$2"
    printf '[sources.default]\nsecret_envs = ["SCRIPT_SECRET"]\n[log]\nlevel = "%s"\n' "${5:-warn}"
    kafka_toml "$3"
    printf '%s\n' "${ingress_extra:-}"
  } >"$work/ingress.toml"
  SCRIPT_SECRET=$4 "$bin/voicehub-ingress" --config "$work/ingress.toml" >"$work/ingress.log" 2>&1 &
  ingress=$!
  pids+=($ingress)
  wait_http "http://127.0.0.1:$2/readyz"
}

# fill_analysis_ready RECORDS DELAY_MS: on the broker on 127.0.0.1:19492, the analysis-ready
# topic filled with RECORDS AnalysisResultReady events through an ingress (18480, admin
# 19490, stopped after), their URLs on a stand-in analysis API on 127.0.0.1:18482 answering
# in DELAY_MS (left running); how many were accepted in $filled.
fill_analysis_ready() {
  "$bin/voicehub-load" analysis-api --listen 127.0.0.1:18482 --delay-ms "$2" >/dev/null 2>&1 &
  pids+=($!)
  start_ingress 18480 19490 19492 bench-webhook-secret
  local fill
  fill=$("$bin/voicehub-load" run --url http://127.0.0.1:18480/webhooks/voicehub \
    --secret bench-webhook-secret --concurrency 16 --seconds 900 --count "$1" \
    --analysis-url http://127.0.0.1:18482/api/v1/r)
  filled=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ok'])" "$fill")
  stop_pid "$ingress"
}

# start_enricher ADMIN_PORT BROKER_PORT API_HOST API_KEY: ready when this returns; pid in
# $enricher. $enricher_extra, if set, is appended to its configuration.
start_enricher() {
  {
    printf '[admin]\nlisten = "127.0.0.1:%s"\n[log]\nlevel = "warn"\n' "$1"
    printf '[sources.default]\napi_key_env = "SCRIPT_API_KEY"\nallowed_hosts = [{ host = "%s", allow_private_addresses = true }]\nallow_http = true\n' "$3"
    kafka_toml "$2"
    printf '%s\n' "${enricher_extra:-}"
  } >"$work/enricher.toml"
  SCRIPT_API_KEY=$4 "$bin/voicehub-enricher" --config "$work/enricher.toml" >"$work/enricher.log" 2>&1 &
  enricher=$!
  pids+=($enricher)
  wait_http "http://127.0.0.1:$1/readyz"
}

# figures FIRST_AT NOW RECORDS USER0 SYS0 USER1 SYS1: "records/s cpu-ms-per-1000"
figures() {
  python3 -c "import sys; a=[float(x) for x in sys.argv[1:]]; n=max(a[2],1)
print(round(n / max(a[1] - a[0], 1e-3), 1), round((a[5] + a[6] - a[3] - a[4]) * 1e6 / n, 1))" "$@"
}

# cpu_of PID...: their user + system time so far summed, in seconds.
cpu_of() {
  local total=0 pid
  for pid in "$@"; do total=$(python3 -c "print($total + $(cpu_seconds "$pid"))"); done
  echo "$total"
}

# drain_enricher GROUP: an enricher (admin 19491, the broker of kafka_toml 19492, the stand-in
# API of fill_analysis_ready, $in_flight records in flight) in consumer group GROUP until it
# has enriched $filled records, then stopped (the script fails if it dead-letters one, dies, or
# takes over 10 minutes). Prints "records/s cpu-ms-per-1000 peak-rss-mib
# context-switches-per-1000", from its first record to its last, and, when $also_measured
# names pids (the brokers), their CPU ms per 1,000 records over the same span.
drain_enricher() {
  enricher_extra=$(printf '[consumer]\nmax_in_flight = %s\ngroup_id = "%s"\n' "$in_flight" "$1")
  start_enricher 19491 19492 127.0.0.1:18482 bench-key
  local first_at="" first_count=0 done_now failed now user0 sys0 cs0 user1 sys1 cs1 others0="" others1
  local give_up=$((SECONDS + 600))
  while :; do
    read -r done_now failed <<<"$(curl -sf http://127.0.0.1:19491/metrics | awk '
      /^voicehub_enricher_records_total\{outcome="enriched"\}/ {ok = $2}
      /^voicehub_enricher_records_total\{outcome="dead_lettered"\}/ {dl = $2}
      END {printf "%d %d\n", ok, dl}' || true)"
    done_now=${done_now:-0}
    if ((${failed:-0} > 0)) || ! kill -0 "$enricher" 2>/dev/null || ((SECONDS > give_up)); then
      echo "the enricher stopped enriching: $done_now of $filled enriched, ${failed:-0} dead-lettered" >&2
      tail -20 "$work/enricher.log" >&2
      exit 1
    fi
    now=$(date +%s.%N)
    if [ -z "$first_at" ] && [ "$done_now" -gt 0 ]; then
      first_at=$now first_count=$done_now
      read -r user0 sys0 cs0 <<<"$(cpu_split "$enricher")"
      [[ -z ${also_measured:-} ]] || others0=$(cpu_of $also_measured)
    fi
    [ "$done_now" -ge "$filled" ] && break
    sleep 0.1
  done
  read -r user1 sys1 cs1 <<<"$(cpu_split "$enricher")"
  local records=$((filled - first_count))
  echo -n "$(figures "$first_at" "$now" "$records" "$user0" "$sys0" "$user1" "$sys1") $(peak_rss_mib "$enricher")"
  echo -n " $(((cs1 - cs0) * 1000 / (records > 0 ? records : 1)))"
  if [[ -n $others0 ]]; then
    others1=$(cpu_of $also_measured)
    echo -n " $(python3 -c "print(round(($others1 - $others0) * 1e6 / max($records, 1), 1))")"
  fi
  echo
  stop_pid "$enricher"
}
