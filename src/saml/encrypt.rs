//! `saml:EncryptedAssertion` for SPs that registered an encryption certificate:
//! AES-256-GCM for the assertion (XML Encryption 1.1), the content key wrapped with
//! RSA-OAEP (`rsa-oaep-mgf1p`) for the SP's public key.

use base64::Engine;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Padding;
use openssl::symm::{encrypt_aead, Cipher};

use super::xml::Writer;
use super::{SamlError, NS_ASSERTION, NS_DSIG};

const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";
const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
const RSA_OAEP: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

/// The SP's encryption key (an RSA public key from its certificate).
pub struct RecipientKey {
    key: PKey<Public>,
}

impl RecipientKey {
    pub fn from_cert(cert_text: &str) -> Result<Self, SamlError> {
        let cert = super::keys::PeerCert::parse(cert_text)?;
        let x509 = openssl::x509::X509::from_der(&cert.der).map_err(|_| {
            SamlError::Malformed("the encryption certificate cannot be read".into())
        })?;
        let key = x509
            .public_key()
            .map_err(|_| SamlError::Malformed("the encryption certificate has no key".into()))?;
        if key.id() != openssl::pkey::Id::RSA || key.bits() < 2048 {
            return Err(SamlError::Malformed(
                "the encryption certificate must hold an RSA key of at least 2048 bits".into(),
            ));
        }
        Ok(RecipientKey { key })
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Encrypts a (signed) assertion for `to`.
pub fn encrypted_assertion(assertion: &str, to: &RecipientKey) -> Result<String, SamlError> {
    let err = |e: openssl::error::ErrorStack| SamlError::Key(format!("encryption: {e}"));
    let mut content_key = [0u8; 32];
    let mut iv = [0u8; 12];
    openssl::rand::rand_bytes(&mut content_key).map_err(err)?;
    openssl::rand::rand_bytes(&mut iv).map_err(err)?;
    let mut tag = [0u8; 16];
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        &content_key,
        Some(&iv),
        &[],
        assertion.as_bytes(),
        &mut tag,
    )
    .map_err(err)?;
    let mut data = Vec::with_capacity(iv.len() + ciphertext.len() + tag.len());
    data.extend_from_slice(&iv);
    data.extend_from_slice(&ciphertext);
    data.extend_from_slice(&tag);

    let rsa = to.key.rsa().map_err(err)?;
    let mut wrapped = vec![0u8; rsa.size() as usize];
    let n = rsa
        .public_encrypt(&content_key, &mut wrapped, Padding::PKCS1_OAEP)
        .map_err(err)?;
    wrapped.truncate(n);

    let mut w = Writer::new();
    w.open("saml:EncryptedAssertion", &[("saml", NS_ASSERTION)], &[]);
    w.open(
        "xenc:EncryptedData",
        &[("xenc", NS_XENC)],
        &[("Type", ELEMENT)],
    );
    w.leaf(
        "xenc:EncryptionMethod",
        &[],
        &[("Algorithm", AES256_GCM)],
        "",
    );
    w.open("ds:KeyInfo", &[("ds", NS_DSIG)], &[]);
    w.open("xenc:EncryptedKey", &[], &[]);
    w.open("xenc:EncryptionMethod", &[], &[("Algorithm", RSA_OAEP)]);
    w.leaf("ds:DigestMethod", &[], &[("Algorithm", SHA1)], "");
    w.close("xenc:EncryptionMethod");
    w.open("xenc:CipherData", &[], &[]);
    w.leaf("xenc:CipherValue", &[], &[], &b64(&wrapped));
    w.close("xenc:CipherData");
    w.close("xenc:EncryptedKey");
    w.close("ds:KeyInfo");
    w.open("xenc:CipherData", &[], &[]);
    w.leaf("xenc:CipherValue", &[], &[], &b64(&data));
    w.close("xenc:CipherData");
    w.close("xenc:EncryptedData");
    w.close("saml:EncryptedAssertion");
    Ok(w.finish())
}
