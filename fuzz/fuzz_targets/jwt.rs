//! The JWS/JWT parser (src/oidc/jwt.rs), two ways from the same bytes:
//! - as a compact token received from outside: `peek_header` and `verify`;
//! - as `header JSON` + newline + `claims JSON`, signed here with the provider's ES256 key
//!   (the literal `KID` in the header becomes the key's ID), so mutated headers and claims
//!   get past the signature and into the claim checks.
//!
//! Never a panic; a token that verifies meets every check it was asked for.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use keygate::oidc::jwt::{self, Audience, Validation};
use keygate::oidc::keys::{Algorithm, KeySet};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

const ISSUER: &str = "https://id.example.com";
const AUDIENCE: &str = "vendor-portal";
/// 2026-11-25T12:00:00Z.
const NOW: i64 = 1_764_072_000;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let now = OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time");
        KeySet::generate(&[Algorithm::Es256], now).expect("an ES256 key")
    })
}

fn check(token: &str) {
    let now = OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time");
    let _ = jwt::peek_header(token);
    for validation in [
        Validation::new(ISSUER, Audience::Exactly(AUDIENCE), now),
        Validation::new(ISSUER, Audience::Any, now).with_typ("at+jwt"),
    ] {
        let Ok(verified) = jwt::verify(token, keys(), &validation) else {
            continue;
        };
        assert_eq!(verified.str_claim("iss"), Some(ISSUER));
        assert!(
            verified.expires_at() + 60 >= NOW,
            "an expired token verified"
        );
        if validation.typ.is_some() {
            assert!(verified.header.typ.is_some(), "a typ was required");
        }
        let _ = verified.scopes();
    }
}

fuzz_target!(|data: &[u8]| {
    check(&String::from_utf8_lossy(data));

    let Some(split) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let key = keys().active(Algorithm::Es256).expect("the active key");
    let header = String::from_utf8_lossy(&data[..split]).replace("KID", key.kid());
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.as_bytes()),
        URL_SAFE_NO_PAD.encode(&data[split + 1..])
    );
    let signature = key.sign(signing_input.as_bytes()).expect("ES256 signs");
    check(&format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ));
});
