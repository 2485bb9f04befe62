#!/usr/bin/env bash
# The README's run command on a fresh Debian machine with only the Rust toolchain: an image
# build from voicehub-ci/rust:bookworm (minbase Debian plus this machine's rustc and cargo; no
# C compiler, make, CMake or headers: deploy/ci/base-images.sh) runs the command exactly as the
# README writes it, in a copy of the checkout, as root. Passes when both services answer
# /readyz 200 and SIGINT (Ctrl-C) then stops everything with exit 0.
#
# The README's test command is not run this way: it starts a Docker engine and Kafka brokers of
# its own (a privileged container) and takes about 25 minutes; CI runs it on a clean machine
# (.ci/run), through the same deploy/prerequisites.sh.
#
# Needs a running Docker engine and the base image (compose-smoke.sh calls it once both exist).
# Prints how long the fresh build took.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command=$(grep -m1 -x 'deploy/prerequisites.sh build && cargo run .*' README.md) ||
  { echo "fresh-machine: the README's run command is not where expected" >&2; exit 1; }

# The checkout as a clean clone would have it (tracked and new files, not target/ or the
# image's .dockerignore).
git ls-files -z --cached --others --exclude-standard | grep -zv '^.dockerignore$' |
  xargs -0 cp --parents -t "$work" 2>/dev/null || true
cat >"$work/fresh-run.sh" <<EOF
#!/usr/bin/env bash
# Runs the README's command in its own process group, waits for both /readyz, then Ctrl-C.
set -uo pipefail
setsid bash -c '$command' >/tmp/run.log 2>&1 &
pid=\$!
ready() { # port: /readyz answers 200 (bash's /dev/tcp; the image has no curl)
  exec 3<>"/dev/tcp/127.0.0.1/\$1" 2>/dev/null || return 1
  printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
  local status; read -r _ status _ <&3; exec 3>&-
  [[ \$status == 200 ]]
}
for _ in \$(seq 1 1800); do
  if ready 9090 && ready 9091; then
    kill -INT -- -\$pid
    wait \$pid; rc=\$?
    tail -5 /tmp/run.log
    if ((rc != 0)); then echo "exit \$rc after Ctrl-C" >&2; exit 1; fi
    if grep -q 'ERROR' /tmp/run.log; then grep 'ERROR' /tmp/run.log >&2; exit 1; fi
    exit 0
  fi
  kill -0 \$pid 2>/dev/null || { tail -40 /tmp/run.log >&2; echo "the command ended before ready" >&2; exit 1; }
  sleep 1
done
tail -40 /tmp/run.log >&2; echo "not ready within 30 minutes" >&2; exit 1
EOF
chmod +x "$work/fresh-run.sh"
printf 'FROM voicehub-ci/rust:bookworm\nCOPY . /src\nWORKDIR /src\nRUN ./fresh-run.sh && rm -rf /src/target\n' \
  >"$work/Dockerfile"

start=$SECONDS
DOCKER_BUILDKIT=1 /usr/bin/docker build --no-cache --progress=plain -t voicehub-ci/fresh:local \
  "$work" >"$work/build.log" 2>&1 || {
  tail -60 "$work/build.log" >&2
  echo "fresh-machine: the README's run command failed on a fresh Debian with only Rust" >&2
  exit 1
}
docker image rm voicehub-ci/fresh:local >/dev/null
# Its build cache would keep the layers (gigabytes) for nothing. Best effort: an engine whose
# cache is already damaged refuses to prune it, which is no failure of the command checked.
docker builder prune -f >/dev/null 2>&1 || true
echo "  on minbase Debian with only Rust: \`$command\` installed its prerequisites, built, was ready, stopped cleanly ($((SECONDS - start)) s)"
