//! The identity provider's signing key (RSA-2048, SHA-256) and its self-signed certificate,
//! plus the next certificate published in metadata during a rotation.
//!
//! SAML trust is pinned by metadata, not by a PKI: the certificate only carries the public
//! key, so it is self-signed and long-lived. The key is parsed once and kept parsed.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::{X509NameBuilder, X509};
use serde::{Deserialize, Serialize};

use super::SamlError;

/// One key pair as stored (PEM text in the `settings` table).
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub key_pem: String,
    pub cert_pem: String,
    pub created_at: i64,
}

/// The stored key set: the key that signs, and the one that will sign next.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKeys {
    pub current: StoredKey,
    #[serde(default)]
    pub next: Option<StoredKey>,
}

/// A parsed signing key with its certificate.
pub struct SigningKey {
    pkey: PKey<Private>,
    cert_der: Vec<u8>,
    /// Base64 DER, as written into `ds:X509Certificate` and metadata.
    pub cert_b64: String,
    /// Hex SHA-256 of the certificate (shown to admins, compared by SPs).
    pub fingerprint: String,
}

impl SigningKey {
    pub fn from_stored(stored: &StoredKey) -> Result<Self, SamlError> {
        let pkey = PKey::private_key_from_pem(stored.key_pem.as_bytes())
            .map_err(|e| SamlError::Key(format!("signing key: {e}")))?;
        let cert = X509::from_pem(stored.cert_pem.as_bytes())
            .map_err(|e| SamlError::Key(format!("signing certificate: {e}")))?;
        let matches = cert
            .public_key()
            .map(|k| k.public_eq(&pkey))
            .unwrap_or(false);
        if !matches {
            return Err(SamlError::Key(
                "the signing certificate does not hold the signing key's public key".into(),
            ));
        }
        let cert_der = cert
            .to_der()
            .map_err(|e| SamlError::Key(format!("signing certificate: {e}")))?;
        use base64::Engine;
        Ok(SigningKey {
            pkey,
            cert_b64: base64::engine::general_purpose::STANDARD.encode(&cert_der),
            fingerprint: hex::encode(ring::digest::digest(&ring::digest::SHA256, &cert_der)),
            cert_der,
        })
    }

    /// A new RSA-2048 key and a self-signed certificate for `common_name`, valid from
    /// `now` for ten years.
    pub fn generate(common_name: &str, now: i64) -> Result<StoredKey, SamlError> {
        let err = |e: openssl::error::ErrorStack| SamlError::Key(e.to_string());
        let rsa = Rsa::generate(2048).map_err(err)?;
        let pkey = PKey::from_rsa(rsa).map_err(err)?;
        let mut name = X509NameBuilder::new().map_err(err)?;
        name.append_entry_by_text("CN", common_name).map_err(err)?;
        let name = name.build();
        let mut serial = BigNum::new().map_err(err)?;
        serial
            .rand(127, MsbOption::MAYBE_ZERO, false)
            .map_err(err)?;
        let mut b = X509::builder().map_err(err)?;
        b.set_version(2).map_err(err)?;
        let serial = serial.to_asn1_integer().map_err(err)?;
        b.set_serial_number(&serial).map_err(err)?;
        b.set_subject_name(&name).map_err(err)?;
        b.set_issuer_name(&name).map_err(err)?;
        b.set_pubkey(&pkey).map_err(err)?;
        let from = Asn1Time::from_unix(now - 300).map_err(err)?;
        let until = Asn1Time::from_unix(now + 10 * 365 * 86_400).map_err(err)?;
        b.set_not_before(&from).map_err(err)?;
        b.set_not_after(&until).map_err(err)?;
        b.sign(&pkey, MessageDigest::sha256()).map_err(err)?;
        let cert = b.build();
        let text = |v: Vec<u8>| String::from_utf8(v).map_err(|e| SamlError::Key(e.to_string()));
        Ok(StoredKey {
            key_pem: text(pkey.private_key_to_pem_pkcs8().map_err(err)?)?,
            cert_pem: text(cert.to_pem().map_err(err)?)?,
            created_at: now,
        })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `data`.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, SamlError> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey)
            .map_err(|e| SamlError::Key(e.to_string()))?;
        signer
            .sign_oneshot_to_vec(data)
            .map_err(|e| SamlError::Key(e.to_string()))
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate as PEM (for admins and for SPs configured by hand).
    pub fn cert_pem(&self) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.cert_der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }
}

