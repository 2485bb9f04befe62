#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time, seeded with VoiceHub's examples
# (tests/fixtures/voicehub). A crash leaves its input in artifacts/<target>/: add it to the
# model's regression tests. Needs the nightly toolchain (rustup) and cargo-fuzz, which it
# installs if missing.
#
#   crates/model/fuzz/run.sh [SECONDS_PER_TARGET]   (default 300)
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-300}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
fixtures=../../../tests/fixtures/voicehub

for target in webhook analysis; do
  corpus=corpus/$target
  mkdir -p "$corpus"
  case $target in
    webhook) find "$fixtures" -name '*.json' ! -name 'analysis-result.json' -exec cp {} "$corpus/" \; ;;
    analysis) cp "$fixtures/analysis-result.json" "$corpus/" ;;
  esac
  echo "--- $target: ${seconds}s"
  cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -max_len=65536 \
    -print_final_stats=1 2>&1 | tee "/tmp/fuzz-$target.log" | grep -E '^(#[0-9]+.*(DONE|pulse)|stat::|==[0-9]+==|SUMMARY)' || true
  if ls "artifacts/$target"/crash-* >/dev/null 2>&1; then
    echo "$target: crash inputs in artifacts/$target" >&2
    exit 1
  fi
done
