#!/usr/bin/env python3
"""What a service's extra instructions per unit of work buy: the callgrind cost per webhook (the
ingress) or per record (the enricher) of the service and of its bare counterpart, grouped into
parts of the service's contract (parse, logging, fetch, produce, ...), side by side with their
difference; then allocation calls per unit by part. --detail PART [N] lists the N (default 25)
largest functions of every part whose name contains PART ('all': every part): service, bare,
difference.

    scripts/profile/attribute-callgrind.py [--service ingress|enricher] PREFIX COUNT
                                           [--alloc-by-caller] [--detail PART [N]]

Its input, PREFIX.TARGET and PREFIX.TARGET.base (the warm-up-only run) for both targets, is
written by the service's count script (COUNT webhooks or records after its 500 for warm-up):

    # --service ingress (the default): targets ingress and bare-contract
    CALLGRIND_KEEP=PREFIX COUNT_TARGETS="bare-contract ingress" \\
      scripts/bench/count-ingress.sh COUNT BIN_DIR
    # --service enricher: targets enricher and bare (voicehub-load bare-enricher)
    CALLGRIND_KEEP=PREFIX scripts/bench/count-enricher.sh COUNT BIN_DIR

Each service has its own parts and rule table (INGRESS, ENRICHER below); the method is the
same. In the enricher's, librdkafka's helper families (buffers, queues, ops, headers) are no
anchors, so their cost follows the caller: the fetch path counts as consume, the per-record
producer calls as produce, the broker threads' requests, LZ4 and commits as Kafka client; the
/metrics scrapes of count-enricher.sh (every 0.2 s) are a periodic row of their own.

How the cost is attributed. Everything works on the difference graph, the self costs and call-edge
inclusive costs of PREFIX.TARGET minus PREFIX.TARGET.base (start-up, warm-up and stop cancel
before anything is split), divided by COUNT.
* An anchor is a function whose name matches one of the service's rules (first match wins).
  Each function's self cost goes to the part of the nearest anchor at or above it in the call
  graph.
* A function that is no anchor (serde_json, url, core/alloc/std, hashbrown, bytes, memcpy/memset,
  tokio::time, ...) is split over its callers in proportion to each caller's inclusive cost of
  its calls to it (for a few merged generic symbols, BY_CALLS, in proportion to the call counts).
  A cost called directly by an anchor is exact (callgrind records each edge's inclusive cost);
  one reached through a helper with several callers is an ESTIMATE, since callgrind keeps only
  one level of calling context. The allocation counts go through the same split.
* Allocator functions (ALLOC_RX) keep their own self cost (the 'allocator' row) and are
  transparent for what they call (memset under calloc goes to calloc's callers). With
  --alloc-by-caller they too are split over their callers, charging allocator cost to the part
  that requested it (the allocation counts are always charged that way).
* The service's edges override a few caller->callee edges whose callee serves another part
  than its caller (mostly where a future inlines work of several parts).
* 'periodic' rows are time-driven: they scale with the run's duration, not the unit count.
  'unattributed' is cost with no anchor on any path up (e.g. where a recursion cycle cuts it).
"""
import argparse, collections, os, re, sys

sys.setrecursionlimit(100000)

UNATTRIBUTED = 'unattributed (no anchor on any path up to a thread root)'

# Allocator functions: glibc malloc (Rust's in the bare services, librdkafka's in all), Rust's
# allocator shims, jemalloc (_rjem_*, Rust's in the services) and librdkafka's wrappers.
ALLOC_RX = re.compile(
    r'^(malloc|free|calloc|realloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|'
    r'unlink_chunk\S*|sysmalloc|systrim\S*|tcache_\S*|_int_memalign|_mid_memalign|__libc_\S*alloc|'
    r'posix_memalign|cfree|__rustc::__rust_(alloc|dealloc|realloc|alloc_zeroed|no_alloc_shim_is_unstable_v2)|'
    r'__rustc::__rdl_\S*|_rjem_\S*|do_rallocx|rd_malloc|rd_free|rd_calloc|rd_realloc|'
    r'_int_free_\S*|arena_get2\S*|__malloc_\S*|mremap_chunk|munmap_chunk|new_heap|grow_heap|'
    r'alloc_new_heap|heap_trim|shrink_heap|alloc_perturb|sbrk|__glibc_morecore|extent_\S*|'
    r'base_alloc_impl|emap_\S*|arena_slab_alloc)( \[|$)')
# merged generic symbols whose callers' inclusive costs say little: split them by call counts
BY_CALLS = re.compile(r'^std::thread::local::LocalKey<T>::with|^core::ops::function::FnOnce::call_once')
# where allocations are counted: the Rust allocator shim, glibc's entry points, and jemalloc's
# (which Rust code calls directly where the shim is inlined: a third of the enricher's)
ALLOC_ENTRY = re.compile(r'^(__rustc::__rust_(alloc|realloc|alloc_zeroed)|malloc|calloc|realloc|posix_memalign|'
                         r'_rjem_(malloc|mallocx|calloc|realloc|rallocx|posix_memalign|aligned_alloc)) \[')
