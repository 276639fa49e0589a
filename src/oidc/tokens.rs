//! What codes and tokens say, and how they are made.
//!
//! A [`Grant`] is everything an authorization code or refresh token stands for: who,
//! which client, which scopes, when and how the key was touched. The flow stores a
//! [`CodeRecord`] (grant + redirect URI + PKCE challenge) under the SHA-256 of a fresh
//! [`OpaqueToken`]; at the token endpoint [`CodeRecord::redeem`] checks the client,
//! redirect URI and PKCE verifier, and [`issue`] signs the ID token and the RFC 9068 JWT
//! access token and makes a refresh token when `offline_access` was granted.
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
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use super::assurance::Assurance;
use super::authorize::AuthorizationRequest;
use super::jwt::{self, VerifiedJwt};
use super::keys::{Algorithm, KeySet};
use super::scope::{self, Scopes};
use super::{pkce, OidcError};

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
}

impl CodeRecord {
    /// The record for a code issued for `request` at `now`.
    pub fn new(
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

fn random_b64(n: usize) -> Result<String, OidcError> {
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

/// One claim with a name chosen at run time, flattened into a claims object.
struct NamedClaim<'a>(&'a str, &'a str);

impl Serialize for NamedClaim<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0, self.1)?;
        m.end()
    }
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    acr: &'a str,
    amr: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    c_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(flatten)]
    workspace: Option<NamedClaim<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_aaguid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_fips: Option<bool>,
}

#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    scope: String,
    exp: i64,
    iat: i64,
    jti: &'a str,
    auth_time: i64,
    acr: &'a str,
    #[serde(flatten)]
    workspace: Option<NamedClaim<'a>>,
}

/// Which grant tokens are issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// `authorization_code`: the ID token carries the request's `nonce`.
    AuthorizationCode,
    /// `refresh_token`: a new ID token without `nonce` (OpenID Connect Core §12.2); the
    /// refresh token is rotated.
    RefreshToken,
}

/// Extra inputs for an ID token.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdTokenBinding<'a> {
    /// The access token issued with it (gives `at_hash`).
    pub access_token: Option<&'a str>,
    /// The code issued with it in a hybrid response (gives `c_hash`).
    pub code: Option<&'a str>,
    /// Omit `nonce` (refresh).
    pub without_nonce: bool,
}

/// Signs an ID token for `grant` with the active key of the grant's algorithm.
pub fn id_token(
    settings: &TokenSettings,
    keys: &KeySet,
    grant: &Grant,
    binding: IdTokenBinding<'_>,
    now: OffsetDateTime,
) -> Result<String, OidcError> {
    let key = keys.active(grant.id_token_alg).ok_or_else(|| {
        OidcError::ServerError(format!("no active {} signing key", grant.id_token_alg))
    })?;
    let s = &grant.scopes;
    let profile = s.contains(scope::PROFILE);
    let email = s.contains(scope::EMAIL);
    let evidence = if s.contains(scope::KEY_EVIDENCE) {
        grant.key.as_ref()
    } else {
        None
    };
    let iat = now.unix_timestamp();
    let claims = IdTokenClaims {
        iss: &settings.issuer,
        sub: &grant.subject,
        aud: &grant.client_id,
        exp: iat + settings.id_token_ttl.whole_seconds(),
        iat,
        auth_time: grant.auth_time,
        nonce: if binding.without_nonce {
            None
        } else {
            grant.nonce.as_deref()
        },
        acr: &grant.assurance.acr,
        amr: &grant.assurance.amr,
        at_hash: binding.access_token.map(half_hash),
        c_hash: binding.code.map(half_hash),
        sid: grant.sid.as_deref(),
        name: grant.user.name.as_deref().filter(|_| profile),
        email: grant.user.email.as_deref().filter(|_| email),
        email_verified: (email && grant.user.email.is_some()).then_some(grant.user.email_verified),
        workspace: grant
            .workspace_id
            .as_deref()
            .map(|w| NamedClaim(&settings.workspace_claim, w)),
        key_aaguid: evidence.map(|k| k.aaguid.as_str()),
        key_model: evidence.and_then(|k| k.model.as_deref()),
        key_fips: evidence.map(|k| k.fips),
    };
    Ok(jwt::sign(key.as_ref(), jwt::TYP_JWT, &claims)?)
}

