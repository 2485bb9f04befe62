//! Every non-2xx answer of the webhook endpoint, with its status and JSON body.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use voicehub_model::ParseError;

/// Why a webhook was not accepted. The variant decides the status code; the body is
/// `{"error": <code>, "detail": <text>}`, the code being the `outcome` label (except for an
/// unknown source, answered as `unauthorized`).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No source of that name. Answered exactly as a wrong (or, without the header, missing)
    /// secret, so that nobody can list the configured sources; counted as `unknown_source`.
    #[error("no source of that name is configured")]
    UnknownSource {
        /// Whether the request had an `x-webhook-secret` header.
        secret_given: bool,
    },
    /// 401: no `x-webhook-secret` header.
    #[error("the x-webhook-secret header is missing")]
    MissingSecret,
    /// 401: the header matches no active secret.
    #[error("the x-webhook-secret header matches no active secret")]
    WrongSecret,
    /// 413: the body is over the limit.
    #[error("the body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// 408: the body did not arrive in time.
    #[error("the body was not received within {0:?}")]
    BodyTimeout(Duration),
    /// 400: the body could not be read (connection error, bad chunking).
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    /// 400: authenticated, but unusable; a dead letter was written.
    #[error(transparent)]
    Invalid(ParseError),
    /// 413: the record is larger than the broker accepts.
    #[error("the record exceeds the broker's size limit")]
    RecordTooLarge,
    /// 503: the broker did not acknowledge within the deadline.
    #[error("the event could not be stored in time; retry later")]
    Unavailable {
        /// `Retry-After` seconds.
        retry_after_s: u64,
    },
    /// 503: the spool is full or not draining (`spool.max_bytes`, `spool.max_age_s`).
    #[error("the local spool is full; retry later")]
    SpoolFull {
        /// `Retry-After` seconds.
        retry_after_s: u64,
    },
    /// 503: too many requests in flight, or no room for the body in `http.max_in_flight_body_bytes`.
    #[error("too many requests or body bytes in flight; retry later")]
    Overloaded {
        /// `Retry-After` seconds.
        retry_after_s: u64,
    },
    /// 500: the ingress failed on this body (a bug); a dead letter (`internal_error`) was
    /// written.
    #[error("the ingress failed on this body; it was written to the dead-letter topic")]
    Internal,
    /// 503: shutting down.
    #[error("this instance is shutting down; retry later")]
    Draining {
        /// `Retry-After` seconds.
        retry_after_s: u64,
    },
}

impl WebhookError {
    /// The `outcome` metric label; its value is also the `error` code of the body.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::UnknownSource { .. } => Outcome::UnknownSource,
            Self::MissingSecret | Self::WrongSecret => Outcome::Unauthorized,
            Self::TooLarge { .. } | Self::RecordTooLarge => Outcome::PayloadTooLarge,
            Self::BodyTimeout(_) => Outcome::RequestTimeout,
            Self::BodyRead(_) => Outcome::BadRequest,
            Self::Invalid(_) => Outcome::InvalidPayload,
            Self::Unavailable { .. } => Outcome::Unavailable,
            Self::SpoolFull { .. } => Outcome::SpoolFull,
            Self::Overloaded { .. } => Outcome::Overloaded,
            Self::Draining { .. } => Outcome::Draining,
            Self::Internal => Outcome::InternalError,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Unavailable { retry_after_s }
            | Self::SpoolFull { retry_after_s }
            | Self::Overloaded { retry_after_s }
            | Self::Draining { retry_after_s } => Some(*retry_after_s),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: String,
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnknownSource { .. } | Self::MissingSecret | Self::WrongSecret => {
                StatusCode::UNAUTHORIZED
            }
            Self::TooLarge { .. } | Self::RecordTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::BodyRead(_) | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable { .. }
            | Self::SpoolFull { .. }
            | Self::Overloaded { .. }
            | Self::Draining { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let shown = match self {
            Self::UnknownSource { secret_given: true } => &Self::WrongSecret,
            Self::UnknownSource {
                secret_given: false,
            } => &Self::MissingSecret,
            other => other,
        };
        let mut response = HttpResponse::build(shown.status_code());
        if let Some(seconds) = shown.retry_after() {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        response.json(ErrorBody {
            error: shown.outcome().as_str(),
            detail: shown.to_string(),
        })
    }
}

voicehub_model::closed_enum! {
    /// The `outcome` label of a webhook request: a 200's (`accepted`, `duplicate`, `unrouted`),
    /// or the `error` code of any other answer's body.
    pub enum Outcome {
        /// 200: produced and acknowledged (or spooled).
        Accepted => "accepted",
        /// 200: a recently accepted `eventId`.
        Duplicate => "duplicate",
        /// 200: an unknown `eventType`, produced to the unrouted topic.
        Unrouted => "unrouted",
        /// 401, as `unauthorized` (the answer does not tell an unknown source from a wrong
        /// secret; the metric does)
        UnknownSource => "unknown_source",
        /// 401
        Unauthorized => "unauthorized",
        /// 413
        PayloadTooLarge => "payload_too_large",
        /// 408
        RequestTimeout => "request_timeout",
        /// 400: the body could not be read.
        BadRequest => "bad_request",
        /// 400: dead-lettered.
        InvalidPayload => "invalid_payload",
        /// 503: no acknowledgement in time.
        Unavailable => "unavailable",
        /// 503
        SpoolFull => "spool_full",
        /// 503
        Overloaded => "overloaded",
        /// 503
        Draining => "draining",
        /// 500
        InternalError => "internal_error",
    }
}
