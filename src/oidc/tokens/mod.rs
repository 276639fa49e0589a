//! What codes and tokens say, and how they are made.
//!
//! A [`Grant`] is everything an authorization code or refresh token stands for: who,
//! which client, which scopes, when and how the key was touched. The flow stores a
//! [`CodeRecord`] (grant + redirect URI + PKCE challenge) under the SHA-256 of a fresh
//! [`OpaqueToken`]; at the token endpoint [`CodeRecord::redeem`] checks the client,
//! redirect URI and PKCE verifier, and [`issue`] signs the ID token and the RFC 9068 JWT
//! access token and makes a refresh token when `offline_access` was granted. A
//! [`RefreshRecord`] keeps a refresh token's grant and family for rotation and reuse
//! detection.
//!
//! Authorization codes and refresh tokens are opaque random secrets (256 bits); the store
//! keeps only their digest ([`digest`]).
//!
//! Claims by scope: `name` with `profile`; `email`, `email_verified` with `email`;
//! `key_aaguid`, `key_model`, `key_fips` with `keygate:key_evidence`. `auth_time`, `acr`
//! and `amr` are always in ID tokens; the workspace (SPEC C6) under the configured claim
//! name whenever the client is bound to one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::assurance::Assurance;
use super::authorize::{AuthorizationRequest, ClientView};
use super::jwt;
use super::keys::Algorithm;
use super::scope::{self, Scopes};
use super::{pkce, OidcError};

mod issue;
mod responses;

pub use issue::{
    access_token, client_access_token, client_token_response, id_token, issue, issue_with_jti,
    new_jti, verify_access_token, AccessToken, Exchange, IdTokenBinding, IssuedTokens,
    CLIENT_TOKEN_MAX_TTL,
};
pub use responses::{introspection, introspection_inactive, userinfo, TokenResponse};

/// Prefix of authorization codes (helps secret scanners and support staff).
pub const CODE_PREFIX: &str = "kgc_";
/// Prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "kgr_";

/// Claim names the configured workspace claim may not take.
const RESERVED_CLAIMS: [&str; 22] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "sid",
    "name",
    "email",
    "email_verified",
    "key_aaguid",
    "key_model",
    "key_fips",
    "client_id",
];

/// Issuer-wide token settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSettings {
    /// The issuer identifier (`iss`), exactly as in discovery.
    pub issuer: String,
    pub id_token_ttl: Duration,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub code_ttl: Duration,
    /// Claim name carrying the workspace ID (default `workspace_id`).
    pub workspace_claim: String,
}

impl TokenSettings {
    /// Defaults: ID and access tokens 10 minutes, refresh tokens 12 hours (the longest
    /// SSO session), codes 60 seconds, claim `workspace_id`.
    pub fn new(issuer: impl Into<String>) -> TokenSettings {
        TokenSettings {
            issuer: issuer.into(),
            id_token_ttl: Duration::minutes(10),
            access_token_ttl: Duration::minutes(10),
            refresh_token_ttl: Duration::hours(12),
            code_ttl: Duration::seconds(60),
            workspace_claim: "workspace_id".into(),
        }
    }

    /// Checks lifetimes are positive and the workspace claim name is usable.
    pub fn validate(&self) -> Result<(), String> {
        for (name, ttl) in [
            ("id_token_ttl", self.id_token_ttl),
            ("access_token_ttl", self.access_token_ttl),
            ("refresh_token_ttl", self.refresh_token_ttl),
            ("code_ttl", self.code_ttl),
        ] {
            if ttl <= Duration::ZERO {
                return Err(format!("{name} must be positive"));
            }
        }
        let c = self.workspace_claim.as_str();
        if c.is_empty()
            || c.len() > 64
            || !c
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err("the workspace claim name must be 1 to 64 printable characters".into());
        }
        if RESERVED_CLAIMS.contains(&c) {
            return Err(format!("the workspace claim cannot be named `{c}`"));
        }
        Ok(())
    }

    /// The shortest safe key-rotation overlap: the longest signed-token lifetime plus
    /// the verification leeway.
    pub fn min_rotation_overlap(&self) -> Duration {
        self.id_token_ttl.max(self.access_token_ttl) + jwt::DEFAULT_LEEWAY
    }
}

/// Profile claims of the user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClaims {
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
}

/// The key used at sign-in, for the `keygate:key_evidence` scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEvidence {
    pub aaguid: String,
    pub model: Option<String>,
    pub fips: bool,
}

/// Everything an authorization code or refresh token stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub client_id: String,
    /// Stable per user (keygate's user ID); never an e-mail address.
    pub subject: String,
    pub scopes: Scopes,
    /// From the authorization request; only in ID tokens of the code exchange.
    pub nonce: Option<String>,
    /// Unix seconds of the key touch.
    pub auth_time: i64,
    pub assurance: Assurance,
    /// A public session identifier for logout (never the session cookie).
    pub sid: Option<String>,
    pub workspace_id: Option<String>,
    pub id_token_alg: Algorithm,
    pub user: UserClaims,
    pub key: Option<KeyEvidence>,
}

