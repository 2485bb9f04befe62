#!/usr/bin/env bash
# A secured, replicated Apache Kafka for tests: three KRaft nodes on loopback (each broker and
# controller), from the same Maven Central jars as deploy/ci/kafka.sh. What a platform team
# runs: TLS everywhere, SCRAM-SHA-512 and PLAIN over SASL_SSL, mutual TLS, ACLs with nothing
# allowed by default, replication 3, min.insync.replicas 2.
#
#   deploy/ci/kafka-cluster.sh start BASEPORT DIR   certificates, users and three nodes in DIR;
#                                                   waits until all three serve, prints DIR
#   deploy/ci/kafka-cluster.sh stop DIR             stop every node
#   deploy/ci/kafka-cluster.sh kill DIR N           SIGKILL node N (1-3), its data kept
#   deploy/ci/kafka-cluster.sh resume DIR N         start node N again on its data
#   deploy/ci/kafka-cluster.sh restart DIR N        stop node N cleanly (SIGTERM), start it
#                                                   again, wait until it serves
#   deploy/ci/kafka-cluster.sh pause|unpause DIR N  SIGSTOP / SIGCONT node N
#   deploy/ci/kafka-cluster.sh isolate|rejoin DIR N drop (iptables, root) / accept again the
#                                                   packets clients send to node N's listeners
#   deploy/ci/kafka-cluster.sh controller DIR       the id of the active controller
#   deploy/ci/kafka-cluster.sh acl DIR ARGS...      kafka-acls (AclCommand) as the admin user
#
# Node N (1-3) listens on BASEPORT+10N+0 SASL_SSL (clients: SCRAM-SHA-512, PLAIN), +1 SSL with
# client certificates (clients: mTLS), +2 SSL (brokers among themselves), +3 SSL (controllers).
# With VOICEHUB_KAFKA_CLUSTER_CLEARTEXT=1 at start (benchmarks: what TLS and SASL cost), also
# +4 PLAINTEXT (principal User:ANONYMOUS, no ACL either) and +5 SASL_PLAINTEXT (the same users),
# bootstrap lists in bootstrap.plaintext and bootstrap.sasl_plaintext.
# Keep BASEPORT below the ephemeral port range (/proc/sys/net/ipv4/ip_local_port_range, from
# 32768 by default): a node that `resume` starts again rebinds its ports, and a client socket
# that got one of them as its local port while the node was down makes that fail.
# DIR then holds what clients need:
#   ca.pem                      the CA every listener's certificate is signed by (IP SAN 127.0.0.1)
#   bootstrap.sasl, bootstrap.mtls   the bootstrap lists, comma-separated
#   users                       name:password per line, SCRAM-SHA-512 and PLAIN alike:
#                               admin (super user), ingress, enricher, operator, nobody
#   client-NAME.pem, client-NAME.key   mTLS client certificates, principal User:NAME
#                               (ingress, enricher), CN=NAME
#   admin.properties            Java client properties of the admin user (for acl)
#   bootstrap.plaintext, bootstrap.sasl_plaintext   with VOICEHUB_KAFKA_CLUSTER_CLEARTEXT=1 only
# Every user but admin starts with no ACL: tests grant exactly what a service needs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=kafka/lib.sh
source "$here/kafka/lib.sh"

# Each node's heap: three JVMs share the machine with the tests.
heap=${VOICEHUB_KAFKA_CLUSTER_HEAP:-320m}
users=(admin ingress enricher operator nobody)
mtls_users=(ingress enricher)
store_password=test-store-password

port_of() { echo $(($(cat "$1/baseport") + 10 * $2 + $3)); }
# bootstrap_list DIR LISTENER: the three nodes' addresses of that listener (0-5), comma-separated.
bootstrap_list() {
  echo "127.0.0.1:$(port_of "$1" 1 "$2"),127.0.0.1:$(port_of "$1" 2 "$2"),127.0.0.1:$(port_of "$1" 3 "$2")"
}

