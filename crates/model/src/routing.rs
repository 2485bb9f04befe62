//! Which topic each record goes to.

use serde::{Deserialize, Serialize};

macro_rules! define_routing {
    ($(($kind:ident, $topic:ident, $stem:literal)),* $(,)?) => {
        /// The documented event types, plus one bucket for every other type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $(#[doc = concat!("`", stringify!($kind), "`")] $kind,)*
            /// Any other `eventType`.
            Unrouted,
        }

        impl EventKind {
            /// Every kind, in a stable order.
            pub const ALL: [Self; [$(stringify!($kind)),*].len() + 1] =
                [$(Self::$kind,)* Self::Unrouted];

            /// The event type name; `unrouted` for the bucket. A closed set: safe as a metric
            /// label.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$kind => stringify!($kind),)*
                    Self::Unrouted => "unrouted",
                }
            }
        }

        /// Topic names, one per record type (`[kafka.topics]` in the configuration).
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Topics {
            $(#[doc = concat!("`", stringify!($kind), "` events.")] pub $topic: String,)*
            /// Enriched analyses (the enricher's output).
            pub analysis_enriched: String,
            /// Events of an unknown type.
            pub unrouted: String,
            /// Authenticated input that could not be processed, from either stage.
            pub dead_letter: String,
        }

        impl Default for Topics {
            fn default() -> Self {
                Self {
                    $($topic: concat!("voicehub.", $stem).into(),)*
                    analysis_enriched: "voicehub.analysis-enriched.v1".into(),
                    unrouted: "voicehub.unrouted.v1".into(),
                    dead_letter: "voicehub.dead-letter.v1".into(),
                }
            }
        }

        impl Topics {
            /// The topic for an event of this kind.
            pub fn for_kind(&self, kind: EventKind) -> &str {
                match kind {
                    $(EventKind::$kind => &self.$topic,)*
                    EventKind::Unrouted => &self.unrouted,
                }
            }

            /// Every topic with its configuration key.
            pub fn all(&self) -> [(&'static str, &str); [$(stringify!($kind)),*].len() + 3] {
                [
                    $((stringify!($topic), &self.$topic),)*
                    ("analysis_enriched", &self.analysis_enriched),
                    ("unrouted", &self.unrouted),
                    ("dead_letter", &self.dead_letter),
                ]
            }

            /// The same names with `suffix` appended: topics of their own, for a test or a run
            /// on a shared broker.
            pub fn with_suffix(&self, suffix: &str) -> Self {
                let with = |name: &String| format!("{name}{suffix}");
                Self {
                    $($topic: with(&self.$topic),)*
                    analysis_enriched: with(&self.analysis_enriched),
                    unrouted: with(&self.unrouted),
                    dead_letter: with(&self.dead_letter),
                }
            }
        }
    };
}

with_event_types!(define_routing);

impl EventKind {
    /// Classifies a plain `eventType` (exact, case-sensitive match, as documented).
    pub fn from_event_type(event_type: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == event_type)
            .unwrap_or(Self::Unrouted)
    }
}

/// A topic name Kafka would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topics.{key}: `{name}` is not a valid Kafka topic name: {detail}")]
pub struct InvalidTopic {
    /// The configuration key.
    pub key: &'static str,
    /// The configured name.
    pub name: String,
    /// What is wrong.
    pub detail: String,
}

impl Topics {
    /// Checks every name against Kafka's rules (1 to 249 of `[a-zA-Z0-9._-]`, not `.`/`..`).
    pub fn validate(&self) -> Result<(), InvalidTopic> {
        let all = self.all();
        for (key, name) in all {
            let detail = if name.is_empty() {
                Some("it is empty")
            } else if name.len() > 249 {
                Some("it is longer than 249 characters")
            } else if name == "." || name == ".." {
                Some("`.` and `..` are reserved")
            } else if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                Some("only ASCII letters, digits, `.`, `_` and `-` are allowed")
            } else {
                None
            };
            if let Some(detail) = detail {
                return Err(InvalidTopic {
                    key,
                    name: name.to_owned(),
                    detail: detail.to_owned(),
                });
            }
        }
        // Two record types on one topic would mix them (a dead-letter topic that is also the
        // enricher's input makes the enricher consume its own dead letters). Kafka also refuses
        // names that differ only in `.` versus `_` (they collide in its metric names).
        for (i, (key, name)) in all.iter().enumerate() {
            let collides = |other: &str| other.replace('.', "_") == name.replace('.', "_");
            if let Some((other, _)) = all[..i].iter().find(|(_, other)| collides(other)) {
                return Err(InvalidTopic {
                    key,
                    name: (*name).to_owned(),
                    detail: format!(
                        "it is also (or collides with, `.` and `_` being the same to Kafka) \
                         topics.{other}: every record type needs a topic of its own"
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in EventKind::ALL {
            if kind != EventKind::Unrouted {
                assert_eq!(EventKind::from_event_type(kind.as_str()), kind);
            }
        }
        assert_eq!(EventKind::from_event_type("unrouted"), EventKind::Unrouted);
        assert_eq!(
            EventKind::from_event_type("callstatuschanged"),
            EventKind::Unrouted
        );
    }

    #[test]
    fn default_topics_are_the_contracts_and_valid() {
        let topics = Topics::default();
        assert_eq!(topics.validate(), Ok(()));
        assert_eq!(
            topics.for_kind(EventKind::CallStudioJobAnalysisResultReady),
            "voicehub.call-studio-analysis-result-ready.v1"
        );
    }

    #[test]
    fn a_topic_shared_by_two_record_types_is_refused() {
        let topics = Topics {
            dead_letter: Topics::default().analysis_result_ready,
            ..Topics::default()
        };
        let err = topics.validate().unwrap_err();
        assert_eq!(err.key, "dead_letter");
        assert!(err.detail.contains("topics.analysis_result_ready"), "{err}");
        let colliding = Topics {
            unrouted: "voicehub_call-status-changed_v1".into(),
            ..Topics::default()
        };
        assert_eq!(colliding.validate().unwrap_err().key, "unrouted");
    }

    #[test]
    fn invalid_topic_names_name_their_key() {
        let topics = Topics {
            unrouted: "bad topic".into(),
            ..Topics::default()
        };
        let err = topics.validate().unwrap_err();
        assert_eq!(err.key, "unrouted");
        assert!(err.to_string().starts_with("topics.unrouted: `bad topic`"));
    }
}