/// What the store keeps under an authorization code's digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub grant: Grant,
    pub redirect_uri: String,
    pub code_challenge: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The client's registration when the code was issued (a code stored without it, by
    /// an earlier version, counts as issued under no workspace and no requirement).
    #[serde(default)]
    pub issued_under: Registration,
}

/// What of a client's registration an authorization code must still find at its exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The workspace the client is bound to (its keygate id).
    pub workspace_id: Option<String>,
    /// The `acr` values the client requires.
    pub required_acr: Vec<String>,
}

impl Registration {
    pub fn of(client: &ClientView) -> Registration {
        Registration {
            workspace_id: client.workspace_id.clone(),
            required_acr: client.required_acr_values.clone(),
        }
    }
}

impl CodeRecord {
    /// The record for a code issued to `client` for `request` at `now`.
    pub fn new(
        client: &ClientView,
        request: &AuthorizationRequest,
        grant: Grant,
        settings: &TokenSettings,
        now: OffsetDateTime,
    ) -> CodeRecord {
        CodeRecord {
            grant,
            redirect_uri: request.redirect_uri.as_str().to_owned(),
            code_challenge: request.code_challenge.clone(),
            expires_at: (now + settings.code_ttl).unix_timestamp(),
            issued_under: Registration::of(client),
        }
    }

    /// Whether `client`, as registered now, would still issue this code: the same
    /// workspace and required `acr` values, every granted scope still allowed (`openid`
    /// always is), the redirect URI still registered. A change that narrows a client
    /// revokes the grants it holds; this refuses the codes issued before the change
    /// (`invalid_grant`: the client starts the sign-in again).
    pub fn fits(&self, client: &ClientView) -> Result<(), OidcError> {
        let fits = client.workspace_id == self.issued_under.workspace_id
            && client.required_acr_values == self.issued_under.required_acr
            && client.redirect_uris.contains(&self.redirect_uri)
            && self
                .grant
                .scopes
                .iter()
                .all(|s| s == scope::OPENID || client.allowed_scopes.iter().any(|a| a == s));
        if fits {
            Ok(())
        } else {
            Err(OidcError::InvalidGrant(
                "the client's registration changed after the authorization code was issued".into(),
            ))
        }
    }

    /// Checks a token request against the record (RFC 6749 §4.1.3, RFC 7636 §4.6): the
    /// authenticated client is the one the code was issued to, `redirect_uri` is the same
    /// string, the code has not expired and the verifier matches. Every failure is
    /// `invalid_grant`. The caller has already taken (deleted) the record: codes are
    /// single-use whatever the outcome.
    pub fn redeem(
        self,
        client_id: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Grant, OidcError> {
        if now.unix_timestamp() > self.expires_at {
            return Err(OidcError::InvalidGrant(
                "the authorization code has expired".into(),
            ));
        }
        if !pkce::constant_time_eq(client_id.as_bytes(), self.grant.client_id.as_bytes()) {
            return Err(OidcError::InvalidGrant(
                "the authorization code was issued to another client".into(),
            ));
        }
        if redirect_uri != Some(self.redirect_uri.as_str()) {
            return Err(OidcError::InvalidGrant(
                "redirect_uri does not match the authorization request".into(),
            ));
        }
        pkce::verify_s256(code_verifier.unwrap_or(""), &self.code_challenge)?;
        Ok(self.grant)
    }
}

/// What the store keeps under a refresh token's digest.
///
/// Every refresh rotates the token: the flow deletes the presented record, stores a new
/// one in the same `family` and keeps the used digest as spent. A spent token presented
/// again means it was copied, and the flow revokes the whole family (OAuth 2.0 Security
/// BCP §4.14).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub grant: Grant,
    /// Identifies every token descended from one authorization code.
    pub family: String,
    /// Unix seconds; the end of the whole family (rotation does not extend it).
    pub expires_at: i64,
}

impl RefreshRecord {
    /// The record of the first refresh token of a grant, issued at `now`.
    pub fn first(
        grant: Grant,
        settings: &TokenSettings,
        now: OffsetDateTime,
    ) -> Result<RefreshRecord, OidcError> {
        Ok(RefreshRecord {
            grant,
            family: random_b64(16)?,
            expires_at: (now + settings.refresh_token_ttl).unix_timestamp(),
        })
    }