certificates() {
  local dir=$1
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=voicehub-test-ca" \
      -keyout ca.key -out ca.pem 2>/dev/null
    # One certificate for the three nodes (all on 127.0.0.1), principal User:broker.
    sign broker "subjectAltName=IP:127.0.0.1,DNS:localhost"
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -out broker.p12 -passout "pass:$store_password"
    for user in "${mtls_users[@]}"; do
      sign "$user" "extendedKeyUsage=clientAuth"
      mv "$user.pem" "client-$user.pem"
      mv "$user.key" "client-$user.key"
    done
    rm -f ca.srl ./*.csr ./*.ext
  )
}

# Signs a key and certificate NAME.key/NAME.pem with CN=NAME and the extension line $2.
sign() {
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  echo "$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}

node_properties() {
  local dir=$1 n=$2
  local voters="" i
  for i in 1 2 3; do
    voters+="${voters:+,}$i@127.0.0.1:$(port_of "$dir" "$i" 3)"
  done
  local plain_users="" user password cleartext=""
  if [[ -f $dir/bootstrap.plaintext ]]; then
    cleartext=",PLAINTEXT://127.0.0.1:$(port_of "$dir" "$n" 4),SASL_PLAINTEXT://127.0.0.1:$(port_of "$dir" "$n" 5)"
  fi
  while IFS=: read -r user password; do
    plain_users+=" user_$user=\"$password\""
  done <"$dir/users"
  cat <<EOF
node.id=$n
process.roles=broker,controller
listeners=SASL_SSL://127.0.0.1:$(port_of "$dir" "$n" 0),MTLS://127.0.0.1:$(port_of "$dir" "$n" 1),INTERNAL://127.0.0.1:$(port_of "$dir" "$n" 2),CONTROLLER://127.0.0.1:$(port_of "$dir" "$n" 3)$cleartext
advertised.listeners=SASL_SSL://127.0.0.1:$(port_of "$dir" "$n" 0),MTLS://127.0.0.1:$(port_of "$dir" "$n" 1),INTERNAL://127.0.0.1:$(port_of "$dir" "$n" 2)$cleartext
listener.security.protocol.map=SASL_SSL:SASL_SSL,MTLS:SSL,INTERNAL:SSL,CONTROLLER:SSL,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
controller.quorum.voters=$voters
log.dirs=$dir/node$n/data

ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/broker.p12
ssl.keystore.password=$store_password
ssl.key.password=$store_password
ssl.truststore.type=PEM
ssl.truststore.location=$dir/ca.pem
ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none
ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/\$1/,DEFAULT

sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain_users;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain_users;

authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:broker;User:admin

num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
}

start() {
  local base=$1 dir=$2 n user
  fetch
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  echo "$base" >"$dir/baseport"
  log4j "$dir"
  certificates "$dir"
  : >"$dir/users"
  for user in "${users[@]}"; do
    echo "$user:$user-$(head -c 9 /dev/urandom | base64 | tr '+/' '-_')" >>"$dir/users"
  done
  chmod 600 "$dir/users" "$dir"/*.key
  bootstrap_list "$dir" 0 >"$dir/bootstrap.sasl"
  bootstrap_list "$dir" 1 >"$dir/bootstrap.mtls"
  rm -f "$dir/bootstrap.plaintext" "$dir/bootstrap.sasl_plaintext"
  if [[ ${VOICEHUB_KAFKA_CLUSTER_CLEARTEXT:-} == 1 ]]; then
    bootstrap_list "$dir" 4 >"$dir/bootstrap.plaintext"
    bootstrap_list "$dir" 5 >"$dir/bootstrap.sasl_plaintext"
  fi
  cat >"$dir/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password_of "$dir" admin)";
ssl.truststore.type=PEM
ssl.truststore.location=$dir/ca.pem
EOF
  local scram=() cluster_id
  while IFS=: read -r user password; do
    scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$password]")
  done <"$dir/users"
  cluster_id=$(uuidgen_like)
  for n in 1 2 3; do
    mkdir -p "$dir/node$n/data"
    node_properties "$dir" "$n" >"$dir/node$n/server.properties"
    log4j "$dir/node$n"
    java_for "$dir/node$n" "$heap"
    "${java[@]}" kafka.tools.StorageTool format -t "$cluster_id" "${scram[@]}" \
      -c "$dir/node$n/server.properties" >"$dir/node$n/format.log" 2>&1 || {
      cat "$dir/node$n/format.log" >&2
      exit 1
    }
  done
  for n in 1 2 3; do
    launch "$dir" "$n"
  done
  wait_all "$dir" 1 2 3
  echo "$dir"
}

password_of() { sed -n "s/^$2://p" "$1/users"; }

# Starts node $2 of the cluster in $1 in the background (its pid in nodeN/pid).
launch() {
  local dir=$1 n=$2
  local node=$dir/node$n
  java_for "$node" "$heap"
  # Appended, not truncated: a resumed node's log follows its earlier life.
  echo "--- launch $(date -u +%FT%T.%3NZ)" >>"$node/kafka.log"
  nohup "${java[@]}" kafka.Kafka "$node/server.properties" >>"$node/kafka.log" 2>&1 &
  echo $! >"$node/pid"
}

# Waits until each node named serves (its latest launch logged "Kafka Server started").
wait_all() {
  local dir=$1 n
  shift
  for n in "$@"; do
    local node=$dir/node$n ok=
    for _ in $(seq 1 900); do
      if sed -n '/^--- launch/h; /^--- launch/!H; ${x;p}' "$node/kafka.log" |
        grep -q "Kafka Server started"; then
        ok=1
        break
      fi
      if ! kill -0 "$(cat "$node/pid")" 2>/dev/null; then
        echo "Kafka node $n exited during startup:" >&2
        tail -30 "$node/kafka.log" >&2
        exit 1
      fi
      sleep 0.1
    done
    [[ -n $ok ]] || {
      echo "Kafka node $n did not start within 90 s:" >&2
      tail -30 "$node/kafka.log" >&2
      exit 1
    }
  done
}

node_pid() {
  local dir n=$2
  dir=$(cd "$1" && pwd)
  broker_pid "$dir/node$n"
}

stop_all() {
  local dir n pid
  dir=$(cd "$1" && pwd)
  for n in 1 2 3; do
    pid=$(broker_pid "$dir/node$n") || continue
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  for n in 1 2 3; do
    pid=$(broker_pid "$dir/node$n") || continue
    wait_gone "$pid" 200 || kill -9 "$pid" 2>/dev/null || true
    wait_gone "$pid" 100 || true
    rm -f "$dir/node$n/pid"
  done
}

kill_node() {
  local pid
  pid=$(node_pid "$1" "$2") || return 0
  kill -9 "$pid" 2>/dev/null || true
  wait_gone "$pid" 300 || {
    echo "Kafka node $2 (pid $pid) still there 30 s after SIGKILL" >&2
    exit 1
  }
  rm -f "$1/node$2/pid"
}

signal_node() {
  local pid
  pid=$(node_pid "$1" "$2") || {
    echo "Kafka node $2 is not running" >&2
    exit 1
  }
  kill "-$3" "$pid"
}

acl() {
  local dir=$1
  shift
  fetch
  java_for "$dir" 256m
  "${java[@]}" -XX:TieredStopAtLevel=1 org.apache.kafka.tools.AclCommand \
    --bootstrap-server "$(cat "$dir/bootstrap.sasl")" --command-config "$dir/admin.properties" "$@"
}

restart_node() {
  local dir pid
  dir=$(cd "$1" && pwd)
  if pid=$(broker_pid "$dir/node$2"); then
    kill "$pid"
    wait_gone "$pid" 300 || {
      echo "Kafka node $2 (pid $pid) did not stop within 30 s of SIGTERM" >&2
      exit 1
    }
  fi
  launch "$dir" "$2"
  wait_all "$dir" "$2"
}

# The iptables rules that drop what clients send to node $2's client listeners.
isolation() {
  local listener listeners=(0 1)
  [[ ! -f $1/bootstrap.plaintext ]] || listeners+=(4 5)
  for listener in "${listeners[@]}"; do
    iptables "$3" OUTPUT -o lo -p tcp --dport "$(port_of "$1" "$2" "$listener")" -j DROP
  done
}

controller() {
  local dir=$1
  fetch
  java_for "$dir" 256m
  "${java[@]}" -XX:TieredStopAtLevel=1 org.apache.kafka.tools.MetadataQuorumCommand \
    --bootstrap-server "$(cat "$dir/bootstrap.sasl")" --command-config "$dir/admin.properties" \
    describe --status | sed -n 's/^LeaderId: *\([0-9]*\).*/\1/p'
}

node_arg() {
  [[ ${1:-} =~ ^[123]$ ]] || {
    echo "node: 1, 2 or 3" >&2
    exit 2
  }
}

case ${1:-} in
  start) start "${2:?base port}" "${3:?directory}" ;;
  stop) stop_all "${2:?directory}" ;;
  kill) node_arg "${3:-}" && kill_node "${2:?directory}" "$3" ;;
  resume)
    node_arg "${3:-}"
    dir=$(cd "${2:?directory}" && pwd)
    launch "$dir" "$3"
    wait_all "$dir" "$3"
    ;;
  restart) node_arg "${3:-}" && restart_node "${2:?directory}" "$3" ;;
  pause) node_arg "${3:-}" && signal_node "${2:?directory}" "$3" STOP ;;
  unpause) node_arg "${3:-}" && signal_node "${2:?directory}" "$3" CONT ;;
  isolate) node_arg "${3:-}" && isolation "${2:?directory}" "$3" -A ;;
  rejoin) node_arg "${3:-}" && isolation "${2:?directory}" "$3" -D ;;
  controller) controller "${2:?directory}" ;;
  acl) acl "${2:?directory}" "${@:3}" ;;
  *)
    sed -n '2,30p' "$0" >&2
    exit 2
    ;;
esac
