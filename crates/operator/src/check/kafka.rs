//! The Kafka half of `voicehub check`: brokers, authentication, and each topic's and group's
//! authorization, replication and record size, as the service's principal sees them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, Producer};

use super::describe::{self, PartitionInfo, TopicDescription};
use super::{Finding, KafkaNeeds, Status, TopicNeed, finding};

/// A client context that keeps what librdkafka reports going wrong (its log lines at warning
/// and above, from its own threads): an authentication failure is said there, while the
/// request itself only times out. A line about authentication or TLS is kept first.
#[derive(Debug, Default)]
struct Reported(Mutex<Option<String>>);

/// What librdkafka says when a broker answered but refused the client's authentication or
/// TLS (lower case). Not merely "ssl" or "sasl": its broker names carry the protocol
/// (`sasl_ssl://host:port/bootstrap`), so a refused connection mentions them too.
const REFUSAL: [&str; 6] = [
    "authentication error",
    "authentication failed",
    "ssl handshake failed",
    "certificate verify failed",
    "unsupported sasl mechanism",
    "sasl handshake",
];

fn is_refusal(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    REFUSAL.iter().any(|phrase| lower.contains(phrase))
}

impl ClientContext for Reported {
    fn log(&self, level: RDKafkaLogLevel, _facility: &str, message: &str) {
        use RDKafkaLogLevel::{Alert, Critical, Emerg, Error, Warning};
        if !matches!(level, Emerg | Alert | Critical | Error | Warning) {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !kept.as_deref().is_some_and(is_refusal) {
            *kept = Some(message.to_owned());
        }
    }
}

impl rdkafka::producer::ProducerContext for Reported {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, (): ()) {}
}

