#!/usr/bin/env bash
# The image's ingress inside the memory limit the chart sets, under hostile but legal load:
# configured as the chart configures it (its default values rendered by Helm: the ingress.toml
# of its ConfigMap, the Secret mounted where the chart mounts it, its resources.limits.memory as
# docker --memory with no swap, uid 65532, read-only root), it takes a 10,000-connection idle
# flood, then 1,024 authenticated webhooks of almost 1 MiB from slow senders at once, and then
# idles a minute. Checks: never OOM-killed (docker inspect), still running, some webhooks
# accepted, and every webhook answered 2xx read back from its topic. Reports the answers, the
# duplicates, and the RSS before, at peak and idle a minute after (docs/benchmarks.md).
# A negative control then runs the same image with a 48 MiB limit and a fast burst: it must be
# OOM-killed (otherwise the limit is not enforced here and the first check proves nothing), and
# every webhook it answered 2xx before dying must be on the topic too.
#
# Run by deploy/ci/compose-smoke.sh, whose stack it needs: a Docker engine, the images
# voicehub-bridge:local and voicehub-ci/tail:local, Apache Kafka at 127.0.0.1:9092 advertised as
# kafka:9092 with the bridge's topics, ports 8080 and 9090 free, and a file limit (hard) above
# 10,064 for the flood's sockets.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/opt/voicehub-tools/bin:$PATH
work=$(mktemp -d)
name=voicehub-memory-limit
secret=memory-limit-webhook-secret
topic=voicehub.call-status-changed.v1
trap 'docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
fail() {
  echo "memory-limit: $*" >&2
  docker logs --tail 20 "$name" >&2 2>&1 || true
  exit 1
}

for port in 8080 9090; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "port $port is in use; the ingress listens there as the chart configures it"
  fi
done

# The chart's default values, rendered: the ingress's configuration file and memory limit.
mkdir -m 755 "$work/config" "$work/secrets"
helm template vb helm/voicehub-bridge --set-string "secrets.webhook.values.default.current=$secret" \
  >"$work/chart.yaml"
# Written as the kubelet mounts them: the ConfigMap's ingress.toml, a file per key of the Secret.
limit=$(python3 - "$work/chart.yaml" "$work" <<'PY'
import base64, os, re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
configmap, = [d for d in docs if d["kind"] == "ConfigMap"]
write(f"{sys.argv[2]}/config/ingress.toml", configmap["data"]["ingress.toml"])
webhook, = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-webhook")]
keys = {**webhook.get("stringData", {}),
        **{k: base64.b64decode(v).decode() for k, v in webhook.get("data", {}).items()}}
for key, value in keys.items():
    write(f"{sys.argv[2]}/secrets/{key}", value)
ingress, = [d for d in docs if d["kind"] == "Deployment"
            and d["metadata"]["labels"]["app.kubernetes.io/component"] == "ingress"]
container, = ingress["spec"]["template"]["spec"]["containers"]
limit = container["resources"]["limits"]["memory"]
number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", limit).groups()
print(int(number) * (1024 if unit == "Gi" else 1))
PY
)

state() { docker inspect -f "{{.State.$1}}" "$name"; }

# The container's memory high-water mark as its cgroup counts it (what the limit applies to:
# RSS plus page cache, the binary's pages included).
cgroup_peak_mib() {
  local path
  path=$(sed -n 's/^[0-9]*:memory:\(.*\)/memory\1\/memory.max_usage_in_bytes/p; s/^0::\(.*\)/\1\/memory.peak/p' \
    "/proc/$pid/cgroup" | head -n 1)
  if [[ -r /sys/fs/cgroup/$path ]]; then
    echo "$(($(cat "/sys/fs/cgroup/$path") / 1048576)) MiB"
  else
    echo "not readable here"
  fi
}

run_ingress() { # memory limit in MiB
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" --network host --add-host kafka:127.0.0.1 \
    --memory "${1}m" --memory-swap "${1}m" --user 65532:65532 --read-only \
    --cap-drop ALL --security-opt no-new-privileges \
    -v "$work/config:/etc/voicehub-bridge:ro" -v "$work/secrets:/var/run/secrets/voicehub/webhook:ro" \
    voicehub-bridge:local /usr/local/bin/voicehub-ingress --config /etc/voicehub-bridge/ingress.toml >/dev/null
  local deadline=$((SECONDS + 60))
  until curl -fsS http://127.0.0.1:9090/readyz >/dev/null 2>&1; do
    [[ $(state Running) == true ]] || fail "the ingress (--memory ${1}m) exited at startup"
    ((SECONDS < deadline)) ||
      fail "the ingress (--memory ${1}m) was not ready within 60 s: $(curl -sS http://127.0.0.1:9090/readyz 2>&1)"
    sleep 1
  done
  pid=$(docker inspect -f '{{.State.Pid}}' "$name")
}

# Every eventId of FILE (one per line) on the topic, exactly: prints how many were on it twice.
all_on_topic() { # file of eventIds
  docker run --rm --network host --add-host kafka:127.0.0.1 voicehub-ci/tail:local \
    --brokers kafka:9092 --topic "$topic" 2>/dev/null | sed -n 's/^ce_id: //p' | sort >"$work/on-topic"
  sort "$1" >"$work/expected"
  missing=$(comm -23 "$work/expected" <(uniq "$work/on-topic") | wc -l)
  ((missing == 0)) || fail "$missing of $(wc -l <"$1") webhooks answered 2xx are not on $topic"
  uniq -d "$work/on-topic" | comm -12 - "$work/expected" | wc -l
}

echo "--- the chart's ingress in a container limited to its ${limit} MiB"
run_ingress "$limit"
echo "  ready; RSS $(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status") MiB"
flood=$(python3 deploy/ci/hostile-load.py flood 8080 "$pid" 10000 10)
echo "  idle flood: $flood"
[[ $(state Running) == true ]] || fail "the ingress stopped during the idle flood"
# Idle connections are closed by the server: actix answers 408 after http.head_timeout_ms.
grep -q '"answered 408": [1-9]' <<<"$flood" || fail "no idle connection was closed with 408"
burst=$(python3 deploy/ci/hostile-load.py burst 8080 "$pid" "$secret" 1024 "$work/accepted" 60)
echo "  slow burst: $burst"
echo "  the container's cgroup peaked at $(cgroup_peak_mib) of ${limit} MiB"
[[ $(state OOMKilled) == false && $(state Running) == true ]] ||
  fail "the ingress was OOM-killed ($(state OOMKilled)) or stopped (running: $(state Running))"
accepted=$(wc -l <"$work/accepted")
((accepted > 0)) || fail "no webhook of the burst was accepted: nothing shown"
twice=$(all_on_topic "$work/accepted")
echo "  not OOM-killed, still running; all $accepted webhooks answered 2xx are on $topic ($twice on it twice)"

echo "--- negative control: the same ingress limited to 48 MiB, a fast burst"
run_ingress 48
burst=$(python3 deploy/ci/hostile-load.py burst 8080 "$pid" "$secret" 256 "$work/control-accepted" 0 0)
echo "  fast burst: $burst"
deadline=$((SECONDS + 10)) # the engine records the kill a moment after the process dies
while [[ $(state Running) == true ]] && ((SECONDS < deadline)); do sleep 0.2; done
[[ $(state OOMKilled) == true ]] ||
  fail "48 MiB did not OOM-kill the ingress: the limit is not enforced here, the check above shows nothing"
twice=$(all_on_topic "$work/control-accepted")
echo "  OOM-killed, as it must be; $(wc -l <"$work/control-accepted") webhooks answered 2xx before the kill, all on $topic ($twice twice)"
