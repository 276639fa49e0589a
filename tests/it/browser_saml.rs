//! From a SAML service provider's redirect to a validated assertion, in headless Chromium
//! (SPEC §3 C5, §8): pysaml2, as the independent SP, builds an HTTP-Redirect AuthnRequest
//! (ForceAuthn, with a RelayState) against keygate's metadata; the browser opens it, lands
//! on keygate's sign-in page, touches its (virtual, attested, user-verifying) key, goes on
//! to `/saml/continue`, and keygate's page posts the response to the SP's ACS URL by
//! itself. pysaml2 then validates what was posted, as the SP would.
//!
//! The ACS URL is never a real server: the browser's POST to it is intercepted with the
//! DevTools `Fetch` domain, its form body read, and answered in place.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::browser_enrolment::{
    blocking, extra_model_toml, refused_in_browser, Page, EMAIL, MODEL, NAME, WAIT,
};
use crate::support::app::TestApp;
use crate::support::browser::Browser;
use crate::support::saml::{pysaml2, pysaml2_available};

const SP: &str = "https://sp.example/metadata";
const ACS: &str = "https://sp.example/acs";
const WORKSPACE_EXTERNAL: &str = "ws-browser-saml-7";
/// Characters a RelayState must survive: `&`, `=`, `<`, `>`, `"`, spaces.
const RELAY: &str = "/reports?tab=all&q=\"a b\"<c>";

/// The form body Chromium posted: `postData`, or its `postDataEntries` when it left the
/// text out.
fn post_body(request: &Value) -> String {
    if let Some(text) = request["postData"].as_str() {
        return text.to_owned();
    }
    let mut bytes = Vec::new();
    for entry in request["postDataEntries"].as_array().into_iter().flatten() {
        if let Some(b) = entry["bytes"].as_str() {
            bytes.extend(STANDARD.decode(b).unwrap_or_default());
        }
    }
    String::from_utf8(bytes).unwrap_or_default()
}

