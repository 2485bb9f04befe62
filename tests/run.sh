#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test (the broker-backed ones start their own
# embedded broker; nothing to set up). Needs cmake (librdkafka is built from source) and
# cargo-nextest; `.ci/run` installs both on a clean machine.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${NEXTEST_PROFILE:-default}

echo "--- cargo fmt --check"
cargo fmt --all -- --check

echo "--- cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "--- cargo nextest (profile: $profile)"
cargo nextest run --workspace --all-targets --locked --profile "$profile"
