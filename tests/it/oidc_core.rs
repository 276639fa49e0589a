//! The OpenID Connect provider core: keys and JWKS, JWS signing and strict verification,
//! rotation, tokens, PKCE and assurance, checked against the `openidconnect` crate as an
//! independent relying party.

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keygate::oidc::assurance::{self, acr, SignInFacts, Verification};
use keygate::oidc::discovery::{self, Endpoints};
use keygate::oidc::jwt::{self, Audience, JwtError, Validation};
use keygate::oidc::keys::{Algorithm, KeySet, SigningKey};
use keygate::oidc::scope::Scopes;
use keygate::oidc::tokens::{
    self, CodeRecord, Exchange, Grant, IdTokenBinding, KeyEvidence, TokenSettings, UserClaims,
};
use keygate::oidc::{pkce, OidcError};
use openidconnect::core::{
    CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, ClientId, IdToken, IdTokenClaims, IssuerUrl, Nonce, PrivateSigningKey,
    SigningError, StandardClaims, SubjectIdentifier,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

const ISSUER: &str = "https://id.keygate.test";
const CLIENT: &str = "vendor-portal";

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// One key set with both algorithms for the whole suite: RSA generation is slow.
fn shared_keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| KeySet::generate(&Algorithm::ALL, now()).expect("keys generate"))
}

fn settings() -> TokenSettings {
    TokenSettings::new(ISSUER)
}

