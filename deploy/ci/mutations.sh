#!/usr/bin/env bash
# Shows that the tests named in docs/reliability.md ("Guarantees and their tests") fail when
# their promise breaks: each mutation below changes one line of the product on purpose, runs
# the test that guards it, and passes only if that test fails. The source is restored after
# each (and on exit). Not in CI: each mutation rebuilds a crate and its tests (1 to 3 minutes
# here). Broker-backed tests run on tansu unless VOICEHUB_TEST_KAFKA is set.
#
#   deploy/ci/mutations.sh            # every mutation
#   deploy/ci/mutations.sh 3          # the third only
set -euo pipefail
cd "$(dirname "$0")/../.."
only=${1:-}

# name | file | exact text | replacement | what shows it (a nextest filter, or "alerts") |
# what its failure must say (so that a failure for another reason is no catch)
mutations=(
  "head-of-line: one record at a time|crates/enricher/src/pipeline.rs|while tasks.len() < self.max_in_flight {|while tasks.is_empty() {|test(=failures::a_hanging_fetch_does_not_delay_the_others_in_its_partition)|was fetched only after the record ahead of it had timed out"
  "Retry-After beyond the budget: the budget waited out|crates/enricher/src/pipeline.rs|                Err(error) if error.is_retryable() => {|                Err(error) if error.is_retryable() => { let _ = cancelled_within(stop, remaining).await;|test(=failures::a_retry_after_beyond_the_retry_budget_is_dead_lettered_not_waited_for)|expected: 1, got: 0"
  "redo after an abort: offsets stored as work starts|crates/enricher/src/pipeline.rs|                tracker.started(input.partition, input.offset);|                tracker.started(input.partition, input.offset); let _ = self.consumer.store_offset(&self.topic, input.partition, input.offset);|test(=restart::aborted_mid_stream_a_successor_redoes_the_unfinished_with_the_same_ids)|of 12 enriched"
  "rebalance: each instance a group of its own|crates/enricher/src/startup.rs|.set(\"group.id\", &consumer.group_id)|.set(\"group.id\", format!(\"{}-{}\", consumer.group_id, std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()))|test(=restart::a_rebalance_to_a_second_instance_loses_nothing)|records enriched twice"
  "shutdown: connections dropped, not drained|crates/ingress/src/startup.rs|http.stop(true).await;|http.stop(false).await;|test(=shutdown::shutdown_answers_every_webhook_held_in_flight)|in flight at the shutdown"
  "re-drive: committed only at the end|crates/operator/src/redrive.rs|Ok(_) => reader.commit(std::mem::take(&mut done))?,|Ok(_) => {}|test(/redrive::analyses_dead_lettered_for_a_revoked_key/)|Report { dry_run: false"
  "leap second refused|crates/model/src/timestamp.rs|.filter(\|utc\| (0..=9999).contains(&utc.year()))|.filter(\|utc\| (0..=9999).contains(&utc.year()) && utc.nanosecond() != 999_999_999)|test(=a_leap_second_at_23_59_60_utc_is_the_last_millisecond_of_its_minute)|2016-12-31T23:59:60Z: "
  "the enricher logs nothing (the secret grep on an empty log)|crates/enricher/src/main.rs|let _log = telemetry::init(&settings.log)?;|let _log = ();|test(=process_crash::kill_9_of_either_service_under_load_loses_nothing_acknowledged)|enricher: no such line within"
  "spool: a bounded read passes over a record too large for it|crates/spool/src/segment.rs|                *bytes_left = 0;|                |test(=tests::a_bounded_read_stops_at_a_record_too_large_for_it_not_after_it)|left: [0, 2]"
  "listen backlog: std's 128|crates/ingress/src/startup.rs|socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;|socket.listen(128)?;|test(=startup::tests::the_listener_holds_its_whole_backlog_of_unaccepted_connections)|connection timed out"
  "spool age: a spool that does not drain never refused|crates/spool/src/lib.rs|let oldest = state.oldest().filter(\|age\| *age > self.max_age)?;|let oldest = state.oldest().filter(\|_\| false)?;|test(=spool::a_spool_whose_oldest_is_too_old_answers_503_and_is_unready_until_it_drains)|still taking webhooks behind a stale spool"
  "spool: acknowledgements written down only at a clean stop|crates/ingress/src/spool_upkeep.rs|        persist_acknowledgements(&spool).await;|        let _ = &spool;|test(=process_crash::kill_9_of_a_forwarding_ingress_resends_at_most_its_last_half_second)|re-sent, first written"
  "produce latency alert: fires on any latency|helm/voicehub-bridge/templates/prometheusrule.yaml|[5m]))) > {{ \$t.produceLatencyP99Seconds }}|[5m]))) > 0|alerts|VoiceHubProduceLatencyHigh, time: 30m"
)

if find . -name '*.unmutated' -not -path './target/*' | grep -q .; then
  echo "mutations: a *.unmutated file is left from an interrupted run: restore it first" >&2
  exit 1
fi
# The rendered alert rules are rewritten by the alert mutation: kept, and put back on exit.
cp deploy/prometheus/alerts.yml /tmp/mutations-alerts.yml

backup=
# Copied back, not moved: the restored file must be newer than the mutated build, or cargo
# would keep the mutated binaries.
restore() {
  [[ -z $backup ]] || { cp "$backup" "${backup%.unmutated}" && rm "$backup"; }
  backup=
}
trap 'restore; cp /tmp/mutations-alerts.yml deploy/prometheus/alerts.yml' EXIT

caught=0 missed=()
for i in "${!mutations[@]}"; do
  n=$((i + 1))
  [[ -z $only || $only == "$n" ]] || continue
  IFS='|' read -r name file text replacement check expect <<<"${mutations[$i]//\\|/$'\x1f'}"
  text=${text//$'\x1f'/|} replacement=${replacement//$'\x1f'/|}
  echo "--- $n. $name ($file)"
  cp "$file" "$file.unmutated"
  backup=$file.unmutated
  python3 - "$file" "$text" "$replacement" <<'PY'
import sys
path, text, replacement = sys.argv[1:]
source = open(path).read()
if source.count(text) != 1:
    sys.exit(f"mutations: {text!r} is in {path} {source.count(text)} times, not once")
open(path, "w").write(source.replace(text, replacement))
PY
  if [[ $check == alerts ]]; then
    run() { deploy/ci/check-alerts.sh --write >/dev/null && deploy/ci/check-alerts.sh; }
  else
    run() { cargo nextest run --workspace --all-targets --no-fail-fast -E "$check"; }
  fi
  # Caught only when the test failed saying why: a build error, a missing tool or a failure
  # for another reason is no catch.
  log=/tmp/mutation-$n.log
  if run >"$log" 2>&1; then
    echo "  MISSED: the tests still pass (log: $log)"
    missed+=("$n. $name")
  elif grep -qF -- "$expect" "$log"; then
    echo "  caught (log: $log)"
    caught=$((caught + 1))
  else
    echo "  FAILED OTHERWISE: not with \"$expect\" (log: $log)"
    missed+=("$n. $name (failed otherwise)")
  fi
  restore
  cp /tmp/mutations-alerts.yml deploy/prometheus/alerts.yml
done
echo "--- $caught caught, ${#missed[@]} missed"
((${#missed[@]} == 0)) || { printf '  %s\n' "${missed[@]}"; exit 1; }
