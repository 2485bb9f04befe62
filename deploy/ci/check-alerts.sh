#!/usr/bin/env bash
# The alert rules: one source (the chart's templates/prometheusrule.yaml), one tested rendering.
#  - deploy/prometheus/alerts.yml must be the chart's PrometheusRule rendered with the default
#    values (release voicehub-bridge, namespace voicehub); `--write` regenerates it;
#  - promtool checks it and runs deploy/prometheus/alerts.test.yml against it;
#  - every alert has severity critical, warning or info, a runbook_url whose section exists in
#    docs/runbooks.md, and at least one test where it fires and one where it stays silent.
# Needs helm (deploy/ci/install-tools.sh) and promtool.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/opt/voicehub-tools/bin:$PATH
rules=deploy/prometheus/alerts.yml
# The rendering's runbook_url base: a placeholder (.invalid never resolves) for the copy to
# replace with where its docs/runbooks.md is browsable.
runbooks=https://voicehub-bridge.invalid/docs/runbooks.md
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "check-alerts: $*" >&2; exit 1; }

helm template voicehub-bridge helm/voicehub-bridge --namespace voicehub \
  --set metrics.prometheusRule.enabled=true --set "metrics.prometheusRule.runbookBaseUrl=$runbooks" \
  --show-only templates/prometheusrule.yaml \
  > "$out/rule.yaml"
"/opt/voicehub-tools/venv/bin/python" - "$out/rule.yaml" "$out/alerts.yml" <<'PY'
import sys, yaml
rule = yaml.safe_load(open(sys.argv[1]))
header = (
    "# GENERATED from helm/voicehub-bridge/templates/prometheusrule.yaml with the default values\n"
    "# (release voicehub-bridge, namespace voicehub) by deploy/ci/check-alerts.sh --write; edit\n"
    "# the template. Tests: alerts.test.yml; runbooks: docs/runbooks.md. Replace the runbook_url base\n"
    "# https://voicehub-bridge.invalid/docs/runbooks.md with where your copy is browsable.\n"
)
with open(sys.argv[2], "w") as f:
    f.write(header)
    yaml.safe_dump(rule["spec"], f, sort_keys=False, width=100)
PY
if [[ ${1:-} == --write ]]; then
  cp "$out/alerts.yml" "$rules"
  echo "wrote $rules"
fi
diff -u "$rules" "$out/alerts.yml" >&2 ||
  fail "$rules differs from the chart's rendering: run deploy/ci/check-alerts.sh --write"

promtool check rules "$rules"
promtool test rules deploy/prometheus/alerts.test.yml

"/opt/voicehub-tools/venv/bin/python" - "$rules" deploy/prometheus/alerts.test.yml docs/runbooks.md <<'PY'
import re, sys, yaml
rules, tests, runbooks = (open(p).read() for p in sys.argv[1:])
alerts = [r for g in yaml.safe_load(rules)["groups"] for r in g["rules"] if "alert" in r]
anchors = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
           for h in re.findall(r"^#+ (.*)$", runbooks, re.M)}
def seconds(duration):  # Prometheus durations as the tests write them: 90s, 20m, 1h30m
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    if "".join(n + u for n, u in parts) != duration:
        sys.exit(f"check-alerts: duration {duration!r} not read")
    return sum(int(n) * units[u] for n, u in parts)
waits = {a["alert"]: seconds(a.get("for", "0s")) for a in alerts}
suite = yaml.safe_load(tests)
fires, silent = set(), set()
for test in suite["tests"]:
    interval = seconds(test.get("interval", suite.get("evaluation_interval", "1m")))
    for case in test.get("alert_rule_test", []):
        name = case["alertname"]
        if case.get("exp_alerts"):
            fires.add(name)
        # Silence shows only once the alert could have fired: after its `for:` and one more
        # evaluation. Before that, an alert that fires on everything is silent too.
        elif seconds(case["eval_time"]) >= waits.get(name, 0) + interval:
            silent.add(name)
problems = []
for alert in alerts:
    name = alert["alert"]
    if alert["labels"].get("severity") not in ("critical", "warning", "info"):
        problems.append(f"{name}: severity {alert['labels'].get('severity')!r}")
    anchor = alert["annotations"].get("runbook_url", "").partition("#")[2]
    if anchor != name.lower() or anchor not in anchors:
        problems.append(f"{name}: runbook_url #{anchor} has no section in docs/runbooks.md")
    if name not in fires:
        problems.append(f"{name}: no test where it fires")
    if name not in silent:
        problems.append(f"{name}: no test where it stays silent after its for: ({waits[name]} s)")
if problems:
    sys.exit("check-alerts:\n  " + "\n  ".join(problems))
print(f"  {len(alerts)} alerts: each fires in a test, stays silent in another, has a runbook")
PY
