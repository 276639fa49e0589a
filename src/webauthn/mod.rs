//! WebAuthn relying-party checks (W3C WebAuthn Level 3 §7.1 registration, §7.2
//! authentication) on primitives: ciborium for CBOR, serde_json for clientDataJSON,
//! ring for signatures. Attestation statements and trust are in `crate::attestation`.
//!
//! This module knows nothing of HTTP or storage; every malformed input is an error
//! ([`WebauthnError`]), never a panic.

pub mod aaguid;
pub mod authdata;
pub mod authentication;
pub(crate) mod cbor;
pub mod client_data;
pub mod cose;
pub mod error;
pub mod registration;

pub use aaguid::{Aaguid, ParseAaguidError};
pub use authdata::{AttestedCredentialData, AuthenticatorData, Flags};
pub use authentication::{verify_assertion, AssertionInput, VerifiedAssertion};
pub use client_data::{Ceremony, UncheckedClientData};
pub use cose::{CoseKey, CoseKeyParams};
pub use error::WebauthnError;
pub use registration::{
    verify_registration, AttestationObject, RegistrationInput, VerifiedRegistration,
};
