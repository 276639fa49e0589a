//! The OpenID Connect provider core: keys and JWKS, JWS signing and strict verification,
//! rotation, assurance and discovery (the discovery document and JWKS also read by the
//! `openidconnect` crate). Tokens are in `oidc_tokens`.

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keygate::oidc::assurance::{self, acr, SignInFacts, Verification};
use keygate::oidc::discovery::{self, Endpoints};
use keygate::oidc::jwt::{self, Audience, JwtError, Validation};
use keygate::oidc::keys::{Algorithm, KeySet, SigningKey};
use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

pub(crate) const ISSUER: &str = "https://id.keygate.test";
pub(crate) const CLIENT: &str = "vendor-portal";

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// One key set with both algorithms for the whole suite: RSA generation is slow.
pub(crate) fn shared_keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| KeySet::generate(&Algorithm::ALL, now()).expect("keys generate"))
}

pub(crate) fn validation(now: OffsetDateTime) -> Validation<'static> {
    Validation::new(ISSUER, Audience::Exactly(CLIENT), now)
}

fn with_header(token: &str, header: Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = URL_SAFE_NO_PAD.encode(header.to_string());
    parts.join(".")
}

fn with_payload(token: &str, payload: Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    parts.join(".")
}

// --- keys and JWKS -------------------------------------------------------------------

#[test]
fn es256_and_rs256_round_trip() {
    let keys = shared_keys();
    for alg in Algorithm::ALL {
        let key = keys.active(alg).unwrap();
        let t = now().unix_timestamp();
        let claims = json!({"iss": ISSUER, "aud": CLIENT, "sub": "u", "iat": t, "exp": t + 60});
        let token = jwt::sign(key.as_ref(), jwt::TYP_JWT, &claims).unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            header,
            json!({"alg": alg.as_str(), "kid": key.kid(), "typ": "JWT"})
        );
        let v = jwt::verify(&token, keys, &validation(now())).unwrap();
        assert_eq!(v.subject(), Some("u"));
        let sig_len = URL_SAFE_NO_PAD
            .decode(token.rsplit('.').next().unwrap())
            .unwrap()
            .len();
        assert_eq!(sig_len, if alg == Algorithm::Es256 { 64 } else { 256 });
    }
}

#[test]
fn jwks_has_public_parts_only() {
    let jwks = serde_json::to_value(shared_keys().jwks()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        let members: Vec<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
        for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
            assert!(!members.contains(&private), "{private} in {k}");
        }
        assert_eq!(k["use"], "sig");
        assert_eq!(k["kid"].as_str().unwrap().len(), 43);
    }
    let ec = keys.iter().find(|k| k["kty"] == "EC").unwrap();
    assert_eq!((&ec["alg"], &ec["crv"]), (&json!("ES256"), &json!("P-256")));
    assert!(ec["x"].is_string() && ec["y"].is_string());
    let rsa = keys.iter().find(|k| k["kty"] == "RSA").unwrap();
    assert_eq!((&rsa["alg"], &rsa["e"]), (&json!("RS256"), &json!("AQAB")));
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(rsa["n"].as_str().unwrap())
            .unwrap()
            .len(),
        256
    );
    // The independent parser reads it too.
    let parsed: CoreJsonWebKeySet = serde_json::from_value(jwks).unwrap();
    assert_eq!(parsed.keys().len(), 2);
}

#[test]
fn stored_rs256_and_es256_keys_come_back_ready_to_sign() {
    let stored = shared_keys().to_stored();
    assert!(stored.expose_secret().contains("private_key_pkcs8"));
    let back = KeySet::from_stored(stored.expose_secret()).unwrap();
    for alg in Algorithm::ALL {
        let key = back.active(alg).unwrap();
        assert_eq!(key.kid(), shared_keys().active(alg).unwrap().kid());
        let sig = key.sign(b"x").unwrap();
        assert!(shared_keys().active(alg).unwrap().verify(b"x", &sig));
    }
    assert!(!format!("{back:?}").contains("private"));
}

#[test]
fn rotation_overlap_then_refusal() {
    let t0 = now();
    let mut keys = KeySet::generate(&[Algorithm::Es256], t0).unwrap();
    let old = Arc::clone(keys.active(Algorithm::Es256).unwrap());
    let t = t0.unix_timestamp();
    let claims = json!({"iss": ISSUER, "aud": CLIENT, "iat": t, "exp": t + 3600});
    let token = jwt::sign(old.as_ref(), jwt::TYP_JWT, &claims).unwrap();

    keys.rotate(t0, Duration::minutes(15)).unwrap();
    assert_ne!(keys.active(Algorithm::Es256).unwrap().kid(), old.kid());
    let published: Vec<String> = keys.jwks().keys.into_iter().map(|k| k.kid).collect();
    assert!(published.contains(&old.kid().to_owned()));

    let at = |mins: i64| validation(t0 + Duration::minutes(mins));
    assert!(jwt::verify(&token, &keys, &at(14)).is_ok());
    assert!(jwt::verify(&token, &keys, &at(15)).is_ok());
    assert_eq!(
        jwt::verify(&token, &keys, &at(16)),
        Err(JwtError::UnknownKey)
    );
    keys.prune(t0 + Duration::minutes(16));
    assert_eq!(keys.jwks().keys.len(), 1);
    // New tokens come from the new key.
    let fresh = jwt::sign(
        keys.active(Algorithm::Es256).unwrap().as_ref(),
        jwt::TYP_JWT,
        &claims,
    )
    .unwrap();
    assert!(jwt::verify(&fresh, &keys, &at(16)).is_ok());
}

