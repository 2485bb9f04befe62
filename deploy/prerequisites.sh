#!/usr/bin/env bash
# Installs what a fresh Debian machine with only the Rust toolchain lacks, then gets out of the
# way; idempotent and quick when everything is there. The README's two commands call it.
#
#   deploy/prerequisites.sh build   building the bridge: librdkafka is compiled from source
#                                   (CMake, a C/C++ compiler, make, pkg-config) against the
#                                   system OpenSSL (TLS/SASL); its CMake build includes curl.h
#   deploy/prerequisites.sh test    the whole test suite (tests/run.sh): the above, plus
#                                   cargo-nextest, Java 17 and Maven (Apache Kafka from its Maven
#                                   Central jars), the nightly toolchain and cargo-fuzz (fuzzing),
#                                   cargo-deny (the dependency audit),
#                                   and the deployment tools of deploy/ci/install-tools.sh
#
# Debian packages need root: run as root, or with sudo available (it is used for apt only).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-build}
[[ $what == build || $what == test ]] || { echo "usage: $0 build|test" >&2; exit 2; }

as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "prerequisites: need root (or sudo) to run: $*" >&2
    exit 1
  fi
}

apt_install() {
  echo "prerequisites: installing Debian packages: $*" >&2
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null; then
    as_root apt-get update >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null
  fi
}

# Debian packages a command or a header comes from, when it is missing.
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v make >/dev/null || missing+=(make)
command -v c++ >/dev/null || missing+=(g++)
command -v pkg-config >/dev/null || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || missing+=(libcurl4-openssl-dev)
if [[ $what == test ]]; then
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
  command -v pip >/dev/null || missing+=(python3-pip)
  command -v npm >/dev/null || missing+=(npm)
fi
((${#missing[@]} == 0)) || apt_install "${missing[@]}"
[[ $what == build ]] && exit 0

command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# Pinned: deploy/ci/deny*.toml follow its configuration format.
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked --version 0.20.2
for tool in promtool dockerd mmdebstrap /opt/voicehub-tools/bin/helm \
  /opt/voicehub-tools/bin/kubernetes-validate /opt/voicehub-tools/bin/docker-compose; do
  if ! command -v "$tool" >/dev/null; then
    as_root deploy/ci/install-tools.sh >/dev/null
    break
  fi
done
