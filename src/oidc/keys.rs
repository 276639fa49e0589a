//! Token signing keys: generation, the stored (secret) form, rotation and the public JWKS.
//!
//! A [`SigningKey`] is parsed once and kept ready to sign (ring key pairs), so issuing a
//! token costs one signature and no key parsing. ES256 (ECDSA P-256, SHA-256) is the
//! default; RS256 (RSA-2048 PKCS#1 v1.5, SHA-256) is there for clients that need it.
//! ring cannot generate RSA keys, so RS256 keys are generated with the `rsa` crate (already
//! in the build through `openidconnect`) and then loaded into ring, which signs faster.
//!
//! Every key's `kid` is its RFC 7638 JWK thumbprint, so the same key always has the same
//! ID on every replica.
//!
//! A [`KeySet`] holds one active key per algorithm and the retired keys that must still
//! verify tokens they signed: [`KeySet::rotate`] makes new active keys and keeps the old
//! ones until `now + overlap`, where `overlap` must be at least the longest token lifetime
//! ([`crate::oidc::tokens::TokenSettings::min_rotation_overlap`]). A retired key still
//! appears in [`KeySet::jwks`] until [`KeySet::prune`] removes it, but verification refuses
//! it once its `not_after` has passed.
//!
//! [`KeySet::to_stored`] gives the whole set as JSON with every private key as PKCS#8
//! (base64). **That JSON is a secret**: it goes into the database `settings` table or a
//! Kubernetes Secret, never into logs, and it comes back with [`KeySet::from_stored`].

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::rsa::PublicKeyComponents;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// The version of the stored key-set format.
pub const STORED_FORMAT_VERSION: u32 = 1;

/// Size of generated RSA keys, in bits.
pub const RSA_BITS: usize = 2048;

/// A JWS signature algorithm keygate signs with.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256 (the default).
    #[default]
    #[serde(rename = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
}

impl Algorithm {
    /// Every algorithm keygate signs with, default first.
    pub const ALL: [Algorithm; 2] = [Algorithm::Es256, Algorithm::Rs256];

    /// The JOSE name (`ES256`, `RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Rs256 => "RS256",
        }
    }

    /// Parses a JOSE name, exactly (JOSE names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "ES256" => Some(Algorithm::Es256),
            "RS256" => Some(Algorithm::Rs256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can go wrong with keys. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("key {kid}: {reason}")]
    Invalid { kid: String, reason: String },
    #[error("stored key set: {0}")]
    Malformed(String),
    #[error("no active {0} signing key")]
    NoActiveKey(Algorithm),
    #[error("signing failed")]
    Sign,
}