# the service binaries, whose functions share one row in --detail with the bare one's
BINARIES = re.compile(r'\[voicehub-(ingress|enricher|load)\]')

class Service:
    """A service measured against its bare counterpart: the targets' names in the profiles, the
    unit counted, the allocator row's name, and the rule table (anchors and edge overrides)."""
    def __init__(self, name, bare, unit, script, alloc):
        self.name, self.bare, self.unit, self.script, self.alloc = name, bare, unit, script, alloc
        self.rules, self.edges, self.cache = [], [], {}
    def rule(self, part, *ps):  # anchors: first match wins, so the order matters
        self.rules.extend((re.compile(p), part) for p in ps)
    def part_of(self, f):
        if f not in self.cache: self.cache[f] = next((p for rx, p in self.rules if rx.search(f)), None)
        return self.cache[f]
    def edge_part(self, caller, f):
        return next((p for a, b, p in self.edges if a.search(caller) and b.search(f)), None)

# ---- the ingress, per webhook, against the bare bridge writing the contract's headers ----------

P_STATS = 'periodic: librdkafka statistics (statistics.interval.ms = 5 s) + rdkafka parsing them'
P_JEBG = 'periodic: jemalloc background purge thread'
P_BG = 'periodic: ingress broker probe (metadata every 2 s) and other background tasks'
P_AUTH = 'auth: x-webhook-secret lookup + constant-time compare'
P_HCOPY = 'HTTP: header value copy (startup::copy_header_values, wrap_fn)'
P_BODY = 'admission + body: in-flight permit, body budget, size limit, read with timeout'
P_PARSE = 'parse + validate into a typed event (strict_json, model::event, timestamp parse)'
P_SER = 'normalise + re-serialise the value (serde_json::to_vec of the typed event)'
P_DEDUP = 'dedupe table (ingress::dedupe)'
P_REC = 'record building: CloudEvents header values, key, received_at (model::record)'
P_MET = 'metrics (prometheus)'
P_LOG = 'logging (tracing + json_log + log_writer thread)'
P_OUT = 'outbox + publisher bookkeeping (outbox, publisher, produce deadline, recovering producer)'
P_KAFKA = 'Kafka client: rdkafka (Rust) + librdkafka (C) incl. LZ4, header copy, delivery'
P_ORCH = 'request orchestration (handler futures, self cost; source lookup; latency clock)'
P_HTTP = 'HTTP: actix-web/actix-http (parse, dispatch, routing, extractors, response)'
P_RT = 'async runtime: tokio scheduler, wake-ups, parking, timer driver'

# The runtime and the thread roots (every service's last rule, so the walk up ends somewhere).
RUNTIME_AND_ROOTS = (
    r'^<?tokio::runtime::(scheduler|task|context|driver|blocking|park|thread_pool|runtime|handle|builder|coop)',
    r'^<?tokio::runtime::time::Driver', r'^<?tokio::task', r'^<tokio::task::coop', r'^<?tokio::runtime::task',
    r'^<?std::thread', r'^std::sys::.*thread', r'^start_thread', r'^clone3?( |$)', r'^std::rt::',
    r'^main( |$)', r'^__libc_start', r'^_start', r'^<?tokio::sync::notify', r'^tokio::runtime::scheduler')

INGRESS = Service('ingress', 'bare-contract', 'webhook', 'scripts/bench/count-ingress.sh',
                  'allocator (jemalloc for Rust in the ingress; glibc malloc for Rust in the bare bridge; '
                  'glibc for librdkafka in both)')
rule = INGRESS.rule

# -- time-driven work (scales with the run's duration, not with the number of webhooks)
rule(P_STATS, r'^rd_kafka_stats_emit', r'stats_raw', r'^rd_hdr_histogram_(quantile|mean|stddev|reset)',
     r'^rd_kafka_stats', r'^rd_avg_rollover', r'^<?rdkafka::statistics', r'drop_in_place<rdkafka::statistics')
rule(P_JEBG, r'background_thread_entry', r'^_rjem_je_background_thread')
rule(P_BG, r'^voicehub_ingress::startup::probe_broker', r'^voicehub_ingress::spool_upkeep',
     r'^voicehub_ingress::auth::SourceSecrets::reload', r'^voicehub_runtime::reload', r'::reachable',
     r'Publisher::probe', r'^rd_kafka_handle_Metadata', r'^rd_kafka_parse_Metadata', r'^rd_kafka_metadata_',
     r'^rd_kafka_topic_metadata_update', r'^rd_kafka_MetadataRequest', r'^rd_kafka_metadata( |$)', r'fetch_metadata',
     r'^voicehub_runtime::admin', r'^voicehub_runtime::readiness', r'^voicehub_runtime::permissions',
     r'^voicehub_runtime::shutdown', r'^voicehub_ingress::startup::(?!http_server|copy_header)')