impl Reported {
    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Every Kafka check of `needs`; each request waits at most `timeout`.
pub fn check(
    needs: &KafkaNeeds,
    timeout: Duration,
    runtime: &tokio::runtime::Runtime,
) -> Vec<Finding> {
    let mut config = voicehub_runtime::kafka::client_config(&needs.settings);
    // librdkafka logs only what the `log` crate's level lets through: none here, without this.
    config.set_log_level(RDKafkaLogLevel::Warning);
    let brokers = needs.settings.bootstrap_servers.as_str();
    let protocol = config.get("security.protocol").unwrap_or("plaintext");
    let Some(first) = needs.topics.first() else {
        return Vec::new();
    };
    // A producer only for its main queue, where librdkafka's reports arrive: it sends nothing,
    // and its metadata request must not create the topic it names (a producer's default).
    let probe: Result<BaseProducer<Reported>, _> = config
        .clone()
        .set("allow.auto.create.topics", "false")
        .create_with_context(Reported::default());
    let admin: Result<AdminClient<DefaultClientContext>, _> = config.create();
    let (probe, admin) = match (probe, admin) {
        (Ok(probe), Ok(admin)) => (probe, admin),
        (Err(error), _) | (_, Err(error)) => {
            return vec![finding(
                "kafka",
                "client",
                Status::Fail,
                voicehub_runtime::kafka::redacted(error).to_string(),
            )];
        }
    };
    let metadata = probe.client().fetch_metadata(Some(&first.name), timeout);
    let mut findings = Vec::new();
    match metadata {
        Ok(metadata) => {
            let answered: Vec<String> = metadata
                .brokers()
                .iter()
                .map(|b| format!("{}:{}", b.host(), b.port()))
                .collect();
            findings.push(finding(
                "kafka",
                "brokers",
                Status::Ok,
                format!("{} answered: {}", answered.len(), answered.join(", ")),
            ));
            findings.push(authentication(&config, protocol));
        }
        Err(error) => {
            probe.poll(Duration::from_millis(100));
            let said = probe.context().take().unwrap_or_else(|| error.to_string());
            if is_refusal(&said) {
                findings.push(finding(
                    "kafka",
                    "brokers",
                    Status::Ok,
                    format!("reached at {brokers}"),
                ));
                findings.push(finding(
                    "kafka",
                    "authentication",
                    Status::Fail,
                    format!("{protocol}: {said}"),
                ));
            } else {
                findings.push(finding(
                    "kafka",
                    "brokers",
                    Status::Fail,
                    format!("none of {brokers} answered within {timeout:?}: {said}"),
                ));
            }
            return findings;
        }
    }
    let names: Vec<&str> = needs.topics.iter().map(|t| t.name.as_str()).collect();
    match describe::topics(admin.inner(), &names, timeout) {
        Ok(described) => {
            let configs = topic_configs(&admin, &names, timeout, runtime);
            for need in &needs.topics {
                let Some(topic) = described.iter().find(|t| t.name == need.name) else {
                    findings.push(finding(
                        format!("topic {}", need.name),
                        "exists",
                        Status::Fail,
                        "not in the brokers' answer",
                    ));
                    continue;
                };
                findings.extend(topic_findings(
                    need,
                    topic,
                    configs.get(need.name.as_str()),
                    needs.settings.provision.create_topics,
                ));
            }
        }
        Err(error) => findings.push(finding(
            "topics",
            "describe",
            Status::Fail,
            format!("DescribeTopics: {error}"),
        )),
    }
    if let Some(group) = &needs.group {
        findings.push(group_finding(&admin, group, timeout));
    }
    findings
}

fn authentication(config: &rdkafka::ClientConfig, protocol: &str) -> Finding {
    let lower = protocol.to_ascii_lowercase();
    let (status, detail) = match lower.as_str() {
        "plaintext" => (
            Status::Warn,
            "PLAINTEXT: neither encrypted nor authenticated".to_owned(),
        ),
        "ssl" if config.get("ssl.certificate.location").is_some() => {
            (Status::Ok, "SSL with a client certificate".to_owned())
        }
        "ssl" => (
            Status::Warn,
            "SSL without a client certificate: encrypted, not authenticated".to_owned(),
        ),
        "sasl_plaintext" => (
            Status::Warn,
            format!("{}: authenticated but not encrypted", sasl(config)),
        ),
        _ => (Status::Ok, format!("SASL_SSL, {}", sasl(config))),
    };
    finding("kafka", "authentication", status, detail)
}

/// The mechanism and user name (never the password).
fn sasl(config: &rdkafka::ClientConfig) -> String {
    let mechanism = config.get("sasl.mechanism").unwrap_or("GSSAPI");
    match config.get("sasl.username") {
        Some(user) => format!("{mechanism} as {user}"),
        None => mechanism.to_owned(),
    }
}

/// The topic's `min.insync.replicas` and `max.message.bytes`, or why they are unknown.
type TopicConfig = Result<(Option<u32>, Option<usize>), String>;

fn topic_configs(
    admin: &AdminClient<DefaultClientContext>,
    names: &[&str],
    timeout: Duration,
    runtime: &tokio::runtime::Runtime,
) -> HashMap<String, TopicConfig> {
    let specifiers: Vec<ResourceSpecifier<'_>> =
        names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let answer = runtime.block_on(admin.describe_configs(&specifiers, &options));
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let config = match &answer {
                Err(error) => Err(format!("DescribeConfigs: {error}")),
                Ok(results) => match results.get(i) {
                    None => Err("DescribeConfigs: no answer for it".into()),
                    Some(Err(code)) => Err(config_refusal(*code)),
                    // Refused, the brokers leave the resource empty (no error on it).
                    Some(Ok(resource)) if resource.entries.is_empty() => Err(
                        "unknown: the brokers described no configuration (the principal may not \
                         DescribeConfigs on it: grant it to check this, or ask the cluster's \
                         owner)"
                            .into(),
                    ),
                    Some(Ok(resource)) => {
                        let value = |key: &str| {
                            resource
                                .get(key)
                                .and_then(|entry| entry.value.as_deref())
                                .and_then(|v| v.parse::<u64>().ok())
                        };
                        Ok((
                            value("min.insync.replicas").and_then(|v| u32::try_from(v).ok()),
                            value("max.message.bytes").and_then(|v| usize::try_from(v).ok()),
                        ))
                    }
                },
            };
            ((*name).to_owned(), config)
        })
        .collect()
}

