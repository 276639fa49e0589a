//! Assertions from the software authenticator.

use keygate::webauthn::{
    verify_assertion, AssertionInput, CoseKey, VerifiedAssertion, WebauthnError,
};

use crate::support::authenticator::{
    AssertOptions, Assertion, CredAlg, RegisterOptions, SoftAuthenticator, SoftCredential,
};
use crate::webauthn_common::{setup, verify};

fn credential(alg: CredAlg) -> SoftCredential {
    let (ca, verifier) = setup();
    let opts = RegisterOptions {
        alg,
        sign_count: 5,
        ..RegisterOptions::default()
    };
    let reg = SoftAuthenticator::new(&ca).register(&opts);
    let v = verify(&verifier, &reg, &opts).expect("registration verifies");
    assert_eq!(v.sign_count, 5);
    reg.credential
}

fn check(
    cred: &SoftCredential,
    a: &Assertion,
    expected: &AssertOptions,
    stored_count: u32,
) -> Result<VerifiedAssertion, WebauthnError> {
    let key = CoseKey::from_cbor_exact(&cred.public_key_cose).expect("key");
    verify_assertion(&AssertionInput {
        client_data_json: &a.client_data_json,
        authenticator_data: &a.authenticator_data,
        signature: &a.signature,
        expected_challenge: &expected.challenge,
        expected_origin: &expected.origin,
        rp_id: &expected.rp_id,
        stored_public_key: &key,
        stored_sign_count: stored_count,
    })
}

#[test]
fn assertions_verify_and_report_counter_regression() {
    for alg in [CredAlg::Es256, CredAlg::EdDsa] {
        let mut cred = credential(alg);
        let opts = AssertOptions::default();
        let a = cred.get(&opts);
        let out = check(&cred, &a, &opts, 5).expect("verifies");
        assert_eq!(out.sign_count, 6);
        assert!(out.flags.user_verified && out.flags.user_present);
        assert!(!out.counter_regressed);

        let replayed = check(&cred, &a, &opts, 6).expect("verifies");
        assert!(replayed.counter_regressed);

        let low = cred.get(&AssertOptions {
            sign_count: Some(3),
            ..AssertOptions::default()
        });
        assert!(
            check(&cred, &low, &opts, 6)
                .expect("verifies")
                .counter_regressed
        );

        // A 0 after a counter was seen is a regression (a clone must not reset it)…
        let zero = cred.get(&AssertOptions {
            sign_count: Some(0),
            ..AssertOptions::default()
        });
        assert!(
            check(&cred, &zero, &opts, 6)
                .expect("verifies")
                .counter_regressed
        );
        // …while an authenticator without a counter (always 0 on both sides) is fine.
        assert!(
            !check(&cred, &zero, &opts, 0)
                .expect("verifies")
                .counter_regressed
        );

        // UV is reported, not required here.
        let no_uv = cred.get(&AssertOptions {
            user_verified: false,
            ..AssertOptions::default()
        });
        assert!(
            !check(&cred, &no_uv, &opts, 0)
                .expect("verifies")
                .flags
                .user_verified
        );
    }
}

#[test]
fn assertion_refusals_have_their_codes() {
    let mut cred = credential(CredAlg::Es256);
    let expected = AssertOptions::default();
    let cases: Vec<(AssertOptions, &str)> = vec![
        (
            AssertOptions {
                ty: "webauthn.create".into(),
                ..AssertOptions::default()
            },
            "wrong_type",
        ),
        (
            AssertOptions {
                challenge: vec![1; 32],
                ..AssertOptions::default()
            },
            "challenge_mismatch",
        ),
        (
            AssertOptions {
                origin: "https://other.example".into(),
                ..AssertOptions::default()
            },
            "origin_mismatch",
        ),
        (
            AssertOptions {
                rp_id: "other.example".into(),
                ..AssertOptions::default()
            },
            "rp_id_mismatch",
        ),
        (
            AssertOptions {
                user_present: false,
                ..AssertOptions::default()
            },
            "user_not_present",
        ),
    ];
    for (sent, code) in cases {
        let a = cred.get(&sent);
        assert_eq!(
            check(&cred, &a, &expected, 0).map_err(|e| e.code()).err(),
            Some(code),
            "{sent:?}"
        );
    }

    // Signature by another key.
    let other = credential(CredAlg::Es256);
    let mut a = cred.get(&expected);
    a.signature = other.sign(b"something else");
    assert_eq!(
        check(&cred, &a, &expected, 0).map_err(|e| e.code()).err(),
        Some("bad_signature")
    );

    // Edited authenticator data.
    let mut a = cred.get(&expected);
    a.authenticator_data[36] ^= 1;
    assert_eq!(
        check(&cred, &a, &expected, 0).map_err(|e| e.code()).err(),
        Some("bad_signature")
    );

    // Truncated authenticator data.
    let mut a = cred.get(&expected);
    a.authenticator_data.truncate(36);
    assert_eq!(
        check(&cred, &a, &expected, 0).map_err(|e| e.code()).err(),
        Some("malformed_authenticator_data")
    );
    // Trailing bytes.
    let mut a = cred.get(&expected);
    a.authenticator_data.push(0);
    assert_eq!(
        check(&cred, &a, &expected, 0).map_err(|e| e.code()).err(),
        Some("malformed_authenticator_data")
    );
}

#[test]
fn stored_keys_must_be_supported_cose_keys() {
    for bad in [&b""[..], b"\xa0", b"\xa1\x01\x02", b"\x00"] {
        assert!(CoseKey::from_cbor_exact(bad).is_err());
    }
    // An ES384 key (EC2, alg -35, P-384) is refused with a clear code.
    let es384 = crate::support::authenticator::cbor(&ciborium::value::Value::Map(vec![
        (
            crate::support::authenticator::int(1),
            crate::support::authenticator::int(2),
        ),
        (
            crate::support::authenticator::int(3),
            crate::support::authenticator::int(-35),
        ),
        (
            crate::support::authenticator::int(-1),
            crate::support::authenticator::int(2),
        ),
    ]));
    assert_eq!(
        CoseKey::from_cbor_exact(&es384).map_err(|e| e.code()).err(),
        Some("unsupported_algorithm")
    );
}
