//! From a relying party's redirect to a validated ID token, in headless Chromium: the
//! browser opens the authorization URL (`prompt=login`), lands on keygate's sign-in page,
//! touches its (virtual, attested) key, and is sent back to the relying party with a code;
//! the test, as the relying party, exchanges it and validates the ID token with the
//! openidconnect crate against keygate's discovery document and JWKS.
//!
//! The relying party's callback is never a real server: the browser's request to it is
//! intercepted with the DevTools `Fetch` domain and answered in place.

use openidconnect::Nonce;
use serde_json::json;

use crate::browser_enrolment::{
    blocking, extra_model_toml, refused_in_browser, Page, EMAIL, NAME, WAIT,
};
use crate::support::app::TestApp;
use crate::support::browser::Browser;
use crate::support::oidc::{authorize_path, form, relying_party, Pkce, RpIdToken};

const CLIENT_ID: &str = "browser-rp";
const REDIRECT: &str = "https://rp.example/callback";

#[actix_web::test]
async fn relying_party_redirect_to_validated_id_token_in_chromium() {
    if crate::support::skip::unless_available(
        Browser::available(),
        crate::support::browser::CHROMIUM,
    ) {
        return;
    }

    // Chromium's attestation certificate, taken from a refused enrolment.
    let untrusting = TestApp::builder()
        .with_toml(&extra_model_toml())
        .start()
        .await;
    let link = untrusting.bootstrap_link.clone().expect("bootstrap link");
    let (page, pem, refused) = blocking(move || {
        let b = Browser::launch().unwrap_or_else(|e| panic!("launch chromium: {e}"));
        let mut page = Page {
            b,
            step: "launch".into(),
        };
        let (_, pem, refused) = refused_in_browser(&mut page, &link);
        (page, pem, refused)
    })
    .await;
    untrusting.stop().await;

    // keygate trusting it, with a confidential client.
    let root = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(root.path(), &pem).expect("write root");
    let secret = "browser-rp-secret-0123456789abcdef";
    let secret_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(secret_file.path(), secret).expect("write secret");
    let app = TestApp::builder()
        .with_toml(&format!(
            "[attestation]\nextra_roots = [\"{}\"]\n{}\n[[oidc.clients]]\nclient_id = \"{CLIENT_ID}\"\nname = \"Browser RP\"\nredirect_uris = [\"{REDIRECT}\"]\nscopes = [\"openid\", \"email\", \"keygate:key_evidence\"]\nsecret_file = \"{}\"\n",
            root.path().display(),
            extra_model_toml(),
            secret_file.path().display(),
        ))
        .start()
        .await;
    let link = app.bootstrap_link.clone().expect("bootstrap link");
    let pkce = Pkce::new();
    let authorize = format!(
        "{}{}",
        app.base,
        authorize_path(
            CLIENT_ID,
            REDIRECT,
            "openid email keygate:key_evidence",
            &pkce.challenge,
            &[
                ("state", "st-browser"),
                ("nonce", "n-browser"),
                ("prompt", "login")
            ],
        )
    );

    let callback = blocking(move || {
        let mut p = page;
        p.step("enrol the admin (trusted)");
        p.goto(&link);
        // A new device: the refused one's credential must not answer later.
        p.fresh_authenticator(Some(&refused));
        p.enrol(&[("email", EMAIL), ("display_name", NAME), ("nickname", "Primary")]);
        p.wait("location.pathname === '/me' && document.querySelector('#keys') !== null");

        p.step("sign out: the relying party's request will need a key touch");
        p.click("header nav form button");
        p.wait("location.pathname === '/' && document.querySelector('#signin-form') !== null");

        p.step("the relying party sends the browser to keygate");
        p.goto(&authorize);
        p.wait("location.pathname === '/' && document.querySelector('#signin-form') !== null");
        p.b.watch_events("Fetch.requestPaused");
        p.call(
            "Fetch.enable",
            json!({ "patterns": [{ "urlPattern": "https://rp.example/*", "requestStage": "Request" }] }),
        );

        p.step("touch the key on keygate's sign-in page");
        p.click("#signin-button");
        let paused = match p.b.wait_event("Fetch.requestPaused", WAIT) {
            Ok(v) => v,
            Err(e) => p.fail(&e),
        };
        let url = paused["request"]["url"].as_str().unwrap_or_default().to_string();
        p.call(
            "Fetch.fulfillRequest",
            json!({ "requestId": paused["requestId"], "responseCode": 200,
                    "body": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "signed in") }),
        );
        p.call("Fetch.disable", json!({}));
        url
    })
    .await;

    // The relying party: the callback carries a code, the state and the issuer.
    let callback = url::Url::parse(&callback).expect("callback URL");
    let param = |name: &str| {
        callback
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert!(callback.as_str().starts_with(REDIRECT), "{callback}");
    assert_eq!(param("state").as_deref(), Some("st-browser"));
    assert_eq!(param("iss").as_deref(), Some(app.base.as_str()));
    let code = param("code").unwrap_or_else(|| panic!("no code in {callback}"));

    let mut rp = app.client();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{CLIENT_ID}:{secret}")
        )
    );
    let tokens = rp
        .post_with(
            "/oauth2/token",
            &[("Authorization", basic)],
            "application/x-www-form-urlencoded",
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pkce.verifier),
            ]),
        )
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();

    let verifier = relying_party(&app, CLIENT_ID, secret).await;
    let id: RpIdToken = tokens["id_token"].as_str().unwrap().parse().unwrap();
    let claims = id
        .claims(&verifier, &Nonce::new("n-browser".into()))
        .expect("the relying party accepts the ID token");
    assert_eq!(
        claims.auth_context_ref().map(|a| a.as_str()),
        Some("phrh"),
        "an attested key with user verification earns phrh"
    );
    let amr: Vec<&str> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str())
        .collect();
    assert!(amr.contains(&"hwk") && amr.contains(&"pop"), "{amr:?}");
    assert_eq!(claims.email().map(|e| e.as_str()), Some(EMAIL));
    assert_eq!(
        claims.additional_claims().key_model.as_deref(),
        Some(crate::browser_enrolment::MODEL)
    );
    app.stop().await;
}
