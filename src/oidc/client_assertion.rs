//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OpenID Connect Core
//! §9): the client signs a short-lived JWT with a private key whose public half it
//! registered (a JWKS), and sends it as `client_assertion`.
//!
//! Nothing in the assertion is trusted before its signature checks out against the
//! *registered* keys: the header's `alg` must be ES256 or RS256 and match the key's type
//! (`none`, `HS256` and the like are refused before any cryptography), `iss` and `sub`
//! must both be the client, `aud` must name the token endpoint or the issuer, `exp` is
//! required and at most [`MAX_LIFETIME_SECS`] ahead, `jti` is required. That a `jti` is
//! used once is the caller's job (the shared store), until [`VerifiedAssertion::expires_at`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature;
use serde_json::{Map, Value};

use super::keys::Algorithm;
use super::OidcError;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The furthest ahead an assertion's `exp` may be (common client libraries sign for an
/// hour); the leeway comes on top.
pub const MAX_LIFETIME_SECS: i64 = 3600;
/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: i64 = 60;
/// The longest assertion read.
const MAX_ASSERTION_LEN: usize = 8 * 1024;
/// The largest registered JWKS, and the most keys in it.
pub const MAX_JWKS_LEN: usize = 16 * 1024;
const MAX_KEYS: usize = 10;
/// The longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

/// Members of a JWK that only a private key has: a JWKS holding them is refused (the
/// client's private key does not belong here).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

#[derive(Clone, Debug, PartialEq, Eq)]
enum PublicKey {
    /// Uncompressed P-256 point (`04 || x || y`).
    Ec(Vec<u8>),
    /// RSA modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ClientKey {
    kid: Option<String>,
    key: PublicKey,
}

impl ClientKey {
    fn algorithm(&self) -> Algorithm {
        match self.key {
            PublicKey::Ec(_) => Algorithm::Es256,
            PublicKey::Rsa { .. } => Algorithm::Rs256,
        }
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.key {
            PublicKey::Ec(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            PublicKey::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
        }
    }
}

/// A client's registered public keys (its JWKS), parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientKeys {
    keys: Vec<ClientKey>,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.as_bytes()).ok()
}

impl ClientKeys {
    /// Parses a JWKS (`{"keys": [...]}`) of EC P-256 and RSA (≥ 2048 bits) public keys.
    /// The message says what is wrong, for the admin who registered it.
    pub fn parse(jwks: &str) -> Result<ClientKeys, String> {
        if jwks.len() > MAX_JWKS_LEN {
            return Err(format!("the JWKS is longer than {MAX_JWKS_LEN} bytes"));
        }
        let doc: Map<String, Value> =
            serde_json::from_str(jwks).map_err(|_| "the JWKS is not a JSON object".to_string())?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the JWKS has no `keys` array")?;
        if list.is_empty() || list.len() > MAX_KEYS {
            return Err(format!("the JWKS must hold 1 to {MAX_KEYS} keys"));
        }
        let mut keys = Vec::with_capacity(list.len());
        for (i, jwk) in list.iter().enumerate() {
            let key = Self::parse_key(jwk).map_err(|m| format!("JWKS key {}: {m}", i + 1))?;
            if key.kid.is_some() && keys.iter().any(|k: &ClientKey| k.kid == key.kid) {
                return Err(format!("JWKS key {}: its kid is used twice", i + 1));
            }
            keys.push(key);
        }
        Ok(ClientKeys { keys })
    }

    fn parse_key(jwk: &Value) -> Result<ClientKey, String> {
        let jwk = jwk.as_object().ok_or("not a JSON object")?;
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(format!(
                "it holds the private member `{m}`: register the public key only"
            ));
        }
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        if text("use").is_some_and(|u| u != "sig") {
            return Err("its `use` is not `sig`".into());
        }
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(k)) if !k.is_empty() && k.len() <= 256 => Some(k.clone()),
            Some(_) => return Err("its `kid` is not a string of 1 to 256 characters".into()),
        };
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            text(name)
                .and_then(b64)
                .ok_or_else(|| format!("`{name}` is missing or not base64url"))
        };
        let key = match text("kty") {
            Some("EC") => {
                if text("crv") != Some("P-256") {
                    return Err("only the P-256 curve is supported".into());
                }
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("`x` and `y` must be 32 bytes each".into());
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicKey::Ec(point)
            }
            Some("RSA") => {
                let (n, e) = (bytes("n")?, bytes("e")?);
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err("RSA keys must be at least 2048 bits".into());
                }
                PublicKey::Rsa { n, e }
            }
            _ => return Err("`kty` must be EC or RSA".into()),
        };
        let key = ClientKey { kid, key };
        if let Some(alg) = text("alg") {
            if Algorithm::from_name(alg) != Some(key.algorithm()) {
                return Err(format!("its `alg` must be {}", key.algorithm()));
            }
        }
        // ring checks the point when it verifies; refuse one off the curve now, with a
        // message for the admin, rather than at every sign-in.
        if matches!(&key.key, PublicKey::Ec(point) if !on_curve(point)) {
            return Err("the point is not on P-256".into());
        }
        Ok(key)
    }
}

