//! Compact JWS: signing with a [`SigningKey`] and strict verification against a [`KeySet`].
//!
//! Verification takes nothing from the token on trust: the `kid` picks one of *our* keys,
//! the header's `alg` must be exactly that key's algorithm (so `none`, `HS256` with a public
//! key as secret, or RS256 against an EC key are all refused before any cryptography), the
//! signature is checked before the claims are parsed, and then `iss`, `aud`, `typ`, `exp`,
//! `nbf` and `iat` are checked with a small clock skew. Any malformed input is an error,
//! never a panic; tokens longer than [`MAX_TOKEN_LEN`] are refused unread.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use super::keys::{Algorithm, KeySet, SigningKey};

/// `typ` of ID tokens and other plain JWTs.
pub const TYP_JWT: &str = "JWT";
/// `typ` of JWT access tokens (RFC 9068 §2.1).
pub const TYP_ACCESS_TOKEN: &str = "at+jwt";
/// The longest token [`verify`] reads.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The default clock skew allowed on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::seconds(60);

/// Why a token was refused. The messages name the check, never token contents.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a compact JWS")]
    Malformed,
    #[error("the token header is not valid")]
    BadHeader,
    #[error("the token is signed with an unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("the token's key is unknown or retired")]
    UnknownKey,
    #[error("the token's algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token's claims are not a JSON object")]
    BadClaims,
    #[error("the token has the wrong type")]
    WrongType,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("signing failed: {0}")]
    Signing(String),
}

impl From<JwtError> for super::OidcError {
    fn from(e: JwtError) -> Self {
        match e {
            JwtError::Signing(m) => super::OidcError::ServerError(format!("signing failed: {m}")),
            other => super::OidcError::InvalidToken(other.to_string()),
        }
    }
}

/// The protected header keygate writes and accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub alg: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Refused when present: keygate understands no critical extensions (RFC 7515 §4.1.11).
    #[serde(default, skip_serializing)]
    crit: Option<Value>,
}

/// Signs `claims` as a compact JWS with `key`: header `{"alg", "kid", "typ"}`.
pub fn sign<C: Serialize + ?Sized>(
    key: &SigningKey,
    typ: &str,
    claims: &C,
) -> Result<String, JwtError> {
    let payload = serde_json::to_vec(claims).map_err(|e| JwtError::Signing(e.to_string()))?;
    sign_payload(key, typ, &payload)
}

/// Signs an already serialised JSON payload.
pub fn sign_payload(key: &SigningKey, typ: &str, payload: &[u8]) -> Result<String, JwtError> {
    let header = Header {
        alg: key.algorithm().as_str().to_owned(),
        kid: key.kid().to_owned(),
        typ: Some(typ.to_owned()),
        crit: None,
    };
    let header = serde_json::to_vec(&header).map_err(|e| JwtError::Signing(e.to_string()))?;
    let mut out = String::with_capacity(
        (header.len() + payload.len()) * 4 / 3 + 8 + key_signature_len(key) * 4 / 3,
    );
    URL_SAFE_NO_PAD.encode_string(&header, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    let sig = key
        .sign(out.as_bytes())
        .map_err(|e| JwtError::Signing(e.to_string()))?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    Ok(out)
}

fn key_signature_len(key: &SigningKey) -> usize {
    match key.algorithm() {
        Algorithm::Es256 => 64,
        Algorithm::Rs256 => 256,
    }
}

/// Which audience a token must name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience<'a> {
    /// `aud` (a string, or an array) must contain this value.
    Exactly(&'a str),
    /// Any audience is accepted (the caller checks it, e.g. introspection by any of our
    /// clients).
    Any,
}

/// What [`verify`] checks beyond the signature.
#[derive(Clone, Copy, Debug)]
pub struct Validation<'a> {
    /// `iss` must equal this.
    pub issuer: &'a str,
    /// Who `aud` must name.
    pub audience: Audience<'a>,
    /// The header `typ` required (compared case-insensitively, `application/` prefix
    /// optional, RFC 7515 §4.1.9), or `None` to accept any.
    pub typ: Option<&'a str>,
    /// The time to check against.
    pub now: OffsetDateTime,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

impl<'a> Validation<'a> {
    /// Checks for `issuer` and `audience` at `now`, any `typ`, [`DEFAULT_LEEWAY`].
    pub fn new(issuer: &'a str, audience: Audience<'a>, now: OffsetDateTime) -> Self {
        Validation {
            issuer,
            audience,
            typ: None,
            now,
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// Requires this header `typ`.
    pub fn with_typ(mut self, typ: &'a str) -> Self {
        self.typ = Some(typ);
        self
    }
}

/// A token whose signature and registered claims passed [`verify`].
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedJwt {
    pub header: Header,
    pub claims: Map<String, Value>,
}

impl VerifiedJwt {
    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// `sub`.
    pub fn subject(&self) -> Option<&str> {
        self.str_claim("sub")
    }

    /// `exp` in Unix seconds (always present after [`verify`]).
    pub fn expires_at(&self) -> i64 {
        self.claims.get("exp").and_then(numeric_date).unwrap_or(0)
    }

    /// The space-separated `scope` claim as a list.
    pub fn scopes(&self) -> Vec<&str> {
        self.str_claim("scope")
            .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
}

fn b64(part: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part.as_bytes())
        .map_err(|_| JwtError::Malformed)
}

/// An RFC 7519 NumericDate: integer or fractional seconds, truncated to whole seconds.
fn numeric_date(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    }
}

fn typ_matches(actual: &str, expected: &str) -> bool {
    let strip = |s: &str| {
        let lower = s.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map(str::to_owned)
            .unwrap_or(lower)
    };
    strip(actual) == strip(expected)
}

/// Splits and decodes the header without checking anything else: for callers that must
/// pick a key set or audience before verifying. Never trust what it returns.
pub fn peek_header(token: &str) -> Result<Header, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed);
    }
    let header = token.split('.').next().ok_or(JwtError::Malformed)?;
    serde_json::from_slice(&b64(header)?).map_err(|_| JwtError::BadHeader)
}

