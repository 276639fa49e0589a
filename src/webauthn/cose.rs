//! COSE public keys (RFC 9052/9053) as authenticators emit them: ES256 on P-256,
//! EdDSA on Ed25519 and RS256. Anything else is refused with `unsupported_algorithm`.
//!
//! A parsed key keeps the exact byte form ring wants (uncompressed point, raw Ed25519
//! key, DER `RSAPublicKey`), so verifying with a stored key does no re-encoding.

use ciborium::value::Value;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

use super::cbor;
use super::error::WebauthnError;

/// COSE algorithm ES256 (ECDSA P-256 with SHA-256).
pub const ALG_ES256: i64 = -7;
/// COSE algorithm EdDSA (here: Ed25519).
pub const ALG_EDDSA: i64 = -8;
/// COSE algorithm ES384 (ECDSA P-384 with SHA-384); attestation certificates only.
pub const ALG_ES384: i64 = -35;
/// COSE algorithm RS256 (RSASSA-PKCS1-v1_5 with SHA-256).
pub const ALG_RS256: i64 = -257;

const KTY_OKP: i128 = 1;
const KTY_EC2: i128 = 2;
const KTY_RSA: i128 = 3;
const CRV_P256: i128 = 1;
const CRV_ED25519: i128 = 6;

/// The parameters of a credential public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoseKeyParams {
    /// EC2 key on P-256 (alg ES256).
    P256 {
        /// Affine x coordinate, big-endian.
        x: [u8; 32],
        /// Affine y coordinate, big-endian.
        y: [u8; 32],
    },
    /// OKP key on Ed25519 (alg EdDSA).
    Ed25519 {
        /// The public key.
        x: [u8; 32],
    },
    /// RSA key (alg RS256).
    Rsa {
        /// Modulus, big-endian, without leading zero bytes.
        n: Vec<u8>,
        /// Public exponent, big-endian, without leading zero bytes.
        e: Vec<u8>,
    },
}

/// A credential public key, parsed and ready to verify signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoseKey {
    alg: i64,
    params: CoseKeyParams,
    /// The public key in the form ring's `UnparsedPublicKey` takes for this algorithm.
    ring_key: Vec<u8>,
}

impl CoseKey {
    /// Parses the COSE key at the start of `input` and returns it with the number of
    /// bytes it occupies (authenticator data embeds the key without a length prefix).
    pub fn from_cbor(input: &[u8]) -> Result<(CoseKey, usize), WebauthnError> {
        let (value, used) = cbor::decode_prefix(input)?;
        Ok((Self::from_value(&value)?, used))
    }

    /// Parses a COSE key that must fill `input` exactly (e.g. a stored key).
    pub fn from_cbor_exact(input: &[u8]) -> Result<CoseKey, WebauthnError> {
        let value = cbor::decode_exact(input, "COSE key")?;
        Self::from_value(&value)
    }

