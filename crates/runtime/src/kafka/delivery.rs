//! Producing one record: enqueued at once, acknowledged (or not) within a deadline, and why
//! not when it was not.

use std::future::Future;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use voicehub_model::record::Record;

/// Why a record was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// No acknowledgement within the caller's deadline. The record may still be delivered
    /// later.
    #[error("no acknowledgement within {0:?}")]
    Deadline(Duration),
    /// The producer gave up on the record after `message.timeout.ms`.
    #[error("not delivered within message.timeout.ms")]
    TimedOut,
    /// The producer's local queue is full: back off.
    #[error("producer queue is full")]
    QueueFull,
    /// The record is larger than the producer or broker accepts: retrying will not help.
    #[error("record too large: {0}")]
    TooLarge(#[source] KafkaError),
    /// The cluster refused this client's principal: a missing ACL (authorization) or a
    /// refused credential (authentication). Not an outage: it lasts until someone grants or
    /// fixes it, and then the same record may succeed.
    #[error("not authorized: {0}")]
    Unauthorized(#[source] KafkaError),
    /// Any other delivery failure (broker unreachable, not enough replicas, ...).
    #[error("delivery failed: {0}")]
    Failed(#[source] KafkaError),
}

impl ProduceError {
    /// Every value of [`Self::reason`], for metrics to start at zero.
    pub const REASONS: [&'static str; 6] = [
        "deadline",
        "timed_out",
        "queue_full",
        "too_large",
        "unauthorized",
        "failed",
    ];

    /// A closed set of reason codes, for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Deadline(_) => "deadline",
            Self::TimedOut => "timed_out",
            Self::QueueFull => "queue_full",
            Self::TooLarge(_) => "too_large",
            Self::Unauthorized(_) => "unauthorized",
            Self::Failed(_) => "failed",
        }
    }

    /// librdkafka's error, where there is one.
    pub fn kafka_error(&self) -> Option<&KafkaError> {
        match self {
            Self::TooLarge(error) | Self::Unauthorized(error) | Self::Failed(error) => Some(error),
            Self::Deadline(_) | Self::TimedOut | Self::QueueFull => None,
        }
    }

    /// Whether the same record may succeed later.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::TooLarge(_))
    }

    fn from_kafka(error: KafkaError) -> Self {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => Self::QueueFull,
            Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
                Self::TooLarge(error)
            }
            Some(code) if is_unauthorized(code) => Self::Unauthorized(error),
            _ => Self::Failed(error),
        }
    }
}

/// Whether `code` says the cluster refused the principal (authorization or authentication).
pub fn is_unauthorized(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
    )
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Hands `record` to the producer's queue without waiting. The returned future resolves with
/// the broker's answer, or `message.timeout.ms` after a broker that never answers.
pub fn enqueue<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    record: &Record,
) -> Result<DeliveryFuture, ProduceError> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    let mut future_record = FutureRecord::to(topic)
        .payload(record.value.as_slice())
        .headers(headers);
    if let Some(key) = &record.key {
        future_record = future_record.key(key.as_str());
    }
    producer
        .send_result(future_record)
        .map_err(|(error, _)| ProduceError::from_kafka(error))
}

/// Waits for a delivery started by [`enqueue`].
pub async fn delivered(delivery: DeliveryFuture) -> Result<Delivered, ProduceError> {
    match delivery.await {
        Ok(Ok(delivery)) => Ok(Delivered {
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Ok(Err((error, _))) => Err(match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageTimedOut) => ProduceError::TimedOut,
            _ => ProduceError::from_kafka(error),
        }),
        // The producer was dropped (shutdown, or replaced) with the record still queued.
        Err(_) => Err(ProduceError::Failed(KafkaError::Canceled)),
    }
}

/// Produces `record` to `topic` and waits for the broker's acknowledgement at most
/// `deadline`. Past the deadline the delivery still goes on in the producer.
pub async fn produce<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    record: &Record,
    deadline: Duration,
) -> Result<Delivered, ProduceError> {
    let delivery = enqueue(producer, topic, record)?;
    within_deadline(delivered(delivery), deadline).await
}

/// Waits for `delivery` at most `deadline`, in the caller's task (no task or channel of its
/// own). If the deadline passes, or the returned future is dropped first (polled or not),
/// the delivery is spawned on the current runtime to finish alone, so that what it does at
/// its end (metrics, callbacks, replacing a wedged producer) still happens. The exception is
/// a runtime that is itself shutting down: there nothing can run any more, and the
/// producer's flush at shutdown is what still sends the record. A panic while the caller
/// polls it ends the delivery as `Failed(Canceled)` (as a panicked spawned task did), instead
/// of unwinding into the caller, which may already have been told nothing.
///
/// The one deadline every produce path of the bridge goes through.
pub fn within_deadline<F>(
    delivery: F,
    deadline: Duration,
) -> impl Future<Output = Result<Delivered, ProduceError>> + Send
where
    F: Future<Output = Result<Delivered, ProduceError>> + Send + 'static,
{
    // Built now, not at the first poll: dropped unpolled, it still spawns the delivery.
    FinishAlone(Some(Box::pin(delivery))).within(deadline)
}

/// A delivery nobody waits for any more: dropped unfinished, it is spawned to finish.
struct FinishAlone<F: Future<Output = Result<Delivered, ProduceError>> + Send + 'static>(
    Option<std::pin::Pin<Box<F>>>,
);

impl<F: Future<Output = Result<Delivered, ProduceError>> + Send + 'static> FinishAlone<F> {
    async fn within(mut self, deadline: Duration) -> Result<Delivered, ProduceError> {
        let Some(delivery) = self.0.as_mut() else {
            // Built with the delivery in it; only this takes it out.
            return Err(ProduceError::Failed(KafkaError::Canceled));
        };
        let contained = std::future::poll_fn(|cx| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| delivery.as_mut().poll(cx)))
                .unwrap_or_else(|panic| {
                    tracing::error!(
                        error = crate::panic_message(&*panic),
                        "a delivery panicked: reported as failed"
                    );
                    std::task::Poll::Ready(Err(ProduceError::Failed(KafkaError::Canceled)))
                })
        });
        let result = tokio::time::timeout(deadline, contained).await;
        match result {
            Ok(result) => {
                self.0 = None; // finished (or panicked): nothing to spawn
                result
            }
            Err(_) => Err(ProduceError::Deadline(deadline)),
        }
    }
}

impl<F: Future<Output = Result<Delivered, ProduceError>> + Send + 'static> Drop for FinishAlone<F> {
    fn drop(&mut self) {
        if let Some(delivery) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(delivery);
        }
    }
}

#[cfg(test)]
mod reason_tests {
    use std::time::Duration;

    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::ProduceError;

    #[test]
    fn every_reason_is_listed() {
        let error = || KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let all = [
            ProduceError::Deadline(Duration::ZERO),
            ProduceError::TimedOut,
            ProduceError::QueueFull,
            ProduceError::TooLarge(error()),
            ProduceError::Unauthorized(error()),
            ProduceError::Failed(error()),
        ];
        let reasons: Vec<&str> = all.iter().map(ProduceError::reason).collect();
        assert_eq!(reasons, ProduceError::REASONS);
    }
}
