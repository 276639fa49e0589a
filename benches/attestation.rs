//! Attestation and assertion verification throughput, next to the raw ECDSA P-256
//! bound measured in the same run (SPEC §9: packed with leaf + intermediate + root
//! ≥ 5,000/s/core, about 75 % of three raw verifications; assertions ≥ 15,000/s/core).
//!
//! Each benchmark reports `thrpt` in verifications per second (one element = one
//! verification). Quick run: `cargo bench --bench attestation -- --quick`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keygate::attestation::Verifier;
use keygate::webauthn::{
    verify_assertion, verify_registration, AssertionInput, CoseKey, RegistrationInput,
};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};
use time::OffsetDateTime;

#[path = "../tests/it/support/authenticator.rs"]
mod authenticator;

use authenticator::{AssertOptions, Format, RegisterOptions, SoftAuthenticator, TestCa};

struct Registered {
    client_data_json: Vec<u8>,
    attestation_object: Vec<u8>,
    opts: RegisterOptions,
}

impl Registered {
    fn input(&self) -> RegistrationInput<'_> {
        RegistrationInput {
            client_data_json: &self.client_data_json,
            attestation_object: &self.attestation_object,
            expected_challenge: &self.opts.challenge,
            expected_origin: &self.opts.origin,
            rp_id: &self.opts.rp_id,
        }
    }
}

fn register(
    key: &SoftAuthenticator,
    format: Format,
) -> (Registered, authenticator::SoftCredential) {
    let opts = RegisterOptions {
        format,
        user_verified: format != Format::FidoU2f,
        ..RegisterOptions::default()
    };
    let reg = key.register(&opts);
    (
        Registered {
            client_data_json: reg.client_data_json,
            attestation_object: reg.attestation_object,
            opts,
        },
        reg.credential,
    )
}

fn benches(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let ca = TestCa::new("Bench");
    let mut verifier = Verifier::builtin();
    verifier
        .trust
        .add_anchor_pem(ca.root_pem())
        .expect("test root parses");

    let (packed, mut credential) = register(&SoftAuthenticator::new(&ca), Format::Packed);
    let (u2f, _) = register(&SoftAuthenticator::u2f(&ca), Format::FidoU2f);
    for r in [&packed, &u2f] {
        let v = verify_registration(&r.input(), &verifier, now).expect("verifies");
        assert!(v.evidence.trust.is_trusted(), "{:?}", v.evidence.trust);
    }

    // Raw bound: one ECDSA P-256 verification with ring.
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let message = [0x5a_u8; 69];
    let signature = key.sign(&rng, &message).expect("sign");
    let public = key.public_key().as_ref().to_vec();

    // An assertion by the packed credential.
    let a_opts = AssertOptions::default();
    let assertion = credential.get(&a_opts);
    let stored = CoseKey::from_cbor_exact(&credential.public_key_cose).expect("key");

    // A real YubiKey registration (RSA root), from the fixtures kept in the repository.
    let real = real_yubikey_vector().expect("tests/fixtures holds the YubiKey 5 NFC registration");

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));

    g.bench_function("raw_ecdsa_p256_verify (ring)", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, black_box(&public))
                .verify(black_box(&message), black_box(signature.as_ref()))
                .expect("verifies")
        })
    });
    g.bench_function("packed_es256_leaf_intermediate_root", |b| {
        let input = packed.input();
        b.iter(|| verify_registration(black_box(&input), &verifier, now).expect("verifies"))
    });
    g.bench_function("fido_u2f_leaf_root", |b| {
        let input = u2f.input();
        b.iter(|| verify_registration(black_box(&input), &verifier, now).expect("verifies"))
    });
    g.bench_function("packed_real_yubikey_rsa_root", |b| {
        let input = real.input();
        b.iter(|| verify_registration(black_box(&input), &verifier, now).expect("verifies"))
    });
    g.bench_function("assertion_es256", |b| {
        let input = AssertionInput {
            client_data_json: &assertion.client_data_json,
            authenticator_data: &assertion.authenticator_data,
            signature: &assertion.signature,
            expected_challenge: &a_opts.challenge,
            expected_origin: &a_opts.origin,
            rp_id: &a_opts.rp_id,
            stored_public_key: &stored,
            stored_sign_count: 0,
        };
        b.iter(|| verify_assertion(black_box(&input)).expect("verifies"))
    });
    g.finish();
}

fn real_yubikey_vector() -> Option<Registered> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/yubikey/registration/yubikey-5-nfc-fw5.1-packed-es256.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let b64 = |p: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.pointer(p)?.as_str()?.trim_end_matches('='))
            .ok()
    };
    Some(Registered {
        client_data_json: b64("/credential/response/clientDataJSON")?,
        attestation_object: b64("/credential/response/attestationObject")?,
        opts: RegisterOptions {
            challenge: b64("/challenge_b64url")?,
            origin: v["origin"].as_str()?.to_owned(),
            rp_id: v["rp_id"].as_str()?.to_owned(),
            ..RegisterOptions::default()
        },
    })
}

criterion_group!(attestation, benches);
criterion_main!(attestation);
