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
  "head-of-line: one record at a time|crates/enricher/src/pipeline/dispatch.rs|while tasks.len() < self.max_in_flight {|while tasks.is_empty() {|test(=failures::a_hanging_fetch_does_not_delay_the_others_in_its_partition)|was fetched only after the record ahead of it had timed out"
  "Retry-After beyond the budget: the budget waited out|crates/enricher/src/pipeline/worker.rs|                Err(error) if error.is_retryable() => {|                Err(error) if error.is_retryable() => { let _ = cancelled_within(stop, remaining).await;|test(=failures::a_retry_after_beyond_the_retry_budget_is_dead_lettered_not_waited_for)|expected: 1, got: 0"
  "redo after an abort: offsets stored as work starts|crates/enricher/src/pipeline/dispatch.rs|                tracker.started(input.partition, input.offset);|                tracker.started(input.partition, input.offset); let _ = self.consumer.store_offset(&self.topic, input.partition, input.offset);|test(=restart::aborted_mid_stream_a_successor_redoes_the_unfinished_with_the_same_ids)|of 12 enriched"
  "rebalance: each instance a group of its own|crates/enricher/src/startup.rs|.set(\"group.id\", &consumer.group_id)|.set(\"group.id\", format!(\"{}-{}\", consumer.group_id, std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()))|test(=restart::a_rebalance_to_a_second_instance_loses_nothing)|records enriched twice"
  "shutdown: connections dropped, not drained|crates/ingress/src/startup.rs|http.stop(true).await;|http.stop(false).await;|test(=shutdown::shutdown_answers_every_webhook_held_in_flight)|in flight at the shutdown"
  "re-drive: committed only at the end|crates/operator/src/redrive.rs|Ok(_) => reader.commit(std::mem::take(&mut done))?,|Ok(_) => {}|test(/redrive::analyses_dead_lettered_for_a_revoked_key/)|Report { dry_run: false"
  "leap second refused|crates/model/src/timestamp.rs|.filter(\|utc\| (0..=9999).contains(&utc.year()))|.filter(\|utc\| (0..=9999).contains(&utc.year()) && utc.nanosecond() != 999_999_999)|test(=a_leap_second_at_23_59_60_utc_is_the_last_millisecond_of_its_minute)|2016-12-31T23:59:60Z: "
  "the enricher logs nothing (the secret grep on an empty log)|crates/enricher/src/main.rs|let _log = telemetry::init(&settings.log)?;|let _log = ();|test(=process_crash::kill_9_of_either_service_under_load_loses_nothing_acknowledged)|enricher: no such line within"
  "spool: a bounded read passes over a record too large for it|crates/spool/src/segment.rs|                *bytes_left = 0;|                |test(=tests::a_bounded_read_stops_at_a_record_too_large_for_it_not_after_it)|left: [0, 2]"
  "listen backlog: std's 128|crates/ingress/src/startup.rs|socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;|socket.listen(128)?;|test(=startup::tests::the_listener_holds_its_whole_backlog_of_unaccepted_connections)|connection timed out"
  "spool age: a spool that does not drain never refused|crates/spool/src/lib.rs|let oldest = state.oldest().filter(\|age\| *age > self.max_age)?;|let oldest = state.oldest().filter(\|_\| false)?;|test(=spool::a_spool_whose_oldest_is_too_old_answers_503_and_is_unready_until_it_drains)|still taking webhooks behind a stale spool"
  "spool: acknowledgements written down only at a clean stop|crates/ingress/src/spool_upkeep.rs|        persist_acknowledgements(&spool).await;|        let _ = &spool;|test(=process_crash::kill_9_of_a_forwarding_ingress_resends_at_most_its_last_half_second)|re-sent, first written"
  "enricher accounting: a 503 dead-lettered, not retried|crates/enricher/src/fetch.rs|                \| Self::ServerError(_)||test(/accounting::every_input_is_enriched_or_dead_lettered_once/)|wrong outcome (first 10)"
  "ingress accounting: a retried event written again|crates/ingress/src/dedupe.rs|Entry::Done(_) => Claim::Duplicate,|Entry::Done(_) => Claim::Fresh(Pending { dedupe: Arc::clone(self), key: None }),|test(/accounting::every_acknowledged_webhook_is_on_its_topic/)|unexplained (first 10)"
  "a panic on the request path: answered, not dead-lettered|crates/ingress/src/routes.rs|dead_letter(state, &provenance, &bytes, \"internal_error\", &text).await?;||test(=invalid::a_panic_on_the_request_path_is_a_json_500_and_a_dead_letter)|dead letters of the panicking body"
  "a panic on the record path: the task dies with it|crates/enricher/src/pipeline/worker.rs|            Err(panic) => {|            Err(panic) => { std::panic::resume_unwind(panic);|test(=failures::a_panic_on_the_record_path_dead_letters_the_record_and_its_offset_completes)|expected: 1, got: 0"
  "body limit: a body of exactly the limit refused|crates/ingress/src/routes.rs|if declared.is_some_and(\|length\| length > limit) {|if declared.is_some_and(\|length\| length >= limit) {|test(=invalid::a_valid_event_of_exactly_the_body_limit_is_accepted_and_on_its_topic)|left: 413"
  "configuration: a topic shared by two record types taken|crates/model/src/routing.rs|all[..i].iter().find(|all[..0].iter().find(|test(=routing::tests::a_topic_shared_by_two_record_types_is_refused)|called \`Result::unwrap_err()\` on an \`Ok\` value"
  "2xx means acks=all: acks=1 without idempotence|crates/runtime/src/kafka/config.rs|.set(\"enable.idempotence\", \"true\")|.set(\"enable.idempotence\", \"false\").set(\"acks\", \"1\")|test(=secured::below_min_insync_replicas_webhooks_get_503_never_a_false_2xx_and_it_recovers_alone)|lost: [\""
  "SASL credentials from the environment ignored|crates/runtime/src/settings.rs|builder = builder.add_source(PropertiesFromEnvironment(properties));|let _ = properties;|test(=settings::tests::an_environment_secret_replaces_the_files_placeholder_however_the_file_spells_it)|right: Some(\"ingress\")"
  "a refused topic leaves the ingress ready|crates/runtime/src/permissions.rs|self.readiness.set(CHECK, refused.is_empty());|self.readiness.set(CHECK, true);|test(=secured::a_missing_write_acl_is_named_makes_the_ingress_unready_and_heals_once_granted)|ingress /readyz still 200 [] after"
  "broker health follows each failed delivery|crates/ingress/src/publisher.rs|self.inner.epoch.elapsed().saturating_sub(last) >= UNHEALTHY_AFTER|true \|\| self.inner.epoch.elapsed().saturating_sub(last) >= UNHEALTHY_AFTER|test(=publisher::tests::failures_between_successes_leave_readiness_alone)|assertion failed: readiness.is_ready()"
  "a consumer that knows no broker kept|crates/enricher/src/consumer_watch.rs|self.brokerless_for() >= WEDGE_LIMIT|self.brokerless_for() >= WEDGE_LIMIT * 1000|test(=restart::a_consumer_that_knows_no_broker_is_replaced_and_nothing_is_lost)|never rebuilt"
  "broker outage: a failed produce answered 2xx|crates/ingress/src/outbox.rs|self.publisher.publish(topic, record, on_durable).await?;|let _ = self.publisher.publish(topic, record, on_durable).await;|test(=broker_outage::a_stopped_broker_means_503_within_the_deadline_then_recovery_without_restart)|left: 200"
  "spool forwarder: a record Kafka refused is passed over|crates/ingress/src/forwarder.rs|next = failed;|next = failed + 1;|test(=spool::always_a_minute_without_the_broker_delays_events_and_loses_none)|records still spooled"
  "spool: every record found on opening taken as forwarded|crates/spool/src/recovery.rs|for seq in segment.first_seq()..acked.min(segment.next_seq()) {|for seq in segment.first_seq()..segment.next_seq() {|test(=process_crash::kill_9_of_a_spooling_ingress_during_an_outage_loses_nothing_acknowledged)|the restart lost some"
  "spool: a torn end cut off with the whole segment|crates/spool/src/segment.rs|file.set_len(offset).map_err(SpoolError::io(path))?;|file.set_len(0).map_err(SpoolError::io(path))?;|test(=spool::a_segment_torn_in_its_last_record_forwards_every_earlier_record)|records still spooled"
  "spool fallback: new events ahead of those spooled before a restart|crates/ingress/src/outbox.rs|let holding = spool.depth().records > 0;|let holding = false;|test(=spool::fallback_after_a_restart_sends_new_events_behind_the_spooled_ones)|call c: order or content"
  "the same event id twice written twice|crates/ingress/src/dedupe.rs|Entry::Done(_) => Claim::Duplicate,|Entry::Done(_) => Claim::Fresh(Pending { dedupe: Arc::clone(self), key: None }),|test(=contract::the_same_event_id_twice_yields_one_record)|right: Object {\"status\": String(\"duplicate\")}"
  "an unusable body answered 400 but not dead-lettered|crates/ingress/src/routes.rs|dead_letter(state, provenance, bytes, error.reason(), &error.to_string()).await?;||test(/invalid::unusable_bodies_are_400_and_dead_lettered/)|dead letters of the unusable bodies"
  "a trickled body waited for 100 times longer|crates/ingress/src/routes.rs|tokio::time::timeout(timeout, read)|tokio::time::timeout(timeout * 100, read)|test(=hostile::a_body_trickled_byte_by_byte_is_cut_off_with_408_and_writes_nothing)|not a 408 within the body timeout"
  "allow-list: a host ending in an allowed name passes|crates/enricher/src/allow_list.rs|url.host().is_some_and(\|host\| host.to_owned() == self.host)|url.host().is_some_and(\|host\| host.to_string().ends_with(&self.host.to_string()))|test(=allow_list::tests::only_allowed_hosts_over_https_pass)|was allowed"
  "parser: a string cut at a byte count|crates/model/src/event/mod.rs|Some(Value::String(text)) => Ok(text),|Some(Value::String(text)) => Ok(&text[..text.len().min(4)]),|test(/arbitrary_json_never_panics/)|is not a char boundary"
  "enricher backlog: no bound|crates/enricher/src/pipeline/dispatch.rs|if !paused && backlog.bytes >= self.max_backlog_bytes {|if !paused && backlog.bytes >= self.max_backlog_bytes * 1000 {|test(=flow_control::a_full_backlog_pauses_fetching_and_everything_is_enriched_once_it_drains)|never paused"
  "produce latency alert: fires on any latency|helm/voicehub-bridge/templates/prometheusrule.yaml|[5m]))) > {{ \$t.produceLatencyP99Seconds }}|[5m]))) > 0|alerts|VoiceHubProduceLatencyHigh, time: 30m"
  "ingress body budget: bodies reserve nothing|crates/ingress/src/body_budget.rs|let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).ok()?;|let units = u32::from(bytes > usize::MAX);|test(=hostile::bodies_beyond_the_in_flight_byte_budget_get_503_before_they_are_read)|the slow body never reserved"
  "enricher backlog: no bound, judged by the process's memory|crates/enricher/src/pipeline/dispatch.rs|if !paused && backlog.bytes >= self.max_backlog_bytes {|if !paused && backlog.bytes >= self.max_backlog_bytes * 1000 {|test(=intake::a_stalled_enricher_takes_in_no_more_than_its_backlog_bound)|it took in more than its backlog bound"
  "enricher: no bound on what a rebalance redoes|crates/enricher/src/pipeline/dispatch.rs|backlog.pop(\|partition\| tracker.uncommitted(partition) < limit)|backlog.pop(\|_\| true)|test(=restart::a_partition_held_back_starts_no_more_than_its_bound_and_its_successor_redoes_only_those)|records started behind a hanging one"
  "ingress: no limit on requests in flight|crates/ingress/src/startup.rs|in_flight: Semaphore::new(settings.http.max_in_flight),|in_flight: Semaphore::new(Semaphore::MAX_PERMITS),|test(=hostile::a_request_beyond_the_in_flight_limit_gets_503_and_the_held_ones_are_answered)|a request beyond http.max_in_flight was taken in"
  "enricher: a refused group leaves it ready|crates/enricher/src/pipeline/dispatch.rs|self.readiness.set(GROUP_CHECK, false);|let _ = GROUP_CHECK;|test(=secured::an_enricher_refused_its_group_says_so_is_unready_and_heals_once_granted)|enricher /readyz still 200"
  "allow-list: the resolved addresses not checked|crates/enricher/src/fetch.rs|            .dns_resolver(Arc::new(allow_list.resolver()))||test(=fetch::tests::a_name_that_resolves_to_loopback_gets_nothing_unless_its_entry_allows_it)|expected a refusal"
  "allow-list: the path prefix ignored|crates/enricher/src/allow_list.rs|        if prefix == \"/\" {|        if !prefix.is_empty() {|test(=allow_list::tests::a_path_prefix_admits_only_paths_under_it)|was allowed"
  "allow-list: an entry without a port admits every port|crates/enricher/src/allow_list.rs|&& url.port_or_known_default() == Some(self.port.unwrap_or(default_port))|&& self.port.is_none_or(\|port\| url.port_or_known_default() == Some(port))|test(=allow_list::tests::without_a_port_the_schemes_default_port_is_the_only_one)|admitted(&l, \"http://api.example:443/x\")"
  "allow-list: a private address literal taken without its flag|crates/enricher/src/allow_list.rs|if !private_addresses && let Some(kind) = literal_kind(&host) {|if false && let Some(kind) = literal_kind(&host) {|test(=allow_list::tests::a_non_public_address_literal_needs_its_entry_to_allow_it)|127.0.0.1:8443"
  "webhook secrets: any length taken|crates/ingress/src/auth.rs|    if bytes.len() < MIN_SECRET_BYTES {|    if bytes.is_empty() {|test(=auth::tests::a_secret_shorter_than_the_minimum_is_refused_at_load_and_never_taken_on_reload)|unwrap_err"
  "spool: set-aside files never aged|crates/spool/src/files.rs|        if retention.is_some_and(\|retention\| age > retention) {|        if retention.is_some_and(\|retention\| age > retention * 1000) {|test(=tests::set_aside_files_are_counted_and_deleted_once_older_than_the_retention)|left: []"
  "spool produce: a record for any topic produced|crates/operator/src/spool.rs|        if !self.topics.contains(&topic) {|        if self.topics.is_empty() {|test(=spool::set_aside_files_go_once_and_unreadable_ones_stay)|another.instances.topic"
  "voicehub completions: written straight to stdout|crates/operator/src/main.rs|        clap_complete::generate(shell, &mut Cli::command(), \"voicehub\", &mut script);|        clap_complete::generate(shell, &mut Cli::command(), \"voicehub\", &mut std::io::stdout());|test(=cli::completions_into_a_closed_pipe_end_quietly)|panicked"
  "spool produce: acknowledgements written down only at the end|crates/operator/src/spool.rs|            spool.persist_acknowledgements()?;|            if !matches!(more, Ok(true)) { spool.persist_acknowledgements()?; }|test(=spool::an_interrupted_spool_produce_sends_again_at_most_one_window_and_a_signal_nothing)|sent again after the kill"
  "re-drive: what earlier runs left behind forgotten|crates/operator/src/dead_letters.rs|            left_before: left_behind.values().sum(),|            left_before: 0,|test(=redrive::raw_bodies_parse_after_a_parser_change_and_what_still_fails_or_is_forged_stays)|passed over"
  "redrive/spool: a signal ends the process|crates/operator/src/interrupt.rs|                        if flag.swap(true, Ordering::SeqCst) {|                        if flag.swap(true, Ordering::SeqCst) \|\| true {|test(=spool::an_interrupted_spool_produce_sends_again_at_most_one_window_and_a_signal_nothing)|EOF while parsing"
  "check: any authorized operation passes|crates/operator/src/check/kafka.rs|        Some(allowed) if allowed.contains(&operation) => finding(|        Some(allowed) if !allowed.is_empty() => finding(|test(=secured::check::a_missing_write_acl_is_named_and_unknown_settings_are_skipped_not_passed)|right: 3"
  "check: a refused login reported as unreachable brokers|crates/operator/src/check/kafka.rs|            if is_refusal(&said) {|            if false {|test(=secured::check::a_wrong_password_fails_authentication_not_the_brokers)|brokers: fail"
  "check: fewer replicas than min.insync.replicas passes|crates/operator/src/check/kafka.rs|    if factor < min {|    if factor < min && false {|test(=check::kafka::tests::replication_is_judged_as_acks_all_needs_it)|its writes are refused now"
  "analysis reader: a documented field twice accepted|crates/model/src/analysis.rs|                                    if \$field.is_some() {|                                    if false && \$field.is_some() {|test(=analysis::tests::the_reader_agrees_with_the_derived_deserialize)|duplicate field"
  "check: a moving group coordinator reported as a refusal|crates/operator/src/check/kafka.rs|        if !moving \|\| left < 2 * COORDINATOR_RETRY {|        if true \|\| left < 2 * COORDINATOR_RETRY {|test(=check::kafka::tests::a_moving_group_coordinator_is_asked_again_not_reported_as_a_refusal)|NotCoordinator"
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
