//! Chain validation on its own: the real firmware-5.7.1 leaf, Yubico's published
//! intermediates, and test chains with broken links.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keygate::attestation::cert::AaguidExtension;
use keygate::attestation::{Catalogue, Certificate, TrustResult, TrustStore};
use keygate::webauthn::Aaguid;
use time::macros::datetime;

use crate::support::authenticator::{LeafOptions, TestCa, YUBIKEY_5_NFC};
use crate::support::fixtures;
use crate::webauthn_common::NOW;

fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body.trim()).expect("PEM body")
}

fn leaf_571() -> Vec<u8> {
    pem_to_der(&fixtures::read_text(
        "yubikey/certs/yubikey-5ci-fw5.7.1-enterprise-attestation-leaf.pem",
    ))
}

#[test]
fn the_571_leaf_chains_to_the_fido_root_450203556() {
    let der = leaf_571();
    let facts =
        fixtures::read_json("yubikey/certs/yubikey-5ci-fw5.7.1-enterprise-attestation-leaf.json");
    let store = TrustStore::builtin();
    match store.validate_der(&[&der], NOW) {
        TrustResult::Trusted {
            anchor_name,
            anchor_sha256,
            path_sha256,
            yubico_root,
        } => {
            assert_eq!(anchor_name, "Yubico FIDO Root CA Serial 450203556");
            assert!(yubico_root, "a Yubico root is marked as one");
            assert_eq!(
                hex::encode(anchor_sha256),
                "35f1a54b353bfb711e6d42adbeb76c0e9dead095018e6a94783ba2192fd6faad"
            );
            assert_eq!(
                path_sha256.iter().map(hex::encode).collect::<Vec<_>>(),
                [facts["expected"]["sha256"].as_str().expect("sha256")]
            );
        }
        other => panic!("not trusted: {other:?}"),
    }

    let cert = Certificate::from_der(&der).expect("parses");
    assert_eq!(cert.firmware.as_deref(), Some("5.7.1"));
    let aaguid: Aaguid = "b90e7dc1-316e-4fee-a25a-56a666a670fe"
        .parse()
        .expect("aaguid");
    assert_eq!(
        cert.aaguid_extension,
        AaguidExtension::Present {
            aaguid,
            critical: false
        }
    );
    assert_eq!(cert.organizational_units, ["Authenticator Attestation"]);
    assert_eq!(cert.version, 3);
    assert!(!cert.is_ca());
    assert_eq!(
        cert.yubico_device_type.as_deref(),
        Some("1.3.6.1.4.1.41482.1.7")
    );
    let model = Catalogue::builtin()
        .lookup(&aaguid)
        .map(|d| d.model.clone());
    assert_eq!(model.as_deref(), Some("YubiKey 5Ci (enterprise profile)"));
}

#[test]
fn the_571_leaf_is_untrusted_under_the_other_roots_and_outside_its_validity() {
    let der = leaf_571();
    for (file, name) in fixtures::ROOTS {
        let mut store = TrustStore::empty();
        store
            .add_anchor_pem(&fixtures::root_pem(file))
            .expect("root");
        let result = store.validate_der(&[&der], NOW);
        assert_eq!(
            result.is_trusted(),
            name == "Yubico FIDO Root CA Serial 450203556",
            "{name}: {result:?}"
        );
    }
    let store = TrustStore::builtin();
    let code = |r: TrustResult| match r {
        TrustResult::Untrusted { code, .. } => code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(store.validate_der(&[&der], datetime!(2024-04-30 00:00 UTC))),
        "certificate_not_yet_valid"
    );
    assert_eq!(
        code(store.validate_der(&[&der], datetime!(2060-05-01 00:00 UTC))),
        "certificate_expired"
    );
}

#[test]
fn malformed_chains_are_untrusted_not_errors() {
    let store = TrustStore::builtin();
    let mut der = leaf_571();
    der.truncate(der.len() / 2);
    match store.validate_der(&[&der], NOW) {
        TrustResult::Untrusted { code, .. } => assert_eq!(code, "malformed_certificate"),
        other => panic!("{other:?}"),
    }
    match store.validate_der(&[], NOW) {
        TrustResult::Untrusted { code, .. } => assert_eq!(code, "malformed_certificate"),
        other => panic!("{other:?}"),
    }
}

