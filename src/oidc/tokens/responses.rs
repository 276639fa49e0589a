//! The token, userinfo and introspection response bodies.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{IssuedTokens, KeyEvidence, TokenSettings, UserClaims};
use crate::oidc::jwt::VerifiedJwt;
use crate::oidc::scope::{self, Scopes};

/// The token endpoint's JSON response (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
/// Serve it with `Cache-Control: no-store`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenResponse<'a> {
    pub access_token: &'a str,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<&'a str>,
    pub id_token: &'a str,
    pub scope: String,
}

impl IssuedTokens {
    /// The response body to send.
    pub fn response(&self) -> TokenResponse<'_> {
        TokenResponse {
            access_token: &self.access_token.token,
            token_type: "Bearer",
            expires_in: self.expires_in,
            refresh_token: self.refresh_token.as_ref().map(|r| r.value.as_str()),
            id_token: &self.id_token,
            scope: self.scopes.to_string(),
        }
    }
}

/// Userinfo claims (OpenID Connect Core §5.3) for a verified access token's subject and
/// scopes, by the same scope rules as ID tokens.
pub fn userinfo(
    settings: &TokenSettings,
    subject: &str,
    scopes: &Scopes,
    user: &UserClaims,
    workspace_id: Option<&str>,
    key: Option<&KeyEvidence>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sub".into(), subject.into());
    if scopes.contains(scope::PROFILE) {
        if let Some(name) = &user.name {
            m.insert("name".into(), name.as_str().into());
        }
    }
    if scopes.contains(scope::EMAIL) {
        if let Some(email) = &user.email {
            m.insert("email".into(), email.as_str().into());
            m.insert("email_verified".into(), user.email_verified.into());
        }
    }
    if let Some(w) = workspace_id {
        m.insert(settings.workspace_claim.clone(), w.into());
    }
    if let (true, Some(k)) = (scopes.contains(scope::KEY_EVIDENCE), key) {
        m.insert("key_aaguid".into(), k.aaguid.as_str().into());
        if let Some(model) = &k.model {
            m.insert("key_model".into(), model.as_str().into());
        }
        m.insert("key_fips".into(), k.fips.into());
    }
    m
}

/// An RFC 7662 introspection response for a token [`verify_access_token`](super::verify_access_token) accepted
/// (and that the caller found not revoked).
pub fn introspection(token: &VerifiedJwt) -> Value {
    let mut m = Map::new();
    m.insert("active".into(), true.into());
    m.insert("token_type".into(), "Bearer".into());
    for name in [
        "scope",
        "client_id",
        "sub",
        "exp",
        "iat",
        "nbf",
        "iss",
        "aud",
        "jti",
        "auth_time",
        "acr",
    ] {
        if let Some(v) = token.claims.get(name) {
            m.insert(name.into(), v.clone());
        }
    }
    Value::Object(m)
}

/// The RFC 7662 response for any token that is not active (unknown, expired, revoked,
/// malformed): nothing else is said.
pub fn introspection_inactive() -> Value {
    serde_json::json!({ "active": false })
}
