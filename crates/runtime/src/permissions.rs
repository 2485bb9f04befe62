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

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{error, info, warn};

use crate::readiness::Readiness;
use crate::settings::KafkaSettings;

/// The readiness check.
pub const CHECK: &str = "kafka_permissions";

/// How often the topics are checked again while the last answer refused none.
pub const PERIOD: Duration = Duration::from_secs(30);

/// How often they are checked again while one is refused: a granted ACL, or a topic created
/// in the background after start, shows soon.
pub const RECHECK_REFUSED: Duration = Duration::from_secs(5);

/// The last answer about the topics, and the readiness check it feeds.
pub struct TopicPermissions {
    /// A client of its own, of the consumer kind: its metadata requests never ask the broker
    /// to create a missing topic (a producer's do, by librdkafka's default, and a broker with
    /// `auto.create.topics.enable` would make it with its own defaults).
    client: Arc<BaseConsumer>,
    topics: Vec<String>,
    readiness: Readiness,
    /// How many topics the last answer refused.
    gauge: prometheus::IntGauge,
    /// Topics the last answer refused, with librdkafka's error.
    refused: Mutex<Vec<(String, RDKafkaErrorCode)>>,
}

impl TopicPermissions {
    /// Registers the check, passing until an answer says otherwise, for `topics`; `gauge`
    /// counts the refused ones.
    pub fn new(
        settings: &KafkaSettings,
        topics: Vec<String>,
        readiness: Readiness,
        gauge: prometheus::IntGauge,
    ) -> Result<Self, KafkaError> {
        let client = crate::kafka::client_config(settings)
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(crate::kafka::redacted)?;
        readiness.register(CHECK);
        readiness.set(CHECK, true);
        Ok(Self {
            client: Arc::new(client),
            topics,
            readiness,
            gauge,
            refused: Mutex::new(Vec::new()),
        })
    }

    /// Asks the cluster about every topic (each request waiting at most `timeout`) and
    /// takes the answer in; when to check again, or `None` if the cluster did not answer.
    pub async fn check(&self, timeout: Duration) -> Option<Duration> {
        let client = self.client.clone();
        let topics = self.topics.clone();
        let refused = tokio::task::spawn_blocking(move || refused_topics(&client, topics, timeout))
            .await
            .ok()
            .flatten()?;
        Some(self.update(refused))
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

impl std::fmt::Debug for TopicPermissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicPermissions")
            .field("topics", &self.topics)
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

/// The topics whose metadata the cluster answers with an error (the principal may not
/// describe it, or it does not exist), each with that error; `None` when the cluster does not
/// answer. One request per topic: a request for several is answered without the ones the
/// principal may not see. Blocking.
fn refused_topics(
    client: &BaseConsumer,
    topics: Vec<String>,
    timeout: Duration,
) -> Option<Vec<(String, RDKafkaErrorCode)>> {
    let mut refused = Vec::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(&topic), timeout).ok()?;
        let error = match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(answer) => answer.error().map(RDKafkaErrorCode::from),
            None => Some(RDKafkaErrorCode::UnknownTopicOrPartition),
        };
        if let Some(error) = error {
            refused.push((topic, error));
        }
    }
    Some(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_topics_fail_the_check_until_an_answer_has_none() {
        let readiness = Readiness::new();
        let gauge = prometheus::IntGauge::new("refused", "refused").unwrap();
        let permissions = TopicPermissions::new(
            &KafkaSettings::default(),
            vec!["a".into()],
            readiness.clone(),
            gauge.clone(),
        )
        .unwrap();
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
