#!/usr/bin/env bash
# The dependency audit of Cargo.lock (cargo-deny, installed by deploy/prerequisites.sh), against
# the RustSec advisory database's offline snapshot (a git bundle; VOICEHUB_ADVISORY_DB, default
# ../shared/advisory-db/advisory-db.bundle):
#  1. the shipped binaries (the image's voicehub-ingress, voicehub-enricher, voicehub and
#     voicehub-sim; dev-dependencies excluded): any advisory fails (deploy/ci/deny-shipped.toml);
#  2. the whole workspace, tests and dev tools included: advisories except the test-only
#     exceptions of deploy/ci/deny.toml, each with its reason, and every licence against its
#     allow-list.
# Prints the snapshot's date and what was checked; the report is in docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
bundle=${VOICEHUB_ADVISORY_DB:-../shared/advisory-db/advisory-db.bundle}
[[ -f $bundle ]] || { echo "audit: no advisory database at $bundle (set VOICEHUB_ADVISORY_DB)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The folder name cargo-deny gives the default database (https://github.com/rustsec/advisory-db).
export VOICEHUB_ADVISORY_DBS=$work/dbs
git clone -q "$bundle" "$VOICEHUB_ADVISORY_DBS/advisory-db-3157b0e258782691"
echo "advisory database: snapshot of $(git -C "$VOICEHUB_ADVISORY_DBS/advisory-db-3157b0e258782691" log -1 --format=%cs)"
# Metadata for every target platform (cargo may download a crate no build here uses); the audit
# itself then runs offline.
cargo metadata --format-version 1 --locked > "$work/metadata.json" 2> >(grep -v Downloaded >&2 || true)
deny() { cargo-deny --offline --metadata-path "$work/metadata.json" --log-level error "$@"; }

# The shipped binaries' graph: every workspace member but the test and dev-tool crates.
deny --workspace --exclude voicehub-tests --exclude voicehub-testkit --exclude voicehub-devstack \
  --config deploy/ci/deny-shipped.toml check advisories
echo "audit: shipped binaries (their crates' graph without dev-dependencies): no advisory"
# Negative control: the same check over every crate, tests and dev tools in, must find the test-only
# advisories, or it could not have failed above.
sed 's/^exclude-dev = true/exclude-dev = false/' deploy/ci/deny-shipped.toml > "$work/control.toml"
if deny --workspace --config "$work/control.toml" check advisories > "$work/control.log" 2>&1 ||
    ! grep -q RUSTSEC-2026-0118 "$work/control.log"; then
  cat "$work/control.log" >&2
  echo "audit: the shipped check passed with the test crates in: it checks nothing" >&2
  exit 1
fi
echo "audit: control: over every crate the shipped check fails (RUSTSEC-2026-0118 found)"
deny --workspace --config deploy/ci/deny.toml check advisories licenses
echo "audit: whole workspace: advisories only the test-only exceptions of deploy/ci/deny.toml; licences allowed"
