# Shared by deploy/ci/kafka.sh (one broker) and deploy/ci/kafka-cluster.sh (the secured
# three-node cluster): the pinned jars, the java command line, process helpers. Sourced, with
# $here set to deploy/ci.
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
# Keyed by the pom's content: a changed dependency list is fetched anew.
cache=${VOICEHUB_KAFKA_CACHE:-$HOME/.cache/voicehub-kafka}/$version-$(sha256sum "$here/kafka/pom.xml" | cut -c1-12)

fetch() {
  if [[ -f $cache/complete ]]; then
    return
  fi
  mkdir -p "$cache"
  # Dependencies resolve into Maven's own repository (~/.m2), then are copied as plain jars.
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$cache/lib" -DincludeScope=runtime >&2
  touch "$cache/complete"
}

# The java command line for the broker in $1, into the array java; $2 its largest heap (768m).
java_for() {
  # java.io.tmpdir: the native lz4 library Kafka unpacks at every start stays in the broker's
  # directory instead of piling up in /tmp.
  local heap=${2:-768m}
  java=(java -Xms128m "-Xmx$heap" -XX:+UseG1GC -Dlog4j2.configurationFile="$1/log4j2.properties"
    -Djava.io.tmpdir="$1" -cp "$cache/lib/*")
}

# The pid of the broker started in $1, if that process still runs it (a stale pid file must
# not name a process that has since taken the number); the pid file is removed otherwise.
broker_pid() {
  local dir=$1 pid
  [[ -f $dir/pid ]] || return 1
  pid=$(cat "$dir/pid")
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $dir/server.properties"; then
    echo "$pid"
  else
    rm -f "$dir/pid"
    return 1
  fi
}

# Writes the brokers' log4j2 configuration into $1: warnings, and the start and stop lines.
log4j() {
  cat >"$1/log4j2.properties" <<'EOF'
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka.server.KafkaServer
logger.kafka.level=INFO
logger.raft.name=kafka.server.KafkaRaftServer
logger.raft.level=INFO
EOF
}

# Whether process $1 is gone: reaped, or a zombie whose other threads have exited too (a
# multi-threaded process's leader turns zombie first, while the others still hold its sockets).
gone() {
  [[ ! -r /proc/$1/stat ]] && return 0
  [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]] || return 1
  local threads
  threads=$(ls "/proc/$1/task" 2>/dev/null | wc -l)
  ((threads <= 1))
}

# Waits up to $2 tenths of a second for process $1 to be gone.
wait_gone() {
  for _ in $(seq 1 "$2"); do
    gone "$1" && return 0
    sleep 0.1
  done
  return 1
}

# A random cluster id: 16 random bytes, URL-safe base64 without padding (what Kafka expects).
# One starting with "-" would be read as an option by the format tool (1 start in 64 failed
# so): its first character is then replaced, which leaves a valid id.
uuidgen_like() {
  local id
  id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  [[ $id == -* ]] && id=A${id:1}
  echo "$id"
}

