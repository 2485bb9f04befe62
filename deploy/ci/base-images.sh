#!/usr/bin/env bash
# CI only: local stand-ins for deploy/Dockerfile's base images, because no container registry is
# reachable from CI. Both are made from Debian bookworm packages (the same distribution as the
# official images) and get local names, passed to the build as RUST_IMAGE and RUNTIME_IMAGE:
#
#   voicehub-ci/rust:bookworm        like rust:<version>-slim-bookworm: minbase Debian plus this
#                                    machine's Rust toolchain (the one CI already builds with)
#                                    and this machine's CA bundle (package registries are reached
#                                    through a TLS-inspecting proxy whose CA only the host trusts)
#   voicehub-ci/cc-runtime:bookworm  like gcr.io/distroless/cc-debian12:nonroot: glibc, libgcc,
#                                    libssl3 and CA certificates only; no shell, no package manager
#   voicehub-ci/jre:bookworm         minbase Debian with OpenJDK 17's headless JRE: the base of
#                                    the local Apache Kafka image (deploy/ci/kafka/image)
#
# Needs root, mmdebstrap and a running Docker engine. Skips an image that already exists.
set -euo pipefail

sources=/etc/apt/sources.list.d/debian.sources
[[ -f $sources ]] || sources=/etc/apt/sources.list

if ! docker image inspect voicehub-ci/cc-runtime:bookworm >/dev/null 2>&1; then
  # extract: unpack the packages (and their dependencies) without running maintainer scripts,
  # so nothing that needs a shell at install time (or at run time) ends up in the image.
  mmdebstrap --quiet --variant=extract --include=libc6,libgcc-s1,libssl3 \
    --customize-hook='mkdir -p "$1/etc/ssl/certs" "$1/tmp" && chmod 1777 "$1/tmp"' \
    --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/"' \
    bookworm - "$sources" |
    docker import --change 'USER 65532:65532' - voicehub-ci/cc-runtime:bookworm
fi

if ! docker image inspect voicehub-ci/rust:bookworm >/dev/null 2>&1; then
  sysroot=$(rustc --print sysroot)
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --customize-hook="mkdir -p \"\$1/usr/local/rust\" \"\$1/usr/local/cargo/bin\"" \
    --customize-hook="cp -a '$sysroot/bin' '$sysroot/lib' \"\$1/usr/local/rust/\"" \
    --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/"' \
    bookworm - "$sources" |
    docker import \
      --change 'ENV CARGO_HOME=/usr/local/cargo' \
      --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' \
      - voicehub-ci/rust:bookworm
fi

if ! docker image inspect voicehub-ci/jre:bookworm >/dev/null 2>&1; then
  mmdebstrap --quiet --variant=minbase --include=openjdk-17-jre-headless \
    bookworm - "$sources" |
    docker import --change 'CMD ["bash"]' - voicehub-ci/jre:bookworm
fi

docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' 'voicehub-ci/*'