fn code_of(r: &TrustResult) -> &'static str {
    match r {
        TrustResult::Untrusted { code, .. } => code,
        TrustResult::Trusted { .. } => "trusted",
        TrustResult::NotApplicable => "not_applicable",
    }
}

#[test]
fn test_chains_need_every_link() {
    let ca = TestCa::new("Chain Test");
    let leaf = ca.issue_attestation_cert(&LeafOptions::default());
    let inter = ca.intermediate_der().to_vec();

    // No anchor for the test CA.
    let builtin = TrustStore::builtin();
    assert_eq!(
        code_of(&builtin.validate_der(&[&leaf.der, &inter], NOW)),
        "untrusted_root"
    );

    let mut store = TrustStore::builtin();
    store.add_anchor_pem(ca.root_pem()).expect("root");
    let r = store.validate_der(&[&leaf.der, &inter], NOW);
    match &r {
        TrustResult::Trusted {
            anchor_name,
            path_sha256,
            ..
        } => {
            assert_eq!(anchor_name, "Chain Test Root CA");
            assert_eq!(path_sha256.len(), 2);
        }
        other => panic!("{other:?}"),
    }

    // Without the intermediate the path cannot be built...
    assert_eq!(
        code_of(&store.validate_der(&[&leaf.der], NOW)),
        "untrusted_root"
    );
    // ...unless the intermediate is in the store's pool.
    store
        .add_intermediates_pem(ca.intermediate_pem())
        .expect("intermediate");
    assert!(store.validate_der(&[&leaf.der], NOW).is_trusted());

    // The root presented in x5c as well is fine.
    let root = ca.root_der().to_vec();
    assert!(store
        .validate_der(&[&leaf.der, &inter, &root], NOW)
        .is_trusted());

    // An expired leaf.
    let expired = ca.issue_attestation_cert(&LeafOptions {
        expired: true,
        ..LeafOptions::default()
    });
    assert_eq!(
        code_of(&store.validate_der(&[&expired.der, &inter], NOW)),
        "certificate_expired"
    );
}

#[test]
fn a_lookalike_ca_with_the_same_names_fails_on_the_signature() {
    let trusted = TestCa::new("Lookalike");
    let impostor = TestCa::new("Lookalike");
    let leaf = impostor.issue_attestation_cert(&LeafOptions::default());
    let mut store = TrustStore::empty();
    store.add_anchor_pem(trusted.root_pem()).expect("root");
    // With the impostor's intermediate, the trusted root's signature check fails.
    let r = store.validate_der(&[&leaf.der, impostor.intermediate_der()], NOW);
    assert_eq!(code_of(&r), "bad_chain_signature", "{r:?}");
    // With the trusted intermediate, the leaf's signature check fails.
    let r = store.validate_der(&[&leaf.der, trusted.intermediate_der()], NOW);
    assert_eq!(code_of(&r), "bad_chain_signature", "{r:?}");
}

#[test]
fn issuer_constraints_are_enforced() {
    let ca = TestCa::new("Constraint Test");
    let mut store = TrustStore::empty();
    store.add_anchor_pem(ca.root_pem()).expect("root");

    // The intermediate has pathLen 0: a CA below it may not issue.
    let sub = ca.sub_ca("Constraint Test", true);
    let leaf = sub.issue_attestation_cert(&LeafOptions::default());
    let x5c: Vec<&[u8]> = leaf.x5c.iter().map(Vec::as_slice).collect();
    assert_eq!(x5c.len(), 3);
    assert_eq!(
        code_of(&store.validate_der(&x5c, NOW)),
        "path_length_constraint"
    );
    // The sub CA itself is a valid certificate under the intermediate.
    assert!(store
        .validate_der(&[&sub.der, ca.intermediate_der()], NOW)
        .is_trusted());

    // A certificate that is not a CA cannot issue.
    let not_ca = ca.sub_ca("Not A CA", false);
    let leaf = not_ca.issue_attestation_cert(&LeafOptions::default());
    let x5c: Vec<&[u8]> = leaf.x5c.iter().map(Vec::as_slice).collect();
    assert_eq!(code_of(&store.validate_der(&x5c, NOW)), "not_a_ca");

    // A leaf issued by the root directly is fine (x5c of one).
    let root_leaf = ca.issue_attestation_cert(&LeafOptions {
        signed_by_root: true,
        aaguid: Some(YUBIKEY_5_NFC),
        ..LeafOptions::default()
    });
    assert_eq!(root_leaf.x5c.len(), 1);
    assert!(store.validate_der(&[&root_leaf.der], NOW).is_trusted());
}

