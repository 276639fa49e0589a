//! Helpers shared by the WebAuthn and attestation suites.
#![allow(dead_code)]

use keygate::attestation::{policy, Decision, ExistingKey, KeyFacts, Policy, Verifier};
use keygate::webauthn::{
    verify_registration, RegistrationInput, VerifiedRegistration, WebauthnError,
};
use time::macros::datetime;
use time::OffsetDateTime;

use crate::support::authenticator::{RegisterOptions, Registration, TestCa};

/// A fixed "now" inside every fixture's and test certificate's validity.
pub const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

/// A test CA and a verifier with the built-in Yubico trust plus the test root.
pub fn setup() -> (TestCa, Verifier) {
    let ca = TestCa::new("Keygate Test");
    let mut verifier = Verifier::builtin();
    let added = verifier
        .trust
        .add_anchor_pem(ca.root_pem())
        .expect("test root parses");
    assert_eq!(added, 1);
    (ca, verifier)
}

/// The registration input a relying party would build for `reg` made with `opts`.
pub fn input<'a>(reg: &'a Registration, opts: &'a RegisterOptions) -> RegistrationInput<'a> {
    RegistrationInput {
        client_data_json: &reg.client_data_json,
        attestation_object: &reg.attestation_object,
        expected_challenge: &opts.challenge,
        expected_origin: &opts.origin,
        rp_id: &opts.rp_id,
    }
}

/// Verifies `reg` as the relying party expecting `opts`.
pub fn verify(
    verifier: &Verifier,
    reg: &Registration,
    opts: &RegisterOptions,
) -> Result<VerifiedRegistration, WebauthnError> {
    verify_registration(&input(reg, opts), verifier, NOW)
}

/// The error code of a registration that must fail.
pub fn error_code(verifier: &Verifier, reg: &Registration, opts: &RegisterOptions) -> &'static str {
    match verify(verifier, reg, opts) {
        Ok(v) => panic!("expected an error, got {:?}", v.evidence),
        Err(e) => e.code(),
    }
}

/// Applies `policy` for a member with `member_keys`.
pub fn decide(
    policy: &Policy,
    verified: &VerifiedRegistration,
    member_keys: &[ExistingKey],
    registered: bool,
) -> Decision {
    let facts = KeyFacts {
        flags: &verified.flags,
        credential_id: &verified.credential_id,
        evidence: &verified.evidence,
    };
    policy::evaluate(policy, &facts, member_keys, registered)
}

/// The refusal codes of a decision, in order.
pub fn rules(decision: &Decision) -> Vec<&'static str> {
    decision.refusals.iter().map(|r| r.rule).collect()
}

/// The member key a verified registration becomes once stored.
pub fn existing(verified: &VerifiedRegistration) -> ExistingKey {
    ExistingKey {
        credential_id: verified.credential_id.clone(),
        leaf_sha256: verified.evidence.leaf_sha256,
        aaguid: verified.evidence.aaguid,
    }
}
