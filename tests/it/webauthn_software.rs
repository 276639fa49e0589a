//! Registrations from the software authenticator through `verify_registration`: every
//! format, every relying-party check, attestation certificate requirements.

use ciborium::value::Value;
use keygate::attestation::{AttestationKind, Policy, TrustResult};
use keygate::webauthn::Aaguid;

use crate::support::authenticator::{
    self, attestation_object, cbor, int, text, CredAlg, Format, LeafOptions, RegisterOptions,
    SoftAuthenticator, YUBIKEY_5CI_FIPS, YUBIKEY_5_NFC,
};
use crate::webauthn_common::{decide, error_code, rules, setup, verify};

fn packed() -> RegisterOptions {
    RegisterOptions::default()
}

#[test]
fn packed_es256_with_a_trusted_chain_is_accepted() {
    let (ca, verifier) = setup();
    let key = SoftAuthenticator::new(&ca);
    let opts = packed();
    let reg = key.register(&opts);
    let v = verify(&verifier, &reg, &opts).expect("verifies");
    assert_eq!(v.alg, -7);
    assert_eq!(v.credential_id, reg.credential.id);
    assert_eq!(v.public_key_cose, reg.credential.public_key_cose);
    let ev = &v.evidence;
    assert_eq!(ev.fmt, "packed");
    assert_eq!(ev.kind, AttestationKind::Basic);
    assert_eq!(ev.aaguid, Aaguid(YUBIKEY_5_NFC));
    assert_eq!(ev.leaf_aaguid, Some(Aaguid(YUBIKEY_5_NFC)));
    assert_eq!(ev.firmware.as_deref(), Some("5.7.1"));
    assert_eq!(ev.chain.len(), 2);
    assert_eq!(
        ev.device.as_ref().map(|d| d.model.as_str()),
        Some("YubiKey 5 NFC")
    );
    match &ev.trust {
        TrustResult::Trusted {
            anchor_name,
            path_sha256,
            ..
        } => {
            assert_eq!(anchor_name, "Keygate Test Root CA");
            assert_eq!(path_sha256.len(), 2);
            assert_eq!(Some(path_sha256[0]), ev.leaf_sha256);
        }
        other => panic!("{other:?}"),
    }
    let d = decide(&Policy::default(), &v, &[], false);
    assert!(d.accepted, "{:?}", d.refusals);
    assert!(d.phishing_resistant);
    assert_eq!(d.policy_version, 1);

    // The evidence serialises (for audit details and exports).
    let json = serde_json::to_value(ev).expect("serialises");
    assert_eq!(json["trust"]["result"], "trusted");
    assert_eq!(json["aaguid"], "fa2b99dc-9e39-4257-8f92-4a30d23c4118");
}

#[test]
fn packed_with_an_eddsa_credential_is_accepted() {
    let (ca, verifier) = setup();
    let key = SoftAuthenticator::new(&ca);
    let opts = RegisterOptions {
        alg: CredAlg::EdDsa,
        ..packed()
    };
    let v = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    assert_eq!(v.alg, -8);
    assert!(decide(&Policy::default(), &v, &[], false).accepted);
}

#[test]
fn fido_u2f_verifies_and_needs_user_verification_only_by_policy() {
    let (ca, verifier) = setup();
    let key = SoftAuthenticator::u2f(&ca);
    let opts = RegisterOptions {
        format: Format::FidoU2f,
        user_verified: false,
        ..packed()
    };
    let v = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    let ev = &v.evidence;
    assert_eq!(ev.fmt, "fido-u2f");
    assert_eq!(ev.kind, AttestationKind::Basic);
    assert!(ev.aaguid.is_zero());
    assert_eq!(ev.effective_aaguid(), Aaguid(YUBIKEY_5_NFC));
    assert_eq!(ev.chain.len(), 1);
    assert!(ev.trust.is_trusted(), "{:?}", ev.trust);
    assert_eq!(
        ev.device.as_ref().map(|d| d.model.as_str()),
        Some("YubiKey 5 NFC")
    );
    let d = decide(&Policy::default(), &v, &[], false);
    assert_eq!(rules(&d), ["user_verification_required"]);
    let lenient = Policy {
        require_user_verification: false,
        ..Policy::default()
    };
    let d = decide(&lenient, &v, &[], false);
    assert!(d.accepted);
    assert!(!d.phishing_resistant, "no UV, not phishing resistant");
}

