//! OAuth 2.0 / OpenID Connect protocol errors.
//!
//! Every variant is one standard `error` code (RFC 6749 §4.1.2.1 and §5.2, OpenID Connect
//! Core §3.1.2.6, RFC 6750 §3.1, the OpenID Connect Core errata's
//! `unmet_authentication_requirements`) and carries a human description. Descriptions are
//! written by keygate and never echo request values, so they are safe to put in a
//! redirect, a JSON body or a page.
//!
//! [`OidcError::may_redirect`] separates what may be sent back to a client's
//! `redirect_uri` from what must be shown to the user: an unknown client or an
//! unregistered redirect URI must never cause a redirect (RFC 6749 §4.1.2.1), and
//! token-endpoint errors are answered in the response body.

use serde::Serialize;

/// One OAuth or OpenID Connect error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// `invalid_request`: a parameter is missing, repeated, malformed or unsupported.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// `invalid_request`, shown to the user and never redirected: the `client_id` is
    /// missing, repeated or unknown.
    #[error("invalid_request: {0}")]
    UnknownClient(String),
    /// `invalid_request`, shown to the user and never redirected: the `redirect_uri` is
    /// missing, repeated or not registered for the client.
    #[error("invalid_request: {0}")]
    InvalidRedirectUri(String),
    /// `invalid_client`: client authentication failed (token endpoint).
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// `invalid_grant`: the code or refresh token is invalid, expired, used, or was
    /// issued to another client or redirect URI; or the PKCE verifier does not match.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// `unauthorized_client`: the client may not use this grant or response type.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// `unsupported_grant_type`.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// `unsupported_response_type`.
    #[error("unsupported_response_type: {0}")]
    UnsupportedResponseType(String),
    /// `invalid_scope`: unknown, not allowed, or missing `openid`.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// `access_denied`: the user or policy refused (e.g. not a member of the workspace).
    #[error("access_denied: {0}")]
    AccessDenied(String),
    /// `login_required`: `prompt=none` but a key touch is needed.
    #[error("login_required: {0}")]
    LoginRequired(String),
    /// `interaction_required`: `prompt=none` but the user must act.
    #[error("interaction_required: {0}")]
    InteractionRequired(String),
    /// `unmet_authentication_requirements`: an essential `acr` cannot be met.
    #[error("unmet_authentication_requirements: {0}")]
    UnmetAuthenticationRequirements(String),
    /// `request_not_supported`: a `request` object was sent.
    #[error("request_not_supported: {0}")]
    RequestNotSupported(String),
    /// `request_uri_not_supported`: a `request_uri` was sent.
    #[error("request_uri_not_supported: {0}")]
    RequestUriNotSupported(String),
    /// `invalid_token` (RFC 6750): a bearer token is malformed, expired or not ours.
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// `insufficient_scope` (RFC 6750): the token lacks a needed scope.
    #[error("insufficient_scope: {0}")]
    InsufficientScope(String),
    /// `authorization_pending` (RFC 8628 §3.5): the member has not decided yet.
    #[error("authorization_pending: {0}")]
    AuthorizationPending(String),
    /// `slow_down` (RFC 8628 §3.5): polled too fast; the interval grew by 5 seconds.
    #[error("slow_down: {0}")]
    SlowDown(String),
    /// `expired_token` (RFC 8628 §3.5): the device code expired.
    #[error("expired_token: {0}")]
    ExpiredToken(String),
    /// `server_error`: keygate could not complete a valid request (e.g. no signing key).
    #[error("server_error: {0}")]
    ServerError(String),
}

