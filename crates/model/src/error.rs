use std::fmt;

/// Why a webhook body could not be turned into a [`crate::WebhookEvent`].
///
/// Every variant is a client error (HTTP 400 at the ingress) whose raw body goes to the
/// dead-letter topic with [`ParseError::reason`] as its reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not JSON (or not UTF-8).
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON, but not an object (nor a string holding one).
    #[error("body is JSON but not an object (found {0})")]
    NotAnObject(&'static str),
    /// A required field is absent or null.
    #[error("missing required field `{0}`")]
    MissingField(FieldPath),
    /// A field is present with the wrong type or an unusable value.
    #[error("invalid field `{path}`: {detail}")]
    InvalidField {
        /// Where in the body, e.g. `recordings[2]`.
        path: FieldPath,
        /// What is wrong with it.
        detail: String,
    },
}

impl ParseError {
    /// Every value of [`Self::reason`], for metrics to start at zero.
    pub const REASONS: [&'static str; 4] = [
        "invalid_json",
        "not_an_object",
        "missing_field",
        "invalid_field",
    ];

    /// The dead-letter reason code: stable, lower snake case, from a closed set (also used as a
    /// metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::NotAnObject(_) => "not_an_object",
            Self::MissingField(_) => "missing_field",
            Self::InvalidField { .. } => "invalid_field",
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidField {
            path: FieldPath(path.into()),
            detail: detail.into(),
        }
    }
}

/// A path into the JSON body, in the notation `a.b[3].c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub String);

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<serde_path_to_error::Error<serde_json::Error>> for ParseError {
    fn from(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        // serde reports a missing field at the path of the object that lacks it.
        if let Some(field) = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            let full = if path == "." {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
            return Self::MissingField(FieldPath(full));
        }
        Self::InvalidField {
            path: FieldPath(path),
            detail: inner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_lists_every_variants_reason() {
        let every = [
            ParseError::InvalidJson(String::new()),
            ParseError::NotAnObject("array"),
            ParseError::MissingField(FieldPath("callId".into())),
            ParseError::invalid("status", "unknown"),
        ];
        let reasons: Vec<&str> = every.iter().map(ParseError::reason).collect();
        assert_eq!(reasons, ParseError::REASONS);
    }
}
