#!/usr/bin/env bash
# Checks helm/voicehub-bridge with real tools (installed by deploy/ci/install-tools.sh):
#  - helm lint --strict, for the default values and for ci/all-options-values.yaml;
#  - both renders validate against the Kubernetes 1.30 OpenAPI schemas, strictly and offline
#    (kubernetes-validate); any warning fails, except the two Prometheus Operator kinds, which
#    have no bundled schema and are checked below instead;
#  - the PrometheusRule's rules pass promtool; the ServiceMonitor passes deploy/ci/schemas;
#  - the rendered ingress.toml and enricher.toml pass the binaries' own --check-config;
#  - properties of both renders (check_render below): Kafka properties verbatim, admin ports on
#    internal Services only and once per component, the ServiceMonitor's job label, the HPA and
#    the spool, PodDisruptionBudgets that never block a drain, grace periods that cover the
#    shutdown, topology spread, extra env/volumes, the spool's claim retention;
#  - each component's worst-case memory, computed from the rendered configuration, equals the
#    chart's own computation and fits the memory limit, and the request equals the limit;
#    every ci/refused-*values.yaml (a limit below that bound) is refused by the chart;
#  - every ci/invalid-*values.yaml is rejected by values.schema.json (for what its
#    "# rejected:" line names), every ci/unstartable-*values.yaml passes the schema and is
#    refused by --check-config (for the key its "# expect:" line names), and a manifest with an
#    unknown field is rejected by the validator (so a passing run means something);
#  - the image's default CMD runs the ingress as the chart does, on a valid configuration;
#  - the chart README documents every value and the real delay of a Secret rotation.
# Usage: deploy/ci/check-chart.sh [BIN_DIR]  (BIN_DIR: where voicehub-ingress/-enricher are;
# default target/debug)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/opt/voicehub-tools/bin:$PATH
chart=helm/voicehub-bridge
bin_dir=${1:-target/debug}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

fail() { echo "check-chart: $*" >&2; exit 1; }

# Prints the documents of a render whose kind is (or, with -v, is not) one of the given kinds.
select_kinds() {
  "/opt/voicehub-tools/venv/bin/python" - "$@" <<'PY'
import sys, yaml
invert = sys.argv[1] == "-v"
args = sys.argv[2:] if invert else sys.argv[1:]
path, kinds = args[0], set(args[1:])
docs = [d for d in yaml.safe_load_all(open(path)) if d]
print(yaml.safe_dump_all([d for d in docs if (d["kind"] in kinds) != invert], sort_keys=False))
PY
}

validate() { # render-file
  local report
  report=$(kubernetes-validate --strict -k 1.30.0 "$1" 2>&1) || { echo "$report"; fail "$1 is invalid"; }
  if grep -v -E "Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1" <<<"$report" | grep -q -E '^(WARN|ERROR)'; then
    echo "$report"
    fail "$1: warnings from kubernetes-validate"
  fi
  echo "  $(grep -c '^INFO .* passed' <<<"$report") resources valid against Kubernetes 1.30"
}

config_of() { # render-file key
  "/opt/voicehub-tools/venv/bin/python" -c '
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap":
        sys.stdout.write(d["data"][sys.argv[2]])' "$1" "$2"
}

# Checks one render; values-file: what it was rendered with on top of values.yaml ("": nothing).
check_render() { # render-file values-file
  "/opt/voicehub-tools/venv/bin/python" - "$chart" "$@" <<'PY'
import math, re, sys, tomllib, yaml
chart, render, values_file = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(render)) if d]
def merged(base, override):  # as Helm merges a values file over values.yaml
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    return {k: merged(base[k], v) if k in base else v for k, v in override.items()} | {
        k: v for k, v in base.items() if k not in override}
values = yaml.safe_load(open(f"{chart}/values.yaml"))
if values_file:
    values = merged(values, yaml.safe_load(open(values_file)))
def fail(message):
    sys.exit(f"check-chart: {render}: {message}")
def of(kind):
    return [d for d in docs if d["kind"] == kind]
def component(d):
    return d["metadata"]["labels"].get("app.kubernetes.io/component")
configmap, = of("ConfigMap")
fullname = configmap["metadata"]["name"]
config = {c: tomllib.loads(configmap["data"][f"{c}.toml"]) for c in ("ingress", "enricher")}
workloads = {component(d): d for d in of("Deployment") + of("StatefulSet")}
spool_on = config["ingress"]["spool"]["mode"] != "off"

