//! Why the enricher dead-letters a record: its `ce_deadletterreason` header and the `reason`
//! label of `voicehub_enricher_dead_letters_total` (every value has a series from the start).

use crate::fetch::FetchError;

pub use voicehub_model::record::EnricherDeadLetterReason as DeadLetterReason;

impl From<&FetchError> for DeadLetterReason {
    /// The reason a fetch failure ends in: its own, or, for one that another attempt may
    /// cure, running out of retries.
    fn from(error: &FetchError) -> Self {
        match error {
            FetchError::Unauthorized(_) => Self::Unauthorized,
            FetchError::Disallowed(_) => Self::DisallowedUrl,
            FetchError::Redirected(_) => Self::Redirected,
            FetchError::ClientError(_) => Self::ClientError,
            FetchError::TooLarge { .. } => Self::TooLarge,
            FetchError::Invalid(_) => Self::InvalidAnalysis,
            FetchError::NotReady
            | FetchError::RateLimited(_)
            | FetchError::ServerError(_)
            | FetchError::Timeout
            | FetchError::Connect(_) => Self::RetriesExhausted,
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;

    #[test]
    fn a_final_fetch_failure_is_dead_lettered_under_its_own_reason() {
        let finals = [
            FetchError::Unauthorized(StatusCode::UNAUTHORIZED),
            FetchError::Disallowed("x".into()),
            FetchError::Redirected(StatusCode::FOUND),
            FetchError::ClientError(StatusCode::BAD_REQUEST),
            FetchError::TooLarge { limit: 1 },
            FetchError::Invalid(voicehub_model::ParseError::NotAnObject("array")),
        ];
        for error in finals {
            assert!(!error.is_retryable(), "{error}");
            assert_eq!(DeadLetterReason::from(&error).as_str(), error.reason());
        }
        assert_eq!(
            DeadLetterReason::from(&FetchError::Timeout),
            DeadLetterReason::RetriesExhausted
        );
    }
}
