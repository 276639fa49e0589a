//! Attestation statement formats (WebAuthn L3 §8): `packed`, `fido-u2f` and `none`.
//!
//! Each verifier checks the statement's signature and the attestation certificate's
//! WebAuthn requirements, then validates the chain against the trust store. A chain
//! that does not reach an anchor is recorded in [`AttestationEvidence::trust`], not
//! raised as an error: policy decides.

use ciborium::value::Value;
use ring::signature::UnparsedPublicKey;
use serde::Serialize;

use super::catalogue::DeviceInfo;
use super::cert::{AaguidExtension, CertKey, Certificate};
use super::chain::TrustResult;
use super::Verifier;
use crate::webauthn::authdata::{AttestedCredentialData, AuthenticatorData};
use crate::webauthn::cbor;
use crate::webauthn::cose::{CoseKeyParams, ALG_ES256};
use crate::webauthn::{Aaguid, WebauthnError};

/// Certificates accepted in an x5c array.
pub const MAX_X5C_LEN: usize = 8;

/// The subject OU WebAuthn requires of packed attestation certificates (§8.2.1).
const AUTHENTICATOR_ATTESTATION_OU: &str = "Authenticator Attestation";

/// What kind of attestation the authenticator gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttestationKind {
    /// Signed by an attestation key with a certificate chain (x5c).
    Basic,
    /// Signed by the credential key itself: proves nothing about the model.
    SelfAttestation,
    /// No attestation at all (`none`).
    None,
}

/// Which source named the model (the AAGUID or device type the catalogue was asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// The attestation certificate's AAGUID extension (equal to authenticator data's when
    /// that names one): vouched for by the chain.
    Certificate,
    /// Yubico's U2F-era device-type extension of the attestation certificate (fido-u2f).
    CertificateDeviceType,
    /// Only the authenticator data, which the authenticator writes itself: no certificate
    /// confirms it.
    AuthenticatorData,
}

/// Everything the attestation proved (or failed to prove) about a new credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttestationEvidence {
    /// The statement format (`packed`, `fido-u2f`, `none`).
    pub fmt: String,
    /// Basic, self or none.
    pub kind: AttestationKind,
    /// The AAGUID from authenticator data (zero for fido-u2f).
    pub aaguid: Aaguid,
    /// The x5c certificates, DER, as received (leaf first; base64 when serialised).
    #[serde(serialize_with = "super::hex_serde::base64_many")]
    pub chain: Vec<Vec<u8>>,
    /// Chain validation against the trust store.
    pub trust: TrustResult,
    /// SHA-256 of the attestation (leaf) certificate.
    #[serde(serialize_with = "super::hex_serde::opt_one")]
    pub leaf_sha256: Option<[u8; 32]>,
    /// The AAGUID in the leaf's id-fido-gen-ce-aaguid extension.
    pub leaf_aaguid: Option<Aaguid>,
    /// Yubico firmware version from the leaf (extension 1.3.6.1.4.1.41482.13.1).
    pub firmware: Option<String>,
    /// The catalogued model: by authenticator-data AAGUID, else by the leaf's AAGUID
    /// extension (fido-u2f), else by Yubico's U2F-era device-type extension.
    pub device: Option<DeviceInfo>,
    /// Which source named the model; `None` when nothing did (a zero AAGUID and no
    /// certificate naming one).
    pub model_source: Option<ModelSource>,
}

impl AttestationEvidence {
    /// The AAGUID that identifies the model: authenticator data's, or the leaf
    /// certificate's when authenticator data carries none (fido-u2f).
    pub fn effective_aaguid(&self) -> Aaguid {
        match self.leaf_aaguid {
            Some(leaf) if self.aaguid.is_zero() => leaf,
            _ => self.aaguid,
        }
    }

    /// Whether a certificate chain reached a trust anchor.
    pub fn is_trusted(&self) -> bool {
        self.kind == AttestationKind::Basic && self.trust.is_trusted()
    }
}

/// The pieces of a registration a statement is checked against.
pub(crate) struct StatementInput<'a> {
    pub fmt: &'a str,
    pub att_stmt: &'a Value,
    pub auth_data_raw: &'a [u8],
    pub auth_data: &'a AuthenticatorData,
    pub credential: &'a AttestedCredentialData,
    pub client_data_hash: &'a [u8; 32],
}

