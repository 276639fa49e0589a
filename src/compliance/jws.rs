//! The signed report: a compact JWS (RFC 7515), ES256, over the canonical JSON, signed
//! with the gateway's active ES256 key (the one the OIDC provider publishes in its JWKS).
//!
//! Verification is strict and needs only the public JWKS: the header may hold exactly
//! `alg`, `kid` and `typ`; `alg` must be `ES256` and `typ` [`REPORT_TYP`]; the `kid` must
//! name exactly one key of the JWKS, an EC P-256 signing key whose own `alg` (when given)
//! is ES256. Nothing is taken from the token on trust (no `jwk`, `jku`, `x5u`, `x5c`,
//! `crit`), and the signature is checked before the payload is read.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::ComplianceError;
use crate::oidc::jwt;
use crate::oidc::keys::{Algorithm, SigningKey};

/// The JWS `typ` of a compliance report.
pub const REPORT_TYP: &str = "keygate-compliance+json";
/// The JWS `typ` of an audit export's signed anchor.
pub const ANCHOR_TYP: &str = "keygate-audit-anchor+json";

/// Signs the report's canonical JSON with an ES256 key.
pub fn sign_report(key: &SigningKey, canonical_json: &[u8]) -> Result<String, ComplianceError> {
    sign_typed(key, REPORT_TYP, canonical_json)
}

/// Signs `payload` with an ES256 key as a compact JWS of type `typ`.
pub fn sign_typed(key: &SigningKey, typ: &str, payload: &[u8]) -> Result<String, ComplianceError> {
    if key.algorithm() != Algorithm::Es256 {
        return Err(ComplianceError::Render(format!(
            "keygate signs with ES256, not {}",
            key.algorithm()
        )));
    }
    jwt::sign_payload(key, typ, payload).map_err(|e| ComplianceError::Render(e.to_string()))
}

/// A JWS whose signature verified: the key that signed it and the payload bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedJws {
    pub kid: String,
    pub payload: Vec<u8>,
}

fn malformed(why: &str) -> ComplianceError {
    ComplianceError::MalformedJws(why.to_owned())
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, ComplianceError> {
    URL_SAFE_NO_PAD
        .decode(part.as_bytes())
        .map_err(|_| malformed(&format!("the {what} is not base64url")))
}

/// The P-256 public key (uncompressed point) of the JWKS entry named `kid`.
fn public_key(jwks: &[u8], kid: &str) -> Result<Vec<u8>, ComplianceError> {
    let bad = |why: String| ComplianceError::Jwks(why);
    let doc: Value =
        serde_json::from_slice(jwks).map_err(|e| bad(format!("not a JSON Web Key Set ({e})")))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"keys\" array".into()))?;
    let mut found = keys
        .iter()
        .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid));
    let Some(jwk) = found.next() else {
        return Err(ComplianceError::Signature(format!(
            "the report's signing key (kid {kid}) is not in the given JWKS"
        )));
    };
    if found.next().is_some() {
        return Err(bad(format!("more than one key has kid {kid}")));
    }
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if jwk.get("d").is_some() {
        return Err(bad(format!(
            "key {kid} holds a private part (\"d\"); publish only public keys"
        )));
    }
    if field("kty") != Some("EC") || field("crv") != Some("P-256") {
        return Err(ComplianceError::Signature(format!(
            "key {kid} is not an EC P-256 key, so it cannot verify ES256"
        )));
    }
    if jwk.get("alg").is_some() && field("alg") != Some("ES256") {
        return Err(ComplianceError::Signature(format!(
            "key {kid} is for {}, not ES256",
            field("alg").unwrap_or("another algorithm")
        )));
    }
    if jwk.get("use").is_some() && field("use") != Some("sig") {
        return Err(ComplianceError::Signature(format!(
            "key {kid} is not a signing key (use is not \"sig\")"
        )));
    }
    let coord = |name: &str| -> Result<Vec<u8>, ComplianceError> {
        let v = field(name).ok_or_else(|| bad(format!("key {kid} has no \"{name}\"")))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(v.as_bytes())
            .map_err(|_| bad(format!("key {kid}: \"{name}\" is not base64url")))?;
        if bytes.len() != 32 {
            return Err(bad(format!("key {kid}: \"{name}\" is not 32 bytes")));
        }
        Ok(bytes)
    };
    let mut point = vec![4u8];
    point.extend(coord("x")?);
    point.extend(coord("y")?);
    Ok(point)
}

