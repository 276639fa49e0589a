//! Attestation: statement formats, certificate chains, FIDO trust anchors, the AAGUID
//! catalogue and enrolment policy.
//!
//! [`Verifier`] bundles the trust store and the catalogue; build it once (it parses
//! every anchor, intermediate and catalogue entry up front) and share it behind an
//! `Arc`. [`policy::evaluate`] is a pure function from policy, evidence and the
//! member's existing keys to a [`policy::Decision`].
//!
//! This module knows nothing of HTTP or storage.

pub mod catalogue;
pub mod cert;
pub mod chain;
pub mod formats;
pub mod policy;
pub mod trust;

use thiserror::Error;

pub use catalogue::{Catalogue, DeviceInfo};
pub use cert::Certificate;
pub use chain::TrustResult;
pub use formats::{AttestationEvidence, AttestationKind, ModelSource};
pub use policy::{
    compliance, evaluate, is_compliant, Compliance, ComplianceKey, Decision, ExistingKey, KeyFacts,
    Policy, Refusal,
};
pub use trust::{TrustAnchor, TrustStore};

/// Problems with trust-store or catalogue configuration (not with a registration).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttestationError {
    /// A PEM bundle could not be read.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A certificate could not be parsed.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// The AAGUID catalogue could not be parsed.
    #[error("invalid AAGUID catalogue: {0}")]
    Catalogue(String),
}

impl AttestationError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            AttestationError::Pem(_) => "invalid_pem",
            AttestationError::Certificate(_) => "invalid_certificate",
            AttestationError::Catalogue(_) => "invalid_catalogue",
        }
    }
}

/// Everything needed to verify attestations, built once and shared.
#[derive(Clone, Debug)]
pub struct Verifier {
    /// FIDO trust anchors and intermediates.
    pub trust: TrustStore,
    /// AAGUID → model.
    pub catalogue: Catalogue,
}

impl Verifier {
    /// Yubico's roots and intermediates, and the shipped AAGUID catalogue.
    pub fn builtin() -> Verifier {
        Verifier {
            trust: TrustStore::builtin(),
            catalogue: Catalogue::builtin(),
        }
    }

    /// A verifier from parts.
    pub fn new(trust: TrustStore, catalogue: Catalogue) -> Verifier {
        Verifier { trust, catalogue }
    }
}

/// Encodings of digests (hex) and DER blobs (base64) in serialised evidence.
pub(crate) mod hex_serde {
    use serde::ser::SerializeSeq;
    use serde::Serializer;

    pub fn one<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn opt_one<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }

    pub fn many<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&hex::encode(item))?;
        }
        seq.end()
    }

    /// Standard base64 with padding, as in JOSE `x5c`.
    pub fn base64_many<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for item in v {
            seq.serialize_element(&base64::engine::general_purpose::STANDARD.encode(item))?;
        }
        seq.end()
    }
}
