//! Registrations from the software authenticator through `verify_registration` and
//! the default policy: what is accepted, and a test for every refusal.

use ciborium::value::Value;
use keygate::attestation::{
    is_compliant, AttestationKind, ComplianceKey, DeviceInfo, Policy, TrustResult,
};
use keygate::webauthn::Aaguid;

use crate::support::authenticator::{
    self, attestation_object, cbor, int, text, CredAlg, Format, LeafOptions, RegisterOptions,
    SoftAuthenticator, UNKNOWN_AAGUID, YUBIKEY_5CI_FIPS, YUBIKEY_5_NFC,
};
use crate::webauthn_common::{decide, error_code, existing, rules, setup, verify};

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
    assert!(decide(&Policy::default(), &v, &[], false).accepted);
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
fn missing_user_verification_is_refused() {
    let (ca, verifier) = setup();
    let opts = RegisterOptions {
        user_verified: false,
        ..packed()
    };
    let v = verify(
        &verifier,
        &SoftAuthenticator::new(&ca).register(&opts),
        &opts,
    )
    .expect("verifies");
    assert!(!v.flags.user_verified);
    let d = decide(&Policy::default(), &v, &[], false);
    assert_eq!(rules(&d), ["user_verification_required"]);
}

#[test]
fn backup_eligible_credentials_are_refused() {
    let (ca, verifier) = setup();
    for backup_state in [false, true] {
        let opts = RegisterOptions {
            backup_eligible: true,
            backup_state,
            ..packed()
        };
        let v = verify(
            &verifier,
            &SoftAuthenticator::new(&ca).register(&opts),
            &opts,
        )
        .expect("verifies");
        let d = decide(&Policy::default(), &v, &[], false);
        assert_eq!(rules(&d), ["backup_eligible"]);
        let lenient = Policy {
            refuse_backup_eligible: false,
            ..Policy::default()
        };
        assert!(decide(&lenient, &v, &[], false).accepted);
    }
}

#[test]
fn every_failing_rule_is_listed() {
    let (ca, verifier) = setup();
    let opts = RegisterOptions {
        user_verified: false,
        backup_eligible: true,
        ..packed()
    };
    let v = verify(
        &verifier,
        &SoftAuthenticator::new(&ca).register(&opts),
        &opts,
    )
    .expect("verifies");
    let policy = Policy {
        fips_only: true,
        ..Policy::default()
    };
    let d = decide(&policy, &v, &[], true);
    assert_eq!(
        rules(&d),
        [
            "user_verification_required",
            "backup_eligible",
            "fips_required",
            "duplicate_credential"
        ]
    );
    assert!(!d.accepted);
}

#[test]
fn models_outside_the_allow_lists_are_refused() {
    let (ca, verifier) = setup();
    let opts = packed();
    let v = verify(
        &verifier,
        &SoftAuthenticator::new(&ca).register(&opts),
        &opts,
    )
    .expect("verifies");
    let by_model = Policy {
        allowed_models: vec!["YubiKey 5Ci FIPS".into()],
        ..Policy::default()
    };
    assert_eq!(
        rules(&decide(&by_model, &v, &[], false)),
        ["model_not_allowed"]
    );
    let by_aaguid = Policy {
        allowed_aaguids: vec![Aaguid(YUBIKEY_5CI_FIPS)],
        ..Policy::default()
    };
    let d = decide(&by_aaguid, &v, &[], false);
    assert_eq!(rules(&d), ["model_not_allowed"]);
    assert!(d.refusals[0].message.contains("YubiKey 5 NFC"));

    let allowed = Policy {
        allowed_models: vec!["yubikey 5 nfc".into()],
        allowed_aaguids: vec![Aaguid(YUBIKEY_5_NFC)],
        ..Policy::default()
    };
    assert!(decide(&allowed, &v, &[], false).accepted);
}

#[test]
fn fips_only_accepts_only_fips_models() {
    let (ca, verifier) = setup();
    let opts = packed();
    let policy = Policy {
        fips_only: true,
        ..Policy::default()
    };
    let plain = verify(
        &verifier,
        &SoftAuthenticator::new(&ca).register(&opts),
        &opts,
    )
    .expect("verifies");
    assert_eq!(
        rules(&decide(&policy, &plain, &[], false)),
        ["fips_required"]
    );
    let fips = SoftAuthenticator::model(&ca, YUBIKEY_5CI_FIPS);
    let v = verify(&verifier, &fips.register(&opts), &opts).expect("verifies");
    assert_eq!(
        v.evidence
            .device
            .as_ref()
            .map(|d| (d.model.as_str(), d.fips)),
        Some(("YubiKey 5Ci FIPS", true))
    );
    assert!(decide(&policy, &v, &[], false).accepted);
}