/// The parsed key set.
pub struct KeyPair {
    pub current: SigningKey,
    pub next: Option<SigningKey>,
}

impl KeyPair {
    pub fn from_stored(stored: &StoredKeys) -> Result<Self, SamlError> {
        Ok(KeyPair {
            current: SigningKey::from_stored(&stored.current)?,
            next: stored
                .next
                .as_ref()
                .map(SigningKey::from_stored)
                .transpose()?,
        })
    }
}

/// A certificate an SP signs its requests with, parsed from PEM (or bare base64 DER, as
/// metadata carries it).
pub struct PeerCert {
    pub der: Vec<u8>,
    key: PKey<openssl::pkey::Public>,
}

impl PeerCert {
    pub fn parse(text: &str) -> Result<Self, SamlError> {
        let trimmed = text.trim();
        let cert = if trimmed.starts_with("-----BEGIN") {
            X509::from_pem(trimmed.as_bytes())
        } else {
            use base64::Engine;
            let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| SamlError::Malformed("the certificate is not base64".into()))?;
            X509::from_der(&der)
        }
        .map_err(|_| SamlError::Malformed("the certificate cannot be parsed".into()))?;
        let der = cert
            .to_der()
            .map_err(|_| SamlError::Malformed("the certificate cannot be encoded".into()))?;
        let key = cert
            .public_key()
            .map_err(|_| SamlError::Malformed("the certificate has no usable key".into()))?;
        Ok(PeerCert { der, key })
    }

    /// Verifies a redirect-binding signature (`SigAlg`) over the exact received bytes.
    /// Only SHA-256 and stronger are accepted.
    pub fn verify(&self, sig_alg: &str, data: &[u8], signature: &[u8]) -> bool {
        let digest = match sig_alg {
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
            | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => MessageDigest::sha256(),
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
            | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => MessageDigest::sha384(),
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
            | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512" => MessageDigest::sha512(),
            _ => return false,
        };
        let is_rsa = sig_alg.contains("#rsa-");
        if is_rsa != (self.key.id() == openssl::pkey::Id::RSA) {
            return false;
        }
        let Ok(mut verifier) = openssl::sign::Verifier::new(digest, &self.key) else {
            return false;
        };
        verifier.verify_oneshot(signature, data).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_and_signs() {
        let stored = SigningKey::generate("keygate test", 1_764_000_000).unwrap();
        let key = SigningKey::from_stored(&stored).unwrap();
        let sig = key.sign(b"hello").unwrap();
        assert_eq!(sig.len(), 256);
        let peer = PeerCert::parse(&key.cert_pem()).unwrap();
        let alg = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
        assert!(peer.verify(alg, b"hello", &sig));
        assert!(!peer.verify(alg, b"hellO", &sig));
        assert!(!peer.verify("http://www.w3.org/2000/09/xmldsig#rsa-sha1", b"hello", &sig));
        let bare = PeerCert::parse(&key.cert_b64).unwrap();
        assert_eq!(bare.der, key.cert_der());
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let a = SigningKey::generate("a", 1_764_000_000).unwrap();
        let b = SigningKey::generate("b", 1_764_000_000).unwrap();
        let mixed = StoredKey {
            key_pem: a.key_pem,
            cert_pem: b.cert_pem,
            created_at: 0,
        };
        assert!(SigningKey::from_stored(&mixed).is_err());
    }
}
