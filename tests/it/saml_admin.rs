//! Managing SAML service providers over HTTP: metadata imported through the admin page
//! (shown for review, stored only when the form is saved, then used by pysaml2 as that
//! SP), the JSON admin API (checks, config-declared SPs, disable and enable, who may call
//! it), and the two-step signing-key rotation run with `keygate keys rotate-saml`.

use base64::Engine;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::enrolment_http::{enrol_with, physical_key, token_of};
use crate::support::app::{csrf_of, Client, Reply, TestApp};
use crate::support::authenticator::{TestCa, YUBIKEY_5_NFC};
use crate::support::bin::{keygate, run};
use crate::support::oidc::unattested_provider;
use crate::support::saml::*;

const LIST: &str = "/api/admin/saml/service-providers";
const IMPORTED: &str = "https://imported.example/metadata";
const IMPORTED_ACS: &str = "https://imported.example/acs";
const IMPORTED_ALT_ACS: &str = "https://imported.example/acs/alt";
const MANUAL: &str = "https://manual.example/metadata";
const MANUAL_ACS: &str = "https://manual.example/acs";
const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";

/// The base64 DER inside a PEM certificate.
fn der_b64(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// SP metadata: signed requests, a signing and an encryption key, two HTTP-POST ACS
/// endpoints (the default one has the higher index) and an HTTP-Redirect one keygate
/// cannot use, persistent NameIDs.
fn sp_metadata(signing: &KeyPair, encryption: &KeyPair) -> String {
    sp_metadata_with(&[signing], encryption)
}

/// [`sp_metadata`] with one signing `KeyDescriptor` per key (an SP rolling its key
/// publishes both).
fn sp_metadata_with(signing: &[&KeyPair], encryption: &KeyPair) -> String {
    let signing: String = signing
        .iter()
        .map(|k| {
            format!(
                r#"
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>"#,
                der_b64(&k.cert_pem)
            )
        })
        .collect();
    format!(
        r##"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IMPORTED}">
  <md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{signing}
    <md:KeyDescriptor use="encryption">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{enc}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:NameIDFormat>{PERSISTENT}</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://imported.example/acs/redirect" index="2"/>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{IMPORTED_ALT_ACS}" index="0" isDefault="false"/>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{IMPORTED_ACS}" index="1" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"##,
        enc = der_b64(&encryption.cert_pem),
    )
}

/// The registration form of the admin page (after the table's own small forms).
fn sp_form(page: &str) -> &str {
    let start = page
        .find("id=\"saml-sp-form\"")
        .expect("the registration form");
    let end = page[start..].find("</form>").unwrap() + start;
    &page[start..end]
}

fn input_value(form: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = form.find(&marker).unwrap_or_else(|| panic!("no {name}")) + marker.len();
    let end = form[start..].find('"').unwrap() + start;
    html_unescape(&form[start..end])
}

fn textarea(form: &str, name: &str) -> String {
    let tag = form
        .find(&format!("<textarea name=\"{name}\""))
        .unwrap_or_else(|| panic!("no {name}"));
    let start = form[tag..].find('>').unwrap() + tag + 1;
    let end = form[start..].find("</textarea>").unwrap() + start;
    html_unescape(&form[start..end])
}

fn selected(form: &str, name: &str) -> String {
    let start = form
        .find(&format!("<select name=\"{name}\">"))
        .unwrap_or_else(|| panic!("no {name}"));
    let end = form[start..].find("</select>").unwrap() + start;
    let select = &form[start..end];
    let Some(at) = select.find(" selected>") else {
        return String::new();
    };
    let v = select[..at].rfind("value=\"").unwrap() + "value=\"".len();
    let e = select[v..].find('"').unwrap() + v;
    html_unescape(&select[v..e])
}

fn checked(form: &str, name: &str) -> bool {
    let start = form
        .find(&format!("name=\"{name}\" value=\"true\""))
        .unwrap_or_else(|| panic!("no {name}"));
    let end = form[start..].find('>').unwrap() + start;
    form[start..end].contains("checked")
}

/// What a registration says about signing the response when it does not say.
fn default_sign_response() -> bool {
    serde_json::from_value::<keygate::saml::sp::ServiceProvider>(
        json!({ "entity_id": "x", "acs_urls": [] }),
    )
    .unwrap()
    .sign_response
}

/// The registration form's fields as the browser submits them after review, with
/// `workspace` chosen.
fn reviewed(form: &str, csrf: &str, workspace: &str) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("csrf", csrf.to_string()),
        ("entity_id", input_value(form, "entity_id")),
        ("name", input_value(form, "name")),
        ("acs_urls", textarea(form, "acs_urls")),
        ("workspace", workspace.to_string()),
        ("name_id_format", selected(form, "name_id_format")),
        ("authn_context", input_value(form, "authn_context")),
        ("attributes", textarea(form, "attributes")),
        ("signing_certs", textarea(form, "signing_certs")),
        ("encryption_cert", textarea(form, "encryption_cert")),
    ];
    for flag in ["require_signed_requests", "idp_initiated", "sign_response"] {
        if checked(form, flag) {
            fields.push((flag, "true".to_string()));
        }
    }
    fields
}

