//! Signed SAML response generation in-process, next to the raw RSA-2048 signing bound
//! measured in the same run (SPEC §9: ≥ 2,500 responses/s/core, ≈ 65 % of the bound).
//!
//! A response with a signed assertion costs one RSA signature; with the response signed as
//! well (keygate's default per SP), two. Quick run: `cargo bench --bench saml -- --quick`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keygate::saml::keys::{SigningKey, StoredKey};
use keygate::saml::response::{self, Assertion, Attribute, NameId, Protection};
use time::OffsetDateTime;

fn key() -> (SigningKey, StoredKey) {
    let stored = SigningKey::generate("bench", 1_764_000_000).expect("key");
    (SigningKey::from_stored(&stored).expect("parse"), stored)
}

fn attributes() -> Vec<Attribute> {
    [
        ("email", "alice@example.com"),
        ("name", "Alice Example"),
        ("workspace_id", "ws-AAA-123"),
        ("key_model", "YubiKey 5 NFC"),
        ("key_fips", "false"),
        ("key_aaguid", "2fc0579f-8113-47ea-b116-bb5a8db9202a"),
    ]
    .into_iter()
    .map(|(n, v)| Attribute {
        name: n.into(),
        values: vec![v.into()],
    })
    .collect()
}

fn bench(c: &mut Criterion) {
    let (key, stored) = key();
    let attrs = attributes();
    let now = OffsetDateTime::now_utc();
    let mut g = c.benchmark_group("saml");
    g.throughput(Throughput::Elements(1));

    let pkey = openssl::pkey::PKey::private_key_from_pem(stored.key_pem.as_bytes()).unwrap();
    let data = [7u8; 1500];
    g.bench_function("raw RSA-2048 PKCS#1 v1.5 SHA-256 sign (OpenSSL)", |b| {
        b.iter(|| {
            let mut s =
                openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
            black_box(s.sign_oneshot_to_vec(black_box(&data)).unwrap())
        })
    });

    let assertion = |id: &'static str| Assertion {
        issuer: "https://sso.example.com/saml/metadata",
        assertion_id: id,
        issue_instant: now,
        audience: "https://sso.vendor.example/saml/metadata",
        destination: "https://sso.vendor.example/saml/acs",
        in_response_to: Some("_8f1c2a9d0e4b4f7a"),
        name_id: NameId {
            format: "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            value: "alice@example.com",
            sp_name_qualifier: None,
        },
        not_on_or_after: now + time::Duration::minutes(5),
        not_before: now,
        authn_instant: now,
        session_index: "3f0c1d2e4a5b6c7d8e9f0a1b2c3d4e5f",
        session_not_on_or_after: None,
        authn_context: "https://refeds.org/profile/mfa",
        attributes: &attrs,
    };
    let a = assertion("_a0123456789abcdef0123456789abcdef");
    for (label, sign_response) in [
        (
            "signed response: assertion signed (one RSA signature)",
            false,
        ),
        (
            "signed response: assertion and response signed (two RSA signatures)",
            true,
        ),
    ] {
        let protection = Protection {
            key: &key,
            sign_response,
            encrypt_for: None,
        };
        g.bench_function(label, |b| {
            b.iter(|| {
                let xml =
                    response::success(black_box(&a), "_r0123456789abcdef", &protection).unwrap();
                black_box(response::encode(&xml))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
