//! The one place where errors become HTTP.
//!
//! Policy: every [`Error`] maps to exactly one status here. Client mistakes and refusals are
//! 4xx with a stable `error` code and a human message; an unreachable database or Redis is
//! 503; only a bug is 500, and its details are logged, never sent. JSON endpoints answer with
//! `{"error", "message", "refusals"?}`; pages answer with the error page.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::error::Error;
use crate::http::views;

pub fn status_of(err: &Error) -> StatusCode {
    match err {
        Error::BadRequest { .. } | Error::Webauthn(_) => StatusCode::BAD_REQUEST,
        Error::Refused(_) | Error::Forbidden(_) | Error::Csrf { .. } => StatusCode::FORBIDDEN,
        Error::Gone { .. } => StatusCode::GONE,
        Error::Unauthenticated | Error::Reauthenticate => StatusCode::UNAUTHORIZED,
        Error::NotFound | Error::Storage(crate::storage::StorageError::NotFound) => {
            StatusCode::NOT_FOUND
        }
        Error::Conflict { .. } | Error::Storage(crate::storage::StorageError::Conflict(_)) => {
            StatusCode::CONFLICT
        }
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Storage(_) | Error::Ephemeral(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a person or client may be told. Server-side failures say no more than that.
fn public_message(err: &Error) -> String {
    match err {
        Error::Storage(_) | Error::Ephemeral(_) => {
            "keygate cannot reach its storage right now; try again shortly".into()
        }
        Error::Internal(_) => "something went wrong on our side; it has been logged".into(),
        other => other.to_string(),
    }
}

fn log(err: &Error, status: StatusCode) {
    if status.is_server_error() {
        tracing::error!(error.code = err.code(), error.detail = %err, "request failed");
    } else {
        tracing::info!(
            error.code = err.code(),
            status = status.as_u16(),
            "request refused"
        );
    }
}

/// `Retry-After` (RFC 9110 §10.2.3) for an answer to `err`: the seconds until a rate
/// limit's window ends. Every 429 carries it, whatever its shape (page, JSON, OAuth).
fn retry_after(err: &Error, res: &mut actix_web::HttpResponseBuilder) {
    if let Error::RateLimited { retry_after } = err {
        res.insert_header(("Retry-After", retry_after.to_string()));
    }
}

/// The member's id (`None`: no session) when `err` refused a request for its CSRF token.
pub fn csrf_refusal(err: &actix_web::Error) -> Option<Option<String>> {
    let inner = match err.as_error::<ApiError>() {
        Some(e) => &e.0,
        None => &err.as_error::<PageError>()?.0,
    };
    match inner {
        Error::Csrf { user } => Some(user.clone()),
        _ => None,
    }
}

/// The code of a JSON answer that refused a request body the framework could not read
/// (`malformed_json`, `malformed_form`, `malformed_path`), for the ceremony audit.
pub fn unreadable_body(err: &actix_web::Error) -> Option<&'static str> {
    match &err.as_error::<ApiError>()?.0 {
        Error::BadRequest { code, .. }
            if matches!(
                *code,
                "malformed_json" | "malformed_form" | "malformed_path"
            ) =>
        {
            Some(code)
        }
        _ => None,
    }
}

/// An error answered as a JSON problem.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(&self.0)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        log(&self.0, status);
        let mut body = serde_json::json!({
            "error": self.0.code(),
            "message": public_message(&self.0),
        });
        if let Error::Refused(refusals) = &self.0 {
            body["refusals"] = serde_json::to_value(refusals).unwrap_or_default();
        }
        let mut res = HttpResponse::build(status);
        retry_after(&self.0, &mut res);
        res.extensions_mut()
            .insert(crate::metrics::ErrorCode(self.0.code()));
        res.json(body)
    }
}

/// An error answered as an HTML page.
#[derive(Debug)]
pub struct PageError(pub Error);

