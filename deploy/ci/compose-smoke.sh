#!/usr/bin/env bash
# Builds the image from deploy/Dockerfile for real and runs docker-compose.yml against it (with
# deploy/ci/compose.ci.yml: Apache Kafka from a local image of its Maven Central jars run with
# the compose file's own KRaft settings, a stand-in Prometheus, host networking), then
# checks from the outside: /readyz 200 on both services; an authenticated webhook of every
# event type accepted (whole simulated calls plus the Call Studio examples); every record on its
# topic; one enriched record per analysis-ready record, fetched from the simulator's stand-in
# API; a webhook accepted into the ingress's spool (on its volume) while Kafka is paused and
# forwarded once it is back; the Prometheus scrape of both services up with the alert rules
# loaded; and the bridge containers running as uid 65532 with a read-only root filesystem.
# Then, on the same Kafka, deploy/ci/memory-limit.sh: the image's ingress as the chart runs it,
# inside the chart's memory limit, under an idle-connection flood and a burst of large bodies.
#
# Needs root and the tools of deploy/ci/install-tools.sh; starts dockerd if none runs (and stops
# it). Usage: deploy/ci/compose-smoke.sh [BIN_DIR]  (host-built voicehub-tail, default
# target/debug). Prints the image's size and build time.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/opt/voicehub-tools/bin:$PATH
bin_dir=${1:-target/debug}
work=$(mktemp -d)
project=voicehub-ci
dockerd_pid=
compose() { docker compose -p "$project" -f docker-compose.yml -f deploy/ci/compose.ci.yml "$@"; }
fail() {
  echo "compose-smoke: $*" >&2
  compose --profile demo logs --no-color --tail 40 >&2 || true
  exit 1
}
cleanup() {
  compose --profile demo down --volumes --timeout 10 >/dev/null 2>&1 || true
  if [[ -n $dockerd_pid ]]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# has PATTERN URL: whether the page at URL has a line matching PATTERN. Read whole first:
# `curl | grep -q` fails under pipefail whenever grep stops reading before curl has written all.
has() {
  local page
  page=$(curl -fsS "$2") || return 1
  grep -q "$1" <<<"$page"
}

wait_for() { # description seconds command...
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out waiting for $what"
    sleep 1
  done
}

# Host networking: the compose file's ports are this machine's.
for port in 8080 8090 9090 9091 9092 9093 9099; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "compose-smoke: port $port is in use (voicehub-dev running?); the smoke test needs it" >&2
    exit 1
  fi
done

if ! docker info >/dev/null 2>&1; then
  echo "--- starting dockerd"
  dockerd >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  wait_for "the Docker engine" 30 docker info
fi

echo "--- base images"
deploy/ci/base-images.sh

echo "--- the README's run command on a fresh Debian with only Rust (deploy/ci/fresh-machine.sh)"
deploy/ci/fresh-machine.sh

echo "--- docker-compose.yml against the Compose specification"
docker compose -f docker-compose.yml --profile demo config --quiet
compose --profile demo config --quiet
echo "  valid (alone and with the CI override)"

echo "--- image build (deploy/Dockerfile, local base images)"
start=$SECONDS
DOCKER_BUILDKIT=1 /usr/bin/docker build --quiet -f deploy/Dockerfile \
  --build-arg RUST_IMAGE=voicehub-ci/rust:bookworm \
  --build-arg RUNTIME_IMAGE=voicehub-ci/cc-runtime:bookworm \
  -t voicehub-bridge:local . >/dev/null
echo "  built in $((SECONDS - start)) s; size $(docker image inspect -f '{{.Size}}' voicehub-bridge:local | numfmt --to=iec)"
docker run --rm voicehub-bridge:local /usr/local/bin/voicehub --version | grep -q '^voicehub ' ||
  fail "the image has no working voicehub CLI"
echo "  the operator CLI is in the image ($(docker run --rm voicehub-bridge:local /usr/local/bin/voicehub --version))"
# The SBOMs: one CycloneDX 1.5 document per binary, listing what it links (no test crate), with
# librdkafka's version as rdkafka-sys's build metadata; compared below with what the running
# ingress reports.
container=$(docker create voicehub-bridge:local)
docker cp "$container:/usr/share/doc/voicehub-bridge/sbom" "$work/sbom" >/dev/null
docker rm "$container" >/dev/null
librdkafka=$(python3 - "$work/sbom" <<'PY'
import json, pathlib, sys
dir = pathlib.Path(sys.argv[1])
expected = {"voicehub-ingress": "actix-web", "voicehub-enricher": "reqwest", "voicehub": "clap",
            "voicehub-sim": "reqwest"}
versions = set()
for binary, needs in expected.items():
    path = dir / f"{binary}_bin.cdx.json"
    bom = json.loads(path.read_text())
    names = {c["name"]: c["version"] for c in bom.get("components", [])}
    if bom.get("bomFormat") != "CycloneDX" or bom.get("specVersion") != "1.5":
        sys.exit(f"{path.name}: not a CycloneDX 1.5 document")
    if bom["metadata"]["component"]["name"] != binary or needs not in names:
        sys.exit(f"{path.name}: describes {bom['metadata']['component']['name']}, without {needs}")
    if any(name.startswith("tansu") for name in names):
        sys.exit(f"{path.name}: lists test-only crates")
    if "rdkafka-sys" in names:
        versions.add(names["rdkafka-sys"].partition("+")[2])
if len(versions) != 1 or not all(versions):
    sys.exit(f"librdkafka versions in the SBOMs: {versions}")
print(versions.pop())
PY
) || fail "the image's SBOMs"
echo "  SBOMs in /usr/share/doc/voicehub-bridge/sbom for the four binaries; librdkafka $librdkafka"

echo "--- local images (Apache Kafka from its jars, Prometheus, voicehub-tail)"
mkdir -p "$work/tail" "$work/prometheus/data"
cp -r deploy/ci/kafka/image "$work/kafka"
cp -r "$(deploy/ci/kafka.sh lib)" "$work/kafka/libs"
docker build --quiet -t voicehub-ci/kafka:local "$work/kafka" >/dev/null
cp "$bin_dir/voicehub-tail" "$work/tail/"
printf 'FROM voicehub-ci/cc-runtime:bookworm\nCOPY voicehub-tail /usr/local/bin/\nENTRYPOINT ["/usr/local/bin/voicehub-tail"]\n' \
  >"$work/tail/Dockerfile"
docker build --quiet -t voicehub-ci/tail:local "$work/tail" >/dev/null
cp "$(command -v prometheus)" "$work/prometheus/"
printf 'FROM voicehub-ci/cc-runtime:bookworm\nCOPY prometheus /bin/\nCOPY --chown=65532:65532 data /prometheus\nENTRYPOINT ["/bin/prometheus"]\n' \
  >"$work/prometheus/Dockerfile"
docker build --quiet -t voicehub-ci/prometheus:local "$work/prometheus" >/dev/null

echo "--- compose up"
# The bridge services wait for Kafka's health check (the compose file's depends_on).
compose up -d --no-build kafka ingress enricher prometheus || fail "compose up (is Kafka healthy?)"
echo "  Kafka healthy (the compose file's KRaft settings and health check)"
wait_for "ingress /readyz" 90 curl -fsS http://127.0.0.1:9090/readyz
wait_for "enricher /readyz" 90 curl -fsS http://127.0.0.1:9091/readyz
echo "  /readyz 200 on both"

for service in ingress enricher; do
  id=$(compose ps -q "$service")
  user=$(docker inspect -f '{{.Config.User}}' "$id")
  read_only=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$id")
  [[ $user == 65532:65532 && $read_only == true ]] ||
    fail "$service runs as '$user' with read-only root filesystem '$read_only'"
done
echo "  ingress and enricher run as 65532:65532, read-only root filesystem"

echo "--- webhooks"
for example in call-studio-job-status-changed call-studio-job-analysis-result-ready; do
  status=$(curl -sS -o "$work/answer" -w '%{http_code}' -H 'x-webhook-secret: dev-webhook-secret' \
    --data-binary "@tests/fixtures/voicehub/$example.json" http://127.0.0.1:8080/webhooks/voicehub)
  [[ $status == 200 ]] || fail "$example: HTTP $status $(cat "$work/answer")"
done
status=$(curl -sS -o /dev/null -w '%{http_code}' -H 'x-webhook-secret: wrong' \
  --data-binary @tests/fixtures/voicehub/call-status-changed.json http://127.0.0.1:8080/webhooks/voicehub)
[[ $status == 401 ]] || fail "a wrong secret was answered $status"
compose --profile demo up -d --no-build simulator
sim_reported() { compose logs --no-color simulator | grep -q '"acknowledged"'; }
wait_for "the simulator's report" 60 sim_reported
compose logs --no-color --no-log-prefix simulator | grep '"acknowledged"' | tee "$work/report"
grep -q '"refused":0,' "$work/report" || fail "the simulator had webhooks refused"

count() { # topic; Kafka advertises kafka:9092, a name only the containers know
  docker run --rm --network host --add-host kafka:127.0.0.1 voicehub-ci/tail:local \
    --brokers kafka:9092 --topic "$1" 2>/dev/null | grep -c '^--- ' || true
}
for topic in call-status-changed recordings-available analysis-result-ready \
  call-studio-job-status-changed call-studio-analysis-result-ready; do
  n=$(count "voicehub.$topic.v1")
  ((n > 0)) || fail "no record on voicehub.$topic.v1"
  echo "  voicehub.$topic.v1: $n records"
done
ready=$(count voicehub.analysis-result-ready.v1)
all_enriched() { (($(count voicehub.analysis-enriched.v1) >= ready)); }
wait_for "$ready enriched records" 60 all_enriched
echo "  voicehub.analysis-enriched.v1: $(count voicehub.analysis-enriched.v1) records (analysis-ready: $ready)"
dead=$(count voicehub.dead-letter.v1 2>/dev/null)
[[ ${dead:-0} == 0 ]] || fail "$dead dead letters"

echo "--- metrics"
has '^voicehub_ingress_requests_total{.*outcome="accepted".*} [1-9]' http://127.0.0.1:9090/metrics ||
  fail "ingress /metrics shows no accepted request"
has '^voicehub_enricher_records_total{.*outcome="enriched".*} [1-9]' http://127.0.0.1:9091/metrics ||
  fail "enricher /metrics shows no enriched record"
has "^voicehub_build_info{.*librdkafka=\"$librdkafka\".*} 1" http://127.0.0.1:9090/metrics ||
  fail "ingress /metrics does not report librdkafka $librdkafka, the SBOM's"
# The spool opened (lock file written) on its volume as uid 65532: the volume is writable.
has '^voicehub_ingress_spool_mode{mode="fallback"} 1' http://127.0.0.1:9090/metrics ||
  fail "ingress /metrics does not show the spool in fallback mode"

echo "--- spool (Kafka paused)"
compose pause kafka >/dev/null
status=$(curl -sS -o "$work/answer" -w '%{http_code}' -H 'x-webhook-secret: dev-webhook-secret' \
  --data-binary @tests/fixtures/voicehub/call-status-changed.json http://127.0.0.1:8080/webhooks/voicehub)
compose unpause kafka >/dev/null
[[ $status == 200 ]] || fail "with Kafka paused, a webhook was answered $status $(cat "$work/answer")"
forwarded() { has '^voicehub_ingress_spool_forwarded_records_total [1-9]' http://127.0.0.1:9090/metrics; }
wait_for "the spooled webhook forwarded" 60 forwarded
echo "  accepted into the spool on its volume while Kafka was paused, forwarded once it was back"
query() { curl -fsS "http://127.0.0.1:9099/api/v1/$1"; }
both_up() { has '"value":\[[0-9.]*,"2"\]' 'http://127.0.0.1:9099/api/v1/query?query=sum(up%7Bjob%3D~%22voicehub-.%2A%22%7D)'; }
wait_for "Prometheus to scrape both services" 60 both_up
rules=$(query rules | grep -o '"type":"alerting"' | wc -l)
((rules >= 20)) || fail "Prometheus loaded $rules alert rules"
# Every rule evaluated against the real series without an error, and none fires on this
# healthy stack (the `for` of most is longer than this test, but not of the absent-style ones
# and the dead-letter or unauthorized ones, which would fire at once).
evaluated() { ! query rules | grep -q '"lastEvaluation":"0001-01-01'; }
wait_for "every rule evaluated" 30 evaluated
query rules | grep -q '"health":"err"' && fail "rules with evaluation errors: $(query rules | grep -o '"lastError":"[^"]*"' | sort -u)"
if query alerts | grep -q '"state":"firing"'; then
  fail "alerts firing on a healthy stack: $(query alerts)"
fi
echo "  both scraped by Prometheus (up=1), $rules alert rules loaded, all evaluate, none firing"

echo "--- the image's ingress inside the chart's memory limit (deploy/ci/memory-limit.sh)"
compose --profile demo stop ingress enricher simulator >/dev/null 2>&1
deploy/ci/memory-limit.sh
echo "--- compose smoke test passed"
