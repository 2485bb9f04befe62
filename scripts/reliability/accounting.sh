#!/usr/bin/env bash
# The accounting tests of CI (crates/enricher/tests/it/accounting.rs and
# crates/ingress/tests/it/accounting.rs), longer: every record read back and reconciled against
# what was sent, against Apache Kafka (deploy/ci/kafka.sh). The same test build as CI (no
# second compilation). Prints each test's report; the figures in docs/reliability.md come from
# here.
#
#   scripts/reliability/accounting.sh [RECORDS]   (default 200000 per test)
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-200000}

kafka_dir=$(mktemp -d)
trap 'deploy/ci/kafka.sh stop "$kafka_dir"; rm -rf "$kafka_dir"' EXIT
VOICEHUB_TEST_KAFKA=$(deploy/ci/kafka.sh start 49092 "$kafka_dir")
export VOICEHUB_TEST_KAFKA VOICEHUB_ACCOUNTING_RECORDS=$records

for package in voicehub-enricher voicehub-ingress; do
  echo "--- $package: $records records"
  cargo test --locked -p "$package" --test it accounting:: -- --nocapture 2>&1 |
    grep -E '^(enricher|ingress) accounting|^  |^test result|panicked'
done