# Kafka properties reach both files verbatim (YAML numbers of 1e6 or more once became "1e+07").
properties = values["kafka"]["properties"]
expected = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in properties.items()}
for c in config:
    if config[c]["kafka"].get("properties", {}) != expected:
        fail(f"{c}.toml kafka.properties {config[c]['kafka'].get('properties')} != {expected}")
if values_file.endswith("all-options-values.yaml") and not any(
        type(v) is int and v >= 1_000_000 for v in properties.values()):
    fail("all-options values need an integer Kafka property of 1000000 or more")

# The admin port: on internal Services only, exactly one per component (each pod scraped once),
# listing unready pods, labelled with the component the ServiceMonitor's relabeling reads.
admin_services = {}
for svc in of("Service"):
    name, spec = svc["metadata"]["name"], svc["spec"]
    if not any(p["name"] == "admin" for p in spec["ports"]):
        continue
    if spec.get("type", "ClusterIP") != "ClusterIP":
        fail(f"Service {name} of type {spec['type']} exposes the admin port")
    if spec.get("publishNotReadyAddresses") is not True:
        fail(f"Service {name}: unready pods are not scraped")
    c = spec["selector"].get("app.kubernetes.io/component")
    if component(svc) != c:
        fail(f"Service {name}: component label {component(svc)!r}, selector {c!r}")
    admin_services.setdefault(c, []).append(svc)
for c in workloads:
    if len(admin_services.get(c, [])) != 1:
        fail(f"{c}: {len(admin_services.get(c, []))} Services with an admin port, want 1")
for sts in of("StatefulSet"):
    name, spec = sts["metadata"]["name"], sts["spec"]
    governing, = admin_services[component(sts)]
    if spec["serviceName"] != governing["metadata"]["name"] or governing["spec"].get("clusterIP") != "None":
        fail(f"StatefulSet {name}: serviceName is not the headless admin Service")
    if spec.get("persistentVolumeClaimRetentionPolicy", {}).get("whenScaled") != "Retain":
        fail(f"StatefulSet {name}: a scaled-in replica's claim is not retained")

# job = <fullname>-<component>, what the alert rules select on. The operator sets job to the
# Service's name, then applies the relabelings as Prometheus does (anchored regex, $1).
for monitor in of("ServiceMonitor"):
    for endpoint in monitor["spec"]["endpoints"]:
        for c, (svc,) in admin_services.items():
            labels = {"job": svc["metadata"]["name"],
                      "__meta_kubernetes_service_label_app_kubernetes_io_component": component(svc)}
            for rule in endpoint.get("relabelings", []):
                if rule.get("action", "replace").lower() != "replace":
                    continue
                source = rule.get("separator", ";").join(labels.get(l, "") for l in rule["sourceLabels"])
                match = re.fullmatch(rule.get("regex", "(.*)"), source)
                if match:
                    template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
                    labels[rule["targetLabel"]] = match.expand(template)
            if labels["job"] != f"{fullname}-{c}":
                fail(f"ServiceMonitor: the {c}'s job label is {labels['job']!r}, want {fullname}-{c}")

# An HPA must not scale in a spool: the removed pods' records would be stranded, unseen.
for hpa in of("HorizontalPodAutoscaler"):
    if spool_on and hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("selectPolicy") != "Disabled":
        fail("the HPA may scale in the ingress with the spool on")

# PodDisruptionBudgets never block a drain: unhealthy pods always evictable, and a disruption
# allowed (with the defaults at any replica count, else at the lowest count the values run).
def pods(value, replicas):
    return math.ceil(int(value[:-1]) * replicas / 100) if isinstance(value, str) else value
for pdb in of("PodDisruptionBudget"):
    spec, c = pdb["spec"], component(pdb)
    if spec.get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
        fail(f"PodDisruptionBudget {c}: unhealthy pods can block evictions")
    lowest = [h["spec"]["minReplicas"] for h in of("HorizontalPodAutoscaler")
              if h["spec"]["scaleTargetRef"]["name"] == workloads[c]["metadata"]["name"]]
    for replicas in (lowest or [workloads[c]["spec"]["replicas"]]) if values_file else [1, 2, 3]:
        allowed = (replicas - pods(spec["minAvailable"], replicas) if "minAvailable" in spec
                   else pods(spec["maxUnavailable"], replicas))
        if allowed < 1:
            fail(f"PodDisruptionBudget {c} blocks node drains with {replicas} replica(s)")