#[test]
fn fido_u2f_requires_zero_aaguid_and_es256() {
    let (ca, verifier) = setup();
    let key = SoftAuthenticator::u2f(&ca);
    let opts = RegisterOptions {
        format: Format::FidoU2f,
        aaguid: Some(YUBIKEY_5_NFC),
        ..packed()
    };
    assert_eq!(
        error_code(&verifier, &key.register(&opts), &opts),
        "aaguid_mismatch"
    );
    let opts = RegisterOptions {
        format: Format::FidoU2f,
        alg: CredAlg::EdDsa,
        ..packed()
    };
    assert_eq!(
        error_code(&verifier, &key.register(&opts), &opts),
        "unsupported_algorithm"
    );
    // The packed authenticator's x5c has two certificates: not fido-u2f.
    let two = SoftAuthenticator::new(&ca);
    let opts = RegisterOptions {
        format: Format::FidoU2f,
        ..packed()
    };
    assert_eq!(
        error_code(&verifier, &two.register(&opts), &opts),
        "malformed_attestation_statement"
    );
}

#[test]
fn none_and_self_attestation_verify_but_are_refused_by_default() {
    let (ca, verifier) = setup();
    let key = SoftAuthenticator::new(&ca);
    for (format, kind) in [
        (Format::None, AttestationKind::None),
        (Format::PackedSelf, AttestationKind::SelfAttestation),
    ] {
        for alg in [CredAlg::Es256, CredAlg::EdDsa] {
            let opts = RegisterOptions {
                format,
                alg,
                ..packed()
            };
            let v = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
            assert_eq!(v.evidence.kind, kind);
            assert_eq!(v.evidence.trust, TrustResult::NotApplicable);
            assert!(v.evidence.chain.is_empty());
            let d = decide(&Policy::default(), &v, &[], false);
            assert_eq!(rules(&d), ["not_attested"], "{format:?}");
            assert!(d.refusals[0].message.contains("not_attested"));
            assert!(!d.refusals[0].remedy.is_empty());

            // An admin may allow unattested keys; they never count as phishing resistant.
            let lenient = Policy {
                require_trusted_attestation: false,
                ..Policy::default()
            };
            let d = decide(&lenient, &v, &[], false);
            assert!(d.accepted, "{:?}", d.refusals);
            assert!(!d.phishing_resistant);
        }
    }
}

#[test]
fn self_attestation_with_the_wrong_alg_or_signature_fails() {
    let (ca, verifier) = setup();
    let key = SoftAuthenticator::new(&ca);
    let opts = RegisterOptions {
        format: Format::PackedSelf,
        ..packed()
    };
    let reg = key.register(&opts);
    let stmt = Value::Map(vec![
        (text("alg"), int(-8)),
        (text("sig"), Value::Bytes(vec![1, 2, 3])),
    ]);
    let mut tampered = authenticator::Registration {
        attestation_object: attestation_object("packed", stmt, &reg.authenticator_data),
        ..reg
    };
    assert_eq!(
        error_code(&verifier, &tampered, &opts),
        "algorithm_mismatch"
    );
    let stmt = Value::Map(vec![
        (text("alg"), int(-7)),
        (
            text("sig"),
            Value::Bytes(vec![0x30, 0x06, 2, 1, 1, 2, 1, 1]),
        ),
    ]);
    tampered.attestation_object = attestation_object("packed", stmt, &tampered.authenticator_data);
    assert_eq!(error_code(&verifier, &tampered, &opts), "bad_signature");
}

