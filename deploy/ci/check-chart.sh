#!/usr/bin/env bash
# Checks helm/voicehub-bridge with real tools (installed by deploy/ci/install-tools.sh):
#  - helm lint --strict, for the default values and for ci/all-options-values.yaml;
#  - both renders validate against the Kubernetes 1.30 OpenAPI schemas, strictly and offline
#    (kubernetes-validate); any warning fails, except the two Prometheus Operator kinds, which
#    have no bundled schema and are checked below instead;
#  - the PrometheusRule's rules pass promtool; the ServiceMonitor passes deploy/ci/schemas;
#  - the rendered ingress.toml and enricher.toml pass the binaries' own --check-config;
#  - ci/invalid-values.yaml is rejected by values.schema.json, and a manifest with an unknown
#    field is rejected by the validator (so a passing run means something).
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

for values in default all-options; do
  echo "--- chart, $values values"
  args=()
  [[ $values == default ]] || args=(-f "$chart/ci/$values-values.yaml")
  helm lint --strict "$chart" "${args[@]}" 2>&1 | grep -v 'symbolic link' || fail "helm lint ($values)"
  helm template voicehub "$chart" --namespace voicehub "${args[@]}" \
    2> >(grep -v 'symbolic link' >&2) > "$out/$values.yaml"
  validate "$out/$values.yaml"
  for service in ingress enricher; do
    config_of "$out/$values.yaml" "$service.toml" > "$out/$values-$service.toml"
    "$bin_dir/voicehub-$service" --check-config --config "$out/$values-$service.toml" 2>&1 ||
      fail "rendered $service.toml ($values) is rejected by voicehub-$service"
  done
done

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
if helm template voicehub "$chart" -f "$chart/ci/invalid-values.yaml" >/dev/null 2>"$out/err"; then
  fail "ci/invalid-values.yaml was accepted"
fi
grep -q "values don't meet the specifications of the schema" "$out/err" ||
  { cat "$out/err"; fail "ci/invalid-values.yaml failed for another reason than the schema"; }
echo "  invalid values rejected by values.schema.json"
select_kinds "$out/default.yaml" Deployment |
  sed 's/^\(\s*\)terminationGracePeriodSeconds:/\1terminationGracePeriod:/' > "$out/broken.yaml"
if kubernetes-validate --strict -k 1.30.0 "$out/broken.yaml" >/dev/null 2>&1; then
  fail "kubernetes-validate accepted a Deployment with an unknown field"
fi
echo "  a Deployment with an unknown field is rejected by kubernetes-validate"

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
PY