/// The public half of a signing key as a JSON Web Key (RFC 7517), with `use: sig`,
/// `alg` and `kid`. Never holds private parts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: Algorithm,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// A JSON Web Key Set: what `jwks_uri` serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A private signing key, parsed and ready to sign.
///
/// `Debug` shows only the `kid` and algorithm.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    created_at: OffsetDateTime,
    pair: Pair,
    /// The public key in the form ring verifies with: the uncompressed EC point, or the
    /// DER `RSAPublicKey`.
    public_key: Vec<u8>,
    jwk: PublicJwk,
    pkcs8: SecretSlice<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key for `alg`.
    pub fn generate(alg: Algorithm, created_at: OffsetDateTime) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            Algorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| KeyError::Generate("the system random source failed".into()))?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::Rs256 => generate_rsa_pkcs8()?,
        };
        SigningKey::from_pkcs8(alg, &pkcs8, created_at)
    }

    /// Loads a PKCS#8 (DER) private key for `alg`: a P-256 key for ES256, an RSA key of
    /// 2048 to 8192 bits for RS256.
    pub fn from_pkcs8(
        alg: Algorithm,
        pkcs8: &[u8],
        created_at: OffsetDateTime,
    ) -> Result<SigningKey, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            kid: "(new)".into(),
            reason,
        };
        let (pair, public_key, jwk) = match alg {
            Algorithm::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8,
                    &SystemRandom::new(),
                )
                .map_err(|e| invalid(format!("not a P-256 PKCS#8 key ({e})")))?;
                let point = pair.public_key().as_ref().to_vec();
                // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
                if point.len() != 65 || point[0] != 4 {
                    return Err(invalid("unexpected P-256 public key encoding".into()));
                }
                let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
                let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
                let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                let jwk = PublicJwk {
                    kty: "EC".into(),
                    use_: "sig".into(),
                    alg,
                    kid: sha256_b64url(thumbprint.as_bytes()),
                    crv: Some("P-256".into()),
                    x: Some(x),
                    y: Some(y),
                    n: None,
                    e: None,
                };
                (Pair::Ec(pair), point, jwk)
            }
            Algorithm::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8)
                    .map_err(|e| invalid(format!("not an RSA PKCS#8 key ({e})")))?;
                let parts = PublicKeyComponents::<Vec<u8>>::from(pair.public());
                let n = URL_SAFE_NO_PAD.encode(strip_zeros(&parts.n));
                let e = URL_SAFE_NO_PAD.encode(strip_zeros(&parts.e));
                let thumbprint = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                let jwk = PublicJwk {
                    kty: "RSA".into(),
                    use_: "sig".into(),
                    alg,
                    kid: sha256_b64url(thumbprint.as_bytes()),
                    crv: None,
                    x: None,
                    y: None,
                    n: Some(n),
                    e: Some(e),
                };
                let der = pair.public().as_ref().to_vec();
                (Pair::Rsa(pair), der, jwk)
            }
        };
        Ok(SigningKey {
            kid: jwk.kid.clone(),
            alg,
            created_at,
            pair,
            public_key,
            jwk,
            pkcs8: SecretSlice::from(pkcs8.to_vec()),
        })
    }

    /// The key ID: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with (and the only one it verifies).
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// When the key was made.
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// The public JWK.
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    /// The private key as PKCS#8 DER. A secret.
    pub fn pkcs8(&self) -> &SecretSlice<u8> {
        &self.pkcs8
    }

    /// Signs `message` (the JWS signing input): a 64-byte `r || s` for ES256, a
    /// modulus-sized PKCS#1 v1.5 signature for RS256.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
        }
    }

    /// Checks a signature made by this key over `message`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.pair {
            Pair::Ec(_) => &signature::ECDSA_P256_SHA256_FIXED,
            Pair::Rsa(_) => &signature::RSA_PKCS1_2048_8192_SHA256,
        };
        signature::UnparsedPublicKey::new(alg, &self.public_key)
            .verify(message, sig)
            .is_ok()
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

fn sha256_b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// ring's system random source, in the shape the `rsa` crate's key generation wants.
/// `RngCore::fill_bytes` cannot fail, so a failure is remembered and reported after.
struct SystemRng {
    rng: SystemRandom,
    failed: bool,
}

impl rsa::rand_core::RngCore for SystemRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.rng.fill(dest).is_err() {
            self.failed = true;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for SystemRng {}

fn generate_rsa_pkcs8() -> Result<Vec<u8>, KeyError> {
    use rsa::pkcs8::EncodePrivateKey as _;
    let mut rng = SystemRng {
        rng: SystemRandom::new(),
        failed: false,
    };
    let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    if rng.failed {
        return Err(KeyError::Generate("the system random source failed".into()));
    }
    let der = key
        .to_pkcs8_der()
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(der.as_bytes().to_vec())
}

#[derive(Clone)]
struct Entry {
    key: Arc<SigningKey>,
    /// `None` for the active key of its algorithm; otherwise the end of verification.
    not_after: Option<OffsetDateTime>,
}

/// The provider's signing keys: one active key per algorithm, plus retired keys that
/// still verify until their `not_after`. Cloning is cheap (keys are shared).
#[derive(Clone, Default)]
pub struct KeySet {
    entries: Vec<Entry>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| (&e.key.kid, e.key.alg, e.not_after)),
            )
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKeySet {
    version: u32,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    kid: String,
    alg: Algorithm,
    /// Unix seconds.
    created_at: i64,
    /// Unix seconds; absent for an active key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<i64>,
    /// Standard base64 of the PKCS#8 DER private key.
    private_key_pkcs8: String,
}

