//! The enricher's output: an analysis-ready event joined with the analysis it points to.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisResult;
use crate::event::{AnalysisResultReady, Event};
use crate::record::{self, Provenance, Record};
use crate::timestamp::Timestamp;

/// The event type name of enriched records (`ce_type` is the prefix plus this).
pub const ENRICHED_TYPE: &str = "AnalysisEnriched";

/// The value of an enriched record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisEnriched {
    /// From the source event.
    pub analysis_id: String,
    /// From the source event (the record key).
    pub call_id: String,
    /// The `eventId` of the `AnalysisResultReady` event this enriches.
    pub event_id: String,
    /// The `timestamp` of that event.
    pub event_timestamp: Timestamp,
    /// When the enricher fetched the analysis.
    pub fetched_at: Timestamp,
    /// The analysis, normalised; unknown fields preserved.
    pub analysis: AnalysisResult,
}

impl AnalysisEnriched {
    /// Joins an event with its fetched analysis.
    pub fn new(
        event: &Event<AnalysisResultReady>,
        analysis: AnalysisResult,
        fetched_at: Timestamp,
    ) -> Self {
        Self {
            analysis_id: event.payload.analysis_id.clone(),
            call_id: event.payload.call_id.clone(),
            event_id: event.event_id.clone(),
            event_timestamp: event.timestamp,
            fetched_at,
            analysis,
        }
    }

    /// The `ce_id`: derived from the source and the source event id, so a redelivered event
    /// yields a record with the same id.
    pub fn ce_id(source: &str, event_id: &str) -> String {
        record::derived_id(&[b"enriched", source.as_bytes(), event_id.as_bytes()])
    }

    /// The CloudEvents record.
    pub fn to_record(&self, provenance: &Provenance<'_>) -> Record {
        let id = Self::ce_id(provenance.source, &self.event_id);
        let value = serde_json::to_vec(self).unwrap_or_default();
        record::cloud_event(
            record::CloudEvent {
                id: &id,
                event_type: ENRICHED_TYPE,
                time: Some(self.event_timestamp),
                subject: Some(&self.call_id),
                key: Some(&self.call_id),
            },
            provenance,
            value,
        )
    }
}
