//! The service-level error: what went wrong, in domain terms, with a stable reason code.
//!
//! Nothing here knows about HTTP. `http::errors` is the one place that turns an [`Error`]
//! into a status code, a JSON problem body or an HTML page.

use crate::attestation::Refusal;
use crate::ephemeral::EphemeralError;
use crate::storage::StorageError;
use crate::webauthn::WebauthnError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed (bad JSON, base64, missing field…).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// A WebAuthn ceremony response failed a relying-party check.
    #[error(transparent)]
    Webauthn(#[from] WebauthnError),
    /// The key is genuine enough to parse but policy refuses it.
    #[error("the key was refused: {}", first_message(.0))]
    Refused(Vec<Refusal>),
    /// A link or challenge that is unknown, used or expired.
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    #[error("sign in first")]
    Unauthenticated,
    /// A sensitive action needs a recent key touch, not just a live session.
    #[error("touch your key again to confirm it is you")]
    Reauthenticate,
    #[error("{0}")]
    Forbidden(&'static str),
    /// A form or call whose CSRF token is missing or wrong; `user` is the member whose
    /// session it came with, if any (for the audit event).
    #[error("the form was stale or not ours; reload the page and try again")]
    Csrf { user: Option<String> },
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Past a rate limit; the window it counts in ends in `retry_after` seconds (sent
    /// as `Retry-After`).
    #[error("too many attempts; try again in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("ephemeral store: {0}")]
    Ephemeral(#[from] EphemeralError),
    #[error("{0}")]
    Internal(String),
}

fn first_message(refusals: &[Refusal]) -> String {
    refusals
        .first()
        .map(|r| r.message.clone())
        .unwrap_or_else(|| "policy".into())
}

impl Error {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Error::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn gone(code: &'static str, message: impl Into<String>) -> Self {
        Error::Gone {
            code,
            message: message.into(),
        }
    }

    /// The stable, machine-readable reason code clients and tests match on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { code, .. } | Error::Gone { code, .. } => code,
            Error::Conflict { code, .. } => code,
            Error::Webauthn(e) => e.code(),
            Error::Refused(r) => r.first().map(|r| r.rule).unwrap_or("refused"),
            Error::Unauthenticated => "unauthenticated",
            Error::Reauthenticate => "reauthentication_required",
            Error::Forbidden(_) => "forbidden",
            Error::Csrf { .. } => "csrf",
            Error::NotFound => "not_found",
            Error::RateLimited { .. } => "rate_limited",
            Error::Storage(StorageError::Conflict(_)) => "conflict",
            Error::Storage(StorageError::NotFound) => "not_found",
            Error::Storage(_) | Error::Ephemeral(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
