//! Tokens: ID tokens checked by the `openidconnect` crate as an independent relying party,
//! our verifier against tokens that crate builds, claims by scope, RFC 9068 access tokens,
//! refresh tokens, code redemption and PKCE.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keygate::oidc::assurance::{self, SignInFacts, Verification};
use keygate::oidc::jwt;
use keygate::oidc::keys::{Algorithm, KeySet, SigningKey};
use keygate::oidc::scope::Scopes;
use keygate::oidc::tokens::{
    self, CodeRecord, Exchange, Grant, IdTokenBinding, KeyEvidence, TokenSettings, UserClaims,
};
use keygate::oidc::{pkce, OidcError};
use openidconnect::core::{
    CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AdditionalClaims, ClientId, IdToken, IdTokenClaims, IssuerUrl, Nonce, PrivateSigningKey,
    SigningError, StandardClaims, SubjectIdentifier,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::oidc_core::{now, shared_keys, validation, CLIENT, ISSUER};

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

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

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
    let at = tokens::access_token(&s, keys, &g, tokens::new_jti().unwrap(), now()).unwrap();
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
        issued_under: Default::default(),
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

#[test]
fn a_whole_code_flow_from_query_to_verified_id_token() {
    use keygate::oidc::authorize::{
        Authentication, ClientKind, ClientView, Step, UntrustedAuthorizationRequest,
    };
    use keygate::oidc::token_request::{TokenGrant, UntrustedTokenRequest};

    let keys = shared_keys();
    let s = settings();
    let secret = "a-long-random-client-secret";
    let client = ClientView {
        client_id: CLIENT.into(),
        redirect_uris: vec!["https://rp.example/cb".into()],
        kind: ClientKind::Confidential,
        allowed_scopes: vec!["email".into(), "offline_access".into()],
        id_token_alg: Algorithm::Rs256,
        workspace_id: Some("ws_42".into()),
        default_acr_values: vec![],
        required_acr_values: vec!["phrh".into()],
    };
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let t = now();

    // The browser arrives; no session yet, then a touch with an attested key and PIN.
    let query = format!(
        "response_type=code&client_id={CLIENT}&redirect_uri=https%3A%2F%2Frp.example%2Fcb\
         &scope=openid%20email%20offline_access&state=xyz&nonce=n-1\
         &code_challenge={}&code_challenge_method=S256",
        pkce::s256_challenge(verifier)
    );
    let request = UntrustedAuthorizationRequest::from_query(&query)
        .validate(Some(&client), t)
        .unwrap();
    assert!(matches!(request.next_step(None, t), Step::SignIn(_)));
    let session = Authentication {
        auth_time: t,
        facts: SignInFacts {
            attested: true,
            verification: Verification::Pin,
        },
    };
    let Step::Issue(assurance) = request.next_step(Some(&session), t) else {
        panic!("expected a code");
    };
    let code = tokens::OpaqueToken::authorization_code().unwrap();
    let record = CodeRecord::new(
        &client,
        &request,
        Grant {
            client_id: request.client_id.clone(),
            subject: "u_7f3a".into(),
            scopes: request.scopes.clone(),
            nonce: request.nonce.clone(),
            auth_time: session.auth_time.unix_timestamp(),
            assurance,
            sid: None,
            workspace_id: client.workspace_id.clone(),
            id_token_alg: client.id_token_alg,
            user: UserClaims {
                name: None,
                email: Some("ada@example.com".into()),
                email_verified: true,
            },
            key: None,
        },
        &s,
        t,
    );
    let location = request.code_location(&code.value, ISSUER);
    assert!(location.as_str().contains("state=xyz"));

    // The client exchanges the code.
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri=https%3A%2F%2Frp.example%2Fcb\
         &code_verifier={verifier}",
        code.value
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{secret}"))
    );
    let tr = UntrustedTokenRequest::from_form(&body, Some(&basic))
        .unwrap()
        .parse()
        .unwrap();
    let stored_secret = tokens::digest(secret);
    tr.client
        .verify(Some((client.kind, Some(stored_secret.as_str()))))
        .unwrap();
    let TokenGrant::AuthorizationCode {
        code: presented,
        redirect_uri,
        code_verifier,
    } = tr.grant
    else {
        panic!("expected a code grant");
    };
    assert_eq!(tokens::digest(&presented), code.digest);
    // The client as registered now still fits the code (`openid` needs no registration);
    // each narrowing of it would refuse the code.
    assert_eq!(record.fits(&client), Ok(()));
    type Narrowing = (&'static str, fn(&mut ClientView));
    let narrowings: [Narrowing; 5] = [
        ("a scope taken away", |c| {
            c.allowed_scopes.retain(|s| s != "email")
        }),
        ("the redirect URI taken away", |c| c.redirect_uris.clear()),
        ("another required acr", |c| {
            c.required_acr_values = vec!["phr".into()]
        }),
        ("no required acr", |c| c.required_acr_values.clear()),
        ("another workspace", |c| {
            c.workspace_id = Some("ws_7".into())
        }),
    ];
    for (what, narrow) in narrowings {
        let mut changed = client.clone();
        narrow(&mut changed);
        assert_eq!(
            record.fits(&changed).map_err(|e| e.code()),
            Err("invalid_grant"),
            "{what}"
        );
    }
    let mut renamed = client.clone();
    renamed
        .redirect_uris
        .push("https://rp.example/other".into());
    renamed.default_acr_values = vec!["phr".into()];
    assert_eq!(record.fits(&renamed), Ok(()), "a harmless change");
    let grant = record
        .redeem(
            tr.client.client_id(),
            redirect_uri.as_deref(),
            code_verifier.as_deref(),
            t,
        )
        .unwrap();
    let issued = tokens::issue(&s, keys, &grant, Exchange::AuthorizationCode, t).unwrap();
    let response = serde_json::to_value(issued.response()).unwrap();
    assert!(response["refresh_token"].is_string());

    // The relying party checks the RS256 ID token with the published JWKS.
    let id: RpIdToken = response["id_token"].as_str().unwrap().parse().unwrap();
    let claims = id
        .claims(&rp_verifier(keys), &Nonce::new("n-1".into()))
        .unwrap();
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "phrh");
    assert_eq!(
        claims.additional_claims().workspace_id.as_deref(),
        Some("ws_42")
    );
    assert_eq!(
        id.signing_alg().unwrap(),
        &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
    );
}