# -- per-webhook parts: those only the ingress has, then those both bridges have
rule(P_AUTH, r'^voicehub_ingress::auth::', r'routes::authenticate', r'constant_time_eq')
# startup.rs's wrap_fn closure re-allocating every header value
rule(P_HCOPY, r'^actix_http::header::map::HeaderMap::retain', r'copy_header_values',
     r'voicehub_ingress::startup::http_server::\{\{closure\}\}::\{\{closure\}\}::\{\{closure\}\}$')
# max_in_flight, body budget, body read with timeout; the bare bridge's web::Bytes extractor
rule(P_BODY, r'^voicehub_ingress::body_budget', r'routes::read_body', r'routes::discard_body',
     r'^<tokio::time::timeout::Timeout<T> as core::future::future::Future>::poll',
     r'Timeout<voicehub_ingress::routes::read_body', r'Timeout<tokio::sync::semaphore::Semaphore::acquire_many',
     r'^<?tokio::sync::(batch_)?semaphore', r'SemaphorePermit', r'^<tokio::sync::batch_semaphore',
     r'^<?actix_web::types::payload', r'^<actix_web::extract::tuple_from_req::TupleFromRequest1')
rule(P_PARSE, r'^voicehub_model::event::(parse_webhook|from_members|required_string|typed)',
     r'^<?voicehub_model::strict_json', r'Payload>::read', r'^voicehub_model::status::',
     r'^voicehub_model::timestamp::(Timestamp::parse|Timestamp::new)', r'^voicehub_model::serde_helpers::check_id',
     r'^voicehub_model::routing::EventKind::from_event_type', r'drop_in_place<voicehub_model::event::WebhookEvent>',
     r'^time::parsing', r'^<?voicehub_model::event::payloads::.*(Deserialize|Visitor)', r'UnroutedEvent::new')
rule(P_SER, r'WebhookEvent::(value_bytes|to_value)', r'Serialize for voicehub_model::',
     r'^serde_core::ser::SerializeMap::serialize_entry', r'^<voicehub_model::timestamp::Timestamp as serde_core::ser::Serialize')
rule(P_DEDUP, r'^<?voicehub_ingress::dedupe', r'drop_in_place<voicehub_ingress::dedupe')
rule(P_REC, r'^voicehub_model::record::', r'^voicehub_model::event::WebhookEvent::(to_record|time|subject|key)',
     r'^voicehub_model::timestamp::Timestamp::now', r'^<voicehub_model::timestamp::Timestamp as core::fmt::Display',
     r'drop_in_place<voicehub_model::record::Record>',
     # the bare bridge's: format!("bench-{n:021}-{n}") for ce_id, (n % keys).to_string() for the key
     r'^alloc::fmt::format::format_inner', r'^<u64>::_fmt', r'^<u64 as core::fmt::Display>')
rule(P_MET, r'^<?prometheus::', r'^<?voicehub_ingress::metrics', r'^<?voicehub_runtime::metrics')
rule(P_LOG, r'^<?tracing', r'^<?voicehub_runtime::json_log', r'^<?voicehub_runtime::log_writer', r'zmij',
     r'^<?std::io::stdio', r'^<&std::io::stdio', r'^voicehub_runtime::failure_log')
# the produce deadline, broker health, producer replacement (PollFn: FinishAlone::within)
rule(P_OUT, r'^<?voicehub_ingress::outbox', r'^<?voicehub_ingress::publisher',
     r'^<?voicehub_runtime::kafka::(delivery::(within_deadline|delivered|FinishAlone)|recovering)',
     r'^<voicehub_runtime::kafka::delivery::FinishAlone', r'drop_in_place<voicehub_runtime::kafka',
     r'drop_in_place<voicehub_ingress::(outbox|publisher)', r'^<?voicehub_ingress::forwarder', r'^<?voicehub_spool',
     r'^<core::future::poll_fn::PollFn<F> as core::future::future::Future>::poll')
# rdkafka and librdkafka (rd_hdr_* outside the statistics: per-request latency histograms)
rule(P_KAFKA, r'^<?rdkafka::', r'drop_in_place<rdkafka::', r'^voicehub_runtime::kafka::delivery::enqueue',
     r'^<?futures_channel::oneshot', r'^rd_kafka_', r'^rd_(buf|slice|list|tmr|avg|map|crc32|kafkap|string|strdup|strndup|strlcpy|snprintf|socket|atomic|clock|interval|refcnt|fnv|murmur|jitter|addr|sockaddr|str|unittest|uclock|usleep|_kafka)',
     r'^rd_(?!hdr_)', r'^LZ4', r'^XXH', r'^murmur', r'^crc32', r'^thrd_', r'^mtx_', r'^cnd_', r'^tss_')
# the handler futures' own code (accept / publish_once inlined; the bare bridge's whole handler)
rule(P_ORCH, r'^voicehub_ingress::routes::', r'AssertUnwindSafe<F> as core::future::future::Future>::poll',
     r'drop_in_place<voicehub_ingress::routes', r'catch_unwind::CatchUnwind<.*voicehub_ingress',
     r'^voicehub_runtime::FaultHook', r'^voicehub_load::bare_bridge', r'^actix_web::handler::handler_service',
     r'drop_in_place<actix_web::handler::handler_service', r'drop_in_place<voicehub_load::bare_bridge')
rule(P_HTTP, r'^<?actix', r'drop_in_place<<?actix', r'^<?http::(?!header::name::)', r'^httparse', r'^<?httpdate', r'^<?bytestring',
     r'^<?mio::', r'^<?tokio::net', r'^<?tokio_util::', r'^<?tokio::io', r'^<?tokio::runtime::io',
     r'^indexmap::', r'^alloc::rc::Rc<T,A>::drop_slow', r'^<?actix_rt', r'^<?actix_server')
# last: the runtime and the thread roots, so the walk up ends somewhere
rule(P_RT, *RUNTIME_AND_ROOTS)

# caller -> callee edges whose callee serves another part than the caller's
INGRESS.edges = [(re.compile(a), re.compile(b), p) for a, b, p in [
    # the produce deadline's timer (FinishAlone::within, inlined into the accept future)
    (r'AssertUnwindSafe<F> as core::future::future::Future>::poll', r'^tokio::time::timeout::(poll_delay|timeout)', P_OUT),
    (r'AssertUnwindSafe<F> as core::future::future::Future>::poll', r'drop_in_place<core::option::Option<tokio::runtime::Timer>>', P_OUT),
    # the x-webhook-secret header lookup (authenticate is inlined into the handler future)
    (r'^voicehub_ingress::routes::handle::\{\{closure\}\}', r'^actix_http::header::map::HeaderMap::get', P_AUTH),
    # ... whose &str name is parsed into a HeaderName on every request
    (r'^actix_http::header::map::HeaderMap::get', r'HeaderName as core::str::traits::FromStr>::from_str', P_AUTH),
    # the two timers of admission + body (budget wait, body timeout) built in the handler future
    (r'^voicehub_ingress::routes::handle::\{\{closure\}\}', r'^tokio::time::sleep::Sleep::new_timeout|^tokio::time::instant::Instant::(now|checked_add)', P_BODY),
    # publish_once's wait_until (how long a duplicate in flight is waited for)
    (r'AssertUnwindSafe<F> as core::future::future::Future>::poll', r'^tokio::time::instant::Instant::now|^<tokio::time::instant::Instant as core::ops::arith::Add', P_DEDUP),
    # the handler's response (HttpResponse::Ok().insert_header(..).body(..)) and HttpRequest drop
    (r'^voicehub_ingress::routes::handle::\{\{closure\}\}', r'^alloc::rc::Rc<T,A>::drop_slow', P_HTTP),
    # std's thread-local accessor: one merged symbol for actix's request/response pools
    # (header table clear, path requote) and tracing's per-thread line buffer
    (r'^std::thread::local::LocalKey<T>::with', r'^hashbrown::raw::RawTable<T,A>::clear|^actix_router::quoter', P_HTTP)]]

# ---- the enricher, per record, against the bare enricher (voicehub-load bare-enricher) -------

E_STATS = ('periodic: librdkafka statistics (statistics.interval.ms = 5 s, producer and consumer) '
           '+ rdkafka parsing them + consumer-lag gauges, broker watch')
E_JEBG = 'periodic: jemalloc background purge thread'
E_SCRAPE = 'periodic: /metrics scrapes (count-enricher.sh polls every 0.2 s: admin HTTP + text encoding)'
E_BG = 'periodic: broker probe (metadata every 2 s), API key reload and other background tasks'
E_CONSUME = ('consume: rdkafka StreamConsumer + librdkafka fetch/decompress/parse, message copied out '
             '(Input::from_message; the bare one: detach)')
E_DISPATCH = 'dispatch + offset tracking: pipeline loop, backlog, tracker, JoinSet spawn/join, store_offset'
E_PARSE_IN = ('parse the input as a webhook (parse_webhook, strict_json, analysisResultUrl parsed as a URL; '
              'the bare one: one borrowed field)')
E_URL = 'URL for the request + allow-list check (AllowList::check; the bare one: reqwest into_url)'
E_HTTP = 'HTTP client: reqwest, hyper, tower, connection pool, socket I/O'
E_BODY = 'body read + budget: body stream into a Vec, size limit, budget semaphore, read timeout'
E_PARSE_AN = 'parse the analysis (AnalysisResult::parse, the Read<T> reader; its drop)'
E_SER = 'build + serialise the enriched record (AnalysisEnriched::new, serde_json::to_vec in to_record)'
E_REC = 'CloudEvents headers + record (record::cloud_event, ce_id UUID v5, timestamps, received_at)'
E_PRODUCE = 'produce: RecoveringProducer, rdkafka FutureProducer send, delivery future, produce deadline timer'
E_MET = 'metrics (prometheus counters, histograms, gauges per record)'
E_LOG = 'logging (tracing + json_log + log_writer; level warn in count-enricher.sh)'
E_ORCH = ('record orchestration (Worker::process/handle futures\' own code, fetch/send inlined; '
          'source lookup; the bare one\'s task)')
E_KAFKA = 'Kafka client: librdkafka internals (produce requests + LZ4, broker I/O, delivery reports, commits)'
E_RT = 'async runtime: tokio scheduler, wake-ups, parking, timer driver'

ENRICHER = Service('enricher', 'bare', 'record', 'scripts/bench/count-enricher.sh',
                   'allocator (jemalloc for Rust in the enricher; glibc malloc for Rust in the bare enricher; '
                   'glibc for librdkafka in both)')
rule = ENRICHER.rule

# -- time-driven work (scales with the run's duration, not with the number of records)
rule(E_STATS, r'^rd_kafka_stats_emit', r'stats_raw', r'^rd_hdr_histogram_(quantile|mean|stddev|reset)',
     r'^rd_kafka_stats', r'^rd_avg_rollover', r'^<?rdkafka::statistics', r'drop_in_place<rdkafka::statistics',
     r'InputContext as rdkafka::client::ClientContext>::stats', r'^<?voicehub_enricher::consumer_watch',
     r'^voicehub_enricher::metrics::EnricherMetrics::(set_consumer_lag|forget_partition)')
rule(E_JEBG, r'background_thread_entry', r'^_rjem_je_background_thread')
# the admin server (actix) answering GET /metrics: gathering, process metrics, text encoding
rule(E_SCRAPE, r'^voicehub_runtime::metrics::encode', r'^<?voicehub_runtime::admin', r'^prometheus::registry',
     r'^<?prometheus::encoder', r'^<?prometheus::process_collector', r'^<?procfs', r'as prometheus::metrics::Collector>::collect',
     r'^<?actix', r'drop_in_place<<?actix')
rule(E_BG, r'^voicehub_enricher::startup::probe_broker', r'^voicehub_runtime::reload',
     r'::reachable', r'^rd_kafka_handle_Metadata', r'^rd_kafka_parse_Metadata', r'^rd_kafka_metadata_',
     r'^rd_kafka_topic_metadata_update', r'^rd_kafka_MetadataRequest', r'^rd_kafka_metadata( |$)', r'fetch_metadata',
     r'^voicehub_runtime::readiness', r'^voicehub_runtime::permissions', r'^voicehub_runtime::shutdown',
     r'^voicehub_enricher::sources')
# -- per-record parts
# the loop (Pipeline::run inlined into run_until_stopped; the bare one's loop into main), the
# backlog, the offset tracker, the record tasks spawned and joined, store_offset
rule(E_DISPATCH, r'^voicehub_enricher::startup::Application::run_until_stopped::\{\{closure\}\} \[',
     r'^<?voicehub_enricher::pipeline::(dispatch|input::Backlog|stopped|forget_revoked)', r'^<?voicehub_enricher::tracker',
     r'^<?tokio::task::join_set', r'drop_in_place<.*JoinSet', r'^tokio::task::spawn::spawn',
     r'Consumer<C>>::store_offset', r'^rd_kafka_offsets?_store', r'^voicehub_load::main::\{\{closure\}\} \[')
# the consumer: rdkafka's StreamConsumer, the message and its headers, librdkafka's fetch path
# (fetch replies, message sets, LZ4 decompression), the copy into an owned Input (or detach)
rule(E_CONSUME, r'^<?rdkafka::consumer::', r'drop_in_place<rdkafka::consumer', r'BorrowedMessage',
     r'^<?rdkafka::message::(Headers|BorrowedHeaders)', r'^voicehub_enricher::pipeline::input::Input::from_message',
     r'drop_in_place<voicehub_enricher::pipeline::input::Input>',
     r'^rd_kafka_(consumer_poll|consume|message_headers|headers_copy|broker_consumer_serve|broker_fetch|fetch|'
     r'msgset_reader|msgset_parse|lz4_decompress|toppar_fetch|op_new_fetch_msg)', r'^LZ4F?_decompress')
# the input's value read as a webhook: strict JSON, the typed event, analysisResultUrl validated
rule(E_PARSE_IN, r'^voicehub_model::event::', r'^<?voicehub_model::strict_json', r'Payload>::read',
     r'^<?voicehub_model::event::payloads', r'^voicehub_model::serde_helpers', r'^voicehub_model::routing',
     r'drop_in_place<voicehub_model::event::')
