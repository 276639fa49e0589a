//! Deterministic fuzz-style test of the OpenID Connect parsers that take untrusted input
//! (no nightly needed): token-endpoint form bodies and Basic headers, `private_key_jwt`
//! assertions (the compact string, and its header and claims mutated as JSON and
//! re-encoded), registered JWKS documents, and our own JWTs as presented back to us. Every
//! input must give `Ok` or `Err`, never a panic, and quickly.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use keygate::oidc::client_assertion::{self, ClientKeys};
use keygate::oidc::jwt::{self, Audience, Validation};
use keygate::oidc::keys::{Algorithm, KeySet, SigningKey};
use keygate::oidc::token_request::UntrustedTokenRequest;
use serde_json::json;

use crate::oidc_private_key_jwt::sign_raw as sign;
use crate::webauthn_fuzz::{mutate, Rng};

const ROUNDS: usize = 800;
const MAX_CALL: Duration = Duration::from_secs(2);
const TOKEN_URL: &str = "https://id.example/oauth2/token";

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `f` on every mutation of every corpus entry; fails on a panic or a slow call.
fn fuzz(name: &str, seed: u64, corpus: &[Vec<u8>], mut f: impl FnMut(&[u8])) {
    let mut rng = Rng(seed);
    for input in corpus {
        for _ in 0..ROUNDS {
            let m = mutate(&mut rng, input, corpus);
            let t = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| f(&m)));
            assert!(outcome.is_ok(), "{name} panicked on {:?}", lossy(&m));
            assert!(t.elapsed() < MAX_CALL, "{name} took {:?}", t.elapsed());
        }
    }
}

#[test]
fn token_requests_never_panic() {
    let assertion = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJycCJ9.c2ln";
    let corpus: Vec<Vec<u8>> = [
        "grant_type=authorization_code&code=kgc_x&redirect_uri=https%3A%2F%2Frp%2Fcb&code_verifier=v".to_string(),
        "grant_type=refresh_token&refresh_token=kgr_abc&scope=openid+email&client_id=rp&client_secret=s".to_string(),
        format!("grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}&client_id=rp"),
        "Basic dmVuZG9yOnMlM0FjcmV0".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    fuzz("token request", 0x7e57_0001, &corpus, |m| {
        let text = lossy(m);
        let _ = UntrustedTokenRequest::from_form(m, None).and_then(|r| r.parse());
        let _ = UntrustedTokenRequest::from_form(&text, Some(&text)).and_then(|r| r.parse());
        let request =
            UntrustedTokenRequest::from_form("grant_type=authorization_code&code=c", Some(&text))
                .expect("an ASCII form decodes");
        let _ = request.client_auth();
    });
}

#[test]
fn client_assertions_and_jwks_never_panic() {
    let now = 1_800_000_000;
    let (ec, rsa) = (
        SigningKey::generate(Algorithm::Es256, time::OffsetDateTime::now_utc()).unwrap(),
        SigningKey::generate(Algorithm::Rs256, time::OffsetDateTime::now_utc()).unwrap(),
    );
    let jwks = json!({ "keys": [ec.public_jwk(), rsa.public_jwk()] }).to_string();
    let keys = ClientKeys::parse(&jwks).unwrap();
    let header = json!({ "alg": "ES256", "kid": ec.kid(), "typ": "JWT" }).to_string();
    let claims = json!({
        "iss": "rp", "sub": "rp", "aud": [TOKEN_URL], "exp": now + 60, "nbf": now, "iat": now,
        "jti": "j-1",
    })
    .to_string();
    let good = sign(&ec, header.as_bytes(), claims.as_bytes());
    assert!(client_assertion::verify(&good, &keys, "rp", &[TOKEN_URL], now).is_ok());
    let check = |a: &str| {
        let _ = client_assertion::claimed_client_id(a);
        let _ = client_assertion::verify(a, &keys, "rp", &[TOKEN_URL], now);
    };

    fuzz(
        "client assertion",
        0x7e57_0002,
        &[good.clone().into_bytes()],
        |m| check(&lossy(m)),
    );
    // The JSON inside, mutated and re-encoded (signed again, so the claims are read).
    fuzz(
        "client assertion header",
        0x7e57_0003,
        &[header.clone().into_bytes()],
        |m| check(&sign(&ec, m, claims.as_bytes())),
    );
    fuzz(
        "client assertion claims",
        0x7e57_0004,
        &[claims.clone().into_bytes()],
        |m| check(&sign(&ec, header.as_bytes(), m)),
    );
    fuzz("client JWKS", 0x7e57_0005, &[jwks.into_bytes()], |m| {
        let _ = ClientKeys::parse(&lossy(m));
    });
}

#[test]
fn our_own_tokens_presented_back_never_panic() {
    let now = time::OffsetDateTime::now_utc();
    let set = KeySet::generate(&[Algorithm::Es256, Algorithm::Rs256], now).unwrap();
    let key = set.active(Algorithm::Es256).unwrap();
    let token = jwt::sign(
        key,
        jwt::TYP_ACCESS_TOKEN,
        &json!({ "iss": "https://id.example", "aud": "https://id.example", "sub": "u",
                 "exp": now.unix_timestamp() + 60, "iat": now.unix_timestamp() }),
    )
    .unwrap();
    let v = Validation::new(
        "https://id.example",
        Audience::Exactly("https://id.example"),
        now,
    )
    .with_typ(jwt::TYP_ACCESS_TOKEN);
    assert!(jwt::verify(&token, &set, &v).is_ok());
    fuzz("our JWT", 0x7e57_0006, &[token.into_bytes()], |m| {
        let text = lossy(m);
        let _ = jwt::peek_header(&text);
        let _ = jwt::verify(&text, &set, &v);
    });
}
