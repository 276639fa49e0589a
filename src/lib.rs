//! keygate: an enterprise SSO attestation gateway.
//!
//! Data flows one way: `http` → `service` → protocol/policy modules
//! (`webauthn`, `attestation`, `audit`) → `storage` / `ephemeral`.
//! Protocol modules import neither actix-web nor diesel.
#![forbid(unsafe_code)]

pub mod attestation;
pub mod audit;
pub mod ephemeral;
pub mod storage;
pub mod webauthn;
