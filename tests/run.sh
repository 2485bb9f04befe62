#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test (the broker-backed ones start their own
# embedded broker; nothing to set up), and the Prometheus alert rules' unit tests. Needs cmake
# (librdkafka is built from source), cargo-nextest and promtool (Debian: prometheus); `.ci/run`
# installs them on a clean machine.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${NEXTEST_PROFILE:-default}

command -v promtool >/dev/null || {
  echo "promtool is missing (Debian: apt-get install prometheus; or run .ci/run)" >&2
  exit 1
}

echo "--- cargo fmt --check"
cargo fmt --all -- --check

echo "--- cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "--- cargo nextest (profile: $profile)"
cargo nextest run --workspace --all-targets --locked --profile "$profile"

echo "--- promtool: alert rules"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml
