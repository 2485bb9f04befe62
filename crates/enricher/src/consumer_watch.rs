//! Noticing a consumer that has lost every broker, so the enricher can rebuild it.
//!
//! librdkafka 2.12 can end up knowing no broker at all: a metadata response that lists no
//! broker but some topics is accepted, and every broker it does not list is forgotten; the
//! re-bootstrap timer that would recover is stopped by that same response, and the "all
//! brokers down" trigger never fires in this build (confluentinc/librdkafka#5301, fixed
//! upstream only in part). A consumer in that state never finds its coordinator again and
//! consumes nothing until the process restarts (seen once on a three-broker cluster after
//! repeated short broker pauses: 9 minutes without a connection).
//!
//! The consumer's statistics list the brokers it knows. In an ordinary outage, however long,
//! they stay listed (as `DOWN`); only this wedge leaves none that was configured or learned.
//! [`BrokerWatch`] records since when that has been so; the pipeline rebuilds its consumer
//! (and replaces the producer) once it has lasted [`WEDGE_LIMIT`].

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::statistics::Statistics;

/// How long a consumer may know no broker before it is rebuilt: several statistics intervals
/// (5 s by default), so one odd report is not enough.
pub const WEDGE_LIMIT: Duration = Duration::from_secs(30);

/// Since when the consumer has known no broker, from its statistics.
#[derive(Debug, Default)]
pub struct BrokerWatch {
    /// When the first report of the current brokerless spell came; `None` while the last
    /// report listed a broker.
    brokerless_since: Mutex<Option<Instant>>,
}

impl BrokerWatch {
    /// Takes a statistics report in.
    pub fn observe(&self, statistics: &Statistics) {
        let knows_a_broker = statistics
            .brokers
            .values()
            .any(|broker| matches!(broker.source.as_str(), "configured" | "learned"));
        let mut since = self.lock();
        if knows_a_broker {
            *since = None;
        } else {
            since.get_or_insert_with(Instant::now);
        }
    }

    /// How long the consumer has known no broker (zero while it knows one).
    pub fn brokerless_for(&self) -> Duration {
        self.lock().map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Whether the consumer is wedged: no broker for [`WEDGE_LIMIT`].
    pub fn is_wedged(&self) -> bool {
        self.brokerless_for() >= WEDGE_LIMIT
    }

    /// For fault-injection tests: as if the consumer had known no broker for `ago`.
    pub fn pretend_brokerless_for(&self, ago: Duration) {
        *self.lock() = Instant::now().checked_sub(ago);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A plain timestamp: a panic cannot leave it half-written.
        self.brokerless_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statistics report as librdkafka writes it, with brokers of the given sources.
    fn report(sources: &[&str]) -> Statistics {
        let brokers: Vec<String> = sources
            .iter()
            .enumerate()
            .map(|(i, source)| {
                format!(
                    r#""b{i}": {{"name": "b{i}", "nodeid": {i}, "nodename": "127.0.0.1:9092",
                    "source": "{source}", "state": "DOWN", "stateage": 1, "outbuf_cnt": 0,
                    "outbuf_msg_cnt": 0, "waitresp_cnt": 0, "waitresp_msg_cnt": 0, "tx": 0,
                    "txbytes": 0, "txerrs": 0, "txretries": 0, "txidle": 0, "req_timeouts": 0,
                    "rx": 0, "rxbytes": 0, "rxerrs": 0, "rxcorriderrs": 0, "rxpartial": 0,
                    "rxidle": 0, "zbuf_grow": 0, "buf_grow": 0, "wakeups": 0, "connects": 0,
                    "disconnects": 0, "req": {{}}, "toppars": {{}}}}"#
                )
            })
            .collect();
        let json = format!(
            r#"{{"name": "c", "client_id": "c", "type": "consumer", "ts": 0, "time": 0,
            "age": 0, "replyq": 0, "msg_cnt": 0, "msg_size": 0, "msg_max": 0,
            "msg_size_max": 0, "simple_cnt": 0, "metadata_cache_cnt": 0, "tx": 0,
            "tx_bytes": 0, "rx": 0, "rx_bytes": 0, "txmsgs": 0, "txmsg_bytes": 0, "rxmsgs": 0,
            "rxmsg_bytes": 0, "brokers": {{{}}}, "topics": {{}}}}"#,
            brokers.join(",")
        );
        match serde_json::from_str(&json) {
            Ok(statistics) => statistics,
            Err(error) => panic!("{error}: {json}"),
        }
    }

    #[test]
    fn an_outage_that_keeps_its_brokers_listed_is_not_a_wedge() {
        let watch = BrokerWatch::default();
        watch.observe(&report(&["internal", "learned", "learned", "logical"]));
        assert_eq!(watch.brokerless_for(), Duration::ZERO);
        watch.observe(&report(&["configured"]));
        assert_eq!(watch.brokerless_for(), Duration::ZERO);
    }

    #[test]
    fn no_configured_or_learned_broker_counts_from_the_first_such_report() {
        let watch = BrokerWatch::default();
        // What was left in the wedged enricher: the internal broker and the logical
        // coordinator placeholder.
        watch.observe(&report(&["internal", "logical"]));
        std::thread::sleep(Duration::from_millis(30));
        watch.observe(&report(&["internal", "logical"]));
        let waited = watch.brokerless_for();
        assert!(waited >= Duration::from_millis(30), "{waited:?}");
        assert!(!watch.is_wedged());
        watch.pretend_brokerless_for(WEDGE_LIMIT);
        assert!(watch.is_wedged());
        // One report with a broker ends it.
        watch.observe(&report(&["learned"]));
        assert!(!watch.is_wedged());
        assert_eq!(watch.brokerless_for(), Duration::ZERO);
    }
}