/// Whether ring accepts the point as a P-256 public key: ring has no direct check, so an
/// ECDH agreement with a throwaway key stands in for one.
fn on_curve(point: &[u8]) -> bool {
    let rng = ring::rand::SystemRandom::new();
    let Ok(mine) =
        ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::ECDH_P256, &rng)
    else {
        return false;
    };
    let theirs = ring::agreement::UnparsedPublicKey::new(&ring::agreement::ECDH_P256, point);
    ring::agreement::agree_ephemeral(mine, &theirs, |_| ()).is_ok()
}

/// The client an assertion says it comes from (`sub`, else `iss`), read *without*
/// checking anything: only to find the keys to check it with.
pub fn claimed_client_id(assertion: &str) -> Result<String, OidcError> {
    let (_, claims, _) = split(assertion)?;
    let claims = decode_claims(claims)?;
    claims
        .get("sub")
        .or_else(|| claims.get("iss"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| refuse("the client assertion names no client (sub)"))
}

/// What a verified assertion leaves to the caller: its `jti`, to be used once, until
/// `expires_at` (unix seconds, leeway included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub expires_at: i64,
}

fn refuse(why: &str) -> OidcError {
    OidcError::InvalidClient(why.into())
}

fn split(assertion: &str) -> Result<(&str, &str, &str), OidcError> {
    let malformed = || refuse("the client assertion is not a compact JWS");
    if assertion.len() > MAX_ASSERTION_LEN || !assertion.is_ascii() {
        return Err(malformed());
    }
    let mut parts = assertion.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => {
            Ok((h, p, s))
        }
        _ => Err(malformed()),
    }
}

fn decode_claims(part: &str) -> Result<Map<String, Value>, OidcError> {
    b64(part)
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| refuse("the client assertion's claims are not a JSON object"))
}

/// An RFC 7519 NumericDate, truncated to whole seconds.
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f.floor() as i64)
    })
}