# Grace periods: the preStop pause plus the longest each process takes after SIGTERM, from the
# rendered configuration (crates/*/src/startup.rs, run_until_stopped; vb.gracePeriod).
def seconds(ms):
    return math.ceil(ms / 1000)
shutdown = {
    # requests, spool forwarding and flush by the drain deadline (actix waits at least 1 s),
    # spool handles 2 s, admin server 1 s
    "ingress": max(1, seconds(config["ingress"]["http"]["drain_timeout_ms"])) + 2 * spool_on + 1,
    # pipeline drain, consumer close 5 s, producer flush, admin server 1 s
    "enricher": 2 * seconds(config["enricher"]["consumer"]["drain_timeout_ms"]) + 5 + 1,
}
graces = []
for c, workload in workloads.items():
    pod = workload["spec"]["template"]["spec"]
    container, = pod["containers"]
    grace, pre_stop = pod["terminationGracePeriodSeconds"], container["lifecycle"]["preStop"]["sleep"]["seconds"]
    if grace < pre_stop + shutdown[c]:
        fail(f"{c}: terminationGracePeriodSeconds {grace} < preStop {pre_stop} + shutdown {shutdown[c]}")
    graces.append(f"{c} {grace} s >= {pre_stop} + {shutdown[c]}")
    # Spread over hostnames and zones by default; the component's selector unless given.
    selector = {"matchLabels": workload["spec"]["selector"]["matchLabels"]}
    spread = [{"labelSelector": selector} | t for t in values[c]["topologySpreadConstraints"]]
    if pod.get("topologySpreadConstraints", []) != spread:
        fail(f"{c}: topologySpreadConstraints {pod.get('topologySpreadConstraints')}, want {spread}")
    if not values_file and {(t["topologyKey"], t["whenUnsatisfiable"]) for t in spread} != {
            ("kubernetes.io/hostname", "ScheduleAnyway"), ("topology.kubernetes.io/zone", "ScheduleAnyway")}:
        fail(f"{c}: not spread across hostnames and zones by default")
    # extraEnv, extraVolumes, extraVolumeMounts, and a CA file on one of them.
    for key, have in (("extraEnv", container.get("env", [])), ("extraVolumes", pod["volumes"]),
                      ("extraVolumeMounts", container["volumeMounts"])):
        if any(item not in have for item in values[c][key]):
            fail(f"{c}: {key} {values[c][key]} not rendered")
    ca = config[c]["kafka"].get("properties", {}).get("ssl.ca.location")
    if ca and not any(ca.startswith(m["mountPath"].rstrip("/") + "/") for m in container["volumeMounts"]):
        fail(f"{c}: ssl.ca.location {ca} is on no volume")
print(f"  admin Services, ServiceMonitor job, HPA, PDBs, spread, extras hold; grace: {'; '.join(graces)}")

# Hardening: the image by digest when one is set, secret volumes 0440, the admin servers on
# admin.bindAddress, and NetworkPolicies that admit scrapes from metricsFrom only and let out
# only DNS, Kafka's ports and (the enricher) the analysis API's ports.
image, bind = values["image"], values["admin"]["bindAddress"]
listen = f"[{bind}]" if ":" in bind else bind
for c, workload in workloads.items():
    pod = workload["spec"]["template"]["spec"]
    container, = pod["containers"]
    if image.get("digest") and container["image"] != f"{image['repository']}@{image['digest']}":
        fail(f"{c}: image {container['image']} is not pinned by the digest {image['digest']}")
    extra = {v["name"] for v in values[c]["extraVolumes"]}
    for volume in pod["volumes"]:
        if "secret" in volume and volume["name"] not in extra and volume["secret"].get("defaultMode") != 0o440:
            fail(f"{c}: secret volume {volume['name']} mode {volume['secret'].get('defaultMode')}, want 0440")
    port = {"ingress": 9090, "enricher": 9091}[c]
    if config[c]["admin"]["listen"] != f"{listen}:{port}":
        fail(f"{c}: admin.listen {config[c]['admin']['listen']}, want {listen}:{port}")
np = values["networkPolicy"]
policies = {component(d): d for d in of("NetworkPolicy")}
def port_of(authority, default):  # [proto://]host[:port]
    authority = re.sub(r"^[A-Za-z_]+://", "", authority.strip())
    port = re.fullmatch(r"(\[[^\]]*\]|[^:\[]*)(?::([0-9]+))?", authority).group(2)
    return [int(port)] if port else default