#[test]
fn client_data_and_rp_checks_refuse_with_their_codes() {
    let (ca, verifier) = setup();
    let key = SoftAuthenticator::new(&ca);
    let expected = packed();
    let cases: Vec<(RegisterOptions, &str)> = vec![
        (
            RegisterOptions {
                origin: "https://keygate.example.evil".into(),
                ..packed()
            },
            "origin_mismatch",
        ),
        (
            RegisterOptions {
                origin: "http://keygate.example".into(),
                ..packed()
            },
            "origin_mismatch",
        ),
        (
            RegisterOptions {
                rp_id: "example".into(),
                ..packed()
            },
            "rp_id_mismatch",
        ),
        (
            RegisterOptions {
                challenge: vec![8; 32],
                ..packed()
            },
            "challenge_mismatch",
        ),
        (
            RegisterOptions {
                challenge: vec![7; 31],
                ..packed()
            },
            "challenge_mismatch",
        ),
        (
            RegisterOptions {
                ty: "webauthn.get".into(),
                ..packed()
            },
            "wrong_type",
        ),
        (
            RegisterOptions {
                cross_origin: true,
                ..packed()
            },
            "cross_origin",
        ),
        (
            RegisterOptions {
                user_present: false,
                ..packed()
            },
            "user_not_present",
        ),
        (
            RegisterOptions {
                backup_state: true,
                ..packed()
            },
            "invalid_backup_flags",
        ),
    ];
    for (sent, code) in cases {
        let reg = key.register(&sent);
        assert_eq!(error_code(&verifier, &reg, &expected), code, "{sent:?}");
    }
}

#[test]
fn an_unknown_root_is_refused_as_untrusted_root() {
    let (ca, _) = setup();
    let verifier = keygate::attestation::Verifier::builtin();
    let key = SoftAuthenticator::new(&ca);
    let opts = packed();
    let v = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    assert!(matches!(
        v.evidence.trust,
        TrustResult::Untrusted {
            code: "untrusted_root",
            ..
        }
    ));
    let d = decide(&Policy::default(), &v, &[], false);
    assert_eq!(rules(&d), ["untrusted_root"]);
    assert!(!d.phishing_resistant);
    assert!(d.refusals[0].message.contains("untrusted_root"));
}

#[test]
fn an_expired_attestation_certificate_is_refused() {
    let (ca, verifier) = setup();
    let key = SoftAuthenticator::with_leaf(
        &ca,
        YUBIKEY_5_NFC,
        &LeafOptions {
            expired: true,
            ..LeafOptions::default()
        },
    );
    let opts = packed();
    let v = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    let d = decide(&Policy::default(), &v, &[], false);
    assert_eq!(rules(&d), ["certificate_expired"]);
}

#[test]
fn a_leaf_aaguid_that_differs_from_authenticator_data_is_an_error() {
    let (ca, verifier) = setup();
    let key = SoftAuthenticator::with_leaf(
        &ca,
        YUBIKEY_5_NFC,
        &LeafOptions {
            aaguid: Some(YUBIKEY_5CI_FIPS),
            ..LeafOptions::default()
        },
    );
    let opts = packed();
    assert_eq!(
        error_code(&verifier, &key.register(&opts), &opts),
        "aaguid_mismatch"
    );
    // Without the extension there is nothing to compare.
    let key = SoftAuthenticator::with_leaf(
        &ca,
        YUBIKEY_5_NFC,
        &LeafOptions {
            aaguid: None,
            ..LeafOptions::default()
        },
    );
    let v = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    assert_eq!(v.evidence.leaf_aaguid, None);
    // ...but then only authenticator data names the model, which the policy refuses unless
    // told otherwise (see attestation_policy).
    assert_eq!(
        rules(&decide(&Policy::default(), &v, &[], false)),
        ["aaguid_not_certified"]
    );
    let lenient = Policy {
        require_aaguid_extension: false,
        ..Policy::default()
    };
    assert!(decide(&lenient, &v, &[], false).accepted);
}