impl<E: Into<Error>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        status_of(&self.0)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        log(&self.0, status);
        match self.0 {
            Error::Unauthenticated => {
                return HttpResponse::SeeOther()
                    .insert_header(("Location", "/"))
                    .finish()
            }
            Error::Reauthenticate => {
                return HttpResponse::SeeOther()
                    .insert_header(("Location", "/?reauth=1"))
                    .finish()
            }
            _ => {}
        }
        let mut page = views::render(
            status,
            &views::ErrorPage {
                nav: views::Nav::default(),
                status: status.as_u16(),
                code: self.0.code(),
                message: public_message(&self.0),
            },
        );
        if let Error::RateLimited { retry_after } = &self.0 {
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&retry_after.to_string())
            {
                page.headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, v);
            }
        }
        page.extensions_mut()
            .insert(crate::metrics::ErrorCode(self.0.code()));
        page
    }
}

/// Which `WWW-Authenticate` challenge an OAuth error carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    None,
    /// The client authenticated with HTTP Basic (RFC 6749 §5.2).
    Basic,
    /// A bearer-token resource (RFC 6750 §3).
    Bearer,
}

/// An OAuth / OpenID Connect endpoint's error, answered with the standard JSON body
/// `{"error", "error_description"}`: `invalid_client` and `invalid_token` are 401,
/// `insufficient_scope` 403, other protocol errors 400; a service failure is
/// `temporarily_unavailable` (503, or 429 when rate-limited) or `server_error` (500).
#[derive(Debug)]
pub struct OAuthError {
    pub failure: crate::service::oidc::Failure,
    pub challenge: Challenge,
}

impl OAuthError {
    pub fn new(failure: impl Into<crate::service::oidc::Failure>, challenge: Challenge) -> Self {
        OAuthError {
            failure: failure.into(),
            challenge,
        }
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            crate::service::oidc::Failure::OAuth(e) => e.fmt(f),
            crate::service::oidc::Failure::Service(e) => e.fmt(f),
        }
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        use crate::oidc::OidcError as O;
        match &self.failure {
            crate::service::oidc::Failure::OAuth(e) => match e {
                O::InvalidClient(_) | O::InvalidToken(_) => StatusCode::UNAUTHORIZED,
                O::InsufficientScope(_) => StatusCode::FORBIDDEN,
                O::ServerError(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            },
            crate::service::oidc::Failure::Service(e) => status_of(e),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (code, description) = match &self.failure {
            crate::service::oidc::Failure::OAuth(e) => {
                tracing::info!(
                    error.code = e.code(),
                    status = status.as_u16(),
                    "oauth request refused"
                );
                (e.code(), e.description().to_string())
            }
            crate::service::oidc::Failure::Service(e) => {
                log(e, status);
                let code = match status {
                    StatusCode::INTERNAL_SERVER_ERROR => "server_error",
                    _ => "temporarily_unavailable",
                };
                (code, public_message(e))
            }
        };
        let mut res = HttpResponse::build(status);
        if let crate::service::oidc::Failure::Service(e) = &self.failure {
            retry_after(e, &mut res);
        }
        res.insert_header(("Cache-Control", "no-store"))
            .insert_header(("Pragma", "no-cache"));
        let quoted: String = description
            .chars()
            .filter(|c| matches!(c, ' '..='!' | '#'..='[' | ']'..='~'))
            .collect();
        match (self.challenge, status) {
            (Challenge::Basic, StatusCode::UNAUTHORIZED) => {
                res.insert_header(("WWW-Authenticate", "Basic realm=\"keygate\""));
            }
            (Challenge::Bearer, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                res.insert_header((
                    "WWW-Authenticate",
                    format!(
                        "Bearer realm=\"keygate\", error=\"{code}\", error_description=\"{quoted}\""
                    ),
                ));
            }
            _ => {}
        }
        res.extensions_mut().insert(crate::metrics::ErrorCode(code));
        res.json(serde_json::json!({ "error": code, "error_description": description }))
    }
}