impl KeySet {
    /// A new set with one freshly generated active key per algorithm in `algorithms`.
    pub fn generate(algorithms: &[Algorithm], now: OffsetDateTime) -> Result<KeySet, KeyError> {
        let mut set = KeySet::default();
        for &alg in algorithms {
            set.ensure_algorithm(alg, now)?;
        }
        Ok(set)
    }

    /// Makes sure there is an active key for `alg`, generating one when there is none.
    /// Returns whether a key was added.
    pub fn ensure_algorithm(
        &mut self,
        alg: Algorithm,
        now: OffsetDateTime,
    ) -> Result<bool, KeyError> {
        if self.active(alg).is_some() {
            return Ok(false);
        }
        let key = SigningKey::generate(alg, now)?;
        self.insert(key, None)?;
        Ok(true)
    }

    /// Adds a key: active when `not_after` is `None`, otherwise retired until then.
    /// Refuses a second active key for an algorithm and a duplicate `kid`.
    pub fn insert(
        &mut self,
        key: SigningKey,
        not_after: Option<OffsetDateTime>,
    ) -> Result<(), KeyError> {
        if self.entries.iter().any(|e| e.key.kid == key.kid) {
            return Err(KeyError::Invalid {
                kid: key.kid.clone(),
                reason: "the key is already in the set".into(),
            });
        }
        if not_after.is_none() && self.active(key.alg).is_some() {
            return Err(KeyError::Invalid {
                kid: key.kid.clone(),
                reason: format!("there is already an active {} key", key.alg),
            });
        }
        self.entries.push(Entry {
            key: Arc::new(key),
            not_after,
        });
        self.sort();
        Ok(())
    }

    /// Active keys first (by algorithm), then retired keys, newest first.
    fn sort(&mut self) {
        self.entries.sort_by(|a, b| {
            (
                a.not_after.is_some(),
                a.key.alg,
                std::cmp::Reverse(a.key.created_at),
            )
                .cmp(&(
                    b.not_after.is_some(),
                    b.key.alg,
                    std::cmp::Reverse(b.key.created_at),
                ))
        });
    }

    /// The key that signs new tokens for `alg`.
    pub fn active(&self, alg: Algorithm) -> Option<&Arc<SigningKey>> {
        self.entries
            .iter()
            .find(|e| e.not_after.is_none() && e.key.alg == alg)
            .map(|e| &e.key)
    }

    /// The key with this `kid` if it may still verify at `now` (active, or retired with
    /// `not_after` not yet passed).
    pub fn verification_key(&self, kid: &str, now: OffsetDateTime) -> Option<&Arc<SigningKey>> {
        self.entries
            .iter()
            .find(|e| e.key.kid == kid)
            .filter(|e| e.not_after.is_none_or(|end| now <= end))
            .map(|e| &e.key)
    }

    /// Every key held, with its `not_after` (`None` = active).
    pub fn keys(&self) -> impl Iterator<Item = (&Arc<SigningKey>, Option<OffsetDateTime>)> {
        self.entries.iter().map(|e| (&e.key, e.not_after))
    }

