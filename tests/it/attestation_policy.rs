//! Enrolment policy over registrations from the software authenticator: a test for
//! every rule, and member compliance.

use keygate::attestation::{
    is_compliant, ComplianceKey, DeviceInfo, ModelSource, Policy, TrustResult,
};
use keygate::webauthn::Aaguid;

use crate::support::authenticator::{
    Format, LeafOptions, RegisterOptions, SoftAuthenticator, UNKNOWN_AAGUID, YUBIKEY_5CI_FIPS,
    YUBIKEY_5_NFC,
};
use crate::webauthn_common::{decide, existing, rules, setup, verify};

fn packed() -> RegisterOptions {
    RegisterOptions::default()
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
fn a_trusted_leaf_without_the_aaguid_extension_is_refused_unless_the_policy_allows_it() {
    let (ca, verifier) = setup();
    let opts = packed();
    // A chain to a configured (non-Yubico) root whose leaf does not name the model: only
    // authenticator data says "YubiKey 5 NFC".
    let key = SoftAuthenticator::with_leaf(
        &ca,
        YUBIKEY_5_NFC,
        &LeafOptions {
            aaguid: None,
            ..LeafOptions::default()
        },
    );
    let v = verify(&verifier, &key.register(&opts), &opts).expect("verifies");
    let ev = &v.evidence;
    match &ev.trust {
        TrustResult::Trusted {
            anchor_name,
            yubico_root,
            ..
        } => {
            assert_eq!(anchor_name, "Keygate Test Root CA");
            assert!(!yubico_root);
        }
        other => panic!("not trusted: {other:?}"),
    }
    assert_eq!(ev.leaf_aaguid, None);
    assert_eq!(ev.model_source, Some(ModelSource::AuthenticatorData));
    assert_eq!(
        ev.device.as_ref().map(|d| d.model.as_str()),
        Some("YubiKey 5 NFC")
    );
    let recorded = serde_json::to_value(ev).expect("serialises");
    assert_eq!(recorded["model_source"], "authenticator_data");

    let d = decide(&Policy::default(), &v, &[], false);
    assert_eq!(rules(&d), ["aaguid_not_certified"]);
    assert!(!d.accepted);
    let message = &d.refusals[0].message;
    assert!(message.contains("Keygate Test Root CA"), "{message}");
    assert!(
        message.contains("fa2b99dc-9e39-4257-8f92-4a30d23c4118"),
        "{message}"
    );
    assert!(d.refusals[0]
        .remedy
        .contains("policy.require_aaguid_extension = false"));

    let lenient = Policy {
        require_aaguid_extension: false,
        ..Policy::default()
    };
    let d = decide(&lenient, &v, &[], false);
    assert!(d.accepted, "{:?}", d.refusals);
    assert!(d.phishing_resistant);

    // A leaf with the extension names the model itself, whatever the setting.
    let named = verify(
        &verifier,
        &SoftAuthenticator::new(&ca).register(&opts),
        &opts,
    )
    .expect("verifies");
    assert_eq!(named.evidence.model_source, Some(ModelSource::Certificate));
    assert_eq!(
        serde_json::to_value(&named.evidence).expect("serialises")["model_source"],
        "certificate"
    );
    assert!(decide(&Policy::default(), &named, &[], false).accepted);

    // fido-u2f carries a zero AAGUID in authenticator data: the certificate names the
    // model, and the rule has nothing to refuse.
    let u2f_opts = RegisterOptions {
        format: Format::FidoU2f,
        ..packed()
    };
    let u2f = verify(
        &verifier,
        &SoftAuthenticator::u2f(&ca).register(&u2f_opts),
        &u2f_opts,
    )
    .expect("verifies");
    assert!(u2f.evidence.aaguid.is_zero());
    assert_eq!(u2f.evidence.model_source, Some(ModelSource::Certificate));
    assert!(!rules(&decide(&Policy::default(), &u2f, &[], false)).contains(&"aaguid_not_certified"));
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
    assert!(p.require_aaguid_extension);
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
