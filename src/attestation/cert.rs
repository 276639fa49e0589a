//! X.509 certificates reduced, once, to the facts attestation needs.
//!
//! x509-parser does the DER parsing; the result is copied into an owned
//! [`Certificate`] so trust anchors and the intermediates pool stay parsed for the life
//! of the process and per-request certificates need no second pass. Signatures are
//! verified with ring.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_CERTIFICATE_POLICIES, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::webauthn::cose::{ALG_EDDSA, ALG_ES256, ALG_ES384, ALG_RS256};
use crate::webauthn::Aaguid;

/// id-fido-gen-ce-aaguid, 1.3.6.1.4.1.45724.1.1.4 (DER content octets).
const OID_FIDO_AAGUID: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0xe5, 0x1c, 1, 1, 4];
/// Yubico firmware version, 1.3.6.1.4.1.41482.13.1.
const OID_YUBICO_FIRMWARE: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0xc4, 0x0a, 0x0d, 1];
/// Yubico device type, 1.3.6.1.4.1.41482.2 (value: the device OID as ASCII).
const OID_YUBICO_DEVICE_TYPE: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0xc4, 0x0a, 2];
/// The Yubico arc, 1.3.6.1.4.1.41482.
const OID_YUBICO_ARC: &[u8] = &[0x2b, 6, 1, 4, 1, 0x82, 0xc4, 0x0a];

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 2, 1];
const OID_CURVE_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7];
const OID_CURVE_P384: &[u8] = &[0x2b, 0x81, 4, 0, 0x22];
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 0x0b];
const OID_SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 0x0c];
const OID_SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 0x0d];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 3];

/// DER tag of an OBJECT IDENTIFIER.
const TAG_OID: u32 = 6;
/// DER tag of an OCTET STRING.
const TAG_OCTET_STRING: u8 = 0x04;

/// A subject public key we can verify with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertKey {
    /// ECDSA on P-256; the uncompressed point.
    P256(Vec<u8>),
    /// ECDSA on P-384; the uncompressed point.
    P384(Vec<u8>),
    /// RSA; DER `RSAPublicKey`.
    Rsa(Vec<u8>),
    /// Ed25519; the raw key.
    Ed25519(Vec<u8>),
    /// Anything else (the algorithm OID, dotted).
    Unsupported(String),
}

impl CertKey {
    /// A short name for messages.
    pub fn describe(&self) -> String {
        match self {
            CertKey::P256(_) => "ECDSA P-256".into(),
            CertKey::P384(_) => "ECDSA P-384".into(),
            CertKey::Rsa(_) => "RSA".into(),
            CertKey::Ed25519(_) => "Ed25519".into(),
            CertKey::Unsupported(oid) => format!("unsupported key algorithm {oid}"),
        }
    }

    /// The ring algorithm for a COSE algorithm identifier used with this key, or
    /// `None` when the two do not fit together (e.g. ES256 with an RSA key).
    pub(crate) fn ring_for_cose(
        &self,
        alg: i64,
    ) -> Option<(&'static dyn VerificationAlgorithm, &[u8])> {
        match (alg, self) {
            (ALG_ES256, CertKey::P256(k)) => Some((&signature::ECDSA_P256_SHA256_ASN1, k)),
            (ALG_ES384, CertKey::P384(k)) => Some((&signature::ECDSA_P384_SHA384_ASN1, k)),
            (ALG_EDDSA, CertKey::Ed25519(k)) => Some((&signature::ED25519, k)),
            (ALG_RS256, CertKey::Rsa(k)) => Some((&signature::RSA_PKCS1_2048_8192_SHA256, k)),
            (-258, CertKey::Rsa(k)) => Some((&signature::RSA_PKCS1_2048_8192_SHA384, k)),
            (-259, CertKey::Rsa(k)) => Some((&signature::RSA_PKCS1_2048_8192_SHA512, k)),
            (-37, CertKey::Rsa(k)) => Some((&signature::RSA_PSS_2048_8192_SHA256, k)),
            _ => None,
        }
    }
}