#[test]
fn builtin_anchors_can_be_extended_and_duplicates_are_ignored() {
    let mut store = TrustStore::builtin();
    assert_eq!(store.anchors().len(), 3);
    let pem = fixtures::root_pem("yubico-u2f-root-ca-serial-457200631.pem");
    assert_eq!(store.add_anchor_pem(&pem).expect("parses"), 0);
    let ca = TestCa::new("Admin Added");
    assert_eq!(store.add_anchor_pem(ca.root_pem()).expect("parses"), 1);
    assert_eq!(store.anchors().len(), 4);
    assert_eq!(store.anchors()[3].name, "Admin Added Root CA");
    assert!(store.add_anchor_pem("not a pem").is_err());
    assert!(store.add_intermediates_pem("").is_err());
}

/// Real Yubico certificates exist whose signature BIT STRING declares unused bits
/// (OpenSSL 3 refuses them, other verifiers accept them). When the padding bits are
/// zero the certificate parses and its signature (all the bytes) still verifies; when
/// they are not, it is a malformed certificate. Never a panic.
#[test]
fn a_signature_bit_string_with_unused_bits_does_not_panic() {
    let store = TrustStore::builtin();
    for v in fixtures::registrations() {
        let obj =
            keygate::webauthn::AttestationObject::parse(&v.attestation_object).expect("parses");
        let Some(ciborium::value::Value::Array(x5c)) = obj.att_stmt.as_map().and_then(|m| {
            m.iter()
                .find(|(k, _)| k.as_text() == Some("x5c"))
                .map(|(_, v)| v.clone())
        }) else {
            panic!("{}: no x5c", v.name)
        };
        let Some(ciborium::value::Value::Bytes(leaf)) = x5c.first() else {
            panic!("{}: x5c[0]", v.name)
        };
        // The signature is the last element: BIT STRING 03 82 01 01 00 <256 bytes>.
        let at = leaf.len() - 257;
        assert_eq!(&leaf[at - 4..at], &[0x03, 0x82, 0x01, 0x01], "{}", v.name);
        for unused in [1u8, 7] {
            let mut quirky = leaf.clone();
            quirky[at] = unused;
            let parsed = Certificate::from_der(&quirky);
            let result = store.validate_der(&[&quirky], NOW);
            match parsed {
                Ok(_) => assert!(result.is_trusted(), "{}: {result:?}", v.name),
                Err(_) => assert_eq!(code_of(&result), "malformed_certificate", "{}", v.name),
            }
        }
    }
}

// A trust anchor is a name and a key (RFC 5280 §6.1.1 (d)), not a certificate to
// validate: Chromium's virtual authenticator, for one, attests with a self-signed
// end-entity certificate (CA:FALSE) that it re-issues, with a new notAfter and
// signature, on every registration.

/// Subject of Chromium's virtual-authenticator attestation certificate.
fn batch_name() -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CountryName, "US");
    dn.push(rcgen::DnType::OrganizationName, "Chromium");
    dn.push(
        rcgen::DnType::OrganizationalUnitName,
        "Authenticator Attestation",
    );
    dn.push(rcgen::DnType::CommonName, "Batch Certificate");
    dn
}

/// A self-signed end-entity certificate (basicConstraints CA:FALSE) shaped like
/// Chromium's, valid until `not_after_year`, signed by `key`.
fn self_signed_end_entity(
    key: &rcgen::KeyPair,
    not_after_year: i32,
    key_usage: Vec<rcgen::KeyUsagePurpose>,
) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = batch_name();
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = key_usage;
    params.not_before = rcgen::date_time_ymd(2017, 7, 14);
    params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
    params.self_signed(key).expect("self-signed").der().to_vec()
}

