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
//! [`KeySet`] (in `set.rs`) holds the provider's keys: one active key per algorithm, the
//! retired ones still verifying during a rotation overlap, and the stored (secret) form.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::rsa::PublicKeyComponents;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use secrecy::SecretSlice;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod set;

pub use set::{KeySet, STORED_FORMAT_VERSION};

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
}
