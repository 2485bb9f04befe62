#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test (the broker-backed ones against one Apache
# Kafka broker started here from its Maven Central jars, each test on topics of its own; outage
# tests start a Kafka of their own; then the tests of the secured three-node cluster,
# deploy/ci/kafka-cluster.sh), the fuzz targets for a bounded time, the Prometheus alert
# rules' unit tests, the Helm chart checks, and the container image built and run under docker
# compose with a local Apache Kafka image (and its ingress under hostile load inside the chart's
# memory limit).
# Before the tests, the dependency audit of Cargo.lock (deploy/ci/audit.sh).
# What it needs (cmake, OpenSSL and curl headers, cargo-nextest, cargo-deny, Java 17 and Maven,
# the nightly toolchain and cargo-fuzz, the deployment tools: Helm, kubernetes-validate, promtool, a Docker
# engine it starts itself) is installed first by deploy/prerequisites.sh, where missing (root or
# sudo for the Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${NEXTEST_PROFILE:-default}
# A suite run gains nothing from incremental caches (CI starts from a clean checkout) and they
# cost gigabytes of disk beside the build itself: off unless asked for.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

echo "--- prerequisites (deploy/prerequisites.sh test)"
deploy/prerequisites.sh test

echo "--- cargo fmt --check"
cargo fmt --all -- --check

echo "--- cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "--- dependency audit: RustSec advisories (offline snapshot) and licences (deploy/ci/audit.sh)"
deploy/ci/audit.sh

echo "--- the operator CLI builds without the HTTP stack"
operator_tree=$(cargo tree -p voicehub-operator -e normal --locked)
if grep -q actix <<<"$operator_tree"; then
  echo "voicehub-operator depends on actix: a crate it uses turned on voicehub-runtime's admin feature" >&2
  exit 1
fi

echo "--- Apache Kafka for the broker-backed tests (deploy/ci/kafka.sh)"
kafka_dir=$(mktemp -d)
cluster_dir=$(mktemp -d)
trap 'deploy/ci/kafka.sh stop "$kafka_dir"; deploy/ci/kafka-cluster.sh stop "$cluster_dir";
  rm -rf "$kafka_dir" "$cluster_dir"' EXIT
VOICEHUB_TEST_KAFKA=$(deploy/ci/kafka.sh start 39092 "$kafka_dir")
export VOICEHUB_TEST_KAFKA

# The secured cluster's tests run on their own afterwards: its three JVMs would take CPU from
# every other test, and some of its tests kill and pause its nodes.
secured='test(/secured::/)'
echo "--- cargo nextest (profile: $profile), all but the secured cluster's tests"
cargo nextest run --workspace --all-targets --locked --profile "$profile" -E "not $secured"
deploy/ci/kafka.sh stop "$kafka_dir"

echo "--- the secured three-node cluster (deploy/ci/kafka-cluster.sh) and its tests"
# Below the ephemeral port range (32768-60999): the fault tests restart nodes on their ports,
# and a client socket holding one of them as its local port meanwhile made a restart fail
# with "Address already in use".
VOICEHUB_TEST_SECURE_KAFKA=$(deploy/ci/kafka-cluster.sh start 19000 "$cluster_dir")
export VOICEHUB_TEST_SECURE_KAFKA
cargo nextest run --workspace --all-targets --locked --profile "$profile" -E "$secured"
deploy/ci/kafka-cluster.sh stop "$cluster_dir"

echo "--- fuzz targets, 60 s each (crates/model/fuzz)"
crates/model/fuzz/run.sh 60

echo "--- alert rules: the chart's rendering, promtool tests, runbooks (deploy/ci/check-alerts.sh)"
deploy/ci/check-alerts.sh

echo "--- binaries (for the deployment checks)"
# The same target selection as the tests, so the binaries they built are reused: `--bins` alone
# resolves dependency features without the dev-dependencies and builds the world a second time.
cargo build --workspace --all-targets --locked

echo "--- Helm chart"
deploy/ci/check-chart.sh target/debug

echo "--- container image and docker compose"
deploy/ci/compose-smoke.sh target/debug