/// The algorithm a certificate was signed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSignatureAlgorithm {
    /// sha256WithRSAEncryption.
    RsaSha256,
    /// sha384WithRSAEncryption.
    RsaSha384,
    /// sha512WithRSAEncryption.
    RsaSha512,
    /// ecdsa-with-SHA256.
    EcdsaSha256,
    /// ecdsa-with-SHA384.
    EcdsaSha384,
    /// Ed25519.
    Ed25519,
    /// Anything else (the OID, dotted).
    Unsupported(String),
}

/// What the attestation AAGUID extension says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AaguidExtension {
    /// No id-fido-gen-ce-aaguid extension.
    Absent,
    /// A well-formed extension.
    Present {
        /// The AAGUID.
        aaguid: Aaguid,
        /// Whether it was (wrongly) marked critical.
        critical: bool,
    },
    /// The extension is there but is not an OCTET STRING of 16 bytes.
    Malformed,
}

/// A parsed certificate: owned facts, no borrowed DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The DER encoding as received.
    pub der: Vec<u8>,
    /// SHA-256 of the DER.
    pub sha256: [u8; 32],
    tbs: Vec<u8>,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    /// The subject, RFC 4514-like.
    pub subject: String,
    /// The issuer, RFC 4514-like.
    pub issuer: String,
    /// The first subject common name, if any.
    pub common_name: Option<String>,
    /// Subject organisational units.
    pub organizational_units: Vec<String>,
    /// Whether subject C and O are present.
    pub has_country_and_organization: bool,
    /// X.509 version as written (3 for v3).
    pub version: u32,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// The subject public key.
    pub key: CertKey,
    /// The signature algorithm.
    pub signature_algorithm: CertSignatureAlgorithm,
    signature: Vec<u8>,
    /// basicConstraints: `Some((ca, path_len))` when present.
    pub basic_constraints: Option<(bool, Option<u32>)>,
    /// keyUsage keyCertSign bit, when keyUsage is present.
    pub key_cert_sign: Option<bool>,
    /// Critical extensions this code does not understand (dotted OIDs).
    pub unknown_critical_extensions: Vec<String>,
    /// id-fido-gen-ce-aaguid.
    pub aaguid_extension: AaguidExtension,
    /// Yubico firmware extension, as `major.minor.patch`.
    pub firmware: Option<String>,
    /// Yubico device-type extension value (a dotted OID).
    pub yubico_device_type: Option<String>,
    /// Extensions in the Yubico arc (dotted OIDs), for U2F-era device identification.
    pub yubico_extensions: Vec<String>,
}