    /// Replaces every active key with a new one of the same algorithm; each old key keeps
    /// verifying until `now + overlap` (negative overlaps count as zero). Returns the new
    /// keys' IDs.
    pub fn rotate(
        &mut self,
        now: OffsetDateTime,
        overlap: Duration,
    ) -> Result<Vec<String>, KeyError> {
        let algs: Vec<Algorithm> = self
            .entries
            .iter()
            .filter(|e| e.not_after.is_none())
            .map(|e| e.key.alg)
            .collect();
        let mut kids = Vec::new();
        for alg in algs {
            kids.push(self.rotate_algorithm(alg, now, overlap)?);
        }
        Ok(kids)
    }

    /// [`KeySet::rotate`] for one algorithm (also adds a key when there was none).
    pub fn rotate_algorithm(
        &mut self,
        alg: Algorithm,
        now: OffsetDateTime,
        overlap: Duration,
    ) -> Result<String, KeyError> {
        let new = SigningKey::generate(alg, now)?;
        let kid = new.kid.clone();
        let end = now + overlap.max(Duration::ZERO);
        for e in &mut self.entries {
            if e.not_after.is_none() && e.key.alg == alg {
                e.not_after = Some(end);
            }
        }
        self.insert(new, None)?;
        Ok(kid)
    }

