#!/usr/bin/env bash
# Apache Kafka (single-node KRaft, loopback only) from its Maven Central jars, for tests and
# benchmarks. Needs Java 17+ and Maven; downloads only from Maven Central, once, into a cache.
#
#   deploy/ci/kafka.sh fetch              the jars, into $VOICEHUB_KAFKA_CACHE (idempotent)
#   deploy/ci/kafka.sh lib                fetch, then print the jars' directory
#   deploy/ci/kafka.sh start PORT DIR     format DIR, start a broker on 127.0.0.1:PORT, wait
#                                         until it answers; its pid in DIR/pid, log DIR/kafka.log
#   deploy/ci/kafka.sh stop DIR           stop it (SIGTERM, then SIGKILL after 20 s)
#   deploy/ci/kafka.sh kill DIR           kill it (SIGKILL: a crash; the data stays in DIR)
#   deploy/ci/kafka.sh resume DIR         start it again on DIR's data and port, wait until it
#                                         answers (after kill or stop)
#
# The pinned version is the pom's (deploy/ci/kafka/pom.xml).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=kafka/lib.sh
source "$here/kafka/lib.sh"

start() {
  local port=$1 dir=$2
  fetch
  mkdir -p "$dir/data"
  dir=$(cd "$dir" && pwd)
  local controller=$((port + 1))
  cat >"$dir/server.properties" <<EOF
node.id=1
process.roles=broker,controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$controller
log.dirs=$dir/data
num.partitions=2
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
# A broker killed and started again (outage tests) is fenced until its old session expires.
broker.session.timeout.ms=2000
broker.heartbeat.interval.ms=500
EOF
  log4j "$dir"
  java_for "$dir"
  "${java[@]}" kafka.tools.StorageTool format --standalone -t "$(uuidgen_like)" \
    -c "$dir/server.properties" >"$dir/format.log" 2>&1 || {
    cat "$dir/format.log" >&2
    exit 1
  }
  launch "$dir"
}

# Starts the broker formatted in $1 and waits until it serves; prints its bootstrap address.
launch() {
  local dir
  dir=$(cd "$1" && pwd)
  local port
  port=$(sed -n 's/^advertised.listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$dir/server.properties")
  java_for "$dir"
  nohup "${java[@]}" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 600); do
    if grep -q "Kafka Server started" "$dir/kafka.log" 2>/dev/null; then
      echo "127.0.0.1:$port"
      return
    fi
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "Kafka exited during startup:" >&2
      tail -30 "$dir/kafka.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "Kafka did not start within 60 s:" >&2
  tail -30 "$dir/kafka.log" >&2
  exit 1
}

stop() {
  local dir pid
  dir=$(cd "$1" && pwd)
  pid=$(broker_pid "$dir") || return 0
  kill "$pid" 2>/dev/null || true
  wait_gone "$pid" 200 || kill -9 "$pid" 2>/dev/null || true
  wait_gone "$pid" 100 || true
  rm -f "$dir/pid"
}

crash() {
  local dir pid
  dir=$(cd "$1" && pwd)
  pid=$(broker_pid "$dir") || return 0
  kill -9 "$pid" 2>/dev/null || true
  wait_gone "$pid" 300 || {
    echo "Kafka (pid $pid) still there 30 s after SIGKILL" >&2
    exit 1
  }
  rm -f "$dir/pid"
}

case ${1:-} in
  fetch) fetch ;;
  lib) fetch && echo "$cache/lib" ;;
  start) start "${2:?port}" "${3:?directory}" ;;
  stop) stop "${2:?directory}" ;;
  kill) crash "${2:?directory}" ;;
  resume) launch "${2:?directory}" ;;
  *)
    sed -n '2,15p' "$0" >&2
    exit 2
    ;;
esac