/// How many SPs the test config declares.
fn declared(idp: &Idp) -> usize {
    idp.p.app.state.config.saml.service_providers.len()
}

/// The admin page's CSRF token.
async fn csrf(browser: &mut Client) -> String {
    let page = browser.get("/admin/saml").await;
    assert_eq!(page.status, 200, "{}", page.body);
    csrf_of(&page.body)
}

async fn listed(browser: &mut Client) -> Vec<Value> {
    let r = browser.get(LIST).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().unwrap().clone()
}

fn entry<'a>(list: &'a [Value], entity_id: &str) -> Option<&'a Value> {
    list.iter()
        .find(|e| e["service_provider"]["entity_id"] == entity_id)
}

async fn audit(app: &TestApp) -> Vec<keygate::audit::AuditRecord> {
    app.state
        .storage
        .run(|s| s.audit_range(0, i64::MAX, 10_000))
        .await
        .unwrap()
}

async fn events(app: &TestApp, action: &str, subject: &str) -> Vec<keygate::audit::AuditRecord> {
    audit(app)
        .await
        .into_iter()
        .filter(|e| e.action == action && e.subject == subject)
        .collect()
}

fn problem(r: &Reply, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.body);
    let body = r.json();
    assert_eq!(body["error"], code, "{body}");
    body["message"].as_str().unwrap_or_default().to_string()
}

fn instant() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A hand-written unsigned AuthnRequest from `issuer`, sent over HTTP-POST.
async fn post_request(app: &TestApp, browser: &mut Client, issuer: &str, acs: &str) -> Reply {
    let asks = format!("AssertionConsumerServiceURL=\"{acs}\"");
    post_request_asking(app, browser, issuer, &asks).await
}

/// [`post_request`] naming its ACS with `asks` (an `AssertionConsumerService…` attribute).
async fn post_request_asking(
    app: &TestApp,
    browser: &mut Client,
    issuer: &str,
    asks: &str,
) -> Reply {
    let id = format!("id-{}", crate::support::db::random_hex(12));
    let xml = format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{base}/saml/sso" {asks} ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"><saml:Issuer>{issuer}</saml:Issuer></samlp:AuthnRequest>"#,
        now = instant(),
        base = app.base,
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
    browser
        .post_form("/saml/sso", &[("SAMLRequest", &encoded)])
        .await
}

// --- 1. Metadata import through the admin page -------------------------------------------