fn grant(alg: Algorithm, scopes: &str) -> Grant {
    Grant {
        client_id: CLIENT.into(),
        subject: "u_7f3a".into(),
        scopes: Scopes::parse(scopes).unwrap(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        auth_time: now().unix_timestamp() - 30,
        assurance: assurance::assurance(
            &["phrh".to_owned()],
            &SignInFacts {
                attested: true,
                verification: Verification::Pin,
            },
        ),
        sid: Some("sid-1".into()),
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

fn validation(now: OffsetDateTime) -> Validation<'static> {
    Validation::new(ISSUER, Audience::Exactly(CLIENT), now)
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
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

// --- tokens --------------------------------------------------------------------------

#[derive(Clone, Debug, Deserialize, Serialize)]
struct KeygateClaims {
    workspace_id: Option<String>,
    key_aaguid: Option<String>,
    key_model: Option<String>,
    key_fips: Option<bool>,
    sid: Option<String>,
}
impl AdditionalClaims for KeygateClaims {}

type RpIdToken = IdToken<
    KeygateClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

fn rp_verifier(keys: &KeySet) -> CoreIdTokenVerifier<'static> {
    let jwks: CoreJsonWebKeySet =
        serde_json::from_value(serde_json::to_value(keys.jwks()).unwrap()).unwrap();
    CoreIdTokenVerifier::new_public_client(
        ClientId::new(CLIENT.into()),
        IssuerUrl::new(ISSUER.into()).unwrap(),
        jwks,
    )
    .set_allowed_algs([
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ])
}

#[test]
fn an_independent_relying_party_accepts_our_id_tokens() {
    let keys = shared_keys();
    for alg in Algorithm::ALL {
        let g = grant(alg, "openid profile email keygate:key_evidence");
        let issued =
            tokens::issue(&settings(), keys, &g, Exchange::AuthorizationCode, now()).unwrap();
        let id: RpIdToken = issued.id_token.parse().unwrap();
        let verifier = rp_verifier(keys);
        let claims = id
            .claims(&verifier, &Nonce::new("n-0S6_WzA2Mj".into()))
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(claims.subject().as_str(), "u_7f3a");
        assert_eq!(claims.auth_context_ref().unwrap().as_str(), "phrh");
        let amr: Vec<&str> = claims
            .auth_method_refs()
            .unwrap()
            .iter()
            .map(|a| a.as_str())
            .collect();
        assert_eq!(amr, ["hwk", "pop", "pin", "mfa"]);
        assert_eq!(claims.auth_time().unwrap().timestamp(), g.auth_time);
        assert_eq!(claims.email().unwrap().as_str(), "ada@example.com");
        assert_eq!(claims.email_verified(), Some(true));
        let extra = claims.additional_claims();
        assert_eq!(extra.workspace_id.as_deref(), Some("ws_42"));
        assert_eq!(extra.key_model.as_deref(), Some("YubiKey 5 NFC"));
        assert_eq!(extra.key_fips, Some(false));
        assert_eq!(extra.sid.as_deref(), Some("sid-1"));
        // at_hash binds the access token, computed by the independent library.
        let at = openidconnect::AccessToken::new(issued.access_token.token.clone());
        let expected = openidconnect::AccessTokenHash::from_token(
            &at,
            id.signing_alg().unwrap(),
            &CoreJsonWebKey::clone(
                &serde_json::from_value(
                    serde_json::to_value(keys.active(alg).unwrap().public_jwk()).unwrap(),
                )
                .unwrap(),
            ),
        )
        .unwrap();
        assert_eq!(claims.access_token_hash(), Some(&expected));
        // The wrong nonce is refused by the relying party.
        assert!(id.claims(&verifier, &Nonce::new("other".into())).is_err());
    }
}

/// Our key as the independent library's signing key, to check our verifier accepts
/// tokens that library builds.
struct LibrarySigner(Arc<SigningKey>);

impl PrivateSigningKey for LibrarySigner {
    type VerificationKey = CoreJsonWebKey;

    fn sign(&self, alg: &CoreJwsSigningAlgorithm, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        let ours = match alg {
            CoreJwsSigningAlgorithm::EcdsaP256Sha256 => Algorithm::Es256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 => Algorithm::Rs256,
            other => return Err(SigningError::UnsupportedAlg(format!("{other:?}"))),
        };
        if ours != self.0.algorithm() {
            return Err(SigningError::UnsupportedAlg(ours.to_string()));
        }
        self.0
            .sign(message)
            .map_err(|e| SigningError::Other(e.to_string()))
    }

    fn as_verification_key(&self) -> CoreJsonWebKey {
        serde_json::from_value(serde_json::to_value(self.0.public_jwk()).unwrap()).unwrap()
    }
}

#[test]
fn our_verifier_accepts_tokens_the_library_builds() {
    let keys = shared_keys();
    for (alg, lib_alg) in [
        (Algorithm::Es256, CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        (
            Algorithm::Rs256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ),
    ] {
        let signer = LibrarySigner(Arc::clone(keys.active(alg).unwrap()));
        let t = chrono::Utc::now();
        let claims = IdTokenClaims::new(
            IssuerUrl::new(ISSUER.into()).unwrap(),
            vec![openidconnect::Audience::new(CLIENT.into())],
            t + chrono::Duration::minutes(5),
            t,
            StandardClaims::new(SubjectIdentifier::new("u_lib".into())),
            openidconnect::EmptyAdditionalClaims {},
        );
        let token: openidconnect::core::CoreIdToken = IdToken::new(
            claims,
            &signer,
            lib_alg,
            Some(&openidconnect::AccessToken::new("at".into())),
            None,
        )
        .unwrap();
        let v = jwt::verify(&token.to_string(), keys, &validation(now())).unwrap();
        assert_eq!(v.subject(), Some("u_lib"));
        assert_eq!(
            v.str_claim("at_hash"),
            Some(tokens::half_hash("at").as_str())
        );
    }
}

#[test]
fn claims_follow_scopes() {
    let keys = shared_keys();
    let s = settings();
    let only_openid = tokens::id_token(
        &s,
        keys,
        &grant(Algorithm::Es256, "openid"),
        IdTokenBinding::default(),
        now(),
    )
    .unwrap();
    let c = claims_of(&only_openid);
    for absent in [
        "email",
        "email_verified",
        "name",
        "key_aaguid",
        "key_model",
        "key_fips",
        "at_hash",
        "c_hash",
    ] {
        assert!(c.get(absent).is_none(), "{absent} in {c}");
    }
    for present in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "sid",
        "workspace_id",
    ] {
        assert!(c.get(present).is_some(), "{present} missing from {c}");
    }
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);

    let mut renamed = settings();
    renamed.workspace_claim = "https://vendor.example/workspace".into();
    let all = grant(
        Algorithm::Es256,
        "openid profile email keygate:key_evidence",
    );
    let binding = IdTokenBinding {
        access_token: Some("at"),
        code: Some("kgc_code"),
        without_nonce: false,
    };
    let c = claims_of(&tokens::id_token(&renamed, keys, &all, binding, now()).unwrap());
    assert_eq!(c["https://vendor.example/workspace"], "ws_42");
    assert!(c.get("workspace_id").is_none());
    assert_eq!(c["name"], "Ada Lovelace");
    assert_eq!(c["key_aaguid"], "ee882879-721c-4913-9775-3dfcce97072a");
    assert_eq!(c["c_hash"], tokens::half_hash("kgc_code"));

    let ui = tokens::userinfo(
        &s,
        "u_7f3a",
        &Scopes::parse("openid email").unwrap(),
        &all.user,
        Some("ws_42"),
        all.key.as_ref(),
    );
    assert_eq!(
        Value::Object(ui),
        json!({"sub": "u_7f3a", "email": "ada@example.com", "email_verified": true, "workspace_id": "ws_42"})
    );
}

#[test]
fn access_tokens_are_rfc9068_jwts() {
    let keys = shared_keys();
    let s = settings();
    let g = grant(Algorithm::Rs256, "openid email");
    let at = tokens::access_token(&s, keys, &g, now()).unwrap();
    let header = jwt::peek_header(&at.token).unwrap();
    assert_eq!(
        (header.alg.as_str(), header.typ.as_deref()),
        ("ES256", Some("at+jwt"))
    );
    let v = tokens::verify_access_token(&s, keys, &at.token, now()).unwrap();
    for claim in [
        "iss",
        "sub",
        "aud",
        "client_id",
        "scope",
        "exp",
        "iat",
        "jti",
        "auth_time",
        "acr",
    ] {
        assert!(v.claims.contains_key(claim), "{claim}");
    }
    assert_eq!(v.scopes(), ["openid", "email"]);
    assert_eq!(v.str_claim("jti"), Some(at.jti.as_str()));
    assert_eq!(v.expires_at(), at.expires_at);
    let intro = tokens::introspection(&v);
    assert_eq!(
        (&intro["active"], &intro["client_id"]),
        (&json!(true), &json!(CLIENT))
    );
    assert_eq!(tokens::introspection_inactive(), json!({"active": false}));
    // An ID token is refused where an access token is expected.
    let id = tokens::id_token(&s, keys, &g, IdTokenBinding::default(), now()).unwrap();
    assert!(matches!(
        tokens::verify_access_token(&s, keys, &id, now()),
        Err(OidcError::InvalidToken(_))
    ));
    assert!(
        tokens::verify_access_token(&s, keys, &at.token, now() + Duration::minutes(12)).is_err()
    );
}

#[test]
fn refresh_tokens_only_with_offline_access_and_no_nonce_on_refresh() {
    let keys = shared_keys();
    let s = settings();
    let plain = tokens::issue(
        &s,
        keys,
        &grant(Algorithm::Es256, "openid"),
        Exchange::AuthorizationCode,
        now(),
    )
    .unwrap();
    assert!(plain.refresh_token.is_none());
    let body = serde_json::to_value(plain.response()).unwrap();
    assert!(body.get("refresh_token").is_none());
    assert_eq!(
        (&body["token_type"], &body["expires_in"]),
        (&json!("Bearer"), &json!(600))
    );

    let offline = grant(Algorithm::Es256, "openid offline_access");
    let first = tokens::issue(&s, keys, &offline, Exchange::AuthorizationCode, now()).unwrap();
    let rt = first.refresh_token.clone().unwrap();
    assert!(rt.value.starts_with(tokens::REFRESH_TOKEN_PREFIX));
    assert_eq!(rt.digest, tokens::digest(&rt.value));
    assert_eq!(claims_of(&first.id_token)["nonce"], "n-0S6_WzA2Mj");
    let body = serde_json::to_value(first.response()).unwrap();
    assert_eq!(body["refresh_token"], json!(rt.value));
    assert_eq!(body["scope"], "openid offline_access");

    let second = tokens::issue(&s, keys, &offline, Exchange::RefreshToken, now()).unwrap();
    assert_ne!(second.refresh_token.unwrap().value, rt.value, "rotated");
    let c = claims_of(&second.id_token);
    assert!(c.get("nonce").is_none());
    assert_eq!(c["auth_time"], json!(offline.auth_time));
}

#[test]
fn code_records_redeem_only_for_the_right_client_uri_and_verifier() {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let record = CodeRecord {
        grant: grant(Algorithm::Es256, "openid"),
        redirect_uri: "https://rp.example/cb".into(),
        code_challenge: pkce::s256_challenge(verifier),
        expires_at: now().unix_timestamp() + 60,
    };
    let uri = Some("https://rp.example/cb");
    let redeem = |client: &str, uri: Option<&str>, v: Option<&str>, at: OffsetDateTime| {
        record.clone().redeem(client, uri, v, at)
    };
    assert!(redeem(CLIENT, uri, Some(verifier), now()).is_ok());
    for (client, u, v, at) in [
        ("other", uri, Some(verifier), now()),
        (
            CLIENT,
            Some("https://rp.example/cb/"),
            Some(verifier),
            now(),
        ),
        (CLIENT, None, Some(verifier), now()),
        (CLIENT, uri, None, now()),
        (CLIENT, uri, Some(&"x".repeat(43)[..]), now()),
        (CLIENT, uri, Some(verifier), now() + Duration::seconds(61)),
    ] {
        assert!(
            matches!(redeem(client, u, v, at), Err(OidcError::InvalidGrant(_))),
            "{client} {u:?} {v:?}"
        );
    }
}

#[test]
fn pkce_rfc7636_appendix_b() {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    assert_eq!(
        pkce::s256_challenge(verifier),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    assert!(pkce::verify_s256(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM").is_ok());
    // The challenge itself is not a verifier (plain would accept it).
    assert!(pkce::verify_s256(
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    .is_err());
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
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        raw["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        raw["scopes_supported"],
        json!([
            "openid",
            "profile",
            "email",
            "offline_access",
            "keygate:key_evidence"
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