# the URL the GET goes to, parsed and checked against the source's allow-list (the bare one's:
# parsed by reqwest)
rule(E_URL, r'^<?voicehub_enricher::allow_list', r'IntoUrlSealed>::into_url')
# the response body: the read under its timeout (Timeout<read>), streamed into a Vec of the
# announced size; the body budget (edge below); the bare one's .bytes()
rule(E_BODY, r'^<tokio::time::timeout::Timeout<T> as core::future::future::Future>::poll',
     r'Response::bytes_stream', r'^<?http_body_util::combinators::collect', r'^http_body_util::collected',
     r'voicehub_enricher::fetch::BodyBudget', r'drop_in_place<http_body_util::combinators::collect')
# the analysis read into its types (the Read<T> reader), and its drop
rule(E_PARSE_AN, r'^voicehub_model::analysis::', r'voicehub_model::analysis::Read<', r'^<?voicehub_model::status::',
     r'drop_in_place<.*voicehub_model::analysis::')
# the enriched value: AnalysisEnriched::new (the ids cloned), serde_json::to_vec (inlined in to_record)
rule(E_SER, r'^voicehub_model::enriched::AnalysisEnriched::(new|to_record)', r'Serialize for voicehub_model::',
     r'^serde_core::ser::SerializeMap::serialize_entry', r'^<voicehub_model::timestamp::Timestamp as serde_core::ser::Serialize')
# the record around it: ce_id (UUID v5, SHA-1), the nine header values, received_at read back
# from the input's header
rule(E_REC, r'^voicehub_model::record::', r'drop_in_place<voicehub_model::record::Record>',
     r'^voicehub_enricher::pipeline::input::received_at', r'^voicehub_model::timestamp::(Timestamp::now|UtcText)',
     r'^<voicehub_model::timestamp::Timestamp as core::fmt::Display', r'^voicehub_model::enriched::AnalysisEnriched::ce_id')
# the record handed to the producer (OwnedHeaders, producev), the delivery future, the produce
# deadline's timer (in Worker::deliver), RecoveringProducer
rule(E_PRODUCE, r'^<?voicehub_runtime::kafka::(delivery|recovering)', r'drop_in_place<voicehub_runtime::kafka',
     r'^<voicehub_runtime::kafka::delivery::FinishAlone', r'^voicehub_enricher::pipeline::worker::Worker::deliver',
     r'^<?rdkafka::producer::', r'drop_in_place<rdkafka::producer', r'^<?futures_channel::oneshot',
     r'^<?rdkafka::message::OwnedHeaders', r'^rd_kafka_producev?a?( |$)')
rule(E_MET, r'^<?prometheus::', r'^<?voicehub_enricher::metrics', r'^<?voicehub_runtime::metrics')
rule(E_LOG, r'^<?tracing', r'^<?voicehub_runtime::json_log', r'^<?voicehub_runtime::log_writer',
     r'^<?std::io::stdio', r'^<&std::io::stdio', r'^voicehub_runtime::failure_log')
# Worker::process/handle (fetch_with_retries, fetch::fetch and send inlined): their own code,
# clocks, the source lookup, moves of their state; the bare one's task
rule(E_ORCH, r'^voicehub_enricher::pipeline::worker::', r'^voicehub_enricher::fetch::',
     r'drop_in_place<voicehub_enricher::(pipeline::worker|fetch)', r'catch_unwind::CatchUnwind<.*voicehub_enricher',
     r'^voicehub_runtime::FaultHook', r'^voicehub_load::bare_enricher::\{\{closure\}\}::\{\{closure\}\} \[',
     r'drop_in_place<voicehub_load::bare_enricher')
# (http, httparse, mio, tokio::net are no anchors: the admin server's scrapes use them too)
rule(E_HTTP, r'^<?reqwest::', r'drop_in_place<<?reqwest', r'^<?hyper', r'drop_in_place<<?hyper', r'^<?tower',
     r'drop_in_place<<?tower', r'^<?want::')
# librdkafka's helper families (buffers, slices, lists, queues, ops, events, messages, headers)
# and rdkafka's NativePtr are no anchors: their cost follows the caller (consume, produce, client)
rule(E_KAFKA, r'^<?rdkafka::(?!util::NativePtr)', r'drop_in_place<rdkafka::',
     r'^rd_(?!hdr_|buf_|slice_|list_|free|malloc|calloc|realloc|strn?dup|kafka_(buf_|q_|op_|event_|message_|msg_|header|queue_))',
     r'^LZ4', r'^XXH', r'^murmur', r'^crc32', r'^thrd_', r'^mtx_', r'^cnd_', r'^tss_')
# last: the runtime and the thread roots, so the walk up ends somewhere
rule(E_RT, *RUNTIME_AND_ROOTS)