impl Certificate {
    /// Parses one DER certificate; trailing bytes are refused.
    pub fn from_der(der: &[u8]) -> Result<Certificate, String> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            ));
        }
        let der_used = der.get(..der.len() - rest.len()).unwrap_or(der);
        Self::from_parsed(der_used, &cert)
    }

    fn from_parsed(der: &[u8], cert: &X509Certificate<'_>) -> Result<Certificate, String> {
        let tbs = &cert.tbs_certificate;
        let subject_name = tbs.subject();
        let attr_strings =
            |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
                it.filter_map(|a| a.as_str().ok().map(str::to_owned))
                    .collect::<Vec<_>>()
            };
        let common_name = attr_strings(&mut subject_name.iter_common_name())
            .into_iter()
            .next();
        let organizational_units = attr_strings(&mut subject_name.iter_organizational_unit());
        let has_country_and_organization = subject_name.iter_country().next().is_some()
            && subject_name.iter_organization().next().is_some();

        let mut basic_constraints = None;
        let mut key_cert_sign = None;
        let mut unknown_critical_extensions = Vec::new();
        let mut aaguid_extension = AaguidExtension::Absent;
        let mut firmware = None;
        let mut yubico_device_type = None;
        let mut yubico_extensions = Vec::new();
        let mut seen: Vec<&[u8]> = Vec::new();
        for ext in tbs.extensions() {
            let oid = ext.oid.as_bytes();
            if seen.contains(&oid) {
                return Err(format!("duplicate extension {}", ext.oid.to_id_string()));
            }
            seen.push(oid);
            if ext.oid == OID_X509_EXT_BASIC_CONSTRAINTS {
                match ext.parsed_extension() {
                    ParsedExtension::BasicConstraints(bc) => {
                        basic_constraints = Some((bc.ca, bc.path_len_constraint));
                    }
                    _ => return Err("malformed basicConstraints extension".into()),
                }
            } else if ext.oid == OID_X509_EXT_KEY_USAGE {
                match ext.parsed_extension() {
                    ParsedExtension::KeyUsage(ku) => key_cert_sign = Some(ku.key_cert_sign()),
                    _ => return Err("malformed keyUsage extension".into()),
                }
            } else if oid == OID_FIDO_AAGUID {
                aaguid_extension = match octet_string_content(ext.value) {
                    Some(bytes) => match <[u8; 16]>::try_from(bytes) {
                        Ok(a) => AaguidExtension::Present {
                            aaguid: Aaguid(a),
                            critical: ext.critical,
                        },
                        Err(_) => AaguidExtension::Malformed,
                    },
                    None => AaguidExtension::Malformed,
                };
            } else if oid == OID_YUBICO_FIRMWARE {
                firmware = octet_string_content(ext.value)
                    .filter(|v| (1..=4).contains(&v.len()))
                    .map(|v| v.iter().map(u8::to_string).collect::<Vec<_>>().join("."));
            } else if oid == OID_YUBICO_DEVICE_TYPE {
                yubico_device_type = std::str::from_utf8(ext.value)
                    .ok()
                    .filter(|s| s.len() <= 64 && s.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
                    .map(str::to_owned);
            } else if ext.critical && !is_understood(&ext.oid) {
                unknown_critical_extensions.push(ext.oid.to_id_string());
            }
            if oid.starts_with(OID_YUBICO_ARC) {
                yubico_extensions.push(ext.oid.to_id_string());
            }
        }

        Ok(Certificate {
            der: der.to_vec(),
            sha256: sha256(der),
            tbs: tbs.as_ref().to_vec(),
            subject_raw: subject_name.as_raw().to_vec(),
            issuer_raw: tbs.issuer().as_raw().to_vec(),
            subject: subject_name.to_string(),
            issuer: tbs.issuer().to_string(),
            common_name,
            organizational_units,
            has_country_and_organization,
            version: tbs.version().0.saturating_add(1),
            not_before: tbs.validity().not_before.timestamp(),
            not_after: tbs.validity().not_after.timestamp(),
            key: cert_key(tbs.public_key()),
            signature_algorithm: signature_algorithm(cert),
            signature: cert.signature_value.data.to_vec(),
            basic_constraints,
            key_cert_sign,
            unknown_critical_extensions,
            aaguid_extension,
            firmware,
            yubico_device_type,
            yubico_extensions,
        })
    }

    /// Whether `self` names `issuer` as its issuer (exact DER name match).
    pub fn issued_by_name(&self, issuer: &Certificate) -> bool {
        self.issuer_raw == issuer.subject_raw
    }

    /// Whether `other` has this certificate's subject name (exact DER) and public key:
    /// as a trust anchor (RFC 5280 §6.1.1 (d)) the two are the same.
    pub fn same_name_and_key(&self, other: &Certificate) -> bool {
        self.subject_raw == other.subject_raw && self.key == other.key
    }

    /// Whether subject and issuer names are equal.
    pub fn is_self_issued(&self) -> bool {
        self.issuer_raw == self.subject_raw
    }

    /// Whether basicConstraints marks this certificate as a CA.
    pub fn is_ca(&self) -> bool {
        matches!(self.basic_constraints, Some((true, _)))
    }

    /// Whether the validity period contains `now` (Unix seconds).
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Verifies this certificate's signature with `issuer_key`.
    pub fn verify_signed_by(&self, issuer_key: &CertKey) -> Result<(), SignatureFailure> {
        use CertSignatureAlgorithm as S;
        let (alg, key): (&'static dyn VerificationAlgorithm, &[u8]) =
            match (&self.signature_algorithm, issuer_key) {
                (S::RsaSha256, CertKey::Rsa(k)) => (&signature::RSA_PKCS1_2048_8192_SHA256, k),
                (S::RsaSha384, CertKey::Rsa(k)) => (&signature::RSA_PKCS1_2048_8192_SHA384, k),
                (S::RsaSha512, CertKey::Rsa(k)) => (&signature::RSA_PKCS1_2048_8192_SHA512, k),
                (S::EcdsaSha256, CertKey::P256(k)) => (&signature::ECDSA_P256_SHA256_ASN1, k),
                (S::EcdsaSha384, CertKey::P256(k)) => (&signature::ECDSA_P256_SHA384_ASN1, k),
                (S::EcdsaSha256, CertKey::P384(k)) => (&signature::ECDSA_P384_SHA256_ASN1, k),
                (S::EcdsaSha384, CertKey::P384(k)) => (&signature::ECDSA_P384_SHA384_ASN1, k),
                (S::Ed25519, CertKey::Ed25519(k)) => (&signature::ED25519, k),
                (alg, key) => {
                    return Err(SignatureFailure::Unsupported(format!(
                        "signature algorithm {alg:?} with an issuer key of type {}",
                        key.describe()
                    )))
                }
            };
        UnparsedPublicKey::new(alg, key)
            .verify(&self.tbs, &self.signature)
            .map_err(|_| SignatureFailure::Invalid)
    }
}

