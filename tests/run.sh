#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test (the broker-backed ones against one Apache
# Kafka broker started here from its Maven Central jars, each test on topics of its own; outage
# tests start a Kafka of their own), the fuzz targets for a bounded time, the Prometheus alert
# rules' unit tests, the Helm chart checks, and the container image built and run under docker
# compose with a local Apache Kafka image.
# What it needs (cmake, OpenSSL and curl headers, cargo-nextest, Java 17 and Maven, the nightly
# toolchain and cargo-fuzz, the deployment tools: Helm, kubernetes-validate, promtool, a Docker
# engine it starts itself) is installed first by deploy/prerequisites.sh, where missing (root or
# sudo for the Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${NEXTEST_PROFILE:-default}

echo "--- prerequisites (deploy/prerequisites.sh test)"
deploy/prerequisites.sh test

echo "--- cargo fmt --check"
cargo fmt --all -- --check

echo "--- cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "--- Apache Kafka for the broker-backed tests (deploy/ci/kafka.sh)"
kafka_dir=$(mktemp -d)
trap 'deploy/ci/kafka.sh stop "$kafka_dir"; rm -rf "$kafka_dir"' EXIT
VOICEHUB_TEST_KAFKA=$(deploy/ci/kafka.sh start 39092 "$kafka_dir")
export VOICEHUB_TEST_KAFKA

echo "--- cargo nextest (profile: $profile)"
cargo nextest run --workspace --all-targets --locked --profile "$profile"

echo "--- fuzz targets, 60 s each (crates/model/fuzz)"
crates/model/fuzz/run.sh 60

echo "--- alert rules: the chart's rendering, promtool tests, runbooks (deploy/ci/check-alerts.sh)"
deploy/ci/check-alerts.sh

echo "--- binaries (for the deployment checks)"
cargo build --workspace --bins --locked

echo "--- Helm chart"
deploy/ci/check-chart.sh target/debug

echo "--- container image and docker compose"
deploy/ci/compose-smoke.sh target/debug