#[actix_web::test]
async fn imported_metadata_is_reviewed_then_saved_and_the_sp_signs_in() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let signing = KeyPair::new("imported.example");
    let encryption = KeyPair::new("enc.imported.example");
    let token = csrf(&mut browser).await;
    let before = listed(&mut browser).await;
    assert_eq!(before.len(), declared(&idp), "the SPs of the config");
    assert!(before.iter().all(|e| e["source"] == "config"), "{before:?}");
    let audited_before = audit(&idp.p.app).await.len();

    // Read: the form comes back filled in for review.
    let metadata = sp_metadata(&signing, &encryption);
    let review = browser
        .post_form(
            "/admin/saml/import",
            &[("csrf", &token), ("metadata", &metadata)],
        )
        .await;
    assert_eq!(review.status, 200, "{}", review.body);
    assert!(
        review
            .body
            .contains("Metadata read: review the registration below and save it."),
        "{}",
        review.body
    );
    let form = sp_form(&review.body);
    assert_eq!(input_value(form, "entity_id"), IMPORTED);
    assert_eq!(
        textarea(form, "acs_urls"),
        format!("{IMPORTED_ACS} 1\n{IMPORTED_ALT_ACS} 0"),
        "HTTP-POST endpoints only, the default first, each with its index"
    );
    assert_eq!(selected(form, "name_id_format"), "persistent");
    assert_eq!(selected(form, "workspace"), "", "no workspace chosen yet");
    assert!(checked(form, "require_signed_requests"));
    assert!(!checked(form, "idp_initiated"));
    assert_eq!(checked(form, "sign_response"), default_sign_response());
    assert_eq!(
        textarea(form, "signing_certs").trim(),
        der_b64(&signing.cert_pem)
    );
    assert_eq!(
        textarea(form, "encryption_cert").trim(),
        der_b64(&encryption.cert_pem)
    );
    // Nothing is stored by reading metadata, nothing is audited.
    let now = listed(&mut browser).await;
    assert_eq!(now.len(), declared(&idp));
    assert!(entry(&now, IMPORTED).is_none());
    assert_eq!(audit(&idp.p.app).await.len(), audited_before);

    // Save the reviewed form, bound to the admin's workspace.
    let fields = reviewed(form, &token, "acme");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let saved = browser.post_form("/admin/saml", &fields).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(
        saved
            .body
            .contains(&format!("Service provider {IMPORTED} saved.")),
        "{}",
        saved.body
    );
    let now = listed(&mut browser).await;
    assert_eq!(now.len(), declared(&idp) + 1);
    let e = entry(&now, IMPORTED).expect("listed once saved");
    assert_eq!(e["source"], "admin");
    assert!(e["disabled_at"].is_null());
    let sp = &e["service_provider"];
    assert_eq!(
        sp["acs_urls"],
        json!([
            { "url": IMPORTED_ACS, "index": 1 },
            { "url": IMPORTED_ALT_ACS, "index": 0 },
        ])
    );
    assert_eq!(sp["name_id_format"], "persistent");
    assert_eq!(sp["require_signed_requests"], true);
    assert_eq!(sp["workspace"], "acme");
    assert_eq!(sp["signing_certs"].as_array().unwrap().len(), 1);
    assert!(sp["encryption_cert"].is_string());
    assert_eq!(sp["authn_context"], "https://refeds.org/profile/mfa");
    let registered = events(
        &idp.p.app,
        "saml.sp_registered",
        &format!("saml_sp:{IMPORTED}"),
    )
    .await;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].actor, format!("user:{}", idp.p.user_id));

    if !pysaml2_available() {
        idp.p.app.stop().await;
        return;
    }
    // pysaml2 as that SP, with its own keys: a signed HTTP-POST request.
    let mut args = json!({
        "entity_id": IMPORTED,
        "acs_urls": [IMPORTED_ACS, IMPORTED_ALT_ACS],
        "idp_metadata_file": idp.metadata_file.path(),
        "idp_entity_id": idp.entity_id,
        "key_file": signing.key_file,
        "cert_file": signing.cert_file,
        "encryption_key_file": encryption.key_file,
        "encryption_cert_file": encryption.cert_file,
        "binding": "post",
        "sign": true,
        "name_id_format": PERSISTENT,
    });
    let request = pysaml2("request", args.clone()).await;
    assert!(
        request["xml"].as_str().unwrap().contains(":Signature"),
        "{request}"
    );
    let reply = send(&idp, &mut browser, &request).await;
    let (action, saml_response, _) = posted(&reply);
    assert_eq!(action, IMPORTED_ACS);
    assert!(decoded(&saml_response).contains("<saml:EncryptedAssertion"));
    args["saml_response"] = json!(saml_response);
    args["outstanding"] = json!([request["request_id"]]);
    let seen = pysaml2("validate", args.clone()).await;
    assert!(seen.get("error").is_none(), "pysaml2 refused: {seen}");
    assert_eq!(seen["issuer"], idp.entity_id.as_str());
    assert_eq!(seen["in_response_to"], request["request_id"]);
    assert_eq!(seen["name_id_format"], PERSISTENT);
    assert_eq!(seen["name_id"].as_str().unwrap().len(), 32);
    assert_eq!(seen["attributes"]["workspace_id"], json!(["ws-acme-42"]));

    // The imported `AuthnRequestsSigned` is enforced: an unsigned request is refused.
    args["sign"] = json!(false);
    let request = pysaml2("request", args).await;
    let reply = send(&idp, &mut browser, &request).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("must sign its requests"),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("SAMLResponse"));
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn unusable_metadata_is_refused_with_a_reason_and_nothing_is_stored() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let signing = KeyPair::new("imported.example");
    let encryption = KeyPair::new("enc.imported.example");
    let token = csrf(&mut browser).await;
    let good = sp_metadata(&signing, &encryption);
    let audited_before = audit(&idp.p.app).await.len();

    let with_dtd = good.replacen(
        "<md:EntityDescriptor",
        "<!DOCTYPE md:EntityDescriptor [<!ENTITY acs \"https://evil.example/acs\">]>\n<md:EntityDescriptor",
        1,
    );
    let no_sp = good
        .replace("<md:SPSSODescriptor", "<md:IDPSSODescriptor")
        .replace("</md:SPSSODescriptor>", "</md:IDPSSODescriptor>")
        .replace(" AuthnRequestsSigned=\"true\"", "")
        .replace(" WantAssertionsSigned=\"true\"", "");
    let no_post = good.replace(
        "bindings:HTTP-POST\" Location",
        "bindings:HTTP-Artifact\" Location",
    );
    assert!(!no_post.contains("HTTP-POST"));
    // A second descriptor after the first: the admin would review one registration while
    // another parser could read the other.
    let second = format!(
        "{good}<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"https://evil.example/metadata\"/>\n"
    );
    let commented = format!("{good}<!-- appended -->\n");
    let cases = [
        (second.as_str(), "after its root element"),
        (commented.as_str(), "after its root element"),
        (with_dtd.as_str(), "DTD"),
        (no_sp.as_str(), "no SPSSODescriptor"),
        (no_post.as_str(), "no HTTP-POST AssertionConsumerService"),
        ("<md:EntityDescriptor", "not a SAML EntityDescriptor"),
    ];
    for (metadata, reason) in cases {
        let page = browser
            .post_form(
                "/admin/saml/import",
                &[("csrf", &token), ("metadata", metadata)],
            )
            .await;
        assert_eq!(page.status, 400, "{reason}: {}", page.body);
        let error = page
            .body
            .find("id=\"saml-error\"")
            .map(|i| html_unescape(&page.body[i..i + 300]))
            .unwrap_or_else(|| panic!("{reason}: no error shown: {}", page.body));
        assert!(error.contains(reason), "{reason}: {error}");
        assert_eq!(
            input_value(sp_form(&page.body), "entity_id"),
            "",
            "{reason}: nothing prefilled"
        );

        let api = browser
            .post_raw(
                "/api/admin/saml/service-providers/import",
                Some(&token),
                metadata.as_bytes().to_vec(),
            )
            .await;
        let message = problem(&api, 400, "invalid_metadata");
        assert!(message.contains(reason), "{reason}: {message}");
    }
    let now = listed(&mut browser).await;
    assert_eq!(now.len(), declared(&idp));
    assert!(entry(&now, IMPORTED).is_none());
    assert_eq!(audit(&idp.p.app).await.len(), audited_before);

    // The API reads good metadata into the registration, with the endpoints' indexes, and
    // stores nothing either; whitespace after the descriptor is no content.
    assert!(good.ends_with("</md:EntityDescriptor>\n"));
    let api = browser
        .post_raw(
            "/api/admin/saml/service-providers/import",
            Some(&token),
            format!("{good}\r\n\t \n").into_bytes(),
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    let sp = api.json();
    assert_eq!(sp["entity_id"], IMPORTED);
    assert_eq!(
        sp["acs_urls"],
        json!([
            { "url": IMPORTED_ACS, "index": 1 },
            { "url": IMPORTED_ALT_ACS, "index": 0 },
        ])
    );
    assert_eq!(sp["require_signed_requests"], true);
    assert_eq!(sp["name_id_format"], "persistent");
    assert!(entry(&listed(&mut browser).await, IMPORTED).is_none());
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn an_sp_rolling_its_key_keeps_both_signing_certificates_through_the_form() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let old = KeyPair::new("imported.example");
    let new = KeyPair::new("imported.example 2");
    let encryption = KeyPair::new("enc.imported.example");
    let token = csrf(&mut browser).await;
    let metadata = sp_metadata_with(&[&old, &new], &encryption);
    let review = browser
        .post_form(
            "/admin/saml/import",
            &[("csrf", &token), ("metadata", &metadata)],
        )
        .await;
    assert_eq!(review.status, 200, "{}", review.body);
    let fields = reviewed(sp_form(&review.body), &token, "acme");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let saved = browser.post_form("/admin/saml", &fields).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let list = listed(&mut browser).await;
    let sp = &entry(&list, IMPORTED).expect("saved")["service_provider"];
    let certs: Vec<String> = sp["signing_certs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| der_b64(c.as_str().unwrap()).split_whitespace().collect())
        .collect();
    assert_eq!(
        certs,
        [der_b64(&old.cert_pem), der_b64(&new.cert_pem)],
        "both certificates, each on its own"
    );

    if !pysaml2_available() {
        idp.p.app.stop().await;
        return;
    }
    // Requests signed with either key are accepted.
    for key in [&old, &new] {
        let mut args = json!({
            "entity_id": IMPORTED,
            "acs_urls": [IMPORTED_ACS],
            "idp_metadata_file": idp.metadata_file.path(),
            "idp_entity_id": idp.entity_id,
            "key_file": key.key_file,
            "cert_file": key.cert_file,
            "encryption_key_file": encryption.key_file,
            "encryption_cert_file": encryption.cert_file,
            "binding": "post",
            "sign": true,
        });
        let request = pysaml2("request", args.clone()).await;
        let reply = send(&idp, &mut browser, &request).await;
        let (_, saml_response, _) = posted(&reply);
        args["saml_response"] = json!(saml_response);
        args["outstanding"] = json!([request["request_id"]]);
        let seen = pysaml2("validate", args).await;
        assert!(seen.get("error").is_none(), "pysaml2 refused: {seen}");
    }
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn metadata_endpoint_indexes_survive_the_review_form() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let signing = KeyPair::new("imported.example");
    let encryption = KeyPair::new("enc.imported.example");
    let token = csrf(&mut browser).await;
    // Unsigned requests here, so they can be written by hand.
    let metadata = sp_metadata(&signing, &encryption).replace(" AuthnRequestsSigned=\"true\"", "");
    let review = browser
        .post_form(
            "/admin/saml/import",
            &[("csrf", &token), ("metadata", &metadata)],
        )
        .await;
    assert_eq!(review.status, 200, "{}", review.body);
    let form = sp_form(&review.body);
    assert!(!checked(form, "require_signed_requests"));
    let fields = reviewed(form, &token, "acme");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let saved = browser.post_form("/admin/saml", &fields).await;
    assert_eq!(saved.status, 200, "{}", saved.body);

    // The metadata's indexes, not the positions in the list, pick the endpoint.
    for (index, acs) in [(0, IMPORTED_ALT_ACS), (1, IMPORTED_ACS)] {
        let asks = format!("AssertionConsumerServiceIndex=\"{index}\"");
        let reply = post_request_asking(&idp.p.app, &mut browser, IMPORTED, &asks).await;
        assert_eq!(posted(&reply).0, acs, "index {index}");
    }
    let reply = post_request_asking(&idp.p.app, &mut browser, IMPORTED, "").await;
    assert_eq!(posted(&reply).0, IMPORTED_ACS, "the default");
    let asks = "AssertionConsumerServiceIndex=\"2\"";
    let reply = post_request_asking(&idp.p.app, &mut browser, IMPORTED, asks).await;
    assert_eq!(reply.status, 400, "the HTTP-Redirect endpoint is not used");

    // A line that is neither `URL` nor `URL index` is refused, nothing stored.
    let page = browser
        .post_form(
            "/admin/saml",
            &[
                ("csrf", &token),
                ("entity_id", MANUAL),
                ("acs_urls", "https://manual.example/acs first"),
            ],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        html_unescape(&page.body).contains("is not `URL` or `URL index`"),
        "{}",
        page.body
    );
    assert!(entry(&listed(&mut browser).await, MANUAL).is_none());
    idp.p.app.stop().await;
}

// --- 2. The JSON API ----------------------------------------------------------------------

#[actix_web::test]
async fn api_registrations_are_checked_stored_audited_and_switched_off() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let token = csrf(&mut browser).await;
    let actor = format!("user:{}", idp.p.user_id);
    let subject = format!("saml_sp:{MANUAL}");

    // Registered by hand, in the shape of `[[saml.service_providers]]`.
    let manual = json!({
        "entity_id": MANUAL,
        "name": "Manual vendor",
        "acs_urls": [MANUAL_ACS],
        "workspace": "acme",
        "attributes": { "email": "mail", "workspace_id": "workspace" },
    });
    let saved = browser.post_json(LIST, Some(&token), &manual).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let saved = saved.json();
    assert_eq!(saved["source"], "admin");
    assert_eq!(saved["service_provider"]["entity_id"], MANUAL);
    assert_eq!(saved["service_provider"]["name_id_format"], "email");
    assert_eq!(
        saved["service_provider"]["sign_response"],
        default_sign_response()
    );
    let list = listed(&mut browser).await;
    assert_eq!(list.len(), declared(&idp) + 1);
    let e = entry(&list, MANUAL).expect("listed");
    assert_eq!(e["source"], "admin");
    assert!(e["disabled_at"].is_null());
    assert_eq!(e["service_provider"]["name"], "Manual vendor");
    assert_eq!(
        e["service_provider"]["attributes"],
        json!({ "email": "mail", "workspace_id": "workspace" })
    );
    assert_eq!(entry(&list, SP).unwrap()["source"], "config");
    let registered = events(&idp.p.app, "saml.sp_registered", &subject).await;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].actor, actor);
    assert_eq!(
        serde_json::from_str::<Value>(&registered[0].details_json).unwrap()["workspace"],
        "acme"
    );
    // The admin page lists it too.
    let page = browser.get("/admin/saml").await;
    assert!(page.body.contains("Manual vendor"), "{}", page.body);

    // Registrations keygate must not trust: refused, nothing stored.
    let audited = audit(&idp.p.app).await.len();
    let bad = "https://bad.example/metadata";
    let cases = [
        (
            json!({ "entity_id": bad, "acs_urls": ["http://bad.example/acs"] }),
            "invalid_saml_sp",
            "must use https",
        ),
        (
            json!({ "entity_id": bad, "acs_urls": ["https://bad.example/acs"], "require_signed_requests": true }),
            "invalid_saml_sp",
            "require_signed_requests needs at least one signing certificate",
        ),
        (
            json!({ "entity_id": bad, "acs_urls": ["https://bad.example/acs"], "workspace": "nowhere" }),
            "unknown_workspace",
            "the workspace does not exist",
        ),
        (
            json!({ "entity_id": bad, "acs_urls": ["https://bad.example/acs"], "signing_certs": ["-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"] }),
            "invalid_saml_sp",
            "signing certificate",
        ),
        (
            json!({ "entity_id": bad, "acs_urls": ["https://bad.example/acs"], "encryption_cert": "not a certificate" }),
            "invalid_saml_sp",
            "encryption certificate",
        ),
        (
            json!({ "entity_id": bad, "acs_urls": [] }),
            "invalid_saml_sp",
            "at least one ACS URL",
        ),
        (
            json!({ "entity_id": bad, "acs_urls": ["https://bad.example/acs"], "acs": "x" }),
            "invalid_saml_sp",
            "unknown field",
        ),
    ];
    for (body, code, says) in cases {
        let r = browser.post_json(LIST, Some(&token), &body).await;
        let message = problem(&r, 400, code);
        assert!(message.contains(says), "{body}: {message}");
    }
    // http is fine on localhost only: this one is stored.
    let local = browser
        .post_json(
            LIST,
            Some(&token),
            &json!({ "entity_id": "http://localhost:9/sp", "acs_urls": ["http://localhost:9/acs"] }),
        )
        .await;
    assert_eq!(local.status, 200, "{}", local.body);
    let list = listed(&mut browser).await;
    assert_eq!(list.len(), declared(&idp) + 2);
    assert!(entry(&list, bad).is_none());
    assert_eq!(
        audit(&idp.p.app).await.len(),
        audited + 1,
        "only the stored one is audited"
    );

    // An SP declared in config is changed in config.
    let overwrite =
        json!({ "entity_id": SP, "name": "Hijacked", "acs_urls": ["https://evil.example/acs"] });
    let r = browser.post_json(LIST, Some(&token), &overwrite).await;
    problem(&r, 409, "declared_in_config");
    let list = listed(&mut browser).await;
    let sp = entry(&list, SP).unwrap();
    assert_eq!(sp["source"], "config");
    assert_eq!(sp["service_provider"]["name"], "Vendor SSO");
    assert_eq!(sp["service_provider"]["acs_urls"], json!([ACS]));
    // The page form says the same, with the admin's values kept for correction.
    let page = browser
        .post_form(
            "/admin/saml",
            &[
                ("csrf", &token),
                ("entity_id", SP),
                ("acs_urls", "https://evil.example/acs"),
            ],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        html_unescape(&page.body).contains("declared in the config file"),
        "{}",
        page.body
    );
    assert_eq!(
        textarea(sp_form(&page.body), "acs_urls"),
        "https://evil.example/acs"
    );

    // Changing an admin-managed SP replaces it.
    let mut changed = manual.clone();
    changed["name"] = json!("Manual vendor (renamed)");
    let r = browser.post_json(LIST, Some(&token), &changed).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        entry(&listed(&mut browser).await, MANUAL).unwrap()["service_provider"]["name"],
        "Manual vendor (renamed)"
    );
    assert_eq!(
        events(&idp.p.app, "saml.sp_updated", &subject).await.len(),
        1
    );

    // Enabled, it is answered.
    let reply = post_request(&idp.p.app, &mut browser, MANUAL, MANUAL_ACS).await;
    let (action, saml_response, _) = posted(&reply);
    assert_eq!(action, MANUAL_ACS);
    let xml = decoded(&saml_response);
    assert!(xml.contains("Name=\"mail\""), "{xml}");

    // Disabled, it is an unknown SP.
    let off = json!({ "entity_id": MANUAL, "enabled": false });
    let r = browser
        .post_json(&format!("{LIST}/enabled"), Some(&token), &off)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let e = entry(&listed(&mut browser).await, MANUAL).unwrap().clone();
    assert!(e["disabled_at"].is_i64(), "{e}");
    let disabled = events(&idp.p.app, "saml.sp_disabled", &subject).await;
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].actor, actor);
    let reply = post_request(&idp.p.app, &mut browser, MANUAL, MANUAL_ACS).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(!reply.body.contains("SAMLResponse"), "{}", reply.body);
    assert!(
        reply.body.contains("not registered with keygate"),
        "{}",
        reply.body
    );
    let refusal = audit(&idp.p.app)
        .await
        .into_iter()
        .rev()
        .find(|e| e.action == "saml.request_refused")
        .expect("the refusal is audited");
    assert_eq!(refusal.reason.as_deref(), Some("saml_unknown_sp"));
    assert!(
        refusal.details_json.contains(MANUAL),
        "{}",
        refusal.details_json
    );
    let page = browser.get("/admin/saml").await;
    assert!(page.body.contains("disabled"), "{}", page.body);

    // Enabled again (through the page's button), it is answered again.
    let r = browser
        .post_form(
            "/admin/saml/enabled",
            &[("csrf", &token), ("entity_id", MANUAL), ("enabled", "true")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location").as_deref(), Some("/admin/saml"));
    assert!(entry(&listed(&mut browser).await, MANUAL).unwrap()["disabled_at"].is_null());
    assert_eq!(
        events(&idp.p.app, "saml.sp_enabled", &subject).await.len(),
        1
    );
    let reply = post_request(&idp.p.app, &mut browser, MANUAL, MANUAL_ACS).await;
    assert_eq!(posted(&reply).0, MANUAL_ACS);

    // An SP keygate does not know cannot be switched.
    let r = browser
        .post_json(
            &format!("{LIST}/enabled"),
            Some(&token),
            &json!({ "entity_id": "https://nobody.example", "enabled": false }),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn only_admins_with_the_csrf_token_manage_service_providers() {
    let mut p = unattested_provider().await;
    let mut admin = p.browser().await;
    let token = csrf(&mut admin).await;
    let sp = json!({ "entity_id": MANUAL, "acs_urls": [MANUAL_ACS] });
    let enabled = format!("{LIST}/enabled");
    let import = format!("{LIST}/import");

    // Anonymous.
    let mut stranger = p.app.client();
    assert_eq!(stranger.get(LIST).await.status, 401);
    assert_eq!(
        stranger.post_json(LIST, Some(&token), &sp).await.status,
        401
    );
    assert_eq!(
        stranger
            .post_raw(&import, Some(&token), b"<x/>".to_vec())
            .await
            .status,
        401
    );
    assert_eq!(stranger.get("/admin/saml").await.status, 303);

    // A member who is not an admin.
    let invite_csrf = csrf_of(&admin.get("/admin/invitations").await.body);
    let inv = admin
        .post_json(
            "/api/admin/invitations",
            Some(&invite_csrf),
            &json!({ "email": "mia@example.com", "display_name": "Mia", "role": "member" }),
        )
        .await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    let path = inv.json()["link"]
        .as_str()
        .unwrap()
        .trim_start_matches(p.app.origin())
        .to_string();
    let mut mia = p.app.client();
    let enrolled = enrol_with(
        &p.app,
        &mut mia,
        &path,
        json!({ "token": token_of(&path) }),
        &physical_key(&TestCa::new("Member keys"), YUBIKEY_5_NFC, 41),
        |_| {},
    )
    .await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.body);
    let mia_csrf = csrf_of(&mia.get("/me").await.body);
    assert_eq!(mia.get(LIST).await.status, 403);
    assert_eq!(mia.get("/admin/saml").await.status, 403);
    assert_eq!(mia.post_json(LIST, Some(&mia_csrf), &sp).await.status, 403);
    assert_eq!(
        mia.post_json(
            &enabled,
            Some(&mia_csrf),
            &json!({ "entity_id": MANUAL, "enabled": false })
        )
        .await
        .status,
        403
    );
    assert_eq!(
        mia.post_form(
            "/admin/saml",
            &[
                ("csrf", &mia_csrf),
                ("entity_id", MANUAL),
                ("acs_urls", MANUAL_ACS)
            ]
        )
        .await
        .status,
        403
    );

    // The admin without (or with a wrong) CSRF token.
    assert_eq!(admin.post_json(LIST, None, &sp).await.status, 403);
    assert_eq!(admin.post_json(LIST, Some("nope"), &sp).await.status, 403);
    assert_eq!(
        admin.post_raw(&import, None, b"<x/>".to_vec()).await.status,
        403
    );
    assert_eq!(
        admin
            .post_form(
                "/admin/saml",
                &[
                    ("csrf", "nope"),
                    ("entity_id", MANUAL),
                    ("acs_urls", MANUAL_ACS)
                ]
            )
            .await
            .status,
        403
    );
    assert_eq!(
        admin
            .post_form(
                "/admin/saml/import",
                &[("csrf", "nope"), ("metadata", "<x/>")]
            )
            .await
            .status,
        403
    );
    assert!(listed(&mut admin).await.is_empty(), "nothing was stored");

    // With the token it works; switching it off needs the token too.
    let r = admin.post_json(LIST, Some(&token), &sp).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let off = json!({ "entity_id": MANUAL, "enabled": false });
    assert_eq!(admin.post_json(&enabled, None, &off).await.status, 403);
    assert_eq!(
        admin
            .post_form(
                "/admin/saml/enabled",
                &[
                    ("csrf", "nope"),
                    ("entity_id", MANUAL),
                    ("enabled", "false")
                ]
            )
            .await
            .status,
        403
    );
    assert!(entry(&listed(&mut admin).await, MANUAL).unwrap()["disabled_at"].is_null());
    assert!(
        events(&p.app, "saml.sp_disabled", &format!("saml_sp:{MANUAL}"))
            .await
            .is_empty()
    );
    p.app.stop().await;
}

// --- 3. Signing-key rotation --------------------------------------------------------------

/// Every certificate the metadata publishes for signing, as PEM, in order.
fn signing_certs(metadata: &str) -> Vec<String> {
    metadata
        .split("<md:KeyDescriptor use=\"signing\">")
        .skip(1)
        .map(|part| {
            let start = part.find("<ds:X509Certificate>").unwrap() + "<ds:X509Certificate>".len();
            let end = part.find("</ds:X509Certificate>").unwrap();
            let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
            for chunk in part.as_bytes()[start..end].chunks(64) {
                pem.push_str(std::str::from_utf8(chunk).unwrap());
                pem.push('\n');
            }
            pem + "-----END CERTIFICATE-----\n"
        })
        .collect()
}

/// `keygate keys rotate-saml` against the test app's database and config.
fn rotate_with_cli(idp: &Idp) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keygate.toml");
    std::fs::write(&config, &idp.p.toml).unwrap();
    let app = &idp.p.app;
    let (ok, out, err) = run(keygate()
        .args(["keys", "rotate-saml", "--config"])
        .arg(&config)
        .env(
            "KEYGATE__DATABASE__URL",
            app.state.config.database.url.expose_secret(),
        )
        .env("KEYGATE__SERVER__PUBLIC_URL", &app.base)
        .env("KEYGATE__ORGANISATION__NAME", "Test Org"));
    assert!(ok, "keygate keys rotate-saml failed: {err}");
    out
}

/// The response to a fresh request from the config's plain SP, as XML.
async fn signed_response(idp: &Idp, browser: &mut Client) -> String {
    let reply = post_request(&idp.p.app, browser, SP, ACS).await;
    let (action, saml_response, _) = posted(&reply);
    assert_eq!(action, ACS);
    decoded(&saml_response)
}

const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion";

/// Whether the (always signed) assertion of `xml` verifies with `cert` alone.
fn assertion_verifies(xml: &str, cert: &str) -> bool {
    let start = xml.find("<saml:Assertion").expect("an assertion");
    let end = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    xmlsec1_verifies(&xml[start..end], cert, ASSERTION)
}

#[actix_web::test]
async fn signing_keys_rotate_in_two_steps_with_the_cli() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let xmlsec = pysaml2_available();
    let get_metadata = |body: Reply| {
        assert_eq!(body.status, 200, "{}", body.body);
        body.body
    };
    let before = get_metadata(idp.p.app.client().get("/saml/metadata").await);
    let old = signing_certs(&before);
    assert_eq!(old.len(), 1);
    let old = old[0].clone();
    if xmlsec {
        let xml = signed_response(&idp, &mut browser).await;
        assert!(assertion_verifies(&xml, &old));
    }

    // Step one: the next certificate is published, the old key still signs.
    let out = rotate_with_cli(&idp);
    assert!(
        out.contains("next SAML signing certificate published in the metadata"),
        "{out}"
    );
    // Replicas re-read the stored keys every `saml.key_reload_secs`.
    idp.p.app.clock.advance(31);
    let staged = get_metadata(idp.p.app.client().get("/saml/metadata").await);
    let certs = signing_certs(&staged);
    assert_eq!(certs.len(), 2, "{staged}");
    assert_eq!(certs[0], old, "the current certificate stays first");
    let new = certs[1].clone();
    assert_ne!(new, old);
    if xmlsec {
        assert!(
            metadata_verifies(&staged, &old),
            "the old key signs the metadata"
        );
        assert!(!metadata_verifies(&staged, &new));
    }
    let page = browser.get("/admin/saml").await;
    assert!(
        page.body.contains("next, published for the rotation"),
        "{}",
        page.body
    );
    if xmlsec {
        let xml = signed_response(&idp, &mut browser).await;
        assert!(assertion_verifies(&xml, &old), "still the old key");
        assert!(!assertion_verifies(&xml, &new));
    }
    let staged_events: Vec<_> = audit(&idp.p.app)
        .await
        .into_iter()
        .filter(|e| e.action == "saml.keys_staged")
        .collect();
    assert_eq!(staged_events.len(), 1);
    assert_eq!(staged_events[0].actor, "cli");

    // Step two: the new key signs, the old certificate is gone.
    let out = rotate_with_cli(&idp);
    assert!(
        out.contains("SAML responses are now signed with the key of certificate"),
        "{out}"
    );
    idp.p.app.clock.advance(31);
    let promoted = get_metadata(idp.p.app.client().get("/saml/metadata").await);
    assert_eq!(signing_certs(&promoted), vec![new.clone()], "{promoted}");
    if xmlsec {
        assert!(
            metadata_verifies(&promoted, &new),
            "the new key signs the metadata"
        );
    }
    let page = browser.get("/admin/saml").await;
    assert!(!page.body.contains("next, published for the rotation"));
    if xmlsec {
        let xml = signed_response(&idp, &mut browser).await;
        assert!(assertion_verifies(&xml, &new), "the new key signs");
        assert!(!assertion_verifies(&xml, &old));
    }
    let actions: Vec<String> = audit(&idp.p.app)
        .await
        .into_iter()
        .filter(|e| e.action.starts_with("saml.keys_"))
        .map(|e| format!("{} by {}", e.action, e.actor))
        .collect();
    assert_eq!(
        actions,
        vec!["saml.keys_staged by cli", "saml.keys_promoted by cli"]
    );
    idp.p.app.stop().await;
}
