//! Errors of the WebAuthn relying-party checks.
//!
//! Every variant has a stable snake_case reason code ([`WebauthnError::code`]) for audit
//! events and API bodies, and a human message through `Display`. None of them knows about
//! HTTP: the web layer maps all of them to a client error.

use thiserror::Error;

use super::aaguid::Aaguid;

/// Why a registration or an assertion was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebauthnError {
    /// The attestation object, a COSE key or an extension map is not valid CBOR of the
    /// expected shape.
    #[error("malformed CBOR: {0}")]
    MalformedCbor(String),
    /// The authenticator data is too short, too long or inconsistent with its flags.
    #[error("malformed authenticator data: {0}")]
    MalformedAuthenticatorData(String),
    /// clientDataJSON is not the JSON object WebAuthn defines.
    #[error("malformed clientDataJSON: {0}")]
    MalformedClientData(String),
    /// A field of the request (base64 or similar) could not be decoded.
    #[error("malformed input: {0}")]
    MalformedInput(String),
    /// The attestation statement lacks a field or has one of the wrong type.
    #[error("malformed attestation statement: {0}")]
    MalformedAttestationStatement(String),
    /// A COSE public key is missing a parameter or has one of the wrong size.
    #[error("malformed public key: {0}")]
    MalformedPublicKey(String),
    /// An attestation certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// clientDataJSON `type` is not the ceremony's type.
    #[error("clientDataJSON type is {found:?}, expected {expected:?}")]
    WrongType {
        /// `webauthn.create` or `webauthn.get`.
        expected: &'static str,
        /// What the client sent.
        found: String,
    },
    /// The challenge in clientDataJSON is not the one this ceremony issued.
    #[error("the challenge does not match the one issued for this ceremony")]
    ChallengeMismatch,
    /// The origin in clientDataJSON is not the expected origin.
    #[error("origin {found:?} is not the expected origin {expected:?}")]
    OriginMismatch {
        /// The configured origin.
        expected: String,
        /// What the client sent.
        found: String,
    },
    /// The ceremony ran in a cross-origin iframe.
    #[error("cross-origin ceremonies are not accepted")]
    CrossOrigin,
    /// The RP ID hash in authenticator data is not SHA-256 of our RP ID.
    #[error("the authenticator data is for another relying party (RP ID hash mismatch)")]
    RpIdMismatch,
    /// The user-present flag is not set.
    #[error("the authenticator did not report user presence (no touch)")]
    UserNotPresent,
    /// The backup-state flag is set without the backup-eligible flag.
    #[error("invalid flags: backup state set without backup eligibility")]
    InvalidBackupFlags,
    /// A registration without attested credential data.
    #[error("the authenticator data carries no attested credential data")]
    MissingAttestedCredential,
    /// An assertion whose authenticator data carries attested credential data.
    #[error("unexpected attested credential data in an assertion")]
    UnexpectedAttestedCredential,
    /// The credential ID is longer than WebAuthn allows.
    #[error("credential ID of {0} bytes is longer than 1023 bytes")]
    CredentialIdTooLong(usize),
    /// A signature did not verify.
    #[error("signature verification failed: {0}")]
    BadSignature(&'static str),
    /// The AAGUID in authenticator data differs from the one in the attestation
    /// certificate, or a fido-u2f statement comes with a non-zero AAGUID.
    #[error("AAGUID mismatch: authenticator data says {authenticator_data}, {other}")]
    AaguidMismatch {
        /// The AAGUID in authenticator data.
        authenticator_data: Aaguid,
        /// What it was compared against.
        other: String,
    },
    /// A COSE algorithm or key type we do not accept.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The attestation statement algorithm does not fit the key that signed it.
    #[error("algorithm mismatch: {0}")]
    AlgorithmMismatch(String),
    /// An attestation statement format other than packed, fido-u2f or none.
    #[error("unsupported attestation format {0:?}")]
    UnsupportedAttestationFormat(String),
    /// The attestation certificate breaks a WebAuthn requirement (§8.2.1 / §8.6).
    #[error("invalid attestation certificate: {0}")]
    InvalidAttestationCertificate(String),
}

impl WebauthnError {
    /// A stable, snake_case reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedCbor(_) => "malformed_cbor",
            Self::MalformedAuthenticatorData(_) => "malformed_authenticator_data",
            Self::MalformedClientData(_) => "malformed_client_data",
            Self::MalformedInput(_) => "malformed_input",
            Self::MalformedAttestationStatement(_) => "malformed_attestation_statement",
            Self::MalformedPublicKey(_) => "malformed_public_key",
            Self::MalformedCertificate(_) => "malformed_certificate",
            Self::WrongType { .. } => "wrong_type",
            Self::ChallengeMismatch => "challenge_mismatch",
            Self::OriginMismatch { .. } => "origin_mismatch",
            Self::CrossOrigin => "cross_origin",
            Self::RpIdMismatch => "rp_id_mismatch",
            Self::UserNotPresent => "user_not_present",
            Self::InvalidBackupFlags => "invalid_backup_flags",
            Self::MissingAttestedCredential => "missing_attested_credential",
            Self::UnexpectedAttestedCredential => "unexpected_attested_credential",
            Self::CredentialIdTooLong(_) => "credential_id_too_long",
            Self::BadSignature(_) => "bad_signature",
            Self::AaguidMismatch { .. } => "aaguid_mismatch",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::AlgorithmMismatch(_) => "algorithm_mismatch",
            Self::UnsupportedAttestationFormat(_) => "unsupported_attestation_format",
            Self::InvalidAttestationCertificate(_) => "invalid_attestation_certificate",
        }
    }
}