impl OidcError {
    /// The standard `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::InvalidRequest(_)
            | OidcError::UnknownClient(_)
            | OidcError::InvalidRedirectUri(_) => "invalid_request",
            OidcError::InvalidClient(_) => "invalid_client",
            OidcError::InvalidGrant(_) => "invalid_grant",
            OidcError::UnauthorizedClient(_) => "unauthorized_client",
            OidcError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OidcError::UnsupportedResponseType(_) => "unsupported_response_type",
            OidcError::InvalidScope(_) => "invalid_scope",
            OidcError::AccessDenied(_) => "access_denied",
            OidcError::LoginRequired(_) => "login_required",
            OidcError::InteractionRequired(_) => "interaction_required",
            OidcError::UnmetAuthenticationRequirements(_) => "unmet_authentication_requirements",
            OidcError::RequestNotSupported(_) => "request_not_supported",
            OidcError::RequestUriNotSupported(_) => "request_uri_not_supported",
            OidcError::InvalidToken(_) => "invalid_token",
            OidcError::InsufficientScope(_) => "insufficient_scope",
            OidcError::AuthorizationPending(_) => "authorization_pending",
            OidcError::SlowDown(_) => "slow_down",
            OidcError::ExpiredToken(_) => "expired_token",
            OidcError::ServerError(_) => "server_error",
        }
    }

    /// The human description (`error_description`).
    pub fn description(&self) -> &str {
        match self {
            OidcError::InvalidRequest(d)
            | OidcError::UnknownClient(d)
            | OidcError::InvalidRedirectUri(d)
            | OidcError::InvalidClient(d)
            | OidcError::InvalidGrant(d)
            | OidcError::UnauthorizedClient(d)
            | OidcError::UnsupportedGrantType(d)
            | OidcError::UnsupportedResponseType(d)
            | OidcError::InvalidScope(d)
            | OidcError::AccessDenied(d)
            | OidcError::LoginRequired(d)
            | OidcError::InteractionRequired(d)
            | OidcError::UnmetAuthenticationRequirements(d)
            | OidcError::RequestNotSupported(d)
            | OidcError::RequestUriNotSupported(d)
            | OidcError::AuthorizationPending(d)
            | OidcError::SlowDown(d)
            | OidcError::ExpiredToken(d)
            | OidcError::InvalidToken(d)
            | OidcError::InsufficientScope(d)
            | OidcError::ServerError(d) => d,
        }
    }

    /// Whether this error may be sent to the client's `redirect_uri`.
    ///
    /// False for an unknown client or an unregistered redirect URI (shown to the user
    /// instead, so keygate never becomes an open redirector) and for errors that only
    /// exist at the token, introspection or resource endpoints.
    pub fn may_redirect(&self) -> bool {
        !matches!(
            self,
            OidcError::UnknownClient(_)
                | OidcError::InvalidRedirectUri(_)
                | OidcError::InvalidClient(_)
                | OidcError::InvalidGrant(_)
                | OidcError::UnsupportedGrantType(_)
                | OidcError::InvalidToken(_)
                | OidcError::InsufficientScope(_)
        )
    }

    /// The JSON error body of RFC 6749 §5.2: `{"error": …, "error_description": …}`.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: self.code(),
            error_description: self.description(),
        }
    }
}

/// The JSON error body of a token, introspection or revocation response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'static str,
    pub error_description: &'a str,
}

/// Keeps only the characters RFC 6749 allows in `error_description`
/// (`%x20-21 / %x23-5B / %x5D-7E`): no quotes, backslashes or control characters.
pub(crate) fn safe_description(s: &str) -> String {
    s.chars()
        .filter(|&c| matches!(c, ' '..='!' | '#'..='[' | ']'..='~'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_client_errors_are_never_redirected() {
        assert!(!OidcError::UnknownClient("x".into()).may_redirect());
        assert!(!OidcError::InvalidRedirectUri("x".into()).may_redirect());
        assert!(OidcError::InvalidScope("x".into()).may_redirect());
        assert!(OidcError::LoginRequired("x".into()).may_redirect());
        assert_eq!(
            OidcError::InvalidRedirectUri("x".into()).code(),
            "invalid_request"
        );
    }

    #[test]
    fn body_serialises_code_and_description() {
        let e = OidcError::InvalidGrant("the code was already used".into());
        let json = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "invalid_grant", "error_description": "the code was already used"})
        );
    }

    #[test]
    fn descriptions_lose_characters_oauth_forbids() {
        assert_eq!(safe_description("a \"b\" \\c\n é"), "a b c ");
    }
}
