//! The analysis result fetched from `analysisResultUrl`.
//!
//! Field names were recovered from an older revision of VoiceHub's docs; nothing here is
//! guaranteed. So every field is optional, numbers stay as sent (integer or float), every enum
//! is open, and unknown fields are kept.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
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
    /// Read straight into the types, in one pass, by [`Read`]: through a `Value` first, the
    /// tree's maps and their hashing were a quarter of the enricher's CPU; through the derived
    /// `Deserialize`, `flatten` buffered every object's fields (docs/benchmarks.md). The path
    /// is tracked only when the body is refused (tracking copies every key), by a second read
    /// that also gives the errors of a body that is not UTF-8.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        // The body checked as UTF-8 once, not each of its strings (a twentieth of the
        // enricher's instructions per record, callgrind).
        let fast = std::str::from_utf8(body)
            .ok()
            .and_then(|text| serde_json::from_str::<Read<Self>>(text).ok());
        match fast {
            Some(Read(analysis)) => Ok(analysis),
            None => Self::parse_tracked::<Read<Self>>(body).map(|Read(analysis)| analysis),
        }
    }

    /// Parses `body` as `T` (this type, read by [`Read`] or by its derived `Deserialize`)
    /// with the path of the first refused field tracked.
    fn parse_tracked<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ParseError> {
        let mut reader = serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, T>(&mut reader) {
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

/// `T` read by a hand-written reader: the same result and the same first error as `T`'s
/// derived `Deserialize` (a property test holds the two together), without `flatten`, which
/// buffers every field of an object before reading the documented ones and copies the others
/// again. The derived one stays for readers of enriched records and for that test.
struct Read<T>(T);

impl<'de, T> Deserialize<'de> for Read<Vec<T>>
where
    Read<T>: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T>(std::marker::PhantomData<T>);
        impl<'de, T> Visitor<'de> for Items<T>
        where
            Read<T>: Deserialize<'de>,
        {
            type Value = Read<Vec<T>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
                let mut read = Vec::with_capacity(items.size_hint().unwrap_or(0).min(4096));
                while let Some(Read(item)) = items.next_element::<Read<T>>()? {
                    read.push(item);
                }
                Ok(Read(read))
            }
        }
        deserializer.deserialize_seq(Items::<T>(std::marker::PhantomData))
    }
}

/// `impl Deserialize for Read<$type>`: each documented field (`$name`) read by its type's
/// `Deserialize`, or through [`Read`] as the type after `as`; null as absent, twice refused;
/// every other field into `extra`, in the body's order.
macro_rules! read_object {
    ($type:ident { $($field:ident: $name:literal $(as $read:ty)?),* $(,)? }) => {
        impl<'de> Deserialize<'de> for Read<$type> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Fields;
                impl<'de> Visitor<'de> for Fields {
                    type Value = Read<$type>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("struct ", stringify!($type)))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                        $(let mut $field = None;)*
                        let mut extra = Extra::new();
                        while let Some(name) = map.next_key_seed(crate::strict_json::Key)? {
                            match &*name {
                                $($name => {
                                    if $field.is_some() {
                                        return Err(de::Error::duplicate_field($name));
                                    }
                                    $field = Some(read_object!(@value map $($read)?));
                                })*
                                _ => {
                                    extra.insert(name.into_owned(), map.next_value()?);
                                }
                            }
                        }
                        Ok(Read($type { $($field: $field.flatten(),)* extra }))
                    }
                }
                deserializer.deserialize_map(Fields)
            }
        }
    };
    (@value $map:ident) => { $map.next_value()? };
    (@value $map:ident $read:ty) => {
        $map.next_value::<Option<Read<$read>>>()?.map(|Read(value)| value)
    };
}

read_object!(AnalysisResult {
    call_id: "callId",
    transcript_analysis: "transcriptAnalysis" as Vec<TranscriptItem>,
    summary: "summary",
    user_summary: "userSummary" as SpeakerSummary,
    assistant_summary: "assistantSummary" as SpeakerSummary,
    total_summary: "totalSummary" as SpeakerSummary,
    sentiment: "sentiment" as Sentiment,
    duration: "duration",
    recording_urls: "recordingUrls",
    main_topics: "mainTopics",
    loyalty_indicators: "loyaltyIndicators",
    extracted_variables: "extractedVariables",
    empathy_score: "empathyScore",
    resolution_status: "resolutionStatus",
    user_interruptions_count: "userInterruptionsCount",
    created_at: "createdAt",
    updated_at: "updatedAt",
});

read_object!(TranscriptItem {
    text: "text",
    speaker: "speaker",
    sentiment: "sentiment" as Sentiment,
    start: "start",
    end: "end",
    duration: "duration",
    wps: "wps",
});

read_object!(Sentiment {
    score: "score",
    label: "label",
    positive_keywords: "positiveKeywords",
    negative_keywords: "negativeKeywords",
});

