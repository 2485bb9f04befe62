//! The Kafka records the bridge writes: CloudEvents 1.0 in the Kafka protocol binding's binary
//! content mode (attributes in `ce_*` headers, the event data as the value).

use uuid::Uuid;

use crate::ParseError;
use crate::timestamp::Timestamp;

/// Header names. Extension attributes follow CloudEvents naming (lower-case alphanumerics).
pub mod header {
    /// Always `1.0`.
    pub const SPEC_VERSION: &str = "ce_specversion";
    /// The event id (`eventId` for webhook events).
    pub const ID: &str = "ce_id";
    /// `ai.dataqueue.voicehub.<EventType>`.
    pub const TYPE: &str = "ce_type";
    /// `/voicehub/sources/<source>`.
    pub const SOURCE: &str = "ce_source";
    /// When the event happened (RFC 3339).
    pub const TIME: &str = "ce_time";
    /// The call or job id.
    pub const SUBJECT: &str = "ce_subject";
    /// Media type of the value.
    pub const CONTENT_TYPE: &str = "content-type";
    /// Extension: when the bridge received the webhook (RFC 3339).
    pub const RECEIVED_AT: &str = "ce_bridgereceivedat";
    /// Extension: the bridge version that wrote the record.
    pub const BRIDGE_VERSION: &str = "ce_bridgeversion";
    /// Extension (dead letters): `ingress` or `enricher`.
    pub const DEAD_LETTER_STAGE: &str = "ce_deadletterstage";
    /// Extension (dead letters): the reason code.
    pub const DEAD_LETTER_REASON: &str = "ce_deadletterreason";
    /// Extension (dead letters): the error text.
    pub const DEAD_LETTER_ERROR: &str = "ce_deadlettererror";
    /// Extension (re-driven records): the dead letter it came from, `<topic>/<partition>/<offset>`.
    pub const REDRIVEN_FROM: &str = "ce_redrivenfrom";

    /// Every header name the bridge writes.
    pub const ALL: [&str; 13] = [
        SPEC_VERSION,
        ID,
        TYPE,
        SOURCE,
        TIME,
        SUBJECT,
        CONTENT_TYPE,
        RECEIVED_AT,
        BRIDGE_VERSION,
        DEAD_LETTER_STAGE,
        DEAD_LETTER_REASON,
        DEAD_LETTER_ERROR,
        REDRIVEN_FROM,
    ];

    /// The bridge's own `&'static` name for `name`, if it is one of [`ALL`] (for records read
    /// back from storage).
    pub fn known(name: &str) -> Option<&'static str> {
        ALL.into_iter().find(|known| *known == name)
    }
}

/// CloudEvents `type` prefix.
pub const TYPE_PREFIX: &str = "ai.dataqueue.voicehub.";
/// CloudEvents `type` of dead-letter records.
pub const DEAD_LETTER_TYPE: &str = "ai.dataqueue.voicehub.bridge.DeadLetter";
/// Longest error text put in a dead-letter header.
pub const MAX_ERROR_TEXT: usize = 1024;

/// Namespace of the name-based (v5) UUIDs the bridge derives.
const BRIDGE_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a8e_4b7d_4e0a_9c35_d1f0_7b2e_8a41);

/// Where and when a record was made: what the pure model cannot know by itself.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    /// The configured source the webhook came in on.
    pub source: &'a str,
    /// When the bridge received it.
    pub received_at: Timestamp,
    /// The bridge's version.
    pub bridge_version: &'a str,
}

impl Provenance<'_> {
    /// The CloudEvents `source` attribute.
    pub fn ce_source(&self) -> String {
        ["/voicehub/sources/", self.source].concat()
    }
}

/// A record ready to produce: the topic is chosen by the caller (see [`crate::Topics`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partitioning key; `None` only for dead letters whose call is unknown.
    pub key: Option<String>,
    /// Headers, in this order.
    pub headers: Vec<(&'static str, String)>,
    /// The value bytes.
    pub value: Vec<u8>,
}

