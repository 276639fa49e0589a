//! Real YubiKey registrations and assertions (`tests/fixtures`) through the
//! relying-party checks, against Yubico's built-in roots.

use ciborium::value::Value;
use keygate::attestation::{AttestationKind, Catalogue, Policy, TrustResult, TrustStore, Verifier};
use keygate::webauthn::{
    verify_assertion, verify_registration, Aaguid, AssertionInput, CoseKey, RegistrationInput,
};
use serde_json::Value as Json;

use crate::support::fixtures::{self, RegistrationVector};
use crate::webauthn_common::{decide, rules, NOW};

fn input(v: &RegistrationVector) -> RegistrationInput<'_> {
    RegistrationInput {
        client_data_json: &v.client_data_json,
        attestation_object: &v.attestation_object,
        expected_challenge: &v.challenge,
        expected_origin: &v.origin,
        rp_id: &v.rp_id,
    }
}

fn exp_str<'a>(v: &'a RegistrationVector, pointer: &str) -> Option<&'a str> {
    v.expected.pointer(pointer).and_then(Json::as_str)
}

/// A clone anywhere passes its own tests: the real vectors live inside the repository, not
/// beside it.
#[test]
fn the_real_fixtures_are_kept_inside_the_repository() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .expect("crate dir");
    let dir = fixtures::dir()
        .canonicalize()
        .expect("the fixtures directory exists");
    assert!(
        dir.starts_with(&crate_dir),
        "{} lies outside the crate ({})",
        dir.display(),
        crate_dir.display()
    );
    assert!(dir.join("yubikey/registration").is_dir());
    assert!(dir.join("roots").is_dir());
}

#[test]
fn every_real_registration_verifies_against_the_builtin_roots() {
    let verifier = Verifier::builtin();
    let vectors = fixtures::registrations();
    assert_eq!(vectors.len(), 6, "fixture count");
    for v in &vectors {
        let name = &v.name;
        let verified = verify_registration(&input(v), &verifier, NOW)
            .unwrap_or_else(|e| panic!("{name}: {} ({e})", e.code()));
        let ev = &verified.evidence;
        let e = &v.expected;

        assert_eq!(Some(ev.fmt.as_str()), exp_str(v, "/fmt"), "{name} fmt");
        assert_eq!(ev.kind, AttestationKind::Basic, "{name}");
        assert_eq!(
            Some(ev.aaguid.to_string().as_str()),
            exp_str(v, "/aaguid"),
            "{name}"
        );
        assert_eq!(
            Some(fixtures::b64(
                exp_str(v, "/credential_id_b64url").unwrap_or_default()
            )),
            Some(verified.credential_id.clone()),
            "{name} credential id"
        );
        assert_eq!(verified.credential_id, v.raw_id, "{name} rawId");
        assert_eq!(
            verified.public_key_cose,
            fixtures::b64(exp_str(v, "/credential_public_key_cose_b64url").unwrap_or_default()),
            "{name} COSE key bytes"
        );
        assert_eq!(
            Some(verified.alg),
            e["credential_public_key_alg"].as_i64(),
            "{name} alg"
        );
        assert_eq!(
            Some(u64::from(verified.sign_count)),
            e["sign_count"].as_u64(),
            "{name} sign count"
        );
        let flags = verified.flags;
        assert_eq!(
            Some(flags.user_present),
            e["user_present"].as_bool(),
            "{name}"
        );
        assert_eq!(
            Some(flags.user_verified),
            e["user_verified"].as_bool(),
            "{name} UV"
        );
        assert_eq!(
            Some(flags.backup_eligible),
            e["backup_eligible"].as_bool(),
            "{name}"
        );
        assert_eq!(
            Some(flags.backup_state),
            e["backup_state"].as_bool(),
            "{name}"
        );
        assert_eq!(
            Some(flags.extension_data),
            e["extension_data_present"].as_bool(),
            "{name} ED"
        );
        assert_eq!(
            Some(ev.chain.len() as u64),
            e["x5c_length"].as_u64(),
            "{name} x5c"
        );

        // Leaf facts.
        let leaf = &e["leaf_certificate"];
        assert_eq!(
            ev.leaf_sha256.map(hex::encode).as_deref(),
            leaf["sha256"].as_str(),
            "{name} leaf sha256"
        );
        assert_eq!(
            ev.leaf_aaguid.map(|a| a.to_string()).as_deref(),
            leaf["aaguid_extension_1.3.6.1.4.1.45724.1.1.4"].as_str(),
            "{name} leaf AAGUID"
        );
        assert_eq!(
            ev.firmware.as_deref(),
            leaf["firmware_extension_1.3.6.1.4.1.41482.13.1"].as_str(),
            "{name} firmware"
        );

        // Model from the catalogue (by the leaf's AAGUID for fido-u2f).
        let model = &e["model_from_aaguids_json"];
        let device = ev
            .device
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no catalogued device"));
        assert_eq!(
            Some(device.model.as_str()),
            model["model"].as_str(),
            "{name}"
        );
        assert_eq!(Some(device.fips), model["fips"].as_bool(), "{name} fips");
        assert_eq!(
            Some(device.aaguid.to_string().as_str()),
            model["aaguid"].as_str(),
            "{name} device AAGUID"
        );

        // Trust: the U2F root.
        match &ev.trust {
            TrustResult::Trusted {
                anchor_name,
                anchor_sha256,
                path_sha256,
                yubico_root,
            } => {
                assert!(yubico_root, "{name}");
                assert_eq!(
                    Some(anchor_name.as_str()),
                    e["chains_to_root"].as_str(),
                    "{name}"
                );
                assert_eq!(anchor_name, "Yubico U2F Root CA Serial 457200631");
                assert_eq!(
                    Some(hex::encode(anchor_sha256).as_str()),
                    e["root_sha256"].as_str(),
                    "{name}"
                );
                assert_eq!(path_sha256.len(), 1, "{name}: leaf signed by the root");
            }
            other => panic!("{name}: not trusted: {other:?}"),
        }
    }
}

