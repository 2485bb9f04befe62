//! Creating the topics that do not exist yet.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::info;

use super::config::{client_config, redacted};
use crate::settings::KafkaSettings;

/// Why topic provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The admin client could not be created or the request failed as a whole.
    #[error("creating topics: {0}")]
    Client(#[from] KafkaError),
    /// The broker refused a topic.
    #[error("creating topic {topic}: {code}")]
    Topic {
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
}

/// Creates the topics that do not exist yet, with the configured partitions and replication.
/// The broker's metadata says which exist, so topics already there need no create permission
/// (and brokers that log a refused duplicate create as an error are not asked).
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[&str],
    timeout: Duration,
) -> Result<(), ProvisionError> {
    let admin: Arc<AdminClient<DefaultClientContext>> =
        Arc::new(client_config(settings).create().map_err(redacted)?);
    let existing: std::collections::HashSet<String> = {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(None, timeout).map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .filter(|topic| topic.error().is_none())
                    .map(|topic| topic.name().to_owned())
                    .collect()
            })
        })
        .await
        .map_err(|_| KafkaError::Canceled)??
    };
    let provision = &settings.provision;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|name| !existing.contains(**name))
        .map(|name| {
            NewTopic::new(
                name,
                provision.partitions,
                TopicReplication::Fixed(provision.replication_factor),
            )
        })
        .collect();
    if new_topics.is_empty() {
        return Ok(());
    }
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(topic) => info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(ProvisionError::Topic { topic, code }),
        }
    }
    Ok(())
}