/// Verifies a compact JWS report against a JWKS document (bytes of its JSON).
pub fn verify_jws(token: &str, jwks: &[u8]) -> Result<VerifiedJws, ComplianceError> {
    verify_typed(token, jwks, REPORT_TYP)
}

/// [`verify_jws`] for a JWS of type `typ`.
pub fn verify_typed(token: &str, jwks: &[u8], typ: &str) -> Result<VerifiedJws, ComplianceError> {
    let token = token.trim_end_matches(['\n', '\r', ' ']);
    if !token.is_ascii() {
        return Err(malformed("it holds non-ASCII characters"));
    }
    if token.starts_with('{') {
        return Err(malformed(
            "this is a JSON report, which is not signed; export with --format jws",
        ));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(malformed(&format!(
            "it has {} part(s), expected 3 separated by dots (truncated?)",
            parts.len()
        )));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(malformed("a part is empty (truncated?)"));
    }
    let header: Map<String, Value> = serde_json::from_slice(&b64(h, "header")?)
        .map_err(|_| malformed("the header is not a JSON object"))?;
    if let Some(extra) = header
        .keys()
        .find(|k| !matches!(k.as_str(), "alg" | "kid" | "typ"))
    {
        return Err(ComplianceError::Signature(format!(
            "the header carries \"{extra}\", which keygate never writes; refused"
        )));
    }
    match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => {}
        Some(other) => {
            return Err(ComplianceError::Signature(format!(
                "alg {:?} is not ES256",
                other.chars().take(32).collect::<String>()
            )))
        }
        None => return Err(ComplianceError::Signature("the header has no alg".into())),
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ComplianceError::Signature("the header has no kid".into()))?;
    if header.get("typ").and_then(Value::as_str) != Some(typ) {
        return Err(ComplianceError::Signature(format!(
            "typ is not {typ:?}: this was not signed as that (another kind of keygate signature, or not keygate's)"
        )));
    }
    let point = public_key(jwks, kid)?;
    let sig = b64(s, "signature")?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(signing_input.as_bytes(), &sig)
        .map_err(|_| {
            ComplianceError::Signature(format!(
                "the signature does not verify with key {kid}: the report was changed or signed by another key"
            ))
        })?;
    Ok(VerifiedJws {
        kid: kid.to_owned(),
        payload: b64(p, "payload")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::keys::KeySet;

    fn now() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap()
    }

    #[test]
    fn round_trip_and_refusals() {
        let set = KeySet::generate(&[Algorithm::Es256], now()).unwrap();
        let key = set.active(Algorithm::Es256).unwrap();
        let jwks = serde_json::to_vec(&set.jwks()).unwrap();
        let token = sign_report(key, br#"{"a":1}"#).unwrap();
        let ok = verify_jws(&format!("{token}\n"), &jwks).unwrap();
        assert_eq!(ok.payload, br#"{"a":1}"#);
        assert_eq!(ok.kid, key.kid());

        let other = KeySet::generate(&[Algorithm::Es256], now()).unwrap();
        let other_jwks = serde_json::to_vec(&other.jwks()).unwrap();
        let err = verify_jws(&token, &other_jwks).unwrap_err().to_string();
        assert!(err.contains("not in the given JWKS"), "{err}");

        let mut bytes = token.clone().into_bytes();
        let mid = token.find('.').unwrap() + 3;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let err = verify_jws(std::str::from_utf8(&bytes).unwrap(), &jwks).unwrap_err();
        assert!(
            matches!(
                err,
                ComplianceError::Signature(_) | ComplianceError::MalformedJws(_)
            ),
            "{err}"
        );

        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "..",
            "é.é.é",
            &token[..token.len() / 2],
        ] {
            assert!(verify_jws(bad, &jwks).is_err(), "{bad}");
        }
        assert!(verify_jws(&token, b"{").is_err());
        assert!(verify_jws(&token, b"{\"keys\":{}}").is_err());

        // alg none and a header with a key in it are refused.
        let parts: Vec<&str> = token.split('.').collect();
        for header in [
            r#"{"alg":"none","kid":"x","typ":"keygate-compliance+json"}"#,
            r#"{"alg":"ES256","kid":"x","typ":"keygate-compliance+json","jwk":{}}"#,
            r#"{"alg":"HS256","kid":"x","typ":"keygate-compliance+json"}"#,
        ] {
            let forged = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                parts[1],
                parts[2]
            );
            assert!(matches!(
                verify_jws(&forged, &jwks),
                Err(ComplianceError::Signature(_))
            ));
        }
    }
}
