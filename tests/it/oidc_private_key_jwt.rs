//! `private_key_jwt` client authentication (RFC 7523 §2.2) over HTTP: a client registered
//! with its public keys (a JWKS in the config file) signs a JWT per request; keygate checks
//! it against those keys, with `iss`/`sub`/`aud`/`exp`/`jti`, and refuses a replayed `jti`
//! on every replica (the shared store). Authlib drives the same method in
//! `oidc_authlib::authlib_authenticates_with_private_key_jwt`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use keygate::oidc::keys::{Algorithm, SigningKey};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::enrolment_http::audit_events;
use crate::support::app::Reply;
use crate::support::oidc::*;
use keygate::state::Clock;

pub const JWT_CLIENT: &str = "signed-jwt-rp";

/// A client key made by the test (its private half signs the assertions).
pub fn client_key(alg: Algorithm) -> SigningKey {
    SigningKey::generate(alg, time::OffsetDateTime::now_utc()).expect("client key")
}

/// Config text declaring [`JWT_CLIENT`] (workspace `acme`) with these keys' JWKS inline.
pub fn client_toml(keys: &[&SigningKey]) -> String {
    let jwks = json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() });
    format!(
        r#"
[[oidc.clients]]
client_id = "{JWT_CLIENT}"
name = "Signed JWT app"
redirect_uris = ["{REDIRECT}"]
scopes = ["openid", "email"]
workspace = "acme"
jwks = '{jwks}'
"#
    )
}

/// [`client_toml`] with the JWKS in a file of `dir` (`jwks_file`).
fn client_toml_with_file(keys: &[&SigningKey], dir: &std::path::Path) -> String {
    let path = dir.join("client.jwks.json");
    let jwks = json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() });
    std::fs::write(&path, jwks.to_string()).expect("write the JWKS");
    let inline = format!("jwks = '{jwks}'");
    let toml = client_toml(keys).replace(&inline, &format!("jwks_file = \"{}\"", path.display()));
    assert!(
        toml.contains("jwks_file") && !toml.contains("jwks = "),
        "{toml}"
    );
    toml
}

/// The private key as PKCS#8 PEM (for Authlib).
pub fn pem(key: &SigningKey) -> String {
    let b64 = STANDARD.encode(key.pkcs8().expose_secret());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// A compact JWS over `header` and `claims` as given (bytes: they may be any JSON, or not).
pub fn sign_raw(key: &SigningKey, header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = key.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn sign(key: &SigningKey, header: Value, claims: &Value) -> String {
    sign_raw(
        key,
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    )
}

fn claims(p: &Provider, jti: &str) -> Value {
    let now = p.app.clock.now().unix_timestamp();
    json!({
        "iss": JWT_CLIENT, "sub": JWT_CLIENT,
        "aud": format!("{}/oauth2/token", p.app.base),
        "iat": now, "exp": now + 120, "jti": jti,
    })
}

fn assertion(p: &Provider, key: &SigningKey, jti: &str) -> String {
    sign(
        key,
        json!({ "alg": key.algorithm().as_str(), "kid": key.kid(), "typ": "JWT" }),
        &claims(p, jti),
    )
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

async fn post_with_assertion(
    p: &Provider,
    path: &str,
    assertion: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, String)],
) -> Reply {
    let mut fields = fields.to_vec();
    fields.push(("client_assertion_type", ASSERTION_TYPE));
    fields.push(("client_assertion", assertion));
    p.app
        .client()
        .post_with(
            path,
            headers,
            "application/x-www-form-urlencoded",
            form(&fields),
        )
        .await
}

async fn exchange_with(p: &Provider, code: &str, pkce: &Pkce, assertion: &str) -> Reply {
    post_with_assertion(
        p,
        "/oauth2/token",
        assertion,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ],
        &[],
    )
    .await
}

fn refused(r: &Reply, why: &str) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_client", "{}", r.body);
    let description = r.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(description.contains(why), "{description}");
}