ENRICHER.edges = [(re.compile(a), re.compile(b), p) for a, b, p in [
    # fetch's budget reservation and release (Worker::handle inlines fetch::fetch)
    (r'^voicehub_enricher::pipeline::worker::Worker::handle::\{\{closure\}\}', r'semaphore|SemaphorePermit', E_BODY),
    # the bare one's in-flight slot, released at the end of its task
    (r'^voicehub_load::bare_enricher::\{\{closure\}\}::\{\{closure\}\} \[', r'SemaphorePermit', E_DISPATCH),
    # the input's analysisResultUrl read by the bare one: serde_json::from_slice of one borrowed field
    (r'^voicehub_load::bare_enricher::\{\{closure\}\}::\{\{closure\}\} \[', r'^serde_json::de::from_slice', E_PARSE_IN),
    # the consumed message's Arc dropped by the loop (the bare one's: inlined into main)
    (r'^voicehub_enricher::startup::Application::run_until_stopped::\{\{closure\}\} \[|^voicehub_load::main::\{\{closure\}\} \[',
     r'^alloc::sync::Arc<T,A>::drop_slow', E_CONSUME),
    # the detached message's headers (the bare one), freed with its task
    (r'^voicehub_load::bare_enricher::\{\{closure\}\}::\{\{closure\}\} \[', r'OwnedHeaders', E_CONSUME),
    ]]

def parse(path):
    """A callgrind out file (events: Ir): self cost by function and [calls, inclusive Ir] by
    (caller, callee); functions are named 'name [object file]'."""
    names = {'ob': {}, 'fn': {}, 'fl': {}}
    def name(kind, text):  # name compression: '(id) name' defines id, '(id)' refers to it
        m = re.match(r'\((\d+)\)(?: (.*))?$', text)
        if not m: return text
        if m.group(2) is not None: names[kind][m.group(1)] = m.group(2)
        return names[kind][m.group(1)]
    selfc, edges = collections.Counter(), collections.defaultdict(lambda: [0, 0])
    ob = cob = fn = cfn = call = None
    for line in open(path, errors='replace'):
        line = line.rstrip('\n')
        if not line or line[0] == '#': continue
        if line[0].isdigit() or line[0] in '+-*':  # a cost line: position, Ir
            fields = line.split()
            cost = int(fields[1]) if len(fields) > 1 else 0
            if call is None: selfc[fn] += cost
            else: edges[fn, call[0]][0] += call[1]; edges[fn, call[0]][1] += cost; call = None
            continue
        key, _, val = line.partition('=')
        if key == 'ob': ob = cob = os.path.basename(name('ob', val))
        elif key == 'fn': fn = name('fn', val) + ' [' + ob + ']'; cob = ob
        elif key == 'cob': cob = os.path.basename(name('ob', val))
        elif key == 'cfn': cfn = name('fn', val) + ' [' + cob + ']'
        elif key == 'calls': call = (cfn, int(val.split()[0])); cob = ob
        elif key in ('fl', 'fi', 'fe', 'cfi', 'cfl'): name('fl', val)
    return dict(selfc), {k: tuple(v) for k, v in edges.items()}

def attribute(svc, prof, selfc, by_caller):
    """Split selfc (cost by function) over svc's parts: (cost by part, cost by part and function)."""
    (_, ef), (_, eb) = prof
    callers, callers_full = collections.defaultdict(list), collections.defaultdict(list)
    for a, b in sorted(set(ef) | set(eb)):  # caller weights: the difference, else the full run's
        if a == b: continue
        (nf, incf), (nb, incb) = ef.get((a, b), (0, 0)), eb.get((a, b), (0, 0))
        by_calls = BY_CALLS.search(b)
        if (w := (nf - nb) if by_calls else (incf - incb)) > 0: callers[b].append((a, w))
        if (w := nf if by_calls else incf) > 0: callers_full[b].append((a, w))
    memo, onstack = {}, set()
    def dist(f, top=False):
        """Shares by part of the cost incurred in f, and whether a recursion cycle cut the walk."""
        alloc = ALLOC_RX.search(f)
        own = alloc and top and not by_caller  # an allocator's own self cost
        p = svc.part_of(f)
        if p is not None and (own or not alloc):  # an anchor
            if not any(b.search(f) for a, b, q in svc.edges): return {p: 1.0}, False
            acc, tot = collections.Counter(), 0.0  # ... some of whose callers are overridden
            for c, w in (callers.get(f) or callers_full.get(f, [])):
                acc[svc.edge_part(c, f) or p] += w; tot += w
            return ({k: v / tot for k, v in acc.items()} if tot else {p: 1.0}), False
        if own: return {svc.alloc: 1.0}, False
        if f in memo: return memo[f], False
        if f in onstack: return None, True
        onstack.add(f)
        acc, tot, cut = collections.Counter(), 0.0, False
        for c, w in (callers.get(f) or callers_full.get(f, [])):
            if ep := svc.edge_part(c, f):
                acc[ep] += w; tot += w; continue
            d, ccut = dist(c)
            cut = cut or ccut
            if d is None: continue
            for k, v in d.items(): acc[k] += w * v
            tot += w
        onstack.discard(f)
        res = {'unattributed root: ' + f: 1.0} if tot == 0 else {k: v / tot for k, v in acc.items()}
        if not cut: memo[f] = res
        return res, cut
    parts, byfn = collections.Counter(), collections.defaultdict(collections.Counter)
    for f, c in sorted(selfc.items()):
        if not c: continue
        for k, v in sorted(dist(f, top=True)[0].items()):
            parts[k] += c * v; byfn[k][f] += c * v
    return parts, byfn