fn anchored_on(der: &[u8]) -> TrustStore {
    let mut store = TrustStore::builtin();
    assert!(store.add_anchor_der(der).expect("anchor parses"));
    store
}

#[test]
fn a_self_signed_end_entity_anchor_trusts_reissued_copies_of_itself() {
    let key = rcgen::KeyPair::generate().expect("key");
    let pinned = self_signed_end_entity(&key, 2046, Vec::new());
    let pinned_cert = Certificate::from_der(&pinned).expect("parses");
    assert!(!pinned_cert.is_ca(), "CA:FALSE");
    assert_eq!(pinned_cert.basic_constraints, Some((false, None)));
    assert!(pinned_cert.is_self_issued());

    // Under Yubico's roots alone it is untrusted.
    assert_eq!(
        code_of(&TrustStore::builtin().validate_der(&[&pinned], NOW)),
        "untrusted_root"
    );

    let store = anchored_on(&pinned);
    // The pinned certificate itself.
    assert!(store.validate_der(&[&pinned], NOW).is_trusted());

    // A later registration: same name and key, new notAfter and signature.
    let reissued = self_signed_end_entity(&key, 2047, Vec::new());
    assert_ne!(reissued, pinned);
    match store.validate_der(&[&reissued], NOW) {
        TrustResult::Trusted {
            anchor_name,
            anchor_sha256,
            path_sha256,
            yubico_root,
        } => {
            assert_eq!(anchor_name, "Batch Certificate");
            assert!(!yubico_root, "a pinned certificate is no Yubico root");
            assert_eq!(anchor_sha256, pinned_cert.sha256, "the pinned copy");
            let reissued_sha256 = Certificate::from_der(&reissued).expect("parses").sha256;
            assert_eq!(path_sha256, [reissued_sha256], "the leaf is on the path");
        }
        other => panic!("re-issued copy not trusted: {other:?}"),
    }

    // The anchor's own validity is not checked (it is an input, not a path
    // certificate); the leaf's is.
    let expired_anchor = self_signed_end_entity(&key, 2020, Vec::new());
    let store = anchored_on(&expired_anchor);
    assert!(store.validate_der(&[&reissued], NOW).is_trusted());
    assert_eq!(
        code_of(&anchored_on(&pinned).validate_der(&[&expired_anchor], NOW)),
        "certificate_expired"
    );

    // Nor is its keyUsage: an anchor without keyCertSign still anchors.
    let signing_only =
        self_signed_end_entity(&key, 2046, vec![rcgen::KeyUsagePurpose::DigitalSignature]);
    let store = anchored_on(&signing_only);
    assert_eq!(
        Certificate::from_der(&signing_only)
            .expect("parses")
            .key_cert_sign,
        Some(false)
    );
    assert!(store.validate_der(&[&reissued], NOW).is_trusted());
}

#[test]
fn the_same_name_with_another_key_does_not_chain_to_a_pinned_anchor() {
    let key = rcgen::KeyPair::generate().expect("key");
    let pinned = self_signed_end_entity(&key, 2046, Vec::new());
    let store = anchored_on(&pinned);

    let other_key = rcgen::KeyPair::generate().expect("key");
    let impostor = self_signed_end_entity(&other_key, 2046, Vec::new());
    let r = store.validate_der(&[&impostor], NOW);
    assert_eq!(code_of(&r), "bad_chain_signature", "{r:?}");

    // Presenting the pinned certificate alongside does not help: it is the anchor,
    // not an intermediate, and its key does not verify the impostor.
    let r = store.validate_der(&[&impostor, &pinned], NOW);
    assert_eq!(code_of(&r), "bad_chain_signature", "{r:?}");
}