    fn from_value(value: &Value) -> Result<CoseKey, WebauthnError> {
        let entries = cbor::map_entries(value, "COSE key")?;
        let int_param = |label: i128, name: &str| -> Result<i128, WebauthnError> {
            let v = cbor::get_int_key(entries, label).ok_or_else(|| {
                WebauthnError::MalformedPublicKey(format!("COSE key has no {name}"))
            })?;
            cbor::as_int(v).ok_or_else(|| {
                WebauthnError::MalformedPublicKey(format!("COSE key {name} is not an integer"))
            })
        };
        let bytes_param = |label: i128, name: &str| -> Result<&[u8], WebauthnError> {
            match cbor::get_int_key(entries, label) {
                Some(Value::Bytes(b)) => Ok(b.as_slice()),
                Some(_) => Err(WebauthnError::MalformedPublicKey(format!(
                    "COSE key parameter {name} is not a byte string"
                ))),
                None => Err(WebauthnError::MalformedPublicKey(format!(
                    "COSE key has no parameter {name}"
                ))),
            }
        };
        let kty = int_param(1, "key type (1)")?;
        let alg = int_param(3, "algorithm (3)")?;
        let alg = i64::try_from(alg).map_err(|_| {
            WebauthnError::UnsupportedAlgorithm(format!("COSE algorithm {alg} is out of range"))
        })?;
        match (kty, alg) {
            (KTY_EC2, ALG_ES256) => {
                let crv = int_param(-1, "curve (-1)")?;
                if crv != CRV_P256 {
                    return Err(WebauthnError::UnsupportedAlgorithm(format!(
                        "ES256 key on COSE curve {crv}; only P-256 (1) is accepted"
                    )));
                }
                let x = fixed32(bytes_param(-2, "x (-2)")?, "EC2 x")?;
                let y = fixed32(bytes_param(-3, "y (-3)")?, "EC2 y")?;
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Ok(CoseKey {
                    alg,
                    params: CoseKeyParams::P256 { x, y },
                    ring_key: point,
                })
            }
            (KTY_OKP, ALG_EDDSA) => {
                let crv = int_param(-1, "curve (-1)")?;
                if crv != CRV_ED25519 {
                    return Err(WebauthnError::UnsupportedAlgorithm(format!(
                        "EdDSA key on COSE curve {crv}; only Ed25519 (6) is accepted"
                    )));
                }
                let x = fixed32(bytes_param(-2, "x (-2)")?, "Ed25519 x")?;
                Ok(CoseKey {
                    alg,
                    params: CoseKeyParams::Ed25519 { x },
                    ring_key: x.to_vec(),
                })
            }
            (KTY_RSA, ALG_RS256) => {
                let n = strip_leading_zeros(bytes_param(-1, "n (-1)")?);
                let e = strip_leading_zeros(bytes_param(-2, "e (-2)")?);
                if !(256..=1024).contains(&n.len()) {
                    return Err(WebauthnError::UnsupportedAlgorithm(format!(
                        "RSA modulus of {} bits; 2048 to 8192 bits are accepted",
                        n.len() * 8
                    )));
                }
                if e.is_empty() || e.len() > 4 {
                    return Err(WebauthnError::MalformedPublicKey(
                        "RSA public exponent is empty or longer than 32 bits".to_owned(),
                    ));
                }
                let ring_key = rsa_public_key_der(n, e);
                Ok(CoseKey {
                    alg,
                    params: CoseKeyParams::Rsa {
                        n: n.to_vec(),
                        e: e.to_vec(),
                    },
                    ring_key,
                })
            }
            (KTY_EC2 | KTY_OKP | KTY_RSA, _) => Err(WebauthnError::UnsupportedAlgorithm(format!(
                "COSE algorithm {alg} with key type {kty}; accepted: ES256 (-7) EC2 P-256, \
                 EdDSA (-8) OKP Ed25519, RS256 (-257) RSA"
            ))),
            _ => Err(WebauthnError::UnsupportedAlgorithm(format!(
                "COSE key type {kty}; accepted: EC2 (2), OKP (1), RSA (3)"
            ))),
        }
    }

    /// The COSE algorithm identifier (-7, -8 or -257).
    pub fn alg(&self) -> i64 {
        self.alg
    }

    /// The key parameters.
    pub fn params(&self) -> &CoseKeyParams {
        &self.params
    }

    /// The key in the byte form ring verifies with (uncompressed SEC1 point for ES256,
    /// raw key for Ed25519, DER `RSAPublicKey` for RS256).
    pub fn ring_public_key(&self) -> &[u8] {
        &self.ring_key
    }

    fn ring_algorithm(&self) -> &'static dyn VerificationAlgorithm {
        match self.params {
            CoseKeyParams::P256 { .. } => &signature::ECDSA_P256_SHA256_ASN1,
            CoseKeyParams::Ed25519 { .. } => &signature::ED25519,
            CoseKeyParams::Rsa { .. } => &signature::RSA_PKCS1_2048_8192_SHA256,
        }
    }

    /// Verifies `signature` over `message` (ES256 signatures are ASN.1 DER).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), WebauthnError> {
        UnparsedPublicKey::new(self.ring_algorithm(), &self.ring_key)
            .verify(message, signature)
            .map_err(|_| WebauthnError::BadSignature("signature by the credential key"))
    }
}

fn fixed32(bytes: &[u8], what: &str) -> Result<[u8; 32], WebauthnError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        WebauthnError::MalformedPublicKey(format!("{what} is {} bytes, expected 32", bytes.len()))
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, magnitude: &[u8]) {
        let pad = magnitude.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        push_len(out, magnitude.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(magnitude);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    integer(&mut body, n);
    integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}