#[actix_web::test]
async fn service_provider_redirect_to_validated_assertion_in_chromium() {
    if crate::support::skip::unless_available(
        Browser::available(),
        crate::support::browser::CHROMIUM,
    ) {
        return;
    }
    // Panics under CI when missing.
    if !pysaml2_available() {
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

    // keygate trusting it, with a workspace for the admin and an SP bound to it.
    let root = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(root.path(), &pem).expect("write root");
    let app = TestApp::builder()
        .with_toml(&format!(
            r#"[attestation]
extra_roots = ["{root}"]
{models}
[[workspaces]]
id = "acme"
name = "Acme"
external_id = "{WORKSPACE_EXTERNAL}"
members = ["{EMAIL}"]

[[saml.service_providers]]
entity_id = "{SP}"
name = "Vendor SSO"
acs_urls = ["{ACS}"]
workspace = "acme"
"#,
            root = root.path().display(),
            models = extra_model_toml(),
        ))
        .start()
        .await;
    let link = app.bootstrap_link.clone().expect("bootstrap link");

    // The SP: keygate's metadata on disk, and an AuthnRequest built from it.
    let metadata = app.client().get("/saml/metadata").await;
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    let metadata_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(metadata_file.path(), &metadata.body).expect("write metadata");
    let idp_entity_id = format!("{}/saml/metadata", app.base);
    let mut sp = json!({
        "entity_id": SP,
        "acs_urls": [ACS],
        "idp_metadata_file": metadata_file.path(),
        "idp_entity_id": idp_entity_id,
    });
    let mut args = sp.clone();
    args["binding"] = json!("redirect");
    args["relay_state"] = json!(RELAY);
    args["force_authn"] = json!(true);
    let request = pysaml2("request", args).await;
    assert!(request.get("error").is_none(), "pysaml2: {request}");
    let request_id = request["request_id"]
        .as_str()
        .expect("request ID")
        .to_owned();
    let sso = request["url"].as_str().expect("SSO URL").to_owned();
    assert!(
        sso.starts_with(&format!("{}/saml/sso?SAMLRequest=", app.base)),
        "{sso}"
    );

    let posted = blocking(move || {
        let mut p = page;
        p.step("enrol the admin (trusted)");
        p.goto(&link);
        // A new device: the refused one's credential must not answer later.
        p.fresh_authenticator(Some(&refused));
        p.enrol(&[
            ("email", EMAIL),
            ("display_name", NAME),
            ("nickname", "Primary"),
        ]);
        p.wait("location.pathname === '/me' && document.querySelector('#keys') !== null");

        p.step("sign out: the SP's request will need a key touch");
        p.click("header nav form button");
        p.wait("location.pathname === '/' && document.querySelector('#signin-form') !== null");

        p.step("the SP sends the browser to keygate");
        p.goto(&sso);
        let landed = p.wait(
            "location.pathname === '/' && document.querySelector('#signin-form') !== null \
             && { search: location.search, next: document.querySelector('#signin-form').dataset.continue || '' }",
        );
        let (search, next) = (
            landed["search"].as_str().unwrap_or_default().to_owned(),
            landed["next"].as_str().unwrap_or_default().to_owned(),
        );
        p.ensure(
            search.contains("via=saml") && search.contains("why=prompt_login"),
            || format!("the sign-in page, asked by SAML for a fresh touch: {search}"),
        );
        p.ensure(next.starts_with("/saml/continue?id="), || {
            format!("the sign-in form continues to the SAML request: {next:?}")
        });
        p.b.watch_events("Fetch.requestPaused");
        p.call(
            "Fetch.enable",
            json!({ "patterns": [{ "urlPattern": ACS, "requestStage": "Request" }] }),
        );

        p.step("touch the key on keygate's sign-in page; the response page posts itself");
        p.click("#signin-button");
        let paused = match p.b.wait_event("Fetch.requestPaused", WAIT) {
            Ok(v) => v,
            Err(e) => p.fail(&e),
        };
        let request = paused["request"].clone();
        p.call(
            "Fetch.fulfillRequest",
            json!({ "requestId": paused["requestId"], "responseCode": 200,
                    "responseHeaders": [{ "name": "Content-Type", "value": "text/html" }],
                    "body": STANDARD.encode("<p id=\"sp-done\">signed in at the SP</p>") }),
        );
        p.wait("document.getElementById('sp-done') !== null");
        p.call("Fetch.disable", json!({}));
        request
    })
    .await;

    // What reached the SP's ACS URL.
    assert_eq!(posted["url"], ACS, "{posted}");
    assert_eq!(posted["method"], "POST", "{posted}");
    let body = post_body(&posted);
    let field = |name: &str| {
        url::form_urlencoded::parse(body.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let saml_response =
        field("SAMLResponse").unwrap_or_else(|| panic!("no SAMLResponse in {body:?}"));
    assert_eq!(
        field("RelayState").as_deref(),
        Some(RELAY),
        "RelayState preserved"
    );

    // The SP validates it: keygate's signature, audience, destination, InResponseTo.
    sp["saml_response"] = json!(saml_response);
    sp["outstanding"] = json!([request_id]);
    let seen = pysaml2("validate", sp).await;
    assert!(seen.get("error").is_none(), "pysaml2 refused: {seen}");
    assert_eq!(seen["issuer"], idp_entity_id.as_str(), "{seen}");
    assert_eq!(seen["in_response_to"], request_id.as_str(), "{seen}");
    assert_eq!(seen["name_id"], EMAIL, "{seen}");
    assert_eq!(
        seen["authn_contexts"],
        json!(["https://refeds.org/profile/mfa"]),
        "an attested key with user verification: {seen}"
    );
    assert_eq!(
        seen["attributes"]["workspace_id"],
        json!([WORKSPACE_EXTERNAL]),
        "{seen}"
    );
    assert_eq!(seen["attributes"]["key_model"], json!([MODEL]), "{seen}");
    app.stop().await;
}