async fn refusals(p: &Provider) -> Vec<String> {
    audit_events(&p.app)
        .await
        .into_iter()
        .filter(|e| e.action == "oidc.client_auth_refused")
        .map(|e| {
            let details: Value = serde_json::from_str(&e.details_json).expect("details");
            details["message"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

#[actix_web::test]
async fn private_key_jwt_authenticates_a_client_by_its_registered_key() {
    let key = client_key(Algorithm::Es256);
    let dir = tempfile::tempdir().unwrap();
    let mut p = provider_with_config(&client_toml_with_file(&[&key], dir.path())).await;
    let mut browser = p.browser().await;

    let discovery = p
        .app
        .client()
        .get("/.well-known/openid-configuration")
        .await
        .json();
    for list in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        assert!(
            discovery[list]
                .as_array()
                .unwrap()
                .contains(&json!("private_key_jwt")),
            "{list}"
        );
    }
    assert_eq!(
        discovery["token_endpoint_auth_signing_alg_values_supported"],
        json!(["ES256", "RS256"])
    );

    // The code flow: the assertion is the client's only credential.
    let (code, pkce) = p.code(&mut browser, JWT_CLIENT, "openid email").await;
    let first = assertion(&p, &key, "jti-1");
    let r = exchange_with(&p, &code, &pkce, &first).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens = r.json();
    assert_eq!(
        claims_of(tokens["id_token"].as_str().unwrap())["aud"],
        JWT_CLIENT
    );
    assert_eq!(
        claims_of(tokens["id_token"].as_str().unwrap())["acr"],
        "phrh"
    );

    // The same assertion again (a fresh code): refused and audited, nothing issued.
    let (code, pkce) = p.code(&mut browser, JWT_CLIENT, "openid").await;
    refused(
        &exchange_with(&p, &code, &pkce, &first).await,
        "already used",
    );
    assert_eq!(
        refusals(&p).await,
        ["the client assertion was already used"]
    );

    // Signed by a key it did not register; expired; for another audience; alg none.
    let stranger = client_key(Algorithm::Es256);
    let forged = sign(
        &stranger,
        json!({ "alg": "ES256", "kid": key.kid() }),
        &claims(&p, "jti-2"),
    );
    refused(&exchange_with(&p, &code, &pkce, &forged).await, "signature");
    let mut old = claims(&p, "jti-3");
    old["exp"] = json!(p.app.clock.now().unix_timestamp() - 120);
    let expired = sign(&key, json!({ "alg": "ES256", "kid": key.kid() }), &old);
    refused(&exchange_with(&p, &code, &pkce, &expired).await, "expired");
    let mut elsewhere = claims(&p, "jti-4");
    elsewhere["aud"] = json!("https://other-idp.example/oauth2/token");
    let elsewhere = sign(
        &key,
        json!({ "alg": "ES256", "kid": key.kid() }),
        &elsewhere,
    );
    refused(&exchange_with(&p, &code, &pkce, &elsewhere).await, "aud");
    let good = assertion(&p, &key, "jti-5");
    let (_, rest) = good.split_once('.').unwrap();
    let none = format!(
        "{}.{rest}",
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none" }).to_string())
    );
    refused(
        &exchange_with(&p, &code, &pkce, &none).await,
        "ES256 or RS256",
    );
    assert_eq!(refusals(&p).await.len(), 5, "each refusal is audited");

    // The code survived the refusals (none reached it): a good assertion redeems it.
    let r = exchange_with(&p, &code, &pkce, &assertion(&p, &key, "jti-6")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.json()["access_token"].as_str().unwrap().to_string();

    // Introspection with an assertion for the issuer as audience.
    let mut to_issuer = claims(&p, "jti-7");
    to_issuer["aud"] = json!(p.app.base);
    let to_issuer = sign(&key, json!({ "alg": "ES256" }), &to_issuer);
    let r = post_with_assertion(
        &p,
        "/oauth2/introspect",
        &to_issuer,
        &[("token", &access)],
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["active"], true);

    // No secret works for this client, and a secret client cannot send an assertion.
    let r = p
        .post_as(
            "/oauth2/introspect",
            (JWT_CLIENT, &p.secret),
            &[("token", &access)],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let mut as_vendor = claims(&p, "jti-8");
    as_vendor["iss"] = json!(CLIENT_ID);
    as_vendor["sub"] = json!(CLIENT_ID);
    let as_vendor = sign(&key, json!({ "alg": "ES256" }), &as_vendor);
    let r = post_with_assertion(
        &p,
        "/oauth2/introspect",
        &as_vendor,
        &[("token", &access)],
        &[],
    )
    .await;
    refused(&r, "client authentication failed");
    // Two methods at once, and a client_id the assertion does not name.
    let r = post_with_assertion(
        &p,
        "/oauth2/introspect",
        &assertion(&p, &key, "jti-9"),
        &[("token", &access)],
        &[("Authorization", p.basic(JWT_CLIENT, &p.secret))],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_request"))
    );
    let r = post_with_assertion(
        &p,
        "/oauth2/introspect",
        &assertion(&p, &key, "jti-10"),
        &[("token", &access), ("client_id", OTHER_ID)],
        &[],
    )
    .await;
    refused(&r, "does not match");
    // Garbage is a clear 401, never a 500; an unknown client leaves no audit event.
    let before = refusals(&p).await.len();
    for junk in ["x", "a.b.c", "..", &"A".repeat(5000)] {
        let r = post_with_assertion(&p, "/oauth2/introspect", junk, &[("token", "t")], &[]).await;
        assert!(r.status == 401 || r.status == 400, "{junk:.20}: {}", r.body);
    }
    assert_eq!(refusals(&p).await.len(), before);
    p.app.stop().await;
}

#[actix_web::test]
async fn a_client_jwks_is_checked_when_the_config_is_read() {
    let key = client_key(Algorithm::Es256);
    let mut private = serde_json::to_value(key.public_jwk()).unwrap();
    private["d"] = json!("AAAA");
    let bad = client_toml(&[]).replace(r#"{"keys":[]}"#, &json!({ "keys": [private] }).to_string());
    let load = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(&path, text).unwrap();
        keygate::Config::load(Some(&path), vec![]).map(|_| ())
    };
    let err = load(&bad).unwrap_err().to_string();
    assert!(err.contains("private member `d`"), "{err}");
    let with_secret = format!("{}secret_env = \"X\"\n", client_toml(&[&key]));
    let err = load(&with_secret).unwrap_err().to_string();
    assert!(err.contains("has no secret"), "{err}");
    let public = format!("{}public = true\n", client_toml(&[&key]));
    let err = load(&public).unwrap_err().to_string();
    assert!(err.contains("no keys"), "{err}");
    load(&client_toml(&[&key])).unwrap();
}

#[actix_web::test]
async fn admins_register_a_private_key_jwt_client_which_then_authenticates_with_it() {
    let key = client_key(Algorithm::Rs256);
    let mut p = provider().await;
    let mut admin = p.browser().await;
    let page = admin.get("/admin/clients").await;
    let csrf = crate::support::app::csrf_of(&page.body);
    let jwks = json!({ "keys": [key.public_jwk()] });
    let r = admin
        .post_json(
            "/api/admin/clients",
            Some(&csrf),
            &json!({
                "name": "Signed by its key",
                "redirect_uris": ["https://keyed.example/cb"],
                "scopes": ["openid", "keygate:compliance"],
                "jwks": jwks,
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    assert!(created["client_secret"].is_null(), "no secret: {created}");
    assert_eq!(
        created["jwks"], jwks,
        "the registered keys, as a JSON document"
    );
    let client_id = created["client_id"].as_str().unwrap().to_string();

    // Client credentials with an assertion the client signed (RS256, no kid: its one key).
    let now = p.app.clock.now().unix_timestamp();
    let signed = sign(
        &key,
        json!({ "alg": "RS256" }),
        &json!({
            "iss": client_id, "sub": client_id, "aud": format!("{}/oauth2/token", p.app.base),
            "exp": now + 60, "jti": "admin-made-1",
        }),
    );
    let r = post_with_assertion(
        &p,
        "/oauth2/token",
        &signed,
        &[("grant_type", "client_credentials")],
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"], "keygate:compliance");

    // A JWKS with the private key in it, or on a public client: refused, nothing created.
    let mut leaked = serde_json::to_value(key.public_jwk()).unwrap();
    leaked["d"] = json!("AAAA");
    let before = admin.get("/api/admin/clients").await.json();
    for body in [
        json!({ "name": "Leaky", "redirect_uris": ["https://k.example/cb"], "jwks": { "keys": [leaked] } }),
        json!({ "name": "Public", "redirect_uris": ["https://k.example/cb"], "public": true, "jwks": jwks }),
        json!({ "name": "Not a JWKS", "redirect_uris": ["https://k.example/cb"], "jwks": ["x"] }),
    ] {
        let r = admin
            .post_json("/api/admin/clients", Some(&csrf), &body)
            .await;
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (400, json!("invalid_client_metadata")),
            "{body}"
        );
    }
    assert_eq!(admin.get("/api/admin/clients").await.json(), before);

    // The page's form takes the JWKS as text.
    let r = admin
        .post_form(
            "/admin/clients",
            &[
                ("csrf", &csrf),
                ("name", "Keyed from the page"),
                ("redirect_uris", "https://keyed-page.example/cb"),
                ("jwks", &jwks.to_string()),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("private_key_jwt") && !r.body.contains("new-client-secret"));
    p.app.stop().await;
}
