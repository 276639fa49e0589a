//! Signing ID tokens and RFC 9068 access tokens for a grant.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use super::{half_hash, random_b64, Grant, OpaqueToken, TokenSettings};
use crate::oidc::jwt::{self, VerifiedJwt};
use crate::oidc::keys::{Algorithm, KeySet};
use crate::oidc::scope::{self, Scopes};
use crate::oidc::OidcError;

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

/// A fresh `jti` for an access token: 128 random bits.
pub fn new_jti() -> Result<String, OidcError> {
    random_b64(16)
}

/// Signs an RFC 9068 access token (`typ: at+jwt`) for `grant` with the active ES256 key,
/// identified by `jti` (from [`new_jti`]). Its audience is the issuer itself (userinfo,
/// introspection).
pub fn access_token(
    settings: &TokenSettings,
    keys: &KeySet,
    grant: &Grant,
    jti: String,
    now: OffsetDateTime,
) -> Result<AccessToken, OidcError> {
    let key = keys
        .active(Algorithm::Es256)
        .or_else(|| keys.active(grant.id_token_alg))
        .ok_or_else(|| OidcError::ServerError("no active signing key".into()))?;
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

#[derive(Serialize)]
struct ClientAccessTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    scope: String,
    exp: i64,
    iat: i64,
    jti: &'a str,
    #[serde(flatten)]
    workspace: Option<NamedClaim<'a>>,
}

/// The longest a client credentials access token lives, whatever `access_token_ttl` says.
pub const CLIENT_TOKEN_MAX_TTL: i64 = 300;

/// Signs an RFC 9068 access token for a client acting for itself (the client credentials
/// grant, RFC 6749 §4.4): `sub` is the client ID, no `auth_time` or `acr`, and a short
/// life (at most [`CLIENT_TOKEN_MAX_TTL`] seconds). No ID token, no refresh token.
pub fn client_access_token(
    settings: &TokenSettings,
    keys: &KeySet,
    client_id: &str,
    scopes: &Scopes,
    workspace_id: Option<&str>,
    now: OffsetDateTime,
) -> Result<AccessToken, OidcError> {
    let key = keys
        .active(Algorithm::Es256)
        .ok_or_else(|| OidcError::ServerError("no active signing key".into()))?;
    let jti = random_b64(16)?;
    let iat = now.unix_timestamp();
    let exp = iat
        + settings
            .access_token_ttl
            .whole_seconds()
            .clamp(1, CLIENT_TOKEN_MAX_TTL);
    let claims = ClientAccessTokenClaims {
        iss: &settings.issuer,
        sub: client_id,
        aud: &settings.issuer,
        client_id,
        scope: scopes.to_string(),
        exp,
        iat,
        jti: &jti,
        workspace: workspace_id.map(|w| NamedClaim(&settings.workspace_claim, w)),
    };
    let token = jwt::sign(key.as_ref(), jwt::TYP_ACCESS_TOKEN, &claims)?;
    Ok(AccessToken {
        token,
        jti,
        expires_at: exp,
    })
}

/// The token response for the client credentials grant (RFC 6749 §4.4.3): no refresh
/// token, no ID token.
pub fn client_token_response(
    token: &AccessToken,
    scopes: &Scopes,
    now: OffsetDateTime,
) -> serde_json::Value {
    serde_json::json!({
        "access_token": token.token,
        "token_type": "Bearer",
        "expires_in": (token.expires_at - now.unix_timestamp()).max(0),
        "scope": scopes.to_string(),
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
    issue_with_jti(settings, keys, grant, exchange, new_jti()?, now)
}

/// [`issue`] with the access token's `jti` chosen beforehand, so that what names it can be
/// stored before it is signed.
pub fn issue_with_jti(
    settings: &TokenSettings,
    keys: &KeySet,
    grant: &Grant,
    exchange: Exchange,
    access_jti: String,
    now: OffsetDateTime,
) -> Result<IssuedTokens, OidcError> {
    let access_token = access_token(settings, keys, grant, access_jti, now)?;
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
