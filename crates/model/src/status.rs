//! The status vocabularies of VoiceHub events and analyses.

use crate::open_enum::open_enum;

open_enum! {
    /// Status of a call (`CallStatusChanged.status`).
    pub enum CallStatus {
        /// Waiting to be started.
        Queued => "queued",
        /// Created with a future `scheduledAt`.
        Scheduled => "scheduled",
        /// Just connected.
        Started => "started",
        /// User and agent are talking.
        InProgress => "in-progress",
        /// Ended normally.
        Completed => "completed",
        /// Failed for some reason.
        Failed => "failed",
        /// Cancelled before it ran.
        Cancelled => "cancelled",
        /// Not answered.
        Unanswered => "unanswered",
        /// The user was busy.
        Busy => "busy",
        /// Forwarded to voicemail.
        Voicemail => "voicemail",
    }
}

impl CallStatus {
    /// Whether no further status is expected for the call (inferred, not documented).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Failed
                | Self::Cancelled
                | Self::Unanswered
                | Self::Busy
                | Self::Voicemail
        )
    }
}

open_enum! {
    /// Status of a Call Studio job (`CallStudioJobStatusChanged.status`).
    pub enum JobStatus {
        /// Accepted, not analysed yet.
        Pending => "pending",
        /// Analysed.
        Completed => "completed",
        /// Could not be analysed.
        Failed => "failed",
    }
}

open_enum! {
    /// Who spoke a transcript item.
    pub enum Speaker {
        /// The caller.
        User => "user",
        /// The voice agent.
        Assistant => "assistant",
    }
}

open_enum! {
    /// Polarity of a sentiment.
    pub enum SentimentLabel {
        /// Positive.
        Positive => "positive",
        /// Neutral.
        Neutral => "neutral",
        /// Negative.
        Negative => "negative",
    }
}

open_enum! {
    /// Outcome of the call as judged by the analysis.
    pub enum ResolutionStatus {
        /// The caller's issue was resolved.
        Resolved => "resolved",
        /// Not resolved.
        Unresolved => "unresolved",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_match_case_insensitively_and_emit_lower_case() {
        assert_eq!(CallStatus::parse("Queued"), CallStatus::Queued);
        assert_eq!(CallStatus::parse("IN-PROGRESS").as_str(), "in-progress");
        assert_eq!(JobStatus::parse("Failed").to_string(), "failed");
    }

    #[test]
    fn unknown_values_are_kept_exactly() {
        let status = CallStatus::parse("Ringing");
        assert_eq!(status, CallStatus::Other("Ringing".into()));
        assert_eq!(status.as_str(), "Ringing");
        assert!(!status.is_terminal());
    }

    #[test]
    fn canceled_with_one_l_is_not_the_documented_status() {
        assert_eq!(CallStatus::parse("canceled").as_str(), "canceled");
        assert!(CallStatus::parse("CANCELLED").is_terminal());
    }
}