#[test]
fn real_registrations_are_untrusted_under_any_other_root() {
    let vectors = fixtures::registrations();
    for (file, root_name) in fixtures::ROOTS
        .iter()
        .filter(|(_, n)| *n != "Yubico U2F Root CA Serial 457200631")
    {
        let mut trust = TrustStore::empty();
        trust
            .add_anchor_pem(&fixtures::root_pem(file))
            .expect("root parses");
        // Yubico's intermediates in the pool do not help either.
        trust
            .add_intermediates_pem(&fixtures::read_text(
                "intermediates/yubico-intermediate.pem",
            ))
            .expect("intermediates parse");
        let verifier = Verifier::new(trust, Catalogue::builtin());
        for v in &vectors {
            let verified = verify_registration(&input(v), &verifier, NOW)
                .unwrap_or_else(|e| panic!("{}: {e}", v.name));
            match &verified.evidence.trust {
                TrustResult::Untrusted { code, reason } => {
                    assert_eq!(
                        *code, "untrusted_root",
                        "{} under {root_name}: {reason}",
                        v.name
                    )
                }
                other => panic!("{} trusted under {root_name}: {other:?}", v.name),
            }
            let d = decide(&Policy::default(), &verified, &[], false);
            assert!(rules(&d).contains(&"untrusted_root"), "{}", v.name);
        }
    }
}

#[test]
fn an_empty_trust_store_trusts_nothing() {
    let verifier = Verifier::new(TrustStore::empty(), Catalogue::builtin());
    for v in &fixtures::registrations() {
        let verified = verify_registration(&input(v), &verifier, NOW).expect("verifies");
        assert!(!verified.evidence.trust.is_trusted(), "{}", v.name);
    }
}

/// Re-encodes an attestation object with `edit` applied to its attStmt entries.
fn edit_statement(att_obj: &[u8], edit: impl Fn(&mut [(Value, Value)])) -> Vec<u8> {
    let mut value: Value = ciborium::de::from_reader(att_obj).expect("CBOR");
    if let Value::Map(entries) = &mut value {
        for (k, v) in entries.iter_mut() {
            if k == &Value::Text("attStmt".into()) {
                if let Value::Map(stmt) = v {
                    edit(stmt);
                }
            }
        }
    }
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).expect("CBOR");
    out
}

fn flip_sig_byte(stmt: &mut [(Value, Value)]) {
    for (k, v) in stmt.iter_mut() {
        if k == &Value::Text("sig".into()) {
            if let Value::Bytes(sig) = v {
                // Inside r of the DER signature: still well-formed DER, wrong value.
                sig[10] ^= 0x01;
            }
        }
    }
}

#[test]
fn one_flipped_byte_of_the_attestation_signature_fails() {
    let verifier = Verifier::builtin();
    for v in &fixtures::registrations() {
        let tampered = edit_statement(&v.attestation_object, flip_sig_byte);
        assert_ne!(tampered, v.attestation_object);
        let mut bad = input(v);
        bad.attestation_object = &tampered;
        let err = verify_registration(&bad, &verifier, NOW).expect_err("must fail");
        assert_eq!(err.code(), "bad_signature", "{}", v.name);
    }
}