fn config_refusal(code: RDKafkaErrorCode) -> String {
    if code == RDKafkaErrorCode::TopicAuthorizationFailed {
        "unknown: the principal may not DescribeConfigs on it (grant it to check this, or ask \
         the cluster's owner)"
            .into()
    } else {
        format!("unknown: DescribeConfigs answered {code}")
    }
}

fn topic_findings(
    need: &TopicNeed,
    topic: &TopicDescription,
    config: Option<&TopicConfig>,
    provisioned: bool,
) -> Vec<Finding> {
    let subject = format!("topic {}", need.name);
    if let Some(error) = &topic.error {
        let (status, detail) = match error.code {
            RDKafkaErrorCode::UnknownTopicOrPartition if provisioned => (
                Status::Warn,
                "does not exist; the service creates it at startup (kafka.provision.create_topics: \
                 its principal needs Create)"
                    .to_owned(),
            ),
            RDKafkaErrorCode::UnknownTopicOrPartition => (
                Status::Fail,
                "does not exist (create it, or set kafka.provision.create_topics)".to_owned(),
            ),
            RDKafkaErrorCode::TopicAuthorizationFailed => (
                Status::Fail,
                format!(
                    "the principal may not even Describe it: grant {} on it",
                    need.operation
                ),
            ),
            code => (Status::Fail, format!("{code}: {}", error.message)),
        };
        return vec![finding(subject, "exists", status, detail)];
    }
    let mut findings = vec![authorized(
        &subject,
        need.operation,
        topic.authorized.as_deref(),
    )];
    let (min_insync, max_message) = match config {
        Some(Ok((min_insync, max_message))) => (Ok(*min_insync), Ok(*max_message)),
        Some(Err(why)) => (Err(why.clone()), Err(why.clone())),
        None => (Err("unknown".to_owned()), Err("unknown".to_owned())),
    };
    if need.operation == "Write" {
        let (status, detail) = replication(
            &topic.partitions,
            min_insync.as_ref().ok().copied().flatten(),
        );
        let detail = match &min_insync {
            Err(why) => format!("{detail}; min.insync.replicas {why}"),
            Ok(_) => detail,
        };
        findings.push(finding(subject.clone(), "replication", status, detail));
    } else {
        findings.push(finding(
            subject.clone(),
            "partitions",
            Status::Ok,
            format!("{} partitions", topic.partitions.len()),
        ));
    }
    if let Some((largest, why)) = &need.largest_record {
        let (status, detail) = match max_message {
            Err(why_unknown) => (Status::Skip, why_unknown),
            Ok(None) => (Status::Skip, "not in the topic's configuration".into()),
            Ok(Some(max)) if max >= *largest => (Status::Ok, format!("{max} ≥ {largest} ({why})")),
            // The limit is on compressed batches: lz4 usually fits a larger JSON body
            // (docs/operations.md asks the topics to carry the limit compressed), so a warning.
            Ok(Some(max)) => (
                Status::Warn,
                format!(
                    "{max} < {largest} ({why}): a record that large, unless compression brings \
                     it under, is refused by the topic ({refused}); raise its max.message.bytes",
                    refused = need.when_too_large,
                ),
            ),
        };
        findings.push(finding(subject, "max.message.bytes", status, detail));
    }
    findings
}

/// Whether `operation` is among what the principal may do (librdkafka expands `All`).
fn authorized(subject: &str, operation: &str, allowed: Option<&[&str]>) -> Finding {
    match allowed {
        None => finding(
            subject,
            "authorization",
            Status::Skip,
            "the brokers do not report authorized operations (Kafka before 2.3)",
        ),
        Some(allowed) if allowed.contains(&operation) => finding(
            subject,
            "authorization",
            Status::Ok,
            format!("may {operation}"),
        ),
        Some(allowed) => finding(
            subject,
            "authorization",
            Status::Fail,
            format!(
                "may not {operation} (allowed: {}): grant {operation} to the service's principal",
                if allowed.is_empty() {
                    "nothing".to_owned()
                } else {
                    allowed.join(", ")
                }
            ),
        ),
    }
}

