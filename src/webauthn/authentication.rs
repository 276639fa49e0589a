//! Authentication (assertion) checks (WebAuthn L3 §7.2).

use super::authdata::{AuthenticatorData, Flags};
use super::client_data::{Ceremony, UncheckedClientData};
use super::cose::CoseKey;
use super::error::WebauthnError;
use super::registration::{check_auth_data, sha256};

/// What the browser sent for an assertion, and what we expect of it.
#[derive(Clone, Copy, Debug)]
pub struct AssertionInput<'a> {
    /// `response.clientDataJSON`, decoded.
    pub client_data_json: &'a [u8],
    /// `response.authenticatorData`, decoded.
    pub authenticator_data: &'a [u8],
    /// `response.signature`, decoded.
    pub signature: &'a [u8],
    /// The challenge issued for this ceremony.
    pub expected_challenge: &'a [u8],
    /// Our origin.
    pub expected_origin: &'a str,
    /// Our RP ID.
    pub rp_id: &'a str,
    /// The credential's stored public key (parse it with [`CoseKey::from_cbor_exact`]).
    pub stored_public_key: &'a CoseKey,
    /// The credential's stored signature counter.
    pub stored_sign_count: u32,
}

/// A verified assertion. UV and the counter are reported, not judged: policy decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The new signature counter (store it).
    pub sign_count: u32,
    /// Authenticator-data flags.
    pub flags: Flags,
    /// Both counters are non-zero and the new one is not greater: a possible clone.
    pub counter_regressed: bool,
}

/// Verifies an assertion: clientDataJSON type, challenge and origin; RP ID hash; user
/// presence; the signature over authenticatorData ‖ SHA-256(clientDataJSON) with the
/// stored key; then compares the counter.
pub fn verify_assertion(input: &AssertionInput<'_>) -> Result<VerifiedAssertion, WebauthnError> {
    let client_data = UncheckedClientData::parse(input.client_data_json)?;
    client_data.check(
        Ceremony::Get,
        input.expected_challenge,
        input.expected_origin,
    )?;

    let auth_data = AuthenticatorData::parse(input.authenticator_data)?;
    if auth_data.attested.is_some() {
        return Err(WebauthnError::UnexpectedAttestedCredential);
    }
    check_auth_data(&auth_data, input.rp_id)?;

    let mut signed = Vec::with_capacity(input.authenticator_data.len() + 32);
    signed.extend_from_slice(input.authenticator_data);
    signed.extend_from_slice(&sha256(input.client_data_json));
    input
        .stored_public_key
        .verify(&signed, input.signature)
        .map_err(|_| WebauthnError::BadSignature("assertion signature"))?;

    // WebAuthn L3 §7.2 step 22: when either counter is non-zero, the new one must be
    // greater. A clone answering 0 must not reset detection.
    let counter_regressed = (auth_data.sign_count != 0 || input.stored_sign_count != 0)
        && auth_data.sign_count <= input.stored_sign_count;
    Ok(VerifiedAssertion {
        sign_count: auth_data.sign_count,
        flags: auth_data.flags,
        counter_regressed,
    })
}
