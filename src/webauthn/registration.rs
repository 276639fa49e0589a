//! Registration ceremony checks (WebAuthn L3 §7.1).

use ciborium::value::Value;

use super::authdata::{AuthenticatorData, Flags};
use super::cbor;
use super::client_data::{Ceremony, UncheckedClientData};
use super::error::WebauthnError;
use crate::attestation::formats::{self, StatementInput};
use crate::attestation::{AttestationEvidence, Verifier};

/// What the browser sent for a registration, and what we expect of it.
#[derive(Clone, Copy, Debug)]
pub struct RegistrationInput<'a> {
    /// `response.clientDataJSON`, decoded from base64url.
    pub client_data_json: &'a [u8],
    /// `response.attestationObject`, decoded from base64url.
    pub attestation_object: &'a [u8],
    /// The challenge issued for this ceremony.
    pub expected_challenge: &'a [u8],
    /// Our origin, e.g. `https://sso.example.com`.
    pub expected_origin: &'a str,
    /// Our RP ID, e.g. `sso.example.com`.
    pub rp_id: &'a str,
}

/// A registration whose signatures and bindings all verified. Whether the key is
/// *accepted* is for policy to say (see `attestation::policy::evaluate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRegistration {
    /// The credential ID.
    pub credential_id: Vec<u8>,
    /// The credential public key exactly as the authenticator encoded it (COSE).
    pub public_key_cose: Vec<u8>,
    /// Its COSE algorithm.
    pub alg: i64,
    /// The initial signature counter.
    pub sign_count: u32,
    /// Authenticator-data flags (UV and BE are policy questions).
    pub flags: Flags,
    /// What the attestation proved.
    pub evidence: AttestationEvidence,
}

/// The CBOR attestation object `{fmt, attStmt, authData}`, decoded but not verified.
#[derive(Clone, Debug, PartialEq)]
pub struct AttestationObject {
    /// The statement format.
    pub fmt: String,
    /// The attestation statement (a CBOR map).
    pub att_stmt: Value,
    /// The raw authenticator data.
    pub auth_data: Vec<u8>,
}

impl AttestationObject {
    /// Decodes an attestation object; trailing bytes are refused, unknown keys ignored.
    pub fn parse(bytes: &[u8]) -> Result<AttestationObject, WebauthnError> {
        let value = cbor::decode_exact(bytes, "attestation object")?;
        let entries = cbor::map_entries(&value, "attestation object")?;
        let fmt = match cbor::get_text_key(entries, "fmt") {
            Some(Value::Text(t)) => t.clone(),
            Some(_) => return Err(WebauthnError::MalformedCbor("fmt is not text".into())),
            None => return Err(WebauthnError::MalformedCbor("fmt is missing".into())),
        };
        let att_stmt = match cbor::get_text_key(entries, "attStmt") {
            Some(v @ Value::Map(_)) => v.clone(),
            Some(_) => return Err(WebauthnError::MalformedCbor("attStmt is not a map".into())),
            None => return Err(WebauthnError::MalformedCbor("attStmt is missing".into())),
        };
        let auth_data = match cbor::get_text_key(entries, "authData") {
            Some(Value::Bytes(b)) => b.clone(),
            Some(_) => {
                return Err(WebauthnError::MalformedCbor(
                    "authData is not a byte string".into(),
                ))
            }
            None => return Err(WebauthnError::MalformedCbor("authData is missing".into())),
        };
        Ok(AttestationObject {
            fmt,
            att_stmt,
            auth_data,
        })
    }
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Checks the RP ID hash, user presence and the backup flags common to both ceremonies.
pub(crate) fn check_auth_data(
    auth_data: &AuthenticatorData,
    rp_id: &str,
) -> Result<(), WebauthnError> {
    if auth_data.rp_id_hash != sha256(rp_id.as_bytes()) {
        return Err(WebauthnError::RpIdMismatch);
    }
    if !auth_data.flags.user_present {
        return Err(WebauthnError::UserNotPresent);
    }
    if auth_data.flags.backup_state && !auth_data.flags.backup_eligible {
        return Err(WebauthnError::InvalidBackupFlags);
    }
    Ok(())
}

/// Verifies a registration: clientDataJSON type, challenge and origin; RP ID hash;
/// user presence; attested credential data; the attestation statement by format; then
/// gathers the evidence (chain trust, model, firmware). `now` is used for certificate
/// validity.
pub fn verify_registration(
    input: &RegistrationInput<'_>,
    verifier: &Verifier,
    now: time::OffsetDateTime,
) -> Result<VerifiedRegistration, WebauthnError> {
    let client_data = UncheckedClientData::parse(input.client_data_json)?;
    client_data.check(
        Ceremony::Create,
        input.expected_challenge,
        input.expected_origin,
    )?;
    let client_data_hash = sha256(input.client_data_json);

    let object = AttestationObject::parse(input.attestation_object)?;
    let auth_data = AuthenticatorData::parse(&object.auth_data)?;
    check_auth_data(&auth_data, input.rp_id)?;
    let credential = auth_data
        .attested
        .as_ref()
        .ok_or(WebauthnError::MissingAttestedCredential)?;

    let evidence = formats::verify_statement(
        &StatementInput {
            fmt: &object.fmt,
            att_stmt: &object.att_stmt,
            auth_data_raw: &object.auth_data,
            auth_data: &auth_data,
            credential,
            client_data_hash: &client_data_hash,
        },
        verifier,
        now,
    )?;

    Ok(VerifiedRegistration {
        credential_id: credential.credential_id.clone(),
        public_key_cose: credential.public_key_cose.clone(),
        alg: credential.public_key.alg(),
        sign_count: auth_data.sign_count,
        flags: auth_data.flags,
        evidence,
    })
}