/// Why a certificate signature did not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureFailure {
    /// The algorithm or key type is not one we verify.
    Unsupported(String),
    /// The signature is wrong.
    Invalid,
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn is_understood(oid: &x509_parser::der_parser::oid::Oid<'_>) -> bool {
    [
        &OID_X509_EXT_BASIC_CONSTRAINTS,
        &OID_X509_EXT_KEY_USAGE,
        &OID_X509_EXT_EXTENDED_KEY_USAGE,
        &OID_X509_EXT_CERTIFICATE_POLICIES,
        &OID_X509_EXT_SUBJECT_ALT_NAME,
        &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
    ]
    .contains(&oid)
}

/// The content of a DER OCTET STRING that fills `value` exactly (short form length).
fn octet_string_content(value: &[u8]) -> Option<&[u8]> {
    match value {
        [TAG_OCTET_STRING, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => {
            Some(rest)
        }
        _ => None,
    }
}

fn cert_key(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> CertKey {
    let alg = spki.algorithm.algorithm.as_bytes();
    let key = spki.subject_public_key.data.to_vec();
    if alg == OID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .filter(|p| p.tag().0 == TAG_OID)
            .map(|p| p.data);
        match curve {
            Some(c) if c == OID_CURVE_P256 => CertKey::P256(key),
            Some(c) if c == OID_CURVE_P384 => CertKey::P384(key),
            _ => CertKey::Unsupported("EC key on an unsupported curve".into()),
        }
    } else if alg == OID_RSA_ENCRYPTION {
        CertKey::Rsa(key)
    } else if alg == OID_ED25519 {
        CertKey::Ed25519(key)
    } else {
        CertKey::Unsupported(spki.algorithm.algorithm.to_id_string())
    }
}

fn signature_algorithm(cert: &X509Certificate<'_>) -> CertSignatureAlgorithm {
    let oid = cert.signature_algorithm.algorithm.as_bytes();
    // The outer and the signed algorithm identifiers must agree (RFC 5280 §4.1.1.2).
    if cert.signature_algorithm.algorithm != cert.tbs_certificate.signature.algorithm {
        return CertSignatureAlgorithm::Unsupported(
            "outer and inner signature algorithms differ".into(),
        );
    }
    match oid {
        o if o == OID_SHA256_WITH_RSA => CertSignatureAlgorithm::RsaSha256,
        o if o == OID_SHA384_WITH_RSA => CertSignatureAlgorithm::RsaSha384,
        o if o == OID_SHA512_WITH_RSA => CertSignatureAlgorithm::RsaSha512,
        o if o == OID_ECDSA_SHA256 => CertSignatureAlgorithm::EcdsaSha256,
        o if o == OID_ECDSA_SHA384 => CertSignatureAlgorithm::EcdsaSha384,
        o if o == OID_ED25519 => CertSignatureAlgorithm::Ed25519,
        _ => CertSignatureAlgorithm::Unsupported(cert.signature_algorithm.algorithm.to_id_string()),
    }
}