#[test]
fn real_registrations_fail_with_another_challenge_origin_or_rp_id() {
    let verifier = Verifier::builtin();
    for v in &fixtures::registrations() {
        let mut challenge = v.challenge.clone();
        challenge[0] ^= 1;
        let mut i = input(v);
        i.expected_challenge = &challenge;
        let code = verify_registration(&i, &verifier, NOW)
            .map(|_| ())
            .map_err(|e| e.code());
        assert_eq!(code, Err("challenge_mismatch"), "{}", v.name);

        let mut i = input(v);
        i.expected_origin = "https://evil.example";
        let code = verify_registration(&i, &verifier, NOW)
            .map(|_| ())
            .map_err(|e| e.code());
        assert_eq!(code, Err("origin_mismatch"), "{}", v.name);

        let mut i = input(v);
        i.rp_id = "evil.example";
        let code = verify_registration(&i, &verifier, NOW)
            .map(|_| ())
            .map_err(|e| e.code());
        assert_eq!(code, Err("rp_id_mismatch"), "{}", v.name);
    }
}

#[test]
fn default_policy_on_real_keys_refuses_only_for_missing_uv() {
    let verifier = Verifier::builtin();
    for v in &fixtures::registrations() {
        let verified = verify_registration(&input(v), &verifier, NOW).expect("verifies");
        let d = decide(&Policy::default(), &verified, &[], false);
        if verified.flags.user_verified {
            assert!(d.accepted, "{}: {:?}", v.name, d.refusals);
            assert!(d.phishing_resistant, "{}", v.name);
        } else {
            assert_eq!(rules(&d), ["user_verification_required"], "{}", v.name);
            assert!(!d.phishing_resistant);
        }
    }
}

#[test]
fn the_fido_u2f_model_comes_from_the_leaf_extension() {
    let verifier = Verifier::builtin();
    let v = fixtures::registrations()
        .into_iter()
        .find(|v| v.name.contains("fido-u2f"))
        .expect("u2f vector");
    let verified = verify_registration(&input(&v), &verifier, NOW).expect("verifies");
    let ev = &verified.evidence;
    assert!(ev.aaguid.is_zero());
    let leaf: Aaguid = "2fc0579f-8113-47ea-b116-bb5a8db9202a"
        .parse()
        .expect("aaguid");
    assert_eq!(ev.leaf_aaguid, Some(leaf));
    assert_eq!(ev.effective_aaguid(), leaf);
    assert_eq!(
        ev.device.as_ref().map(|d| d.model.as_str()),
        Some("YubiKey 5/5C NFC")
    );
}

#[test]
fn both_real_assertions_verify_with_the_expected_counts() {
    let vectors = fixtures::assertions();
    assert_eq!(vectors.len(), 2);
    for v in &vectors {
        let key = CoseKey::from_cbor_exact(&v.public_key_cose).expect("stored key parses");
        assert_eq!(key.alg(), v.public_key_alg, "{}", v.name);
        let input = AssertionInput {
            client_data_json: &v.client_data_json,
            authenticator_data: &v.authenticator_data,
            signature: &v.signature,
            expected_challenge: &v.challenge,
            expected_origin: &v.origin,
            rp_id: &v.rp_id,
            stored_public_key: &key,
            stored_sign_count: v.current_sign_count,
        };
        let out = verify_assertion(&input).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(out.sign_count, v.expected_sign_count, "{}", v.name);
        assert!(!out.counter_regressed, "{}", v.name);
        assert_eq!(
            Some(out.flags.user_verified),
            v.expected["user_verified"].as_bool(),
            "{}",
            v.name
        );
        assert!(out.flags.user_present);

        // A stored counter at or above the new one is reported, not refused.
        let replay = AssertionInput {
            stored_sign_count: v.expected_sign_count,
            ..input
        };
        assert!(
            verify_assertion(&replay)
                .expect("still verifies")
                .counter_regressed
        );

        // A flipped signature byte fails.
        let mut sig = v.signature.clone();
        let last = sig.len() - 1;
        sig[last] ^= 0x01;
        let bad = AssertionInput {
            signature: &sig,
            ..input
        };
        assert_eq!(
            verify_assertion(&bad).map_err(|e| e.code()).err(),
            Some("bad_signature")
        );

        // Another challenge fails.
        let other = [0u8; 32];
        let bad = AssertionInput {
            expected_challenge: &other,
            ..input
        };
        assert_eq!(
            verify_assertion(&bad).map_err(|e| e.code()).err(),
            Some("challenge_mismatch")
        );
    }
}