kafka_ports = np["egress"]["kafka"]["ports"] or [
    p for server in values["kafka"]["bootstrapServers"].split(",") for p in port_of(server, [9092])]
api_ports = [p for source in values["sources"].values() for entry in source["allowedHosts"]
             for p in port_of((entry if isinstance(entry, str) else entry["host"]).split("/")[0],
                              [443, 80] if source.get("allowHttp") else [443])]
if np["enabled"] and set(policies) != {"ingress", "enricher"}:
    fail(f"NetworkPolicies for {sorted(policies)}, want the ingress and the enricher")
for c, policy in policies.items():
    spec = policy["spec"]
    if sorted(spec["policyTypes"]) != ["Egress", "Ingress"]:
        fail(f"NetworkPolicy {c}: policyTypes {spec['policyTypes']}")
    admin_rules = [r for r in spec["ingress"] if any(p["port"] == "admin" for p in r["ports"])]
    if not admin_rules or any(r.get("from") != np["metricsFrom"] for r in admin_rules):
        fail(f"NetworkPolicy {c}: the admin port admits more than metricsFrom")
    if any(not r.get("ports") for r in spec["egress"]):
        fail(f"NetworkPolicy {c}: an egress rule open on every port")
    let_out = {(p["port"], p["protocol"]) for r in spec["egress"] for p in r["ports"]}
    want = {(53, "UDP"), (53, "TCP")} | {(p, "TCP") for p in kafka_ports}
    want |= {(p["port"], p["protocol"]) for r in np["egress"]["extra"] for p in r["ports"]}
    want |= {(p, "TCP") for p in api_ports} if c == "enricher" else set()
    if let_out != want:
        fail(f"NetworkPolicy {c}: egress to {sorted(let_out)}, want {sorted(want)}")
print(f"  hardening holds: image {'by digest' if image.get('digest') else 'by tag'}, secrets 0440, "
      f"admin on {listen}, egress: Kafka {sorted(set(kafka_ports))}, analysis API {sorted(set(api_ports))}")

# Memory: the worst case of docs/operations.md ("Memory"), computed here from the rendered
# configuration, equals what the chart computed (its annotation), fits the limit, and the
# request equals the limit.
MiB = 1 << 20
queue = int(config["ingress"]["kafka"].get("properties", {}).get("queue.buffering.max.kbytes", 32768)) * 1024
http, e = config["ingress"]["http"], config["enricher"]
bound = {
    "ingress": 40 * MiB + config["ingress"]["dedupe"]["max_entries"] * 100
        + http["workers"] * -(-http["max_connections"] // http["workers"]) * 168 * 1024 + 3 * http["max_in_flight_body_bytes"] + queue
        + (config["ingress"]["spool"]["forward_window_bytes"] if spool_on else 0),
    "enricher": 40 * MiB + 5 * e["fetch"]["max_in_flight_body_bytes"]
        + e["consumer"]["max_in_flight"] * http["max_body_bytes"]
        + 3 * e["consumer"]["max_backlog_bytes"] // 2,
}
units = {"": 1, "Ki": 1 << 10, "Mi": MiB, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}
memory = []
for c, workload in workloads.items():
    pod = workload["spec"]["template"]
    resources, = [x["resources"] for x in pod["spec"]["containers"]]
    number, unit = re.fullmatch(r"([0-9]+)([A-Za-z]*)", str(resources["limits"]["memory"])).groups()
    limit = int(number) * units[unit]
    computed = int(pod["metadata"]["annotations"]["voicehub.io/memory-bound-mib"])
    if computed != math.ceil(bound[c] / MiB):
        fail(f"{c}: the chart computed a worst case of {computed} MiB, this check {bound[c] / MiB:.1f}")
    if limit < bound[c]:
        fail(f"{c}: memory limit {limit // MiB} MiB below the worst case {computed} MiB")
    if resources.get("requests", {}).get("memory") != resources["limits"]["memory"]:
        fail(f"{c}: memory request {resources.get('requests', {}).get('memory')} != limit {resources['limits']['memory']}")
    memory.append(f"{c} worst case {computed} MiB <= limit {limit // MiB} MiB = request")
print(f"  memory: {'; '.join(memory)}")
PY
}