def instructions(prof):
    (sf, _), (sb, _) = prof
    return {f: sf.get(f, 0) - sb.get(f, 0) for f in set(sf) | set(sb)}
def allocations(prof):
    """Allocation calls made by each non-allocator function (charged like a self cost)."""
    (_, ef), (_, eb) = prof
    calls = collections.Counter()
    for a, b in set(ef) | set(eb):
        if ALLOC_ENTRY.search(b) and not ALLOC_RX.search(a):
            calls[a] += ef.get((a, b), (0, 0))[0] - eb.get((a, b), (0, 0))[0]
    return dict(calls)

def per_unit(results, count):
    """[service, bare] by part and, by part, [service, bare] by function; both per unit."""
    agg = collections.defaultdict(lambda: [0.0, 0.0])
    aggf = collections.defaultdict(lambda: [collections.Counter(), collections.Counter()])
    for i, (parts, byfn) in enumerate(results):
        for k, v in parts.items():
            part = UNATTRIBUTED if k.startswith('unattributed root') else k
            agg[part][i] += v / count
            for f, x in byfn[k].items():  # the same function of either binary on one row
                aggf[part][i][BINARIES.sub('[bin]', f)] += x / count
    return agg, aggf

def show(svc, agg, title, w, prec, least, aggf=None, detail=None, ndet=25):
    print(f'{svc.name:>{w}} {"bare":>{w}} {"diff":>{w}}  {title}')
    ti = tb = 0
    for k, (a, b) in sorted(agg.items(), key=lambda kv: -(kv[1][0] - kv[1][1])):
        ti += a; tb += b
        if max(abs(a), abs(b)) < least: continue
        print(f'{a:{w}.{prec}f} {b:{w}.{prec}f} {a-b:{w}.{prec}f}  {k}')
        if detail and (detail == 'all' or detail in k):
            fi, fb = aggf[k]
            for f in sorted(set(fi) | set(fb), key=lambda f: (-max(abs(fi[f]), abs(fb[f])), f))[:ndet]:
                if max(abs(fi[f]), abs(fb[f])) >= 1:
                    print(f'      {fi[f]:9.1f} {fb[f]:9.1f} {fi[f]-fb[f]:9.1f}  {f[:160]}')
    print(f'{ti:{w}.{prec}f} {tb:{w}.{prec}f} {ti-tb:{w}.{prec}f}  TOTAL')

SERVICES = {s.name: s for s in (INGRESS, ENRICHER)}

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--service', choices=sorted(SERVICES), default='ingress',
                    help='whose profiles and rule table (default: ingress)')
    ap.add_argument('prefix', metavar='PREFIX', help="CALLGRIND_KEEP prefix of the service's count script")
    ap.add_argument('count', metavar='COUNT', type=int, help='webhooks or records counted (its COUNT)')
    ap.add_argument('--alloc-by-caller', action='store_true', help='charge allocator cost to the requesting part')
    ap.add_argument('--detail', nargs='+', metavar=('PART', 'N'), help="each part's N largest functions")
    args = ap.parse_args()
    svc = SERVICES[args.service]
    detail, ndet = (args.detail or [None])[0], 25
    if args.detail and len(args.detail) > 1:
        if len(args.detail) > 2 or not args.detail[1].isdigit(): ap.error('--detail PART [N]')
        ndet = int(args.detail[1])
    profs = []
    for target in (svc.name, svc.bare):
        paths = [f'{args.prefix}.{target}', f'{args.prefix}.{target}.base']
        if missing := [p for p in paths if not os.path.isfile(p)]:
            sys.exit(f'{os.path.basename(sys.argv[0])}: no {" or ".join(missing)} (see {svc.script})')
        profs.append([parse(p) for p in paths])
    agg, aggf = per_unit([attribute(svc, p, instructions(p), args.alloc_by_caller) for p in profs], args.count)
    show(svc, agg, f'part   (instructions per {svc.unit})', 9, 0, 0.5, aggf, detail, ndet)
    print()
    agg, _ = per_unit([attribute(svc, p, allocations(p), True) for p in profs], args.count)
    show(svc, agg, f'allocations per {svc.unit} by part', 8, 2, 0.05)

if __name__ == '__main__':
    main()