/// Verifies the attestation statement by format and gathers the evidence.
pub(crate) fn verify_statement(
    input: &StatementInput<'_>,
    verifier: &Verifier,
    now: time::OffsetDateTime,
) -> Result<AttestationEvidence, WebauthnError> {
    match input.fmt {
        "packed" => packed(input, verifier, now),
        "fido-u2f" => fido_u2f(input, verifier, now),
        "none" => none(input, verifier),
        other => Err(WebauthnError::UnsupportedAttestationFormat(
            other.chars().take(64).collect(),
        )),
    }
}

fn statement_entries<'v>(
    input: &StatementInput<'v>,
) -> Result<&'v [(Value, Value)], WebauthnError> {
    cbor::map_entries(input.att_stmt, "attStmt").map_err(|e| match e {
        WebauthnError::MalformedCbor(m) => WebauthnError::MalformedAttestationStatement(m),
        other => other,
    })
}

fn sig_field(entries: &[(Value, Value)]) -> Result<&[u8], WebauthnError> {
    match cbor::get_text_key(entries, "sig") {
        Some(Value::Bytes(b)) => Ok(b),
        Some(_) => Err(WebauthnError::MalformedAttestationStatement(
            "sig is not a byte string".into(),
        )),
        None => Err(WebauthnError::MalformedAttestationStatement(
            "sig is missing".into(),
        )),
    }
}

/// Parses x5c (leaf first); `Ok(None)` when absent.
fn x5c_field(entries: &[(Value, Value)]) -> Result<Option<Vec<Certificate>>, WebauthnError> {
    let Some(value) = cbor::get_text_key(entries, "x5c") else {
        return Ok(None);
    };
    let Value::Array(items) = value else {
        return Err(WebauthnError::MalformedAttestationStatement(
            "x5c is not an array".into(),
        ));
    };
    if items.is_empty() || items.len() > MAX_X5C_LEN {
        return Err(WebauthnError::MalformedAttestationStatement(format!(
            "x5c holds {} certificates; 1 to {MAX_X5C_LEN} are accepted",
            items.len()
        )));
    }
    let mut certs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Bytes(der) = item else {
            return Err(WebauthnError::MalformedAttestationStatement(format!(
                "x5c[{i}] is not a byte string"
            )));
        };
        let cert = Certificate::from_der(der)
            .map_err(|e| WebauthnError::MalformedCertificate(format!("x5c[{i}]: {e}")))?;
        certs.push(cert);
    }
    Ok(Some(certs))
}

fn signed_data(input: &StatementInput<'_>) -> Vec<u8> {
    let mut data = Vec::with_capacity(input.auth_data_raw.len() + 32);
    data.extend_from_slice(input.auth_data_raw);
    data.extend_from_slice(input.client_data_hash);
    data
}

fn leaf_aaguid(leaf: &Certificate) -> Result<Option<Aaguid>, WebauthnError> {
    match leaf.aaguid_extension {
        AaguidExtension::Absent => Ok(None),
        AaguidExtension::Present { aaguid, critical } => {
            if critical {
                return Err(WebauthnError::InvalidAttestationCertificate(
                    "the AAGUID extension must not be critical".into(),
                ));
            }
            Ok(Some(aaguid))
        }
        AaguidExtension::Malformed => Err(WebauthnError::InvalidAttestationCertificate(
            "the AAGUID extension is not an OCTET STRING of 16 bytes".into(),
        )),
    }
}

/// Which source names the model of a credential with authenticator-data AAGUID `aaguid`
/// and, for basic attestation, the leaf certificate and its AAGUID extension.
fn model_source(
    aaguid: &Aaguid,
    leaf: Option<(&Certificate, Option<Aaguid>)>,
    device: Option<&DeviceInfo>,
) -> Option<ModelSource> {
    match leaf {
        // The extension equals a non-zero authenticator-data AAGUID (checked for packed),
        // or names the model where authenticator data has none (fido-u2f).
        Some((_, Some(_))) => Some(ModelSource::Certificate),
        _ if !aaguid.is_zero() => Some(ModelSource::AuthenticatorData),
        Some((_, None)) if device.is_some() => Some(ModelSource::CertificateDeviceType),
        _ => None,
    }
}

