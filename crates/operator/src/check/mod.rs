//! `voicehub check`: will this configuration work, before a deploy? With a service's own
//! configuration file and environment (brokers, TLS/SASL, topics, group, sources and their API
//! keys), it asks the brokers and the analysis API, and changes nothing: no record produced,
//! no group joined, no topic created.
//!
//! - [`kafka`]: brokers reachable, authentication, for each topic and group the service needs
//!   whether its principal may do what it must (the authorized operations Kafka reports), the
//!   topics' partitions, replication, `min.insync.replicas` and `max.message.bytes`;
//! - [`analysis_api`]: each allowed analysis API host answers, and does not refuse the key;
//! - [`describe`]: the Kafka Admin calls rdkafka does not wrap.

pub mod analysis_api;
pub mod describe;
pub mod kafka;

use serde::Serialize;
use voicehub_model::record::RECORD_HEADROOM_BYTES;
use voicehub_runtime::settings::KafkaSettings;

/// The service whose configuration is checked (`--service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// `voicehub-ingress`.
    Ingress,
    /// `voicehub-enricher`.
    Enricher,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it must be.
    Ok,
    /// Not what it should be: it will not fail, but something is at risk.
    Warn,
    /// Not answered: something it needs it could not see (said why).
    Skip,
    /// It will not work.
    Fail,
}

impl Status {
    /// As the table shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Skip => "skip",
            Self::Fail => "FAIL",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked: `kafka`, `topic <name>`, `group <id>`, `analysis API <source> <url>`.
    pub subject: String,
    /// Which check.
    pub check: &'static str,
    /// How it came out.
    pub status: Status,
    /// What was found, and for a failure what to do.
    pub detail: String,
}

/// What `voicehub check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ingress` or `enricher`.
    pub service: &'static str,
    /// Whether no check failed (warnings and skips allowed).
    pub passed: bool,
    /// Every check, in order.
    pub checks: Vec<Finding>,
}

impl Report {
    /// The report of `checks`.
    pub fn new(service: Service, checks: Vec<Finding>) -> Self {
        Self {
            service: match service {
                Service::Ingress => "ingress",
                Service::Enricher => "enricher",
            },
            passed: checks.iter().all(|c| c.status != Status::Fail),
            checks,
        }
    }

    /// A table for people: one line per check, columns aligned.
    pub fn table(&self) -> String {
        let width = |column: fn(&Finding) -> usize, title: &str| {
            self.checks
                .iter()
                .map(column)
                .max()
                .unwrap_or(0)
                .max(title.len())
        };
        let subject = width(|f| f.subject.chars().count(), "SUBJECT");
        let check = width(|f| f.check.len(), "CHECK");
        let mut table = format!(
            "{:subject$}  {:check$}  RESULT  DETAIL\n",
            "SUBJECT", "CHECK"
        );
        for finding in &self.checks {
            table.push_str(&format!(
                "{:subject$}  {:check$}  {:6}  {}\n",
                finding.subject,
                finding.check,
                finding.status.as_str(),
                finding.detail
            ));
        }
        let count = |status| self.checks.iter().filter(|c| c.status == status).count();
        table.push_str(&format!(
            "{}: {} ok, {} warnings, {} skipped, {} failed\n",
            self.service,
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Skip),
            count(Status::Fail),
        ));
        table
    }
}

/// A topic the service uses, and how.
#[derive(Debug, Clone)]
pub struct TopicNeed {
    /// Its name.
    pub name: String,
    /// The operation the service performs on it: `Write` or `Read`.
    pub operation: &'static str,
    /// The largest record the service may write to it, and the setting that bounds it.
    pub largest_record: Option<(usize, String)>,
    /// What happens to a record the topic refuses as too large.
    pub when_too_large: &'static str,
}

/// What a service needs of Kafka.
#[derive(Debug, Clone)]
pub struct KafkaNeeds {
    /// Brokers and client properties, as the service has them.
    pub settings: KafkaSettings,
    /// Its topics.
    pub topics: Vec<TopicNeed>,
    /// Its consumer group (the enricher's), read from.
    pub group: Option<String>,
}

impl KafkaNeeds {
    /// The ingress: Write on every event type's topic, unrouted and dead letters; each must
    /// take a body of `max_body_bytes` (`http.max_body_bytes`) with its headers.
    pub fn ingress(kafka: &KafkaSettings, max_body_bytes: usize) -> Self {
        let largest = max_body_bytes + RECORD_HEADROOM_BYTES;
        let topics = &kafka.topics;
        Self {
            settings: kafka.clone(),
            topics: topics
                .all()
                .iter()
                .filter(|(_, name)| *name != topics.analysis_enriched)
                .map(|(_, name)| TopicNeed {
                    name: (*name).to_owned(),
                    operation: "Write",
                    largest_record: Some((
                        largest,
                        "http.max_body_bytes + 64 KiB of key and headers".into(),
                    )),
                    when_too_large: if *name == topics.dead_letter {
                        "answered 413 and kept nowhere: VoiceHub drops it"
                    } else {
                        "dead-lettered as record_too_large, answered 413"
                    },
                })
                .collect(),
            group: None,
        }
    }

    /// The enricher: Read on the analysis-ready topic and its group, Write on the enriched and
    /// dead-letter topics; the enriched topic should take an analysis of
    /// `fetch.max_body_bytes` with its event.
    pub fn enricher(settings: &voicehub_enricher::EnricherSettings) -> Self {
        let topics = &settings.kafka.topics;
        let write = |name: &str, largest_record| TopicNeed {
            name: name.to_owned(),
            operation: "Write",
            largest_record,
            when_too_large: "its input dead-lettered as enriched_too_large",
        };
        Self {
            settings: settings.kafka.clone(),
            topics: vec![
                TopicNeed {
                    name: topics.analysis_result_ready.clone(),
                    operation: "Read",
                    largest_record: None,
                    when_too_large: "",
                },
                write(
                    &topics.analysis_enriched,
                    Some((
                        settings.fetch.max_body_bytes + RECORD_HEADROOM_BYTES,
                        "fetch.max_body_bytes + 64 KiB of event, key and headers".into(),
                    )),
                ),
                write(&topics.dead_letter, None),
            ],
            group: Some(settings.consumer.group_id.clone()),
        }
    }
}

/// A row.
fn finding(
    subject: impl Into<String>,
    check: &'static str,
    status: Status,
    detail: impl Into<String>,
) -> Finding {
    Finding {
        subject: subject.into(),
        check,
        status,
        detail: detail.into(),
    }
}