for values in default all-options; do
  echo "--- chart, $values values"
  args=()
  values_file=""
  [[ $values == default ]] || { values_file=$chart/ci/$values-values.yaml; args=(-f "$values_file"); }
  helm lint --strict "$chart" "${args[@]}" 2>&1 | grep -v 'symbolic link' || fail "helm lint ($values)"
  helm template voicehub "$chart" --namespace voicehub "${args[@]}" \
    2> >(grep -v 'symbolic link' >&2) > "$out/$values.yaml"
  validate "$out/$values.yaml"
  for service in ingress enricher; do
    config_of "$out/$values.yaml" "$service.toml" > "$out/$values-$service.toml"
    "$bin_dir/voicehub-$service" --check-config --config "$out/$values-$service.toml" 2>&1 ||
      fail "rendered $service.toml ($values) is rejected by voicehub-$service"
  done
  check_render "$out/$values.yaml" "$values_file"
done

echo "--- chart, topology spread turned off"
helm template voicehub "$chart" --set-json 'ingress.topologySpreadConstraints=[]' \
  2> >(grep -v 'symbolic link' >&2) > "$out/no-spread.yaml"
"/opt/voicehub-tools/venv/bin/python" - "$out/no-spread.yaml" <<'PY'
import sys, yaml
spread = {d["metadata"]["labels"]["app.kubernetes.io/component"]:
          "topologySpreadConstraints" in d["spec"]["template"]["spec"]
          for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment"}
if spread != {"ingress": False, "enricher": True}:
    sys.exit(f"check-chart: ingress.topologySpreadConstraints=[]: spread per component {spread}")
print("  ingress.topologySpreadConstraints=[] turns the ingress's spread off (only)")
PY

echo "--- chart, a plaintext Ingress allowed explicitly"
helm template voicehub "$chart" --set ingress.httpIngress.enabled=true \
  --set ingress.httpIngress.allowPlaintext=true 2> >(grep -v 'symbolic link' >&2) |
  grep -q '^kind: Ingress$' || fail "allowPlaintext: true did not render the Ingress"
echo "  ingress.httpIngress.allowPlaintext=true renders an Ingress without tls"

echo "--- Prometheus Operator resources"
select_kinds "$out/all-options.yaml" PrometheusRule > "$out/rule.yaml"
"/opt/voicehub-tools/venv/bin/python" -c '
import sys, yaml
rule = yaml.safe_load(open(sys.argv[1]))
yaml.safe_dump(rule["spec"], open(sys.argv[2], "w"))' "$out/rule.yaml" "$out/rule-spec.yaml"
promtool check rules "$out/rule-spec.yaml"
select_kinds "$out/all-options.yaml" ServiceMonitor > "$out/servicemonitor.yaml"
check-jsonschema --schemafile deploy/ci/schemas/servicemonitor.schema.json "$out/servicemonitor.yaml"

echo "--- negative controls"
for values in "$chart"/ci/invalid-*values.yaml; do
  name=${values#"$chart"/}
  if helm template voicehub "$chart" -f "$values" >/dev/null 2>"$out/err"; then
    fail "$name was accepted"
  fi
  why=$(sed -n 's/^# rejected: //p' "$values")
  [[ -n $why ]] || fail "$name has no '# rejected: <what helm says>' line"
  grep -q "values don't meet the specifications of the schema" "$out/err" && grep -qF -- "$why" "$out/err" ||
    { cat "$out/err"; fail "$name failed for another reason than the schema's $why"; }
  echo "  $name rejected by values.schema.json ($why)"
done
# A memory limit below the worst case computed from the values is refused by the chart itself.
for values in "$chart"/ci/refused-*values.yaml; do
  name=${values#"$chart"/}
  why=$(sed -n 's/^# refused: //p' "$values")
  [[ -n $why ]] || fail "$name has no '# refused: <what the chart says>' line"
  if helm template voicehub "$chart" -f "$values" >/dev/null 2>"$out/err"; then
    fail "$name was accepted"
  fi
  grep -qF -- "$why" "$out/err" || { cat "$out/err"; fail "$name failed for another reason than $why"; }
  echo "  $name refused by the chart ($why)"
done
# Rules the schema cannot express (across keys) are left to --check-config: prove it catches them.
for values in "$chart"/ci/unstartable-*values.yaml; do
  name=${values#"$chart"/}
  read -r service key < <(sed -n 's/^# expect: voicehub-\([a-z]*\) rejects \(.*\)/\1 \2/p' "$values") ||
    fail "$name has no '# expect: voicehub-<service> rejects <key>' line"
  helm template voicehub "$chart" -f "$values" 2> >(grep -v 'symbolic link' >&2) > "$out/unstartable.yaml" ||
    fail "$name is rejected by values.schema.json: it must reach --check-config"
  config_of "$out/unstartable.yaml" "$service.toml" > "$out/unstartable.toml"
  if "$bin_dir/voicehub-$service" --check-config --config "$out/unstartable.toml" >"$out/err" 2>&1; then
    fail "$name: its $service.toml is accepted by voicehub-$service --check-config"
  fi
  grep -qF "configuration key \`$key\`" "$out/err" ||
    { cat "$out/err"; fail "$name: rejected for another reason than $key"; }
  echo "  $name passes the schema, refused by voicehub-$service --check-config ($key)"
done
select_kinds "$out/default.yaml" Deployment |
  sed 's/^\(\s*\)terminationGracePeriodSeconds:/\1terminationGracePeriod:/' > "$out/broken.yaml"
if kubernetes-validate --strict -k 1.30.0 "$out/broken.yaml" >/dev/null 2>&1; then
  fail "kubernetes-validate accepted a Deployment with an unknown field"
fi
echo "  a Deployment with an unknown field is rejected by kubernetes-validate"

echo "--- image: the default CMD runs the ingress as the chart does"
"/opt/voicehub-tools/venv/bin/python" - deploy/Dockerfile "$out/default.yaml" > "$out/cmd" <<'PY'
import json, re, sys, yaml
dockerfile, render = sys.argv[1:]
lines = open(dockerfile).read().splitlines()
if any(re.match(r"\s*ENTRYPOINT\b", l) for l in lines):
    sys.exit("check-chart: the Dockerfile has an ENTRYPOINT: the chart's command would replace it")
cmd = json.loads([l for l in lines if re.match(r"\s*CMD\b", l)][-1].split(None, 1)[1])
ingress, = [d for d in yaml.safe_load_all(open(render)) if d and d["kind"] == "Deployment"
            and d["metadata"]["labels"]["app.kubernetes.io/component"] == "ingress"]
container, = ingress["spec"]["template"]["spec"]["containers"]
if cmd != container["command"] + container["args"]:
    sys.exit(f"check-chart: the image's CMD {cmd} is not the chart's {container['command'] + container['args']}")
# The file the CMD names, in the image: the Dockerfile's COPY of deploy/config/.
copy = next(l.split() for l in lines if re.match(r"COPY deploy/config/ ", l))
print(cmd[cmd.index("--config") + 1].replace(copy[2].rstrip("/") + "/", "deploy/config/", 1))
PY
"$bin_dir/voicehub-ingress" --check-config --config "$(cat "$out/cmd")" 2>&1 ||
  fail "the image's default configuration ($(cat "$out/cmd")) is rejected"
echo "  CMD = the chart's command and args, on deploy/config's valid ingress.toml"

echo "--- chart README documents every value"
"/opt/voicehub-tools/venv/bin/python" - "$chart" <<'PY'
import re, sys, yaml
chart = sys.argv[1]
values = yaml.safe_load(open(f"{chart}/values.yaml"))
readme = open(f"{chart}/README.md").read()
documented = set(re.findall(r"`([A-Za-z0-9_.<>*]+)`", readme))
# Maps documented as one value (free-form, or Kubernetes objects passed through).
whole = {"resources", "podSecurityContext", "containerSecurityContext"}
def leaves(node, path):
    if isinstance(node, dict) and node and path.rsplit(".", 1)[-1] not in whole:
        for key, child in node.items():
            yield from leaves(child, f"{path}.{key}" if path else key)
    else:
        yield path
missing = []
for leaf in leaves(values, ""):
    generic = re.sub(r"^sources\.[^.]+", "sources.<name>", leaf)
    if generic not in documented and generic.rsplit(".", 1)[0] + ".*" not in documented:
        missing.append(leaf)
if missing:
    sys.exit("values not in the chart README: " + ", ".join(missing))
print("  every value is in the chart README")
# A rotated Secret reaches a mounted volume after the kubelet's sync period and cache delay
# (60 to 90 s), never through a subPath mount; the README must not promise less.
rotation = re.search(r"^- \*\*Secrets\*\*.*?(?=^- \*\*)", readme, re.S | re.M).group(0)
delays = [int(n) * (60 if unit.startswith("min") else 1)
          for n, unit in re.findall(r"(\d+)\s*(s\b|seconds|minutes?)", rotation)]
if max(delays, default=0) < 90 or "subPath" not in rotation:
    sys.exit("the README's Secret rotation must wait for the kubelet (90 s or more) and warn about subPath")
print("  the README's Secret rotation waits for the kubelet")
PY