read_object!(SpeakerSummary {
    total_speech_duration: "totalSpeechDuration",
    total_silence_duration: "totalSilenceDuration",
    total_interruption_duration: "totalInterruptionDuration",
    wps: "wps",
    sentiment: "sentiment" as Sentiment,
    key_phrases: "keyPhrases" as KeyPhrases,
});

read_object!(KeyPhrases {
    positive: "positive",
    negative: "negative",
});

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

    /// Every field name some analysis type documents, and one none does.
    const NAMES: &[&str] = &[
        "callId",
        "transcriptAnalysis",
        "summary",
        "userSummary",
        "assistantSummary",
        "totalSummary",
        "sentiment",
        "duration",
        "recordingUrls",
        "mainTopics",
        "loyaltyIndicators",
        "extractedVariables",
        "empathyScore",
        "resolutionStatus",
        "userInterruptionsCount",
        "createdAt",
        "updatedAt",
        "text",
        "speaker",
        "start",
        "end",
        "wps",
        "score",
        "label",
        "positiveKeywords",
        "negativeKeywords",
        "totalSpeechDuration",
        "totalSilenceDuration",
        "totalInterruptionDuration",
        "keyPhrases",
        "positive",
        "negative",
        "x",
    ];

    /// Values of every JSON kind, objects named from [`NAMES`], so nested documented types
    /// are read with right and wrong field types alike.
    fn value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            Just(Value::from(-0.41)),
            prop::sample::select(vec!["positive", "agent", "resolved", "caller", "", "a\"b"])
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::vec((prop::sample::select(NAMES), inner), 0..4).prop_map(
                    |members| {
                        Value::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
                    }
                ),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// The hand-written reader against the derived `Deserialize` it replaces: the same
        /// analysis, or the same first error with the same path, for bodies with fields of
        /// every kind at every level, a top-level field twice, not an object, or cut short.
        #[test]
        fn the_reader_agrees_with_the_derived_deserialize(
            members in proptest::collection::vec((proptest::sample::select(NAMES), value()), 0..8),
            top in proptest::option::weighted(0.1, value()),
            cut in proptest::option::weighted(0.1, proptest::prelude::any::<proptest::sample::Index>()),
        ) {
            let mut body = match top {
                Some(top) => top.to_string(),
                // Rendered by hand, so a name may come twice.
                None => format!("{{{}}}", members
                    .iter()
                    .map(|(name, value)| format!("{name:?}: {value}"))
                    .collect::<Vec<_>>()
                    .join(", ")),
            };
            if let Some(cut) = cut {
                body.truncate(cut.index(body.len()));
            }
            let derived = AnalysisResult::parse_tracked::<AnalysisResult>(body.as_bytes());
            proptest::prop_assert_eq!(AnalysisResult::parse(body.as_bytes()), derived, "{}", body);
        }
    }

    #[test]
    fn escaped_names_nested_and_unknown_duplicates_and_deep_nesting_are_read_as_derived() {
        let deep = format!("{{\"x\": {}1{}}}", "[".repeat(129), "]".repeat(129));
        for body in [
            r#"{"call\u0049d": "a", "callId": "b"}"#,
            r#"{"call\u0049d": "a"}"#,
            r#"{"sentiment": {"score": 1, "score": 2}}"#,
            r#"{"transcriptAnalysis": [{"sentiment": {"label": null, "label": "positive"}}]}"#,
            r#"{"x": 1, "y": 2, "x": 3}"#,
            r#"{"summary": null, "summary": "s"}"#,
            r#"{"userSummary": {"keyPhrases": {"positive": ["a"], "extra": {"b": 1}}}}"#,
            &deep,
        ] {
            let derived = AnalysisResult::parse_tracked::<AnalysisResult>(body.as_bytes());
            assert_eq!(AnalysisResult::parse(body.as_bytes()), derived, "{body}");
        }
        // Not UTF-8: refused as the derived Deserialize refuses it.
        let body = b"{\"summary\": \"\xff\"}";
        let refused = AnalysisResult::parse(body);
        assert!(
            matches!(refused, Err(ParseError::InvalidJson(_))),
            "{refused:?}"
        );
        assert_eq!(
            refused,
            AnalysisResult::parse_tracked::<AnalysisResult>(body)
        );
    }

    #[test]
    fn the_example_analysis_is_read_as_the_derived_deserialize_reads_it() {
        let body = include_bytes!("../../../tests/fixtures/voicehub/analysis-result.json");
        let read = AnalysisResult::parse(body).unwrap();
        assert_eq!(
            read,
            AnalysisResult::parse_tracked::<AnalysisResult>(body).unwrap()
        );
        assert!(
            read.transcript_analysis
                .is_some_and(|items| items.len() == 3)
        );
    }

    #[test]
    fn nulls_count_as_absent_and_an_empty_object_is_a_valid_result() {
        let parsed = AnalysisResult::parse(br#"{"summary": null}"#).unwrap();
        assert_eq!(parsed.summary, None);
        assert!(AnalysisResult::parse(b"[]").is_err());
    }
}