fn device_for(
    verifier: &Verifier,
    aaguid: &Aaguid,
    leaf: Option<(&Certificate, Option<Aaguid>)>,
) -> Option<DeviceInfo> {
    if let Some(d) = verifier.catalogue.lookup(aaguid) {
        return Some(d.clone());
    }
    let (leaf, leaf_aaguid) = leaf?;
    if aaguid.is_zero() {
        if let Some(d) = leaf_aaguid.and_then(|a| verifier.catalogue.lookup(&a)) {
            return Some(d.clone());
        }
        if leaf_aaguid.is_none() {
            return verifier
                .catalogue
                .lookup_legacy(&leaf.yubico_extensions, leaf.yubico_device_type.as_deref())
                .cloned();
        }
    }
    None
}

fn basic_evidence(
    input: &StatementInput<'_>,
    verifier: &Verifier,
    now: time::OffsetDateTime,
    certs: &[Certificate],
    leaf_aaguid: Option<Aaguid>,
) -> Result<AttestationEvidence, WebauthnError> {
    let (leaf, rest) = certs
        .split_first()
        .ok_or_else(|| WebauthnError::MalformedAttestationStatement("x5c is empty".into()))?;
    let aaguid = input.credential.aaguid;
    let device = device_for(verifier, &aaguid, Some((leaf, leaf_aaguid)));
    Ok(AttestationEvidence {
        fmt: input.fmt.to_owned(),
        kind: AttestationKind::Basic,
        aaguid,
        chain: certs.iter().map(|c| c.der.clone()).collect(),
        trust: verifier.trust.validate(leaf, rest, now),
        leaf_sha256: Some(leaf.sha256),
        leaf_aaguid,
        firmware: leaf.firmware.clone(),
        model_source: model_source(&aaguid, Some((leaf, leaf_aaguid)), device.as_ref()),
        device,
    })
}

/// `packed` (§8.2): x5c (basic) or self attestation.
fn packed(
    input: &StatementInput<'_>,
    verifier: &Verifier,
    now: time::OffsetDateTime,
) -> Result<AttestationEvidence, WebauthnError> {
    let entries = statement_entries(input)?;
    if cbor::get_text_key(entries, "ecdaaKeyId").is_some() {
        return Err(WebauthnError::UnsupportedAttestationFormat(
            "packed with ECDAA (withdrawn from WebAuthn)".into(),
        ));
    }
    let alg = match cbor::get_text_key(entries, "alg").and_then(cbor::as_int) {
        Some(a) => i64::try_from(a).map_err(|_| {
            WebauthnError::UnsupportedAlgorithm(format!("attestation algorithm {a}"))
        })?,
        None => {
            return Err(WebauthnError::MalformedAttestationStatement(
                "alg is missing or not an integer".into(),
            ))
        }
    };
    let sig = sig_field(entries)?;
    let data = signed_data(input);

    let Some(certs) = x5c_field(entries)? else {
        // Self attestation: signed by the credential key itself.
        let key = &input.credential.public_key;
        if alg != key.alg() {
            return Err(WebauthnError::AlgorithmMismatch(format!(
                "self attestation with alg {alg} but the credential key is alg {}",
                key.alg()
            )));
        }
        key.verify(&data, sig)
            .map_err(|_| WebauthnError::BadSignature("self attestation signature"))?;
        let aaguid = input.credential.aaguid;
        return Ok(AttestationEvidence {
            fmt: input.fmt.to_owned(),
            kind: AttestationKind::SelfAttestation,
            aaguid,
            chain: Vec::new(),
            trust: TrustResult::NotApplicable,
            leaf_sha256: None,
            leaf_aaguid: None,
            firmware: None,
            device: device_for(verifier, &aaguid, None),
            model_source: model_source(&aaguid, None, None),
        });
    };

    let leaf = certs
        .first()
        .ok_or_else(|| WebauthnError::MalformedAttestationStatement("x5c is empty".into()))?;
    let (ring_alg, key) = leaf.key.ring_for_cose(alg).ok_or_else(|| {
        WebauthnError::AlgorithmMismatch(format!(
            "attestation alg {alg} does not fit the certificate key ({})",
            leaf.key.describe()
        ))
    })?;
    UnparsedPublicKey::new(ring_alg, key)
        .verify(&data, sig)
        .map_err(|_| WebauthnError::BadSignature("attestation signature"))?;

    // §8.2.1 requirements of the attestation certificate.
    if leaf.version != 3 {
        return Err(WebauthnError::InvalidAttestationCertificate(format!(
            "version {} (must be 3)",
            leaf.version
        )));
    }
    if !leaf
        .organizational_units
        .iter()
        .any(|ou| ou == AUTHENTICATOR_ATTESTATION_OU)
    {
        return Err(WebauthnError::InvalidAttestationCertificate(format!(
            "subject OU must be \"{AUTHENTICATOR_ATTESTATION_OU}\""
        )));
    }
    if !leaf.has_country_and_organization || leaf.common_name.is_none() {
        return Err(WebauthnError::InvalidAttestationCertificate(
            "subject must carry C, O, OU and CN".into(),
        ));
    }
    if leaf.is_ca() {
        return Err(WebauthnError::InvalidAttestationCertificate(
            "basicConstraints CA must be false".into(),
        ));
    }
    let leaf_aaguid = leaf_aaguid(leaf)?;
    if let Some(cert_aaguid) = leaf_aaguid {
        if cert_aaguid != input.credential.aaguid {
            return Err(WebauthnError::AaguidMismatch {
                authenticator_data: input.credential.aaguid,
                other: format!("the attestation certificate says {cert_aaguid}"),
            });
        }
    }
    basic_evidence(input, verifier, now, &certs, leaf_aaguid)
}