// --- strict verification -------------------------------------------------------------

fn es256_token(claims: &Value) -> String {
    jwt::sign(
        shared_keys().active(Algorithm::Es256).unwrap().as_ref(),
        jwt::TYP_JWT,
        claims,
    )
    .unwrap()
}

fn good_claims() -> Value {
    let t = now().unix_timestamp();
    json!({"iss": ISSUER, "aud": CLIENT, "sub": "u", "iat": t, "exp": t + 300})
}

#[test]
fn tampered_tokens_are_refused() {
    let keys = shared_keys();
    let token = es256_token(&good_claims());
    let mut c = good_claims();
    c["sub"] = json!("admin");
    assert_eq!(
        jwt::verify(&with_payload(&token, c), keys, &validation(now())),
        Err(JwtError::BadSignature)
    );
    let mut sig = URL_SAFE_NO_PAD
        .decode(token.rsplit('.').next().unwrap())
        .unwrap();
    sig[10] ^= 1;
    let (head, _) = token.rsplit_once('.').unwrap();
    let bad = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(
        jwt::verify(&bad, keys, &validation(now())),
        Err(JwtError::BadSignature)
    );
    // Padding, whitespace and extra segments are not compact JWS.
    for t in [
        format!("{token}="),
        format!(" {token}"),
        format!("{token}.x"),
        token.replacen('.', "..", 1),
    ] {
        assert!(jwt::verify(&t, keys, &validation(now())).is_err(), "{t}");
    }
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let keys = shared_keys();
    let es = keys.active(Algorithm::Es256).unwrap();
    let rs = keys.active(Algorithm::Rs256).unwrap();
    let token = es256_token(&good_claims());
    let v = validation(now());

    let none = with_header(&token, json!({"alg": "none", "kid": es.kid()}));
    assert_eq!(
        jwt::verify(&none, keys, &v),
        Err(JwtError::UnsupportedAlgorithm)
    );
    let unsigned = format!("{}.", none.rsplit_once('.').unwrap().0);
    assert_eq!(jwt::verify(&unsigned, keys, &v), Err(JwtError::Malformed));

    // HS256 keyed with the public JWK: refused before any MAC is computed.
    let hs = with_header(&token, json!({"alg": "HS256", "kid": es.kid()}));
    assert_eq!(
        jwt::verify(&hs, keys, &v),
        Err(JwtError::UnsupportedAlgorithm)
    );
    // RS256 header pointing at the EC key, and ES256 at the RSA key.
    let rs_on_ec = with_header(&token, json!({"alg": "RS256", "kid": es.kid()}));
    assert_eq!(
        jwt::verify(&rs_on_ec, keys, &v),
        Err(JwtError::AlgorithmMismatch)
    );
    let es_on_rs = with_header(&token, json!({"alg": "ES256", "kid": rs.kid()}));
    assert_eq!(
        jwt::verify(&es_on_rs, keys, &v),
        Err(JwtError::AlgorithmMismatch)
    );
    // Case matters in JOSE names; unknown kids and critical extensions are refused.
    let lower = with_header(&token, json!({"alg": "es256", "kid": es.kid()}));
    assert_eq!(
        jwt::verify(&lower, keys, &v),
        Err(JwtError::UnsupportedAlgorithm)
    );
    let unknown = with_header(&token, json!({"alg": "ES256", "kid": "nope"}));
    assert_eq!(jwt::verify(&unknown, keys, &v), Err(JwtError::UnknownKey));
    let crit = with_header(
        &token,
        json!({"alg": "ES256", "kid": es.kid(), "crit": ["exp"]}),
    );
    assert_eq!(jwt::verify(&crit, keys, &v), Err(JwtError::BadHeader));
    let dup = {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[0] = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"none","alg":"ES256","kid":"{}"}}"#,
            es.kid()
        ));
        parts.join(".")
    };
    assert_eq!(jwt::verify(&dup, keys, &v), Err(JwtError::BadHeader));
    // A key from another issuer's set is unknown here.
    let stranger = SigningKey::generate(Algorithm::Es256, now()).unwrap();
    let foreign = jwt::sign(&stranger, jwt::TYP_JWT, &good_claims()).unwrap();
    assert_eq!(jwt::verify(&foreign, keys, &v), Err(JwtError::UnknownKey));
}