#[test]
fn uncatalogued_models_are_refused_unless_allowed_or_added() {
    let (ca, mut verifier) = setup();
    let opts = packed();
    let key = SoftAuthenticator::model(&ca, UNKNOWN_AAGUID);
    let v = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    assert!(v.evidence.device.is_none());
    assert_eq!(
        rules(&decide(&Policy::default(), &v, &[], false)),
        ["uncatalogued_authenticator"]
    );
    let lenient = Policy {
        allow_uncatalogued: true,
        ..Policy::default()
    };
    assert!(decide(&lenient, &v, &[], false).accepted);
    // FIPS-only cannot be met by an unknown model.
    let fips = Policy {
        allow_uncatalogued: true,
        fips_only: true,
        ..Policy::default()
    };
    assert_eq!(rules(&decide(&fips, &v, &[], false)), ["fips_required"]);

    verifier
        .catalogue
        .insert(DeviceInfo::new(Aaguid(UNKNOWN_AAGUID), "Test Key", false));
    let v = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    assert_eq!(
        v.evidence.device.as_ref().map(|d| d.model.as_str()),
        Some("Test Key")
    );
    assert!(decide(&Policy::default(), &v, &[], false).accepted);
}

#[test]
fn a_registered_credential_id_is_refused_as_duplicate() {
    let (ca, verifier) = setup();
    let opts = packed();
    let key = SoftAuthenticator::new(&ca);
    let first = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    // Registered to someone else.
    assert_eq!(
        rules(&decide(&Policy::default(), &first, &[], true)),
        ["duplicate_credential"]
    );
    // Registered to this member (same credential ID, another key's certificate).
    let other = SoftAuthenticator::new(&ca);
    let again = RegisterOptions {
        credential_id: Some(first.credential_id.clone()),
        ..packed()
    };
    let second = verify(&verifier, &other.register(&again), &again).expect("verifies");
    assert_eq!(
        rules(&decide(
            &Policy::default(),
            &second,
            &[existing(&first)],
            false
        )),
        ["duplicate_credential"]
    );
}

#[test]
fn a_second_credential_on_the_same_physical_key_is_refused() {
    let (ca, verifier) = setup();
    let opts = packed();
    let key = SoftAuthenticator::new(&ca);
    let first = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    let second = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    assert_ne!(first.credential_id, second.credential_id);
    let d = decide(&Policy::default(), &second, &[existing(&first)], false);
    assert_eq!(rules(&d), ["same_physical_key"]);
    assert!(d.refusals[0].remedy.contains("different physical key"));

    // Another physical key is fine, and so is the same key when the rule is off.
    let backup = SoftAuthenticator::new(&ca);
    let third = verify(&verifier, &backup.register(&opts), &opts).expect("verifies");
    assert!(decide(&Policy::default(), &third, &[existing(&first)], false).accepted);
    let off = Policy {
        distinct_physical_keys: false,
        ..Policy::default()
    };
    assert!(decide(&off, &second, &[existing(&first)], false).accepted);
}

#[test]
fn compliance_needs_min_keys_distinct_attested_keys() {
    let policy = Policy::default();
    let key = |trusted: bool, leaf: u8| ComplianceKey {
        trusted_attestation: trusted,
        leaf_sha256: Some([leaf; 32]),
    };
    assert!(!is_compliant(&policy, &[]).compliant);
    let one = is_compliant(&policy, &[key(true, 1)]);
    assert!(!one.compliant);
    assert_eq!(one.attested_keys, 1);
    assert!(one.reasons[0].contains("requires 2"));
    assert!(is_compliant(&policy, &[key(true, 1), key(true, 2)]).compliant);
    assert!(!is_compliant(&policy, &[key(true, 1), key(true, 1)]).compliant);
    let unattested = is_compliant(&policy, &[key(true, 1), key(false, 2)]);
    assert!(!unattested.compliant);
    assert_eq!(unattested.reasons.len(), 2);
    assert!(keygate::attestation::compliance(&policy, &[true, true]).compliant);
    assert!(!keygate::attestation::compliance(&policy, &[true, false]).compliant);
}

#[test]
fn policy_parses_with_defaults_and_refuses_unknown_fields() {
    let p: Policy = serde_json::from_str(r#"{"fips_only": true}"#).expect("parses");
    assert!(p.fips_only);
    assert_eq!(p.min_keys, 2);
    assert!(p.require_user_verification && p.refuse_backup_eligible);
    assert!(p.require_trusted_attestation && p.distinct_physical_keys);
    assert!(!p.allow_uncatalogued);
    assert!(p.validate().is_ok());
    assert!(serde_json::from_str::<Policy>(r#"{"fips": true}"#).is_err());
    let p: Policy =
        serde_json::from_str(r#"{"allowed_aaguids": ["fa2b99dc-9e39-4257-8f92-4a30d23c4118"]}"#)
            .expect("parses");
    assert_eq!(p.allowed_aaguids, [Aaguid(YUBIKEY_5_NFC)]);
    assert!(serde_json::from_str::<Policy>(r#"{"allowed_aaguids": ["nope"]}"#).is_err());
    assert!(Policy {
        version: 2,
        ..Policy::default()
    }
    .validate()
    .is_err());
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