/// Replication judged for a topic written with `acks=all`.
pub fn replication(partitions: &[PartitionInfo], min_insync: Option<u32>) -> (Status, String) {
    let Some(factor) = partitions.iter().map(|p| p.replicas).min() else {
        return (Status::Fail, "no partitions".into());
    };
    let lagging = partitions.iter().min_by_key(|p| p.in_sync);
    let in_sync = lagging.map_or(factor, |p| p.in_sync);
    let shape = format!(
        "{} partitions, replication factor {factor}, min.insync.replicas {}",
        partitions.len(),
        min_insync.map_or_else(|| "?".to_owned(), |m| m.to_string())
    );
    let min = min_insync.map_or(1, |m| m as usize);
    if factor < min {
        return (
            Status::Fail,
            format!("{shape}: fewer replicas than min.insync.replicas, every write is refused"),
        );
    }
    if let Some(p) = lagging.filter(|p| p.in_sync < min) {
        return (
            Status::Fail,
            format!(
                "{shape}: partition {} has {} in sync, below min.insync.replicas: its writes are \
                 refused now",
                p.id, p.in_sync
            ),
        );
    }
    if factor == 1 {
        return (
            Status::Warn,
            format!("{shape}: one broker's loss loses acknowledged records"),
        );
    }
    if min_insync.is_some() && min < 2 {
        return (
            Status::Warn,
            format!("{shape}: an acknowledged record may be on one broker only"),
        );
    }
    if in_sync < factor {
        return (
            Status::Warn,
            format!("{shape}: under-replicated (a partition has {in_sync} in sync)"),
        );
    }
    (Status::Ok, shape)
}

fn group_finding(
    admin: &AdminClient<DefaultClientContext>,
    group: &str,
    timeout: Duration,
) -> Finding {
    judge_group(group, timeout, |left| {
        describe::groups(admin.inner(), &[group], left)
    })
}

/// How long to wait before asking again about a group whose coordinator is moving.
const COORDINATOR_RETRY: Duration = Duration::from_millis(250);

/// Answers about a group while its coordinator moves or loads its state (a broker restarted, a
/// partition of `__consumer_offsets` changed leader): asked again, not taken for a refusal.
fn coordinator_moving(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
    )
}

