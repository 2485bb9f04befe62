//! Whether the cluster lets this service use its topics, as readiness.
//!
//! Each service asks for the metadata of every topic it uses, at startup and then every
//! [`PERIOD`] ([`RECHECK_REFUSED`] while one is refused). A topic the principal may not even describe (no ACL on it at all), or one that
//! does not exist, comes back with an error: the check `kafka_permissions` fails and an
//! error names the topic and what to do, so a rollout with a missing ACL or a mistyped topic
//! stops at its first pod instead of failing webhooks. Metadata cannot tell Describe from
//! Write: a principal allowed to describe a topic but not to write it is found by the first
//! produce (logged by [`crate::failure_log`], counted as `unauthorized`).
//!
//! An unanswered probe changes nothing (the `broker` check covers reachability), so the check
//! starts passing: an ingress that spools stays ready while Kafka is away at startup.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rdkafka::error::RDKafkaErrorCode;
use tracing::{error, info, warn};

use crate::admin::Readiness;

/// The readiness check.
pub const CHECK: &str = "kafka_permissions";

/// How often the topics are checked again while the last answer refused none.
pub const PERIOD: Duration = Duration::from_secs(30);

/// How often they are checked again while one is refused: a granted ACL, or a topic created
/// in the background after start, shows soon.
pub const RECHECK_REFUSED: Duration = Duration::from_secs(5);

/// The last answer about the topics, and the readiness check it feeds.
#[derive(Debug)]
pub struct TopicPermissions {
    readiness: Readiness,
    /// How many topics the last answer refused.
    gauge: prometheus::IntGauge,
    /// Topics the last answer refused, with librdkafka's error.
    refused: Mutex<Vec<(String, RDKafkaErrorCode)>>,
}

impl TopicPermissions {
    /// Registers the check, passing until an answer says otherwise; `gauge` counts the
    /// refused topics.
    pub fn new(readiness: Readiness, gauge: prometheus::IntGauge) -> Self {
        readiness.register(CHECK);
        readiness.set(CHECK, true);
        Self {
            readiness,
            gauge,
            refused: Mutex::new(Vec::new()),
        }
    }

    /// Takes the cluster's answer in: the topics it refused (empty: all usable). Each newly
    /// refused topic is logged once, and the recovery when none is left. Returns when to
    /// check again.
    pub fn update(&self, refused: Vec<(String, RDKafkaErrorCode)>) -> Duration {
        let next = if refused.is_empty() {
            PERIOD
        } else {
            RECHECK_REFUSED
        };
        let mut last = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        if *last == refused {
            return next;
        }
        for (topic, code) in refused.iter().filter(|entry| !last.contains(entry)) {
            if *code == RDKafkaErrorCode::UnknownTopicOrPartition {
                // A warning: with a spool, topics are created in the background after start.
                warn!(
                    topic,
                    error_code = ?code,
                    check = CHECK,
                    "the topic does not exist: create it, or set kafka.provision.create_topics; \
                     not ready"
                );
            } else {
                error!(
                    topic,
                    error_code = ?code,
                    check = CHECK,
                    "this principal may not use the topic: grant it the ACLs of \
                     docs/operations.md (Kafka permissions); not ready"
                );
            }
        }
        if refused.is_empty() {
            info!(check = CHECK, "every topic usable");
        }
        self.readiness.set(CHECK, refused.is_empty());
        self.gauge
            .set(i64::try_from(refused.len()).unwrap_or(i64::MAX));
        *last = refused;
        next
    }

    /// The topics the last answer refused.
    pub fn refused(&self) -> Vec<(String, RDKafkaErrorCode)> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_topics_fail_the_check_until_an_answer_has_none() {
        let readiness = Readiness::new();
        let gauge = prometheus::IntGauge::new("refused", "refused").unwrap();
        let permissions = TopicPermissions::new(readiness.clone(), gauge.clone());
        assert!(
            readiness.is_ready(),
            "passing until an answer says otherwise"
        );

        let next = permissions.update(vec![(
            "a".into(),
            RDKafkaErrorCode::TopicAuthorizationFailed,
        )]);
        assert_eq!(next, RECHECK_REFUSED);
        assert_eq!(readiness.failing(), [CHECK]);
        assert_eq!(permissions.refused().len(), 1);
        assert_eq!(gauge.get(), 1);

        assert_eq!(permissions.update(Vec::new()), PERIOD);
        assert!(readiness.is_ready());
        assert_eq!(gauge.get(), 0);
    }
}