impl Record {
    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The attributes that vary between the bridge's record types.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CloudEvent<'a> {
    pub id: &'a str,
    /// Appended to [`TYPE_PREFIX`].
    pub event_type: &'a str,
    pub time: Option<Timestamp>,
    pub subject: Option<&'a str>,
    pub key: Option<&'a str>,
}

pub(crate) fn cloud_event(
    ce: CloudEvent<'_>,
    provenance: &Provenance<'_>,
    value: Vec<u8>,
) -> Record {
    // Room for every header below, and a dead letter's three.
    let mut headers = Vec::with_capacity(12);
    headers.extend([
        (header::SPEC_VERSION, "1.0".to_owned()),
        (header::ID, ce.id.to_owned()),
        (header::TYPE, [TYPE_PREFIX, ce.event_type].concat()),
        (header::SOURCE, provenance.ce_source()),
    ]);
    if let Some(time) = ce.time {
        headers.push((header::TIME, time.to_string()));
    }
    if let Some(subject) = ce.subject {
        headers.push((header::SUBJECT, subject.to_owned()));
    }
    headers.push((header::CONTENT_TYPE, "application/json".to_owned()));
    headers.push((header::RECEIVED_AT, provenance.received_at.to_string()));
    headers.push((header::BRIDGE_VERSION, provenance.bridge_version.to_owned()));
    Record {
        key: ce.key.map(str::to_owned),
        headers,
        value,
    }
}

/// A name-based UUID (v5) in the bridge's namespace, for ids that must be the same every time
/// the same input is processed.
pub fn derived_id(parts: &[&[u8]]) -> String {
    let mut name = Vec::new();
    for part in parts {
        // Length-prefixed so that ("ab","c") and ("a","bc") differ.
        name.extend_from_slice(&(part.len() as u64).to_be_bytes());
        name.extend_from_slice(part);
    }
    Uuid::new_v5(&BRIDGE_NAMESPACE, &name).to_string()
}

/// Room for a record's key and headers (CloudEvents attributes, a dead letter's error text)
/// on top of its body: the ingress's producer must carry `http.max_body_bytes` plus this, so
/// that every body it accepts can at least be dead-lettered.
pub const RECORD_HEADROOM_BYTES: usize = 64 * 1024;

/// The stage that gave up on a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The HTTP ingress.
    Ingress,
    /// The analysis enricher.
    Enricher,
}

impl Stage {
    /// `ingress` or `enricher`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Enricher => "enricher",
        }
    }

    /// The reasons this stage writes in `ce_deadletterreason` (a closed set).
    pub fn dead_letter_reasons(self) -> &'static [&'static str] {
        match self {
            Self::Ingress => &INGRESS_DEAD_LETTER_REASONS,
            Self::Enricher => &EnricherDeadLetterReason::NAMES,
        }
    }
}

crate::closed_enum! {
    /// Why the enricher dead-letters a record (`ce_deadletterreason`).
    pub enum EnricherDeadLetterReason {
        /// The analysis API refused the key (401, 403).
        Unauthorized => "unauthorized",
        /// The analysis URL is not on the source's allow-list.
        DisallowedUrl => "disallowed_url",
        /// The analysis API answered a redirect (never followed).
        Redirected => "redirected",
        /// Any other 4xx.
        ClientError => "client_error",
        /// The analysis is larger than `fetch.max_body_bytes`.
        TooLarge => "too_large",
        /// The analysis is not valid.
        InvalidAnalysis => "invalid_analysis",
        /// Retryable failures until the retry budget ran out.
        RetriesExhausted => "retries_exhausted",
        /// No source of that name is configured in the enricher.
        UnknownSource => "unknown_source",
        /// A record other than `AnalysisResultReady` on the input topic.
        UnexpectedRecord => "unexpected_record",
        /// The input record does not parse.
        InvalidRecord => "invalid_record",
        /// The enriched record is too large for the broker.
        EnrichedTooLarge => "enriched_too_large",
        /// The dead letter itself is too large for the broker (counted; the input skipped).
        DeadLetterTooLarge => "dead_letter_too_large",
        /// The enricher failed on the record (a panic: a bug).
        InternalError => "internal_error",
    }
}

