//! OIDC token issuing throughput, next to the raw signing bound measured in the same run
//! (SPEC §9: the code exchange signs an ID token and an access token; ≥ 9,000 exchanges/s
//! over HTTP, with ES256 sign ≈ 60,000/s/core as the raw bound, so two signatures cap one
//! core at ≈ 30,000 exchanges/s).
//!
//! Each benchmark reports `thrpt` in operations per second (one element = one signature,
//! token or exchange). Quick run: `cargo bench --bench oidc -- --quick`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keygate::oidc::assurance::{self, SignInFacts, Verification};
use keygate::oidc::jwt;
use keygate::oidc::keys::{Algorithm, KeySet};
use keygate::oidc::pkce;
use keygate::oidc::scope::Scopes;
use keygate::oidc::tokens::{
    self, CodeRecord, Exchange, Grant, IdTokenBinding, KeyEvidence, TokenSettings, UserClaims,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use time::OffsetDateTime;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn grant(alg: Algorithm, now: OffsetDateTime) -> Grant {
    Grant {
        client_id: "vendor-portal".into(),
        subject: "u_0123456789abcdef".into(),
        scopes: Scopes::parse("openid profile email").expect("scopes"),
        nonce: Some("n-0S6_WzA2Mj".into()),
        auth_time: now.unix_timestamp() - 5,
        assurance: assurance::assurance(
            &["phrh".to_owned()],
            &SignInFacts {
                attested: true,
                verification: Verification::Pin,
            },
        ),
        sid: Some("3f1c2a9e".into()),
        workspace_id: Some("ws_42".into()),
        id_token_alg: alg,
        user: UserClaims {
            name: Some("Ada Lovelace".into()),
            email: Some("ada@example.com".into()),
            email_verified: true,
        },
        key: Some(KeyEvidence {
            aaguid: "ee882879-721c-4913-9775-3dfcce97072a".into(),
            model: Some("YubiKey 5 NFC".into()),
            fips: false,
        }),
    }
}

fn benches(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let keys = KeySet::generate(&Algorithm::ALL, now).expect("keys");
    let settings = TokenSettings::new("https://id.keygate.test");

    // Raw bound: one ES256 signature with ring over a token-sized message.
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let raw = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let message = [0x5a_u8; 600];

    let es = grant(Algorithm::Es256, now);
    let rs = grant(Algorithm::Rs256, now);
    let record = |g: &Grant| CodeRecord {
        grant: g.clone(),
        redirect_uri: "https://rp.example/cb".into(),
        code_challenge: pkce::s256_challenge(VERIFIER),
        expires_at: now.unix_timestamp() + 60,
        issued_under: Default::default(),
    };
    let (es_record, rs_record) = (record(&es), record(&rs));
    let access = tokens::access_token(&settings, &keys, &es, tokens::new_jti().expect("jti"), now)
        .expect("token");

    let mut g = c.benchmark_group("oidc");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));

    g.bench_function("raw_es256_sign (ring)", |b| {
        b.iter(|| raw.sign(&rng, black_box(&message)).expect("signs"))
    });
    g.bench_function("raw_rs256_sign (ring, 2048)", |b| {
        let key = keys.active(Algorithm::Rs256).expect("rsa key");
        b.iter(|| key.sign(black_box(&message)).expect("signs"))
    });
    g.bench_function("id_token_es256", |b| {
        b.iter(|| {
            tokens::id_token(
                &settings,
                &keys,
                black_box(&es),
                IdTokenBinding::default(),
                now,
            )
            .expect("signs")
        })
    });
    g.bench_function("access_token_es256", |b| {
        b.iter(|| {
            tokens::access_token(
                &settings,
                &keys,
                black_box(&es),
                tokens::new_jti().expect("jti"),
                now,
            )
            .expect("signs")
        })
    });
    g.bench_function("code_exchange_es256 (redeem + id + access)", |b| {
        b.iter(|| {
            let grant = es_record
                .clone()
                .redeem(
                    "vendor-portal",
                    Some("https://rp.example/cb"),
                    Some(VERIFIER),
                    now,
                )
                .expect("redeems");
            let issued = tokens::issue(&settings, &keys, &grant, Exchange::AuthorizationCode, now)
                .expect("issues");
            serde_json::to_vec(&issued.response()).expect("json")
        })
    });
    g.bench_function("code_exchange_rs256_id_token", |b| {
        b.iter(|| {
            let grant = rs_record
                .clone()
                .redeem(
                    "vendor-portal",
                    Some("https://rp.example/cb"),
                    Some(VERIFIER),
                    now,
                )
                .expect("redeems");
            tokens::issue(&settings, &keys, &grant, Exchange::AuthorizationCode, now)
                .expect("issues")
        })
    });
    g.bench_function("verify_access_token", |b| {
        b.iter(|| {
            tokens::verify_access_token(&settings, &keys, black_box(&access.token), now)
                .expect("verifies")
        })
    });
    g.bench_function("jwks_json", |b| {
        b.iter(|| serde_json::to_vec(&keys.jwks()).expect("json"))
    });
    g.finish();

    // Keep the ID-token path honest: what was measured verifies.
    let id =
        tokens::id_token(&settings, &keys, &es, IdTokenBinding::default(), now).expect("signs");
    let v = jwt::Validation::new(
        &settings.issuer,
        jwt::Audience::Exactly("vendor-portal"),
        now,
    );
    jwt::verify(&id, &keys, &v).expect("verifies");
}

criterion_group!(oidc, benches);
criterion_main!(oidc);