/// A signed access token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The JWT; give it to the client, never log it.
    pub token: String,
    /// Its `jti`, for revocation lists and the audit log.
    pub jti: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Signs an RFC 9068 access token (`typ: at+jwt`) for `grant` with the active ES256 key.
/// Its audience is the issuer itself (userinfo, introspection).
pub fn access_token(
    settings: &TokenSettings,
    keys: &KeySet,
    grant: &Grant,
    now: OffsetDateTime,
) -> Result<AccessToken, OidcError> {
    let key = keys
        .active(Algorithm::Es256)
        .or_else(|| keys.active(grant.id_token_alg))
        .ok_or_else(|| OidcError::ServerError("no active signing key".into()))?;
    let jti = random_b64(16)?;
    let iat = now.unix_timestamp();
    let exp = iat + settings.access_token_ttl.whole_seconds();
    let claims = AccessTokenClaims {
        iss: &settings.issuer,
        sub: &grant.subject,
        aud: &settings.issuer,
        client_id: &grant.client_id,
        scope: grant.scopes.to_string(),
        exp,
        iat,
        jti: &jti,
        auth_time: grant.auth_time,
        acr: &grant.assurance.acr,
        workspace: grant
            .workspace_id
            .as_deref()
            .map(|w| NamedClaim(&settings.workspace_claim, w)),
    };
    let token = jwt::sign(key.as_ref(), jwt::TYP_ACCESS_TOKEN, &claims)?;
    Ok(AccessToken {
        token,
        jti,
        expires_at: exp,
    })
}

/// Verifies one of our access tokens (`typ: at+jwt`, our issuer as audience).
pub fn verify_access_token(
    settings: &TokenSettings,
    keys: &KeySet,
    token: &str,
    now: OffsetDateTime,
) -> Result<VerifiedJwt, OidcError> {
    let v = jwt::Validation::new(
        &settings.issuer,
        jwt::Audience::Exactly(&settings.issuer),
        now,
    )
    .with_typ(jwt::TYP_ACCESS_TOKEN);
    Ok(jwt::verify(token, keys, &v)?)
}

/// The tokens of one successful token request.
#[derive(Clone, Debug)]
pub struct IssuedTokens {
    pub access_token: AccessToken,
    pub id_token: String,
    /// With `offline_access`: store its digest with the grant (rotation: the old one is
    /// revoked, and a reused old one revokes the family).
    pub refresh_token: Option<OpaqueToken>,
    pub scopes: Scopes,
    /// Seconds the access token lives.
    pub expires_in: i64,
}

/// Issues the access token, the ID token (with `at_hash`) and, when `offline_access` was
/// granted, a new refresh token.
pub fn issue(
    settings: &TokenSettings,
    keys: &KeySet,
    grant: &Grant,
    exchange: Exchange,
    now: OffsetDateTime,
) -> Result<IssuedTokens, OidcError> {
    let access_token = access_token(settings, keys, grant, now)?;
    let binding = IdTokenBinding {
        access_token: Some(&access_token.token),
        code: None,
        without_nonce: exchange == Exchange::RefreshToken,
    };
    let id_token = id_token(settings, keys, grant, binding, now)?;
    let refresh_token = if grant.scopes.contains(scope::OFFLINE_ACCESS) {
        Some(OpaqueToken::refresh_token()?)
    } else {
        None
    };
    Ok(IssuedTokens {
        expires_in: settings.access_token_ttl.whole_seconds(),
        access_token,
        id_token,
        refresh_token,
        scopes: grant.scopes.clone(),
    })
}

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

/// An RFC 7662 introspection response for a token [`verify_access_token`] accepted
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
}
