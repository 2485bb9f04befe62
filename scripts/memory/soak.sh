#!/usr/bin/env bash
# Soak: broker, ingress and enricher as separate release processes under steady simulated
# VoiceHub traffic (whole calls, with duplicates, out-of-order statuses and malformed bodies),
# sampling every few seconds: RSS of both services, webhooks answered and their p50/p99 over
# the interval, the p99 of the Kafka acknowledgement alone (both from the ingress's
# histograms), enriched records and dead letters. Not in CI.
#
#   scripts/memory/soak.sh [minutes=10] [calls per second=20] [sample seconds=30]
#
# Prints a CSV on stdout, then a summary line; the simulator's report at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-10}
rate=${2:-20}
every=${3:-30}

. scripts/lib.sh
require_free_ports 18580 18582 19590 19591 19592
build_release voicehub-ingress voicehub-enricher voicehub-devstack voicehub-simulator
start_broker 19592
start_ingress 18580 19590 19592 soak-webhook-secret
start_enricher 19591 19592 127.0.0.1:18582 soak-key

calls=$(python3 -c "print(int($minutes * 60 * $rate))")
"$bin/voicehub-sim" --url http://127.0.0.1:18580/webhooks/voicehub --secret soak-webhook-secret \
  --api-key soak-key --api-listen 127.0.0.1:18582 --calls "$calls" --rate "$rate" \
  --concurrency 64 --duplicate-every 10 --out-of-order-every 7 --malformed-every 50 \
  --serve-seconds 20 >"$work/report.json" 2>"$work/sim.log" &
sim=$!
pids+=($sim)

python3 - "$ingress" "$enricher" "$sim" "$every" <<'PY'
import re, sys, time, urllib.request

ingress, enricher, sim, every = (int(a) for a in sys.argv[1:5])

def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

def scrape(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples

def buckets(samples, histogram):
    """Cumulative counts per upper bound, summed over every label set."""
    total = {}
    for name, value in samples.items():
        if name.startswith(histogram + "_bucket"):
            le = re.search(r'le="([^"]+)"', name).group(1)
            total[float(le)] = total.get(float(le), 0) + value
    return dict(sorted(total.items()))

def quantile(q, delta):
    count = delta.get(float("inf"), 0)
    if count == 0:
        return float("nan")
    rank, lower, below = q * count, 0.0, 0
    for le, cumulative in delta.items():
        if cumulative >= rank:
            if le == float("inf"):
                return lower * 1000
            share = (rank - below) / max(cumulative - below, 1)
            return (lower + (le - lower) * share) * 1000
        lower, below = le, cumulative
    return float("nan")

def total(samples, prefix):
    return sum(v for k, v in samples.items() if k.startswith(prefix))

def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except FileNotFoundError:
        return False

REQUEST = "voicehub_ingress_request_duration_seconds"
PRODUCE = "voicehub_ingress_produce_duration_seconds"
start = time.time()
first = scrape(19590)
previous = {h: buckets(first, h) for h in (REQUEST, PRODUCE)}
rows = []
print("elapsed_s,ingress_rss_mib,enricher_rss_mib,webhooks,p50_ms,p99_ms,produce_p99_ms,enriched,dead_letters", flush=True)
while True:
    time.sleep(every)
    i, e = scrape(19590), scrape(19591)
    deltas = {}
    for h in (REQUEST, PRODUCE):
        current = buckets(i, h)
        deltas[h] = {le: current[le] - previous[h].get(le, 0) for le in current}
        previous[h] = current
    delta = deltas[REQUEST]
    row = (
        round(time.time() - start),
        round(rss_mib(ingress), 1),
        round(rss_mib(enricher), 1),
        int(delta.get(float("inf"), 0)),
        round(quantile(0.5, delta), 1),
        round(quantile(0.99, delta), 1),
        round(quantile(0.99, deltas[PRODUCE]), 1),
        int(total(e, 'voicehub_enricher_records_total{outcome="enriched"}')),
        int(total(i, "voicehub_ingress_dead_letters_total") + total(e, "voicehub_enricher_dead_letters_total")),
    )
    rows.append(row)
    print(",".join(str(v) for v in row), flush=True)
    if not alive(sim):
        break
first, last = rows[0], rows[-1]
print(
    f"summary: {last[0]} s; RSS ingress {first[1]} -> {last[1]} MiB (max {max(r[1] for r in rows)}), "
    f"enricher {first[2]} -> {last[2]} MiB (max {max(r[2] for r in rows)}); "
    f"p99 per interval {min(r[5] for r in rows)}-{max(r[5] for r in rows)} ms; "
    f"produce p99 {min(r[6] for r in rows)}-{max(r[6] for r in rows)} ms; "
    f"{sum(r[3] for r in rows)} webhooks answered, {last[7]} enriched, {last[8]} dead letters",
    flush=True,
)
PY
wait "$sim" || true
echo "simulator: $(cat "$work/report.json")"
