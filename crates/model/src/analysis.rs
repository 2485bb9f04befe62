//! The analysis result fetched from `analysisResultUrl`.
//!
//! Field names were recovered from an older revision of VoiceHub's docs; nothing here is
//! guaranteed. So every field is optional, numbers stay as sent (integer or float), every enum
//! is open, and unknown fields are kept.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use crate::error::ParseError;
use crate::event::Extra;
use crate::status::{ResolutionStatus, SentimentLabel, Speaker};

/// A call's post-call analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisResult {
    /// The call analysed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The transcript, one item per utterance (thousands for long calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_analysis: Option<Vec<TranscriptItem>>,
    /// Free-text summary of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Speech statistics of the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_summary: Option<SpeakerSummary>,
    /// Speech statistics of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant_summary: Option<SpeakerSummary>,
    /// Speech statistics of the whole call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_summary: Option<SpeakerSummary>,
    /// Overall sentiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<Sentiment>,
    /// Call duration (units undocumented, probably seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Number>,
    /// Where the recordings are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_urls: Option<Vec<String>>,
    /// Topics discussed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_topics: Option<Vec<String>>,
    /// Signs of customer loyalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loyalty_indicators: Option<Vec<String>>,
    /// Variables configured per agent, free-form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extracted_variables: Option<Extra>,
    /// Agent empathy score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empathy_score: Option<Number>,
    /// Whether the caller's issue was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_status: Option<ResolutionStatus>,
    /// How often the caller interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_interruptions_count: Option<Number>,
    /// When the analysis was created (kept as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the analysis was last updated (kept as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One utterance of the transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptItem {
    /// What was said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Who said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<Speaker>,
    /// Its sentiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<Sentiment>,
    /// Start offset in the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Number>,
    /// End offset in the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Number>,
    /// Length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Number>,
    /// Words per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wps: Option<Number>,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A sentiment judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sentiment {
    /// Score (sign gives the polarity in the examples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<Number>,
    /// Polarity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<SentimentLabel>,
    /// Words that pulled it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_keywords: Option<Vec<String>>,
    /// Words that pulled it down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_keywords: Option<Vec<String>>,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Speech statistics of one side of the call, or of both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpeakerSummary {
    /// Time spent speaking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_speech_duration: Option<Number>,
    /// Time spent silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_silence_duration: Option<Number>,
    /// Time spent interrupting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_interruption_duration: Option<Number>,
    /// Words per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wps: Option<Number>,
    /// Sentiment of this side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<Sentiment>,
    /// Salient phrases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_phrases: Option<KeyPhrases>,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Salient phrases by polarity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyPhrases {
    /// Positive phrases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive: Option<Vec<String>>,
    /// Negative phrases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative: Option<Vec<String>>,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: Extra,
}

impl AnalysisResult {
    /// Parses a response body. Must be a JSON object; documented fields must have their
    /// documented types (null counts as absent) and appear once; the error names the path of
    /// the first that does not.
    ///
    /// Read straight into the types, in one pass: through a `Value` first, the tree's maps
    /// and their hashing were a quarter of the enricher's CPU (docs/benchmarks.md).
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let mut reader = serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, Self>(&mut reader) {
            Ok(analysis) => {
                reader
                    .end()
                    .map_err(|e| ParseError::InvalidJson(e.to_string()))?;
                Ok(analysis)
            }
            Err(error) if error.inner().is_data() => {
                // Not an object: what it is instead, read again on this error path only.
                if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                    let value: Value = serde_json::from_slice(body)
                        .map_err(|e| ParseError::InvalidJson(e.to_string()))?;
                    return Err(ParseError::NotAnObject(crate::serde_helpers::json_kind(
                        &value,
                    )));
                }
                Err(error.into())
            }
            Err(error) => Err(ParseError::InvalidJson(error.into_inner().to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_is_not_an_analysis_is_refused_with_the_kind_of_error_it_is() {
        let kind = |body: &str| match AnalysisResult::parse(body.as_bytes()) {
            Ok(_) => "accepted".to_owned(),
            Err(ParseError::InvalidJson(_)) => "invalid_json".to_owned(),
            Err(ParseError::NotAnObject(kind)) => format!("not_an_object {kind}"),
            Err(error) => format!("{}: {error}", error.reason()),
        };
        assert_eq!(kind(" \n{\"summary\": \"s\"} \n"), "accepted");
        assert_eq!(kind("[1]"), "not_an_object an array");
        assert_eq!(kind(" \"text\""), "not_an_object a string");
        assert_eq!(kind("{\"summary\": "), "invalid_json");
        assert_eq!(kind("{} {}"), "invalid_json");
        assert_eq!(kind("[1"), "invalid_json");
        assert_eq!(
            kind(r#"{"summary": "a", "summary": "b"}"#),
            "invalid_field: invalid field `.`: duplicate field `summary` at line 1 column 26"
        );
    }

    #[test]
    fn integers_and_floats_are_re_emitted_as_sent() {
        let body = json!({"duration": 112, "empathyScore": 8.5, "sentiment": {"score": -0.41}});
        let parsed = AnalysisResult::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), body);
    }

    #[test]
    fn wrong_types_are_reported_with_their_path() {
        let body = json!({"transcriptAnalysis": [{"text": "hi"}, {"start": "zero"}]});
        let err = AnalysisResult::parse(body.to_string().as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid field `transcriptAnalysis[1].start`"),
            "{err}"
        );
    }

    #[test]
    fn nulls_count_as_absent_and_an_empty_object_is_a_valid_result() {
        let parsed = AnalysisResult::parse(br#"{"summary": null}"#).unwrap();
        assert_eq!(parsed.summary, None);
        assert!(AnalysisResult::parse(b"[]").is_err());
    }
}