/// Why the ingress dead-letters a webhook (`ce_deadletterreason`): what the parser refuses, a
/// record too large for the broker, a panic on the request path.
pub const INGRESS_DEAD_LETTER_REASONS: [&str; 6] = [
    ParseError::REASONS[0],
    ParseError::REASONS[1],
    ParseError::REASONS[2],
    ParseError::REASONS[3],
    "record_too_large",
    "internal_error",
];

/// Something authenticated that could not be processed, kept rather than dropped.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// Who gave up.
    pub stage: Stage,
    /// Stable reason code (lower snake case, a closed set per stage).
    pub reason: &'a str,
    /// Human-readable error; truncated to [`MAX_ERROR_TEXT`] bytes. Must not hold secrets.
    pub error: &'a str,
    /// The original bytes: the request body (ingress) or the input record's value (enricher).
    pub original: &'a [u8],
    /// Media type of `original`.
    pub original_content_type: &'a str,
    /// The call or job the input is about, when known: the key, so a dead letter sits in the
    /// same partition as the call's other records.
    pub subject: Option<&'a str>,
}

impl DeadLetter<'_> {
    /// The dead-letter record. Its `ce_id` is derived from the stage, source and original bytes:
    /// re-dead-lettering the same input yields the same id.
    pub fn to_record(&self, provenance: &Provenance<'_>) -> Record {
        let id = derived_id(&[
            b"dead-letter",
            self.stage.as_str().as_bytes(),
            provenance.source.as_bytes(),
            self.original,
        ]);
        let mut record = cloud_event(
            CloudEvent {
                id: &id,
                event_type: "bridge.DeadLetter",
                time: Some(provenance.received_at),
                subject: self.subject,
                key: self.subject,
            },
            provenance,
            self.original.to_vec(),
        );
        for (name, value) in &mut record.headers {
            if *name == header::CONTENT_TYPE {
                *value = self.original_content_type.to_owned();
            }
        }
        record
            .headers
            .push((header::DEAD_LETTER_STAGE, self.stage.as_str().to_owned()));
        record
            .headers
            .push((header::DEAD_LETTER_REASON, self.reason.to_owned()));
        record.headers.push((
            header::DEAD_LETTER_ERROR,
            truncate(self.error, MAX_ERROR_TEXT),
        ));
        record
    }
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance() -> Provenance<'static> {
        Provenance {
            source: "default",
            received_at: Timestamp::parse("2025-10-14T09:21:08.001Z").unwrap(),
            bridge_version: "0.1.0",
        }
    }

    #[test]
    fn dead_letters_carry_stage_reason_error_and_the_original_bytes() {
        let original = b"\xff not json";
        let record = DeadLetter {
            stage: Stage::Ingress,
            reason: "invalid_json",
            error: "expected value",
            original,
            original_content_type: "application/octet-stream",
            subject: None,
        }
        .to_record(&provenance());
        assert_eq!(record.value, original);
        assert_eq!(record.key, None);
        assert_eq!(record.header(header::TYPE), Some(DEAD_LETTER_TYPE));
        assert_eq!(record.header(header::DEAD_LETTER_STAGE), Some("ingress"));
        assert_eq!(
            record.header(header::DEAD_LETTER_REASON),
            Some("invalid_json")
        );
        assert_eq!(
            record.header(header::CONTENT_TYPE),
            Some("application/octet-stream")
        );
        assert_eq!(
            record.header(header::TIME),
            Some("2025-10-14T09:21:08.001Z")
        );
    }

    #[test]
    fn long_error_texts_are_cut_on_a_character_boundary() {
        let error = "é".repeat(MAX_ERROR_TEXT);
        let cut = truncate(&error, MAX_ERROR_TEXT);
        assert_eq!(cut.len(), MAX_ERROR_TEXT);
        assert!(truncate("abc", 2) == "ab");
    }

    #[test]
    fn derived_ids_are_stable_and_unambiguous() {
        assert_eq!(derived_id(&[b"a", b"b"]), derived_id(&[b"a", b"b"]));
        assert_ne!(derived_id(&[b"ab", b"c"]), derived_id(&[b"a", b"bc"]));
    }
}
