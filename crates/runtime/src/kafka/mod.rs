//! Kafka clients with the record contract's settings, one file per role:
//!
//! - [`config`]: client and producer configuration, and the property report;
//! - [`delivery`]: one record produced, acknowledged within a deadline or refused with a
//!   reason;
//! - [`recovering`]: the producer that replaces itself when it is wedged;
//! - [`provision`]: creating missing topics.

mod config;
mod delivery;
mod provision;
mod recovering;

pub use config::{
    PRODUCER_QUEUE_KBYTES, check_config_report, client_config, create_producer,
    describe_properties, producer_config, redacted,
};
pub use delivery::{
    Delivered, ProduceError, delivered, enqueue, is_unauthorized, produce, within_deadline,
};
pub use provision::{ProvisionError, ensure_topics};
pub use recovering::{MIN_REPLACEMENT_INTERVAL, RecoveringProducer};
