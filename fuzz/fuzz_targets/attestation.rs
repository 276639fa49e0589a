//! The attestation statement and its x5c chain, through the full registration check.
//!
//! The first byte picks the mode. Below 0x80 it names one of the real YubiKey registrations
//! in tests/fixtures (byte % 6): the rest is an attestation object checked with that
//! registration's clientDataJSON, challenge, origin and RP ID, so a mutated object reaches
//! the statement, its signature and the chain. From 0x80 the rest is an x5c chain (each
//! certificate a big-endian u16 length and its DER, leaf first) validated against Yubico's
//! roots and intermediates. Every input must give `Ok` or `Err`, never a panic.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use keygate::attestation::Verifier;
use keygate::webauthn::{verify_registration, RegistrationInput};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

/// 2026-11-25T12:00:00Z: every fixture certificate is valid then.
const NOW: i64 = 1_764_072_000;

const FIXTURES: [&str; 6] = [
    include_str!("../../tests/fixtures/yubikey/registration/security-key-nfc-fw5.1-packed-es256-firefox.json"),
    include_str!("../../tests/fixtures/yubikey/registration/yubikey-5-nfc-fw5.1-packed-es256.json"),
    include_str!("../../tests/fixtures/yubikey/registration/yubikey-5c-nfc-fido-u2f-es256.json"),
    include_str!("../../tests/fixtures/yubikey/registration/yubikey-5ci-fips-fw5.4.2-packed-es256.json"),
    include_str!("../../tests/fixtures/yubikey/registration/yubikey-5ci-packed-eddsa.json"),
    include_str!("../../tests/fixtures/yubikey/registration/yubikey-bio-fido-fw5.5.6-packed-eddsa-uv.json"),
];

/// What a registration is checked against: clientDataJSON, challenge, origin, RP ID.
struct Context {
    client_data_json: Vec<u8>,
    challenge: Vec<u8>,
    origin: String,
    rp_id: String,
}

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .expect("fixture base64url")
}

fn setup() -> &'static (Verifier, Vec<Context>) {
    static SETUP: OnceLock<(Verifier, Vec<Context>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let contexts = FIXTURES
            .iter()
            .map(|text| {
                let v: serde_json::Value = serde_json::from_str(text).expect("fixture JSON");
                let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).expect(p).to_string();
                Context {
                    client_data_json: b64(&s("/credential/response/clientDataJSON")),
                    challenge: b64(&s("/challenge_b64url")),
                    origin: s("/origin"),
                    rp_id: s("/rp_id"),
                }
            })
            .collect();
        (Verifier::builtin(), contexts)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (verifier, contexts) = setup();
    let now = OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time");
    if mode < 0x80 {
        let c = &contexts[usize::from(mode) % contexts.len()];
        let input = RegistrationInput {
            client_data_json: &c.client_data_json,
            attestation_object: rest,
            expected_challenge: &c.challenge,
            expected_origin: &c.origin,
            rp_id: &c.rp_id,
        };
        if let Ok(verified) = verify_registration(&input, verifier, now) {
            // Whatever verified carries a key that parses and a coherent evidence record.
            assert!(keygate::webauthn::CoseKey::from_cbor_exact(&verified.public_key_cose).is_ok());
            let _ = verified.evidence.is_trusted();
        }
    } else {
        let mut chain = Vec::new();
        let mut left = rest;
        while let Some((len, after)) = left.split_first_chunk::<2>() {
            let n = usize::from(u16::from_be_bytes(*len)).min(after.len());
            chain.push(&after[..n]);
            left = &after[n..];
        }
        let _ = verifier.trust.validate_der(&chain, now);
    }
});