/// `fido-u2f` (§8.6).
fn fido_u2f(
    input: &StatementInput<'_>,
    verifier: &Verifier,
    now: time::OffsetDateTime,
) -> Result<AttestationEvidence, WebauthnError> {
    let entries = statement_entries(input)?;
    let sig = sig_field(entries)?;
    let certs = x5c_field(entries)?
        .ok_or_else(|| WebauthnError::MalformedAttestationStatement("fido-u2f needs x5c".into()))?;
    let [leaf] = certs.as_slice() else {
        return Err(WebauthnError::MalformedAttestationStatement(format!(
            "fido-u2f x5c must hold exactly one certificate, not {}",
            certs.len()
        )));
    };
    let CertKey::P256(leaf_key) = &leaf.key else {
        return Err(WebauthnError::InvalidAttestationCertificate(format!(
            "fido-u2f attestation key must be ECDSA P-256, not {}",
            leaf.key.describe()
        )));
    };
    let CoseKeyParams::P256 { x, y } = input.credential.public_key.params() else {
        return Err(WebauthnError::UnsupportedAlgorithm(format!(
            "fido-u2f credential key must be ES256 ({ALG_ES256}), not {}",
            input.credential.public_key.alg()
        )));
    };
    if !input.credential.aaguid.is_zero() {
        return Err(WebauthnError::AaguidMismatch {
            authenticator_data: input.credential.aaguid,
            other: "fido-u2f requires the zero AAGUID".into(),
        });
    }
    let cred_id = &input.credential.credential_id;
    let mut data = Vec::with_capacity(1 + 32 + 32 + cred_id.len() + 65);
    data.push(0x00);
    data.extend_from_slice(&input.auth_data.rp_id_hash);
    data.extend_from_slice(input.client_data_hash);
    data.extend_from_slice(cred_id);
    data.push(0x04);
    data.extend_from_slice(x);
    data.extend_from_slice(y);
    UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, leaf_key)
        .verify(&data, sig)
        .map_err(|_| WebauthnError::BadSignature("fido-u2f attestation signature"))?;
    // The model of a fido-u2f key is only in its certificate; a malformed extension
    // there just leaves it unknown.
    let leaf_aaguid = leaf_aaguid(leaf).ok().flatten();
    basic_evidence(input, verifier, now, &certs, leaf_aaguid)
}

/// `none` (§8.7): an empty statement.
fn none(
    input: &StatementInput<'_>,
    verifier: &Verifier,
) -> Result<AttestationEvidence, WebauthnError> {
    let entries = statement_entries(input)?;
    if !entries.is_empty() {
        return Err(WebauthnError::MalformedAttestationStatement(
            "the none format carries an empty statement".into(),
        ));
    }
    let aaguid = input.credential.aaguid;
    Ok(AttestationEvidence {
        fmt: input.fmt.to_owned(),
        kind: AttestationKind::None,
        aaguid,
        chain: Vec::new(),
        trust: TrustResult::NotApplicable,
        leaf_sha256: None,
        leaf_aaguid: None,
        firmware: None,
        device: device_for(verifier, &aaguid, None),
        model_source: model_source(&aaguid, None, None),
    })
}