#[test]
fn packed_leaf_requirements_are_checked() {
    let (ca, verifier) = setup();
    let opts = packed();
    let wrong_ou = SoftAuthenticator::with_leaf(
        &ca,
        YUBIKEY_5_NFC,
        &LeafOptions {
            organizational_unit: "Something Else".into(),
            ..LeafOptions::default()
        },
    );
    assert_eq!(
        error_code(&verifier, &wrong_ou.register(&opts), &opts),
        "invalid_attestation_certificate"
    );
    let ca_leaf = SoftAuthenticator::with_leaf(
        &ca,
        YUBIKEY_5_NFC,
        &LeafOptions {
            is_ca: true,
            ..LeafOptions::default()
        },
    );
    assert_eq!(
        error_code(&verifier, &ca_leaf.register(&opts), &opts),
        "invalid_attestation_certificate"
    );
}

#[test]
fn unsupported_formats_and_tampering_are_errors() {
    let (ca, verifier) = setup();
    let opts = packed();
    let key = SoftAuthenticator::new(&ca);
    let reg = key.register(&opts);

    let tpm = authenticator::Registration {
        attestation_object: attestation_object("tpm", Value::Map(vec![]), &reg.authenticator_data),
        ..key.register(&opts)
    };
    assert_eq!(
        error_code(&verifier, &tpm, &opts),
        "unsupported_attestation_format"
    );

    // Flip UV in authenticator data after signing.
    let mut auth_data = reg.authenticator_data.clone();
    auth_data[32] ^= 0x04;
    let mut value: Value =
        ciborium::de::from_reader(reg.attestation_object.as_slice()).expect("CBOR");
    if let Value::Map(entries) = &mut value {
        for (k, v) in entries.iter_mut() {
            if k == &text("authData") {
                *v = Value::Bytes(auth_data.clone());
            }
        }
    }
    let tampered = authenticator::Registration {
        attestation_object: cbor(&value),
        ..key.register(&opts)
    };
    assert_eq!(error_code(&verifier, &tampered, &opts), "bad_signature");

    // A none statement that is not empty.
    let bad_none = authenticator::Registration {
        attestation_object: attestation_object(
            "none",
            Value::Map(vec![(text("sig"), Value::Bytes(vec![1]))]),
            &reg.authenticator_data,
        ),
        ..key.register(&opts)
    };
    assert_eq!(
        error_code(&verifier, &bad_none, &opts),
        "malformed_attestation_statement"
    );

    // Trailing bytes after the attestation object.
    let mut trailing = reg.attestation_object.clone();
    trailing.push(0);
    let t = authenticator::Registration {
        attestation_object: trailing,
        ..key.register(&opts)
    };
    assert_eq!(error_code(&verifier, &t, &opts), "malformed_cbor");
}

#[test]
fn garbage_and_truncations_are_errors() {
    let (ca, verifier) = setup();
    let opts = packed();
    let key = SoftAuthenticator::new(&ca);
    let reg = key.register(&opts);
    for len in 0..reg.attestation_object.len() {
        let cut = authenticator::Registration {
            attestation_object: reg.attestation_object[..len].to_vec(),
            ..key.register(&opts)
        };
        let code = error_code(&verifier, &cut, &opts);
        assert!(code.starts_with("malformed_"), "truncated to {len}: {code}");
    }
    for len in 0..reg.client_data_json.len() {
        let cut = authenticator::Registration {
            client_data_json: reg.client_data_json[..len].to_vec(),
            attestation_object: reg.attestation_object.clone(),
            ..key.register(&opts)
        };
        assert_eq!(error_code(&verifier, &cut, &opts), "malformed_client_data");
    }
    for garbage in [&b""[..], b"\x00", b"\xa0", b"\xff\xff\xff", b"{}", b"\xbf"] {
        let g = authenticator::Registration {
            attestation_object: garbage.to_vec(),
            ..key.register(&opts)
        };
        assert_eq!(error_code(&verifier, &g, &opts), "malformed_cbor");
    }
}