/// Verifies a compact JWS signed by one of `keys` and checks its claims.
pub fn verify(token: &str, keys: &KeySet, v: &Validation<'_>) -> Result<VerifiedJwt, JwtError> {
    if token.len() > MAX_TOKEN_LEN || !token.is_ascii() {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(JwtError::Malformed);
    }
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| JwtError::BadHeader)?;
    if header.crit.is_some() {
        return Err(JwtError::BadHeader);
    }
    let alg = Algorithm::from_name(&header.alg).ok_or(JwtError::UnsupportedAlgorithm)?;
    let key = keys
        .verification_key(&header.kid, v.now)
        .ok_or(JwtError::UnknownKey)?;
    if key.algorithm() != alg {
        return Err(JwtError::AlgorithmMismatch);
    }
    let sig = b64(s)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    if !key.verify(signing_input.as_bytes(), &sig) {
        return Err(JwtError::BadSignature);
    }

    if let Some(expected) = v.typ {
        match &header.typ {
            Some(actual) if typ_matches(actual, expected) => {}
            _ => return Err(JwtError::WrongType),
        }
    }
    let claims: Map<String, Value> =
        serde_json::from_slice(&b64(p)?).map_err(|_| JwtError::BadClaims)?;

    if claims.get("iss").and_then(Value::as_str) != Some(v.issuer) {
        return Err(JwtError::WrongIssuer);
    }
    if let Audience::Exactly(aud) = v.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(s)) => s == aud,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(aud)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    let now = v.now.unix_timestamp();
    let leeway = v.leeway.whole_seconds().max(0);
    let date = |name: &str| -> Result<Option<i64>, JwtError> {
        match claims.get(name) {
            None => Ok(None),
            Some(x) => numeric_date(x).map(Some).ok_or(JwtError::BadClaims),
        }
    };
    let exp = date("exp")?.ok_or(JwtError::BadClaims)?;
    if now > exp.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = date("nbf")? {
        if now < nbf.saturating_sub(leeway) {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iat) = date("iat")? {
        if now < iat.saturating_sub(leeway) {
            return Err(JwtError::IssuedInFuture);
        }
    }
    Ok(VerifiedJwt { header, claims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://id.example.com";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn keys() -> KeySet {
        KeySet::generate(&[Algorithm::Es256], now()).unwrap()
    }

    fn claims() -> Value {
        json!({"iss": ISS, "sub": "u1", "aud": "c1", "exp": 1_700_000_300, "iat": 1_700_000_000})
    }

    fn check<'a>() -> Validation<'a> {
        Validation::new(ISS, Audience::Exactly("c1"), now())
    }

    #[test]
    fn round_trip() {
        let keys = keys();
        let key = keys.active(Algorithm::Es256).unwrap();
        let token = sign(key.as_ref(), TYP_JWT, &claims()).unwrap();
        let v = verify(&token, &keys, &check().with_typ("JWT")).unwrap();
        assert_eq!(v.subject(), Some("u1"));
        assert_eq!(v.header.kid, key.kid());
        assert_eq!(v.expires_at(), 1_700_000_300);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let keys = keys();
        for t in [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "a.b",
            "a.b.c.d",
            "é.é.é",
            "=.=.=",
            "e30.e30.",
            "eyJhbGciOiJFUzI1NiIsImtpZCI6IngifQ.e30.AAAA",
        ] {
            assert!(verify(t, &keys, &check()).is_err(), "{t}");
        }
        assert_eq!(
            verify(&"a".repeat(MAX_TOKEN_LEN + 1), &keys, &check()),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn typ_is_compared_as_a_media_type() {
        assert!(typ_matches("application/AT+JWT", "at+jwt"));
        assert!(!typ_matches("JWT", "at+jwt"));
    }

    #[test]
    fn fractional_dates_are_accepted_and_strings_are_not() {
        assert_eq!(numeric_date(&json!(12.9)), Some(12));
        assert_eq!(numeric_date(&json!("12")), None);
        assert_eq!(numeric_date(&json!(1e300)), None);
    }
}