/// Verifies `assertion` as `client_id`'s, signed by one of `keys`, for one of
/// `audiences` (the token endpoint's URL, the issuer), at `now` (unix seconds).
pub fn verify(
    assertion: &str,
    keys: &ClientKeys,
    client_id: &str,
    audiences: &[&str],
    now: i64,
) -> Result<VerifiedAssertion, OidcError> {
    let (h, p, s) = split(assertion)?;
    let header: Map<String, Value> = b64(h)
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| refuse("the client assertion's header is not valid"))?;
    if header.contains_key("crit") {
        return Err(refuse(
            "the client assertion has critical header parameters",
        ));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::from_name)
        .ok_or_else(|| refuse("the client assertion must be signed with ES256 or RS256"))?;
    let kid = header.get("kid").and_then(Value::as_str);
    let mut candidates = keys
        .keys
        .iter()
        .filter(|k| k.algorithm() == alg && (kid.is_none() || k.kid.as_deref() == kid));
    let key = match (candidates.next(), candidates.next()) {
        (Some(k), None) => k,
        (Some(_), Some(_)) => {
            return Err(refuse(
                "the client assertion has no kid and the client has several keys",
            ))
        }
        (None, _) => return Err(refuse("the client assertion's key is not registered")),
    };
    let sig = b64(s).ok_or_else(|| refuse("the client assertion is not a compact JWS"))?;
    if !key.verify(&assertion.as_bytes()[..h.len() + 1 + p.len()], &sig) {
        return Err(refuse("the client assertion's signature is not valid"));
    }

    let claims = decode_claims(p)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(refuse(
            "the client assertion's iss and sub must be the client_id",
        ));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => audiences.contains(&a.as_str()),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| audiences.contains(&a)),
        _ => false,
    };
    if !aud_ok {
        return Err(refuse(
            "the client assertion's aud must be the token endpoint or the issuer",
        ));
    }
    let date = |name: &str| -> Result<Option<i64>, OidcError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => numeric_date(v)
                .map(Some)
                .ok_or_else(|| refuse("a date in the client assertion is not a number")),
        }
    };
    let exp = date("exp")?.ok_or_else(|| refuse("the client assertion has no exp"))?;
    if now > exp.saturating_add(LEEWAY_SECS) {
        return Err(refuse("the client assertion has expired"));
    }
    if exp > now.saturating_add(MAX_LIFETIME_SECS + LEEWAY_SECS) {
        return Err(refuse(
            "the client assertion's exp is more than an hour ahead",
        ));
    }
    for name in ["nbf", "iat"] {
        if date(name)?.is_some_and(|t| t > now.saturating_add(LEEWAY_SECS)) {
            return Err(refuse("the client assertion is not valid yet"));
        }
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or_else(|| refuse("the client assertion needs a jti of 1 to 256 characters"))?;
    Ok(VerifiedAssertion {
        jti: jti.to_owned(),
        expires_at: exp.saturating_add(LEEWAY_SECS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::keys::SigningKey;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const TOKEN_URL: &str = "https://id.example.com/oauth2/token";
    const ISSUER: &str = "https://id.example.com";

    fn key(alg: Algorithm) -> SigningKey {
        SigningKey::generate(alg, time::OffsetDateTime::from_unix_timestamp(NOW).unwrap()).unwrap()
    }

    fn jwks(keys: &[&SigningKey]) -> String {
        json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() }).to_string()
    }

    fn sign(key: &SigningKey, header: Value, claims: Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!("{}.{}", enc(&header), enc(&claims));
        let sig = key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn claims() -> Value {
        json!({ "iss": "rp", "sub": "rp", "aud": TOKEN_URL, "exp": NOW + 300, "iat": NOW, "jti": "j-1" })
    }

    fn check(keys: &ClientKeys, assertion: &str) -> Result<VerifiedAssertion, OidcError> {
        verify(assertion, keys, "rp", &[TOKEN_URL, ISSUER], NOW)
    }

    fn refused(r: Result<VerifiedAssertion, OidcError>, why: &str) {
        match r {
            Err(OidcError::InvalidClient(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("expected invalid_client ({why}), got {other:?}"),
        }
    }

    #[test]
    fn es256_and_rs256_assertions_verify_and_give_their_jti() {
        for alg in [Algorithm::Es256, Algorithm::Rs256] {
            let k = key(alg);
            let keys = ClientKeys::parse(&jwks(&[&k])).unwrap();
            let a = sign(&k, json!({ "alg": alg.as_str(), "kid": k.kid() }), claims());
            let v = check(&keys, &a).unwrap();
            assert_eq!(v.jti, "j-1");
            assert_eq!(v.expires_at, NOW + 300 + LEEWAY_SECS);
            assert_eq!(claimed_client_id(&a).unwrap(), "rp");
            // No kid: the one key of that algorithm; the issuer as audience, in an array.
            let mut c = claims();
            c["aud"] = json!(["other", ISSUER]);
            check(&keys, &sign(&k, json!({ "alg": alg.as_str() }), c)).unwrap();
        }
    }

    #[test]
    fn every_claim_is_checked() {
        let k = key(Algorithm::Es256);
        let keys = ClientKeys::parse(&jwks(&[&k])).unwrap();
        // (claim, its value — `None` removes it —, what the refusal says)
        let cases: [(&str, Option<Value>, &str); 12] = [
            ("iss", Some(json!("other")), "iss and sub"),
            ("sub", Some(json!("other")), "iss and sub"),
            ("aud", Some(json!("https://elsewhere/token")), "aud"),
            ("aud", None, "aud"),
            ("exp", Some(json!(NOW - LEEWAY_SECS - 1)), "expired"),
            ("exp", None, "no exp"),
            ("exp", Some(json!(NOW + 2 * 3600)), "more than an hour"),
            ("exp", Some(json!("soon")), "not a number"),
            ("nbf", Some(json!(NOW + 600)), "not valid yet"),
            ("iat", Some(json!(NOW + 600)), "not valid yet"),
            ("jti", None, "jti"),
            ("jti", Some(json!("")), "jti"),
        ];
        let with = |name: &str, value: Option<Value>| {
            let mut c = claims();
            match value {
                Some(v) => c[name] = v,
                None => {
                    c.as_object_mut().unwrap().remove(name);
                }
            }
            sign(&k, json!({ "alg": "ES256", "kid": k.kid() }), c)
        };
        for (name, value, why) in cases {
            refused(check(&keys, &with(name, value)), why);
        }
        // Within the leeway: accepted.
        check(&keys, &with("exp", Some(json!(NOW - 30)))).unwrap();
    }

    #[test]
    fn only_the_registered_key_with_its_own_algorithm_is_accepted() {
        let (k, other) = (key(Algorithm::Es256), key(Algorithm::Es256));
        let keys = ClientKeys::parse(&jwks(&[&k])).unwrap();
        refused(
            check(
                &keys,
                &sign(&other, json!({ "alg": "ES256", "kid": k.kid() }), claims()),
            ),
            "signature",
        );
        refused(
            check(
                &keys,
                &sign(
                    &other,
                    json!({ "alg": "ES256", "kid": other.kid() }),
                    claims(),
                ),
            ),
            "not registered",
        );
        let rsa = key(Algorithm::Rs256);
        refused(
            check(
                &keys,
                &sign(&rsa, json!({ "alg": "RS256", "kid": k.kid() }), claims()),
            ),
            "not registered",
        );
        // alg none, HS256 with the public key as its secret, a critical header.
        let good = sign(&k, json!({ "alg": "ES256", "kid": k.kid() }), claims());
        let (_, rest) = good.split_once('.').unwrap();
        for header in [
            json!({ "alg": "none", "kid": k.kid() }),
            json!({ "alg": "HS256", "kid": k.kid() }),
        ] {
            let forged = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()));
            refused(check(&keys, &forged), "ES256 or RS256");
        }
        refused(
            check(
                &keys,
                &sign(&k, json!({ "alg": "ES256", "crit": ["x"] }), claims()),
            ),
            "critical",
        );
        // Two keys and no kid: which one is not guessed.
        let two = ClientKeys::parse(&jwks(&[&k, &other])).unwrap();
        refused(
            check(&two, &sign(&k, json!({ "alg": "ES256" }), claims())),
            "several keys",
        );
    }

    #[test]
    fn malformed_assertions_are_invalid_client_never_a_panic() {
        let k = key(Algorithm::Es256);
        let keys = ClientKeys::parse(&jwks(&[&k])).unwrap();
        let long = "a.".repeat(MAX_ASSERTION_LEN);
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "é.b.c",
            "!!.!!.!!",
            long.as_str(),
            "eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
            "bnVsbA.bnVsbA.AAAA",
        ] {
            assert!(
                matches!(check(&keys, bad), Err(OidcError::InvalidClient(_))),
                "{bad:?}"
            );
            assert!(claimed_client_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_registered_jwks_must_hold_only_public_signing_keys() {
        let k = key(Algorithm::Es256);
        let jwk = serde_json::to_value(k.public_jwk()).unwrap();
        assert!(ClientKeys::parse(&json!({ "keys": [jwk.clone()] }).to_string()).is_ok());
        let bad = |f: &dyn Fn(&mut Value), why: &str| {
            let mut j = jwk.clone();
            f(&mut j);
            let err = ClientKeys::parse(&json!({ "keys": [j] }).to_string()).unwrap_err();
            assert!(err.contains(why), "{err}");
        };
        bad(&|j| j["d"] = json!("AAAA"), "private member `d`");
        bad(&|j| j["use"] = json!("enc"), "use");
        bad(&|j| j["crv"] = json!("P-384"), "P-256");
        bad(&|j| j["x"] = json!("AAAA"), "32 bytes");
        bad(&|j| j["alg"] = json!("RS256"), "alg");
        bad(&|j| j["kty"] = json!("oct"), "kty");
        // A point off the curve: y with its last bit flipped.
        let mut y = b64(jwk["y"].as_str().unwrap()).unwrap();
        y[31] ^= 1;
        let off_curve = URL_SAFE_NO_PAD.encode(y);
        bad(&|j| j["y"] = json!(off_curve), "not on P-256");
        for doc in ["[]", "{}", r#"{"keys": []}"#, "not json"] {
            assert!(ClientKeys::parse(doc).is_err(), "{doc}");
        }
        let short_rsa = json!({ "keys": [{ "kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB" }] });
        assert!(ClientKeys::parse(&short_rsa.to_string())
            .unwrap_err()
            .contains("2048"));
    }
}