#[test]
fn an_end_entity_anchor_vouches_for_what_its_key_signs_but_intermediates_must_be_cas() {
    let key = rcgen::KeyPair::generate().expect("key");
    let pinned = self_signed_end_entity(&key, 2046, Vec::new());
    let store = anchored_on(&pinned);
    let anchor = rcgen::Issuer::new(
        {
            let mut p = rcgen::CertificateParams::default();
            p.distinguished_name = batch_name();
            p
        },
        key,
    );

    // A leaf whose issuer is the anchor's name, signed by the anchor's key.
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::default();
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "Leaf Under A Pinned Key");
    leaf.is_ca = rcgen::IsCa::ExplicitNoCa;
    leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2080, 1, 1);
    let leaf_der = leaf
        .signed_by(&leaf_key, &anchor)
        .expect("leaf")
        .der()
        .to_vec();
    assert!(store.validate_der(&[&leaf_der], NOW).is_trusted());

    // An intermediate between them must be a CA with keyCertSign.
    let make_intermediate = |is_ca: rcgen::IsCa, usages: Vec<rcgen::KeyUsagePurpose>| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Intermediate Under A Pinned Key");
        p.is_ca = is_ca;
        p.key_usages = usages;
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2080, 1, 1);
        let der = p
            .signed_by(&key, &anchor)
            .expect("intermediate")
            .der()
            .to_vec();
        (der, rcgen::Issuer::new(p, key))
    };
    let leaf_under = |issuer: &rcgen::Issuer<'static, rcgen::KeyPair>| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Leaf Below An Intermediate");
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2080, 1, 1);
        p.signed_by(&key, issuer).expect("leaf").der().to_vec()
    };
    let ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let (good, good_issuer) = make_intermediate(ca, vec![rcgen::KeyUsagePurpose::KeyCertSign]);
    let r = store.validate_der(&[&leaf_under(&good_issuer), &good], NOW);
    assert!(r.is_trusted(), "{r:?}");
    let (not_ca, not_ca_issuer) = make_intermediate(rcgen::IsCa::ExplicitNoCa, Vec::new());
    let r = store.validate_der(&[&leaf_under(&not_ca_issuer), &not_ca], NOW);
    assert_eq!(code_of(&r), "not_a_ca", "{r:?}");
    let (no_sign, no_sign_issuer) =
        make_intermediate(ca, vec![rcgen::KeyUsagePurpose::DigitalSignature]);
    let r = store.validate_der(&[&leaf_under(&no_sign_issuer), &no_sign], NOW);
    assert_eq!(code_of(&r), "issuer_key_usage", "{r:?}");
}

#[test]
fn an_anchor_path_length_constraint_is_still_honoured() {
    // Root with pathLen 0: a leaf directly below it chains, one below an
    // intermediate does not.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut root = rcgen::CertificateParams::default();
    root.distinguished_name = rcgen::DistinguishedName::new();
    root.distinguished_name
        .push(rcgen::DnType::CommonName, "PathLen Zero Root");
    root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    root.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    root.not_before = rcgen::date_time_ymd(2020, 1, 1);
    root.not_after = rcgen::date_time_ymd(2080, 1, 1);
    let root_der = root.self_signed(&key).expect("root").der().to_vec();
    let root = rcgen::Issuer::new(root, key);
    let store = anchored_on(&root_der);

    let inter_key = rcgen::KeyPair::generate().expect("key");
    let mut inter = rcgen::CertificateParams::default();
    inter.distinguished_name = rcgen::DistinguishedName::new();
    inter
        .distinguished_name
        .push(rcgen::DnType::CommonName, "PathLen Zero Intermediate");
    inter.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    inter.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    inter.not_before = rcgen::date_time_ymd(2020, 1, 1);
    inter.not_after = rcgen::date_time_ymd(2080, 1, 1);
    let inter_der = inter
        .signed_by(&inter_key, &root)
        .expect("intermediate")
        .der()
        .to_vec();
    let inter = rcgen::Issuer::new(inter, inter_key);

    let leaf = |issuer: &rcgen::Issuer<'static, rcgen::KeyPair>| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "PathLen Leaf");
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2080, 1, 1);
        p.signed_by(&key, issuer).expect("leaf").der().to_vec()
    };
    assert!(store.validate_der(&[&leaf(&root)], NOW).is_trusted());
    let r = store.validate_der(&[&leaf(&inter), &inter_der], NOW);
    assert_eq!(code_of(&r), "path_length_constraint", "{r:?}");
}