    /// Checks a refresh request against the record: same client, not expired, and a
    /// `scope` that only narrows the grant (RFC 6749 §6). Returns the grant to issue for
    /// and the record to store under the rotated token.
    pub fn redeem(
        self,
        client_id: &str,
        scope: Option<&Scopes>,
        now: OffsetDateTime,
    ) -> Result<(Grant, RefreshRecord), OidcError> {
        if now.unix_timestamp() > self.expires_at {
            return Err(OidcError::InvalidGrant(
                "the refresh token has expired".into(),
            ));
        }
        if !pkce::constant_time_eq(client_id.as_bytes(), self.grant.client_id.as_bytes()) {
            return Err(OidcError::InvalidGrant(
                "the refresh token was issued to another client".into(),
            ));
        }
        let mut grant = self.grant.clone();
        if let Some(scope) = scope {
            if !scope.is_subset_of(&self.grant.scopes) {
                return Err(OidcError::InvalidScope(
                    "a refresh cannot add scopes to the grant".into(),
                ));
            }
            grant.scopes = scope.clone();
        }
        Ok((grant, self))
    }
}

/// An opaque secret (authorization code or refresh token) and its digest.
#[derive(Clone, PartialEq, Eq)]
pub struct OpaqueToken {
    /// Give this to the client once; never store or log it.
    pub value: String,
    /// Hex SHA-256 of `value`: the store's key.
    pub digest: String,
}

impl std::fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpaqueToken")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl OpaqueToken {
    /// A new authorization code.
    pub fn authorization_code() -> Result<OpaqueToken, OidcError> {
        Self::with_prefix(CODE_PREFIX)
    }

    /// A new refresh token.
    pub fn refresh_token() -> Result<OpaqueToken, OidcError> {
        Self::with_prefix(REFRESH_TOKEN_PREFIX)
    }

    fn with_prefix(prefix: &str) -> Result<OpaqueToken, OidcError> {
        let value = format!("{prefix}{}", random_b64(32)?);
        let digest = digest(&value);
        Ok(OpaqueToken { value, digest })
    }
}

/// Hex SHA-256 of an opaque token, to store and look it up by.
pub fn digest(value: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        value.as_bytes(),
    ))
}

pub(crate) fn random_b64(n: usize) -> Result<String, OidcError> {
    let mut buf = [0u8; 32];
    let buf = buf
        .get_mut(..n)
        .ok_or_else(|| OidcError::ServerError("random size".into()))?;
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| OidcError::ServerError("the system random source failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// `at_hash` / `c_hash`: base64url of the left half of SHA-256 (our algorithms both use
/// SHA-256), OpenID Connect Core §3.3.2.11.
pub fn half_hash(value: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_hash_matches_oidc_example_shape() {
        // 16 bytes → 22 base64url characters.
        assert_eq!(
            half_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y").len(),
            22
        );
    }

    #[test]
    fn settings_refuse_reserved_workspace_claims() {
        let mut s = TokenSettings::new("https://id.example");
        assert!(s.validate().is_ok());
        s.workspace_claim = "sub".into();
        assert!(s.validate().is_err());
        s.workspace_claim = "org id".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn opaque_tokens_are_prefixed_random_and_stored_by_digest() {
        let a = OpaqueToken::authorization_code().unwrap();
        let b = OpaqueToken::authorization_code().unwrap();
        assert!(a.value.starts_with(CODE_PREFIX));
        assert_ne!(a.value, b.value);
        assert_eq!(a.digest, digest(&a.value));
        assert!(!format!("{a:?}").contains(&a.value));
    }

    fn grant() -> Grant {
        Grant {
            client_id: "c".into(),
            subject: "u".into(),
            scopes: Scopes::parse("openid email offline_access").unwrap(),
            nonce: None,
            auth_time: 0,
            assurance: Assurance {
                acr: "phrh".into(),
                amr: vec!["hwk".into()],
            },
            sid: None,
            workspace_id: None,
            id_token_alg: Algorithm::Es256,
            user: UserClaims::default(),
            key: None,
        }
    }

    #[test]
    fn refresh_records_keep_client_expiry_and_only_narrow_scopes() {
        let s = TokenSettings::new("https://id.example");
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let r = RefreshRecord::first(grant(), &s, t).unwrap();
        assert_eq!(r.expires_at, t.unix_timestamp() + 12 * 3600);
        let narrow = Scopes::parse("openid offline_access").unwrap();
        let (g, next) = r.clone().redeem("c", Some(&narrow), t).unwrap();
        assert_eq!(g.scopes, narrow);
        assert_eq!(
            (next.family.as_str(), next.grant.scopes.to_string().as_str()),
            (r.family.as_str(), "openid email offline_access")
        );
        let wide = Scopes::parse("openid profile").unwrap();
        assert_eq!(
            r.clone().redeem("c", Some(&wide), t).unwrap_err().code(),
            "invalid_scope"
        );
        assert_eq!(
            r.clone().redeem("d", None, t).unwrap_err().code(),
            "invalid_grant"
        );
        let late = t + Duration::hours(13);
        assert_eq!(
            r.redeem("c", None, late).unwrap_err().code(),
            "invalid_grant"
        );
    }
}