    /// Drops retired keys whose `not_after` has passed; returns how many were dropped.
    pub fn prune(&mut self, now: OffsetDateTime) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|e| e.not_after.is_none_or(|end| now <= end));
        before - self.entries.len()
    }

    /// The public JWKS: every key held (active first), public parts only.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.entries.iter().map(|e| e.key.jwk.clone()).collect(),
        }
    }

    /// The stored form: JSON with every private key as base64 PKCS#8. A secret: keep it
    /// in the `settings` table or a Secret, never in logs.
    pub fn to_stored(&self) -> SecretString {
        let stored = StoredKeySet {
            version: STORED_FORMAT_VERSION,
            keys: self
                .entries
                .iter()
                .map(|e| StoredKey {
                    kid: e.key.kid.clone(),
                    alg: e.key.alg,
                    created_at: e.key.created_at.unix_timestamp(),
                    not_after: e.not_after.map(OffsetDateTime::unix_timestamp),
                    private_key_pkcs8: STANDARD.encode(e.key.pkcs8.expose_secret()),
                })
                .collect(),
        };
        // Serialising plain strings and integers cannot fail.
        SecretString::from(serde_json::to_string(&stored).unwrap_or_default())
    }

    /// Loads [`KeySet::to_stored`]'s output, parsing every key once. Each stored `kid` must
    /// match the key's thumbprint.
    pub fn from_stored(json: &str) -> Result<KeySet, KeyError> {
        let stored: StoredKeySet =
            serde_json::from_str(json).map_err(|e| KeyError::Malformed(e.to_string()))?;
        if stored.version != STORED_FORMAT_VERSION {
            return Err(KeyError::Malformed(format!(
                "format version {} is not supported (expected {STORED_FORMAT_VERSION})",
                stored.version
            )));
        }
        let time = |t: i64, kid: &str| {
            OffsetDateTime::from_unix_timestamp(t).map_err(|_| KeyError::Invalid {
                kid: kid.to_owned(),
                reason: "timestamp out of range".into(),
            })
        };
        let mut set = KeySet::default();
        for k in stored.keys {
            let der = STANDARD
                .decode(k.private_key_pkcs8.as_bytes())
                .map_err(|_| KeyError::Invalid {
                    kid: k.kid.clone(),
                    reason: "private_key_pkcs8 is not base64".into(),
                })?;
            let der = SecretSlice::from(der);
            let key =
                SigningKey::from_pkcs8(k.alg, der.expose_secret(), time(k.created_at, &k.kid)?)
                    .map_err(|e| KeyError::Invalid {
                        kid: k.kid.clone(),
                        reason: match e {
                            KeyError::Invalid { reason, .. } => reason,
                            other => other.to_string(),
                        },
                    })?;
            if key.kid != k.kid {
                return Err(KeyError::Invalid {
                    kid: k.kid,
                    reason: "the kid does not match the key's thumbprint".into(),
                });
            }
            let not_after = k.not_after.map(|t| time(t, &k.kid)).transpose()?;
            set.insert(key, not_after)?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn es256_key_signs_and_verifies_and_has_a_thumbprint_kid() {
        let key = SigningKey::generate(Algorithm::Es256, t(0)).unwrap();
        let sig = key.sign(b"message").unwrap();
        assert_eq!(sig.len(), 64);
        assert!(key.verify(b"message", &sig));
        assert!(!key.verify(b"massage", &sig));
        assert_eq!(key.kid().len(), 43);
        let jwk = key.public_jwk();
        assert_eq!((jwk.kty.as_str(), jwk.use_.as_str()), ("EC", "sig"));
    }

    #[test]
    fn rfc7638_thumbprint_of_an_rsa_key() {
        // RFC 7638 §3.1: the example key's thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let json = format!(r#"{{"e":"AQAB","kty":"RSA","n":"{n}"}}"#);
        assert_eq!(
            sha256_b64url(json.as_bytes()),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn stored_form_round_trips_and_keeps_kids() {
        let mut set = KeySet::generate(&[Algorithm::Es256], t(0)).unwrap();
        set.rotate(t(10), Duration::minutes(30)).unwrap();
        let stored = set.to_stored();
        let back = KeySet::from_stored(stored.expose_secret()).unwrap();
        let kids = |s: &KeySet| {
            s.keys()
                .map(|(k, na)| (k.kid().to_owned(), na))
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(&set), kids(&back));
    }

    #[test]
    fn malformed_stored_sets_are_errors() {
        for bad in [
            "",
            "{}",
            r#"{"version":2,"keys":[]}"#,
            r#"{"version":1,"keys":[{"kid":"x","alg":"ES256","created_at":0,"private_key_pkcs8":"!!"}]}"#,
            r#"{"version":1,"keys":[{"kid":"x","alg":"ES256","created_at":0,"private_key_pkcs8":"AAAA"}]}"#,
            r#"{"version":1,"keys":[{"kid":"x","alg":"HS256","created_at":0,"private_key_pkcs8":"AAAA"}]}"#,
        ] {
            assert!(KeySet::from_stored(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stored_kid_must_match_the_key() {
        let set = KeySet::generate(&[Algorithm::Es256], t(0)).unwrap();
        let stored = set.to_stored();
        let kid = set.active(Algorithm::Es256).unwrap().kid().to_owned();
        let edited = stored.expose_secret().replace(&kid, "someone-else");
        assert!(matches!(
            KeySet::from_stored(&edited),
            Err(KeyError::Invalid { .. })
        ));
    }

    #[test]
    fn rotation_keeps_the_old_key_until_the_overlap_ends() {
        let mut set = KeySet::generate(&[Algorithm::Es256], t(0)).unwrap();
        let old = set.active(Algorithm::Es256).unwrap().kid().to_owned();
        let new = set.rotate(t(100), Duration::seconds(600)).unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(set.active(Algorithm::Es256).unwrap().kid(), new[0]);
        assert!(set.verification_key(&old, t(700)).is_some());
        assert!(set.verification_key(&old, t(701)).is_none());
        assert_eq!(set.jwks().keys.len(), 2);
        assert_eq!(set.prune(t(701)), 1);
        assert_eq!(set.jwks().keys.len(), 1);
        assert_eq!(set.jwks().keys[0].kid, new[0]);
    }

    #[test]
    fn a_second_active_key_for_one_algorithm_is_refused() {
        let mut set = KeySet::generate(&[Algorithm::Es256], t(0)).unwrap();
        let other = SigningKey::generate(Algorithm::Es256, t(1)).unwrap();
        assert!(set.insert(other, None).is_err());
        assert!(!set.ensure_algorithm(Algorithm::Es256, t(2)).unwrap());
    }
}