#[test]
fn time_issuer_audience_and_type_checks() {
    let keys = shared_keys();
    let t = now().unix_timestamp();
    let v = validation(now());
    let case = |patch: Value| {
        let mut c = good_claims();
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = val.clone();
            }
        }
        jwt::verify(&es256_token(&c), keys, &v)
    };
    assert_eq!(case(json!({"exp": t - 61})), Err(JwtError::Expired));
    assert!(case(json!({"exp": t - 59})).is_ok(), "within the skew");
    assert_eq!(case(json!({"exp": null})), Err(JwtError::BadClaims));
    assert_eq!(case(json!({"exp": "tomorrow"})), Err(JwtError::BadClaims));
    assert_eq!(case(json!({"nbf": t + 120})), Err(JwtError::NotYetValid));
    assert_eq!(case(json!({"iat": t + 120})), Err(JwtError::IssuedInFuture));
    assert_eq!(
        case(json!({"iss": "https://evil.test"})),
        Err(JwtError::WrongIssuer)
    );
    assert_eq!(case(json!({"iss": null})), Err(JwtError::WrongIssuer));
    assert_eq!(
        case(json!({"aud": "other-client"})),
        Err(JwtError::WrongAudience)
    );
    assert_eq!(case(json!({"aud": null})), Err(JwtError::WrongAudience));
    assert!(case(json!({"aud": ["x", CLIENT]})).is_ok());
    // An ID token is not an access token.
    let id = es256_token(&good_claims());
    assert_eq!(
        jwt::verify(&id, keys, &v.with_typ(jwt::TYP_ACCESS_TOKEN)),
        Err(JwtError::WrongType)
    );
    let wrapped = jwt::sign(
        keys.active(Algorithm::Es256).unwrap().as_ref(),
        jwt::TYP_ACCESS_TOKEN,
        &json!([1, 2]),
    )
    .unwrap();
    assert_eq!(jwt::verify(&wrapped, keys, &v), Err(JwtError::BadClaims));
}

// --- assurance ----------------------------------------------------------------------

#[test]
fn acr_and_amr_mapping() {
    let f = |attested, verification| SignInFacts {
        attested,
        verification,
    };
    let strong = f(true, Verification::Fingerprint);
    let unattested = f(false, Verification::Pin);
    let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (value, strong_ok, unattested_ok) in [
        (acr::PHRH, true, false),
        (acr::PHR, true, false),
        (acr::AAL2_PHISHING_RESISTANT, true, false),
        (acr::REFEDS_MFA, true, true),
        (acr::MS_MULTIPLE_AUTHN, true, true),
        (acr::ENTRA_POSSESSION_OR_INHERENCE, true, true),
        ("urn:example:unknown", false, false),
    ] {
        assert_eq!(
            assurance::satisfy(&r(&[value]), &strong).is_some(),
            strong_ok,
            "{value}"
        );
        assert_eq!(
            assurance::satisfy(&r(&[value]), &unattested).is_some(),
            unattested_ok,
            "{value}"
        );
    }
    assert_eq!(
        assurance::assurance(&r(&[acr::REFEDS_MFA]), &strong).amr,
        r(&["hwk", "pop", "fpt", "mfa"])
    );
    let entra = assurance::assurance(&r(&[acr::ENTRA_POSSESSION_OR_INHERENCE]), &strong);
    assert_eq!(
        (entra.acr.as_str(), entra.amr),
        (acr::ENTRA_POSSESSION_OR_INHERENCE, r(&["hwk"]))
    );
    // Unattested: never phrh, phr or hwk, whatever is asked.
    for asked in [r(&["phrh"]), r(&["phr", "phrh"]), vec![]] {
        let a = assurance::assurance(&asked, &unattested);
        assert!(!["phrh", "phr"].contains(&a.acr.as_str()), "{a:?}");
        assert!(!a.amr.contains(&"hwk".to_owned()), "{a:?}");
    }
}

// --- discovery ----------------------------------------------------------------------

#[test]
fn discovery_document_reads_as_standard_provider_metadata() {
    let doc = discovery::document(ISSUER, &Endpoints::under(ISSUER), "workspace_id").unwrap();
    let raw: Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(
        raw["grant_types_supported"],
        json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code"
        ])
    );
    assert_eq!(
        raw["token_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none"
        ])
    );
    assert_eq!(
        raw["token_endpoint_auth_signing_alg_values_supported"],
        json!(["ES256", "RS256"])
    );
    assert_eq!(
        raw["scopes_supported"],
        json!([
            "openid",
            "profile",
            "email",
            "offline_access",
            "keygate:key_evidence",
            "keygate:compliance"
        ])
    );
    let acr_values = raw["acr_values_supported"].as_array().unwrap();
    for v in [
        "phrh",
        "phr",
        acr::REFEDS_MFA,
        acr::MS_MULTIPLE_AUTHN,
        acr::ENTRA_POSSESSION_OR_INHERENCE,
    ] {
        assert!(acr_values.contains(&json!(v)), "{v}");
    }
    for member in [
        "introspection_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
    ] {
        assert!(
            raw[member].as_str().unwrap().starts_with(ISSUER),
            "{member}"
        );
    }
    assert!(raw["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("workspace_id")));
    let parsed: CoreProviderMetadata = serde_json::from_slice(&doc).unwrap();
    assert_eq!(parsed.issuer().as_str(), ISSUER);
    assert_eq!(
        parsed.jwks_uri().as_str(),
        "https://id.keygate.test/oauth2/jwks"
    );
}
