//! Produce and consume failures logged once per cause and topic per interval: an outage or a
//! missing ACL fails every record, and one line a minute per cause says as much as thousands
//! (the metrics count every one). Each line names librdkafka's error (`error_code`, e.g.
//! `TopicAuthorizationFailed`) and how many of the same went unlogged since the last line.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::kafka::ProduceError;

/// How often the same cause on the same topic is logged.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// At most this many causes and topics are tracked; past it, every failure is logged (a
/// bound on memory, never reached with the bridge's handful of topics).
const MAX_KEYS: usize = 1_024;

/// Which failures were logged when.
#[derive(Debug)]
pub struct FailureLog {
    interval: Duration,
    /// Per (topic, cause): when it was last logged and how many since.
    seen: Mutex<HashMap<(String, String), (Instant, u64)>>,
}

impl Default for FailureLog {
    fn default() -> Self {
        Self::new(INTERVAL)
    }
}

impl FailureLog {
    /// Logs each cause on each topic at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a failure with `cause` on `topic` is to be logged now; if so, how many of the
    /// same were not logged since the last line.
    pub fn admit(&self, topic: &str, cause: &str) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some((logged, skipped)) = seen.get_mut(&(topic.to_owned(), cause.to_owned())) {
            if now.duration_since(*logged) < self.interval {
                *skipped += 1;
                return None;
            }
            let skipped = std::mem::take(skipped);
            *logged = now;
            return Some(skipped);
        }
        if seen.len() < MAX_KEYS {
            seen.insert((topic.to_owned(), cause.to_owned()), (now, 0));
        }
        Some(0)
    }

    /// Logs a failed produce to `topic` (a warning; for an authorization failure an error
    /// that says what to grant), unless the same was logged within the interval.
    pub fn produce_failed(&self, topic: &str, error: &ProduceError) {
        let code = error_code(error.kafka_error());
        let Some(unlogged) = self.admit(topic, code.as_deref().unwrap_or(error.reason())) else {
            return;
        };
        let code = code.as_deref().unwrap_or("none");
        if matches!(error, ProduceError::Unauthorized(_)) {
            tracing::error!(
                topic,
                reason = error.reason(),
                error_code = code,
                unlogged,
                error = error as &dyn std::error::Error,
                "not allowed to write to this topic: grant this principal Write on it \
                 (docs/operations.md, Kafka permissions)"
            );
        } else {
            tracing::warn!(
                topic,
                reason = error.reason(),
                error_code = code,
                unlogged,
                error = error as &dyn std::error::Error,
                "produce failed"
            );
        }
    }
}

/// librdkafka's name of the error's code (`TopicAuthorizationFailed`), if it has one.
pub fn error_code(error: Option<&KafkaError>) -> Option<String> {
    error
        .and_then(KafkaError::rdkafka_error_code)
        .map(|code: RDKafkaErrorCode| format!("{code:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_logged_once_per_interval_per_topic_with_the_count_between() {
        let log = FailureLog::new(Duration::from_millis(200));
        assert_eq!(log.admit("a", "TopicAuthorizationFailed"), Some(0));
        assert_eq!(log.admit("a", "TopicAuthorizationFailed"), None);
        assert_eq!(log.admit("a", "TopicAuthorizationFailed"), None);
        // Another topic or another cause is news.
        assert_eq!(log.admit("b", "TopicAuthorizationFailed"), Some(0));
        assert_eq!(log.admit("a", "MessageTimedOut"), Some(0));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(log.admit("a", "TopicAuthorizationFailed"), Some(2));
        assert_eq!(log.admit("a", "TopicAuthorizationFailed"), None);
    }

    #[test]
    fn the_error_code_is_librdkafkas_name() {
        let error = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(
            error_code(Some(&error)).as_deref(),
            Some("TopicAuthorizationFailed")
        );
        assert_eq!(error_code(None), None);
    }
}