/// The group's finding from `describe` (given the time left), asked again while the group's
/// coordinator is moving and `timeout` allows.
fn judge_group(
    group: &str,
    timeout: Duration,
    mut describe: impl FnMut(
        Duration,
    ) -> Result<Vec<describe::GroupDescription>, describe::DescribeError>,
) -> Finding {
    let deadline = std::time::Instant::now() + timeout;
    let answer = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let answer = describe(left);
        let moving = answer.as_ref().is_ok_and(|groups| {
            groups.iter().any(|g| {
                g.name == group && g.error.as_ref().is_some_and(|e| coordinator_moving(e.code))
            })
        });
        // Asked again only with a retry's worth of time left after the wait.
        if !moving || left < 2 * COORDINATOR_RETRY {
            break answer;
        }
        std::thread::sleep(COORDINATOR_RETRY);
    };
    let subject = format!("group {group}");
    match answer {
        Err(error) => finding(
            subject,
            "authorization",
            Status::Fail,
            format!("DescribeConsumerGroups: {error}"),
        ),
        Ok(groups) => match groups.into_iter().find(|g| g.name == group) {
            None => finding(subject, "authorization", Status::Fail, "not in the answer"),
            Some(described) => match described.error {
                Some(error) if error.code == RDKafkaErrorCode::GroupAuthorizationFailed => finding(
                    subject,
                    "authorization",
                    Status::Fail,
                    "the principal may not Read it (nor Describe): grant Read on the group",
                ),
                Some(error) => finding(
                    subject,
                    "authorization",
                    Status::Fail,
                    format!("{}: {}", error.code, error.message),
                ),
                None => authorized(&subject, "Read", described.authorized.as_deref()),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(shape: &[(usize, usize)]) -> Vec<PartitionInfo> {
        shape
            .iter()
            .enumerate()
            .map(|(id, &(replicas, in_sync))| PartitionInfo {
                id: i32::try_from(id).unwrap_or(i32::MAX),
                replicas,
                in_sync,
            })
            .collect()
    }

    #[test]
    fn replication_is_judged_as_acks_all_needs_it() {
        let cases = [
            (
                vec![(3, 3), (3, 3)],
                Some(2),
                Status::Ok,
                "replication factor 3",
            ),
            (
                vec![(2, 2)],
                Some(3),
                Status::Fail,
                "every write is refused",
            ),
            (
                vec![(3, 3), (3, 1)],
                Some(2),
                Status::Fail,
                "partition 1 has 1 in sync",
            ),
            (vec![(1, 1)], Some(1), Status::Warn, "one broker's loss"),
            (vec![(3, 3)], Some(1), Status::Warn, "on one broker only"),
            (vec![(3, 2)], Some(2), Status::Warn, "under-replicated"),
            (vec![(3, 3)], None, Status::Ok, "min.insync.replicas ?"),
            (vec![], Some(2), Status::Fail, "no partitions"),
        ];
        for (shape, min_insync, status, says) in cases {
            let (got, detail) = replication(&partitions(&shape), min_insync);
            assert_eq!(got, status, "{shape:?} {min_insync:?}: {detail}");
            assert!(detail.contains(says), "{shape:?}: {detail}");
        }
    }

    fn group_answer(code: Option<RDKafkaErrorCode>) -> Vec<describe::GroupDescription> {
        vec![describe::GroupDescription {
            name: "g".into(),
            error: code.map(|code| describe::ItemError {
                code,
                message: "the coordinator moved".into(),
            }),
            authorized: Some(vec!["Read", "Describe"]),
        }]
    }

    /// The coordinator of a group moves when a broker restarts: `check` failed a healthy
    /// deployment with "NotCoordinator" (seen in the secured cluster tests after a rolling
    /// restart). It asks again within its timeout.
    #[test]
    fn a_moving_group_coordinator_is_asked_again_not_reported_as_a_refusal() {
        let mut answers = vec![
            Some(RDKafkaErrorCode::NotCoordinator),
            Some(RDKafkaErrorCode::CoordinatorLoadInProgress),
            None,
        ]
        .into_iter();
        let found = judge_group("g", Duration::from_secs(5), |_| {
            Ok(group_answer(answers.next().flatten()))
        });
        assert_eq!(
            (found.status, found.detail.as_str()),
            (Status::Ok, "may Read")
        );

        let refused = judge_group("g", Duration::from_millis(600), |_| {
            Ok(group_answer(Some(RDKafkaErrorCode::NotCoordinator)))
        });
        assert_eq!(refused.status, Status::Fail);
        assert!(
            refused.detail.contains("NotCoordinator"),
            "{}",
            refused.detail
        );

        let mut asked = 0;
        let denied = judge_group("g", Duration::from_secs(5), |_| {
            asked += 1;
            Ok(group_answer(Some(
                RDKafkaErrorCode::GroupAuthorizationFailed,
            )))
        });
        assert_eq!((denied.status, asked), (Status::Fail, 1));
    }

    #[test]
    fn an_operation_is_authorized_by_its_name() {
        let status = |allowed: Option<&[&str]>| authorized("t", "Write", allowed).status;
        assert_eq!(status(Some(&["Describe", "Write"])), Status::Ok);
        assert_eq!(status(Some(&["Read", "Describe"])), Status::Fail);
        assert_eq!(status(Some(&[])), Status::Fail);
        assert_eq!(status(None), Status::Skip);
    }
}
