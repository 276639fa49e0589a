//! The SAML identity provider end to end, with pysaml2 (Python) as the service provider:
//! it builds the AuthnRequests (HTTP-Redirect and HTTP-POST, signed and not), and validates
//! keygate's responses the way a real SP does — signature against our metadata (through the
//! xmlsec1 program), audience, destination, conditions, InResponseTo, decryption. `xmlsec1
//! --verify` checks the signatures once more on its own.

use serde_json::{json, Value};

use crate::support::saml::*;

fn idp_cert_pem(metadata: &str) -> String {
    let start = metadata.find("<ds:X509Certificate>").unwrap() + "<ds:X509Certificate>".len();
    let end = metadata[start..].find("</ds:X509Certificate>").unwrap() + start;
    let b64 = &metadata[start..end];
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem + "-----END CERTIFICATE-----\n"
}

fn assertion_of(xml: &str) -> &str {
    let start = xml.find("<saml:Assertion").expect("an assertion");
    let end = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    &xml[start..end]
}

async fn audit_actions(idp: &Idp) -> Vec<String> {
    let storage = idp.p.app.state.storage.clone();
    storage
        .run(|s| s.audit_range(0, i64::MAX, 10_000))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// The text of a response's `samlp:StatusMessage`.
fn status_message(xml: &str) -> String {
    let start = xml.find("<samlp:StatusMessage>").expect("a StatusMessage") + 21;
    let end = xml[start..].find("</samlp:StatusMessage>").unwrap() + start;
    html_unescape(&xml[start..end])
}

/// The message of the latest `saml.refused` audit event.
async fn refused_message(idp: &Idp) -> String {
    let storage = idp.p.app.state.storage.clone();
    storage
        .run(|s| s.audit_range(0, i64::MAX, 10_000))
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find(|e| e.action == "saml.refused")
        .and_then(|e| e.details_value()["message"].as_str().map(str::to_string))
        .expect("a saml.refused event")
}

#[actix_web::test]
async fn metadata_names_both_bindings_and_the_signing_certificate() {
    let idp = idp().await;
    let m = idp.p.app.client().get("/saml/metadata").await;
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("content-type").as_deref(),
        Some("application/samlmetadata+xml")
    );
    assert!(m.body.contains(&format!("entityID=\"{}\"", idp.entity_id)));
    for binding in ["HTTP-Redirect", "HTTP-POST"] {
        assert!(
            m.body.contains(&format!(
                "bindings:{binding}\" Location=\"{}/saml/sso\"",
                idp.p.app.base
            )),
            "{}",
            m.body
        );
    }
    assert_eq!(
        m.body.matches("<md:KeyDescriptor use=\"signing\">").count(),
        1
    );
    // Signed by the key it names (xmlsec1 on its own), and the same document every time.
    if pysaml2_available() {
        let cert = idp_cert_pem(&m.body);
        assert!(metadata_verifies(&m.body, &cert), "{}", m.body);
        let tampered = m.body.replace("/saml/sso\"", "/saml/elsewhere\"");
        assert_ne!(tampered, m.body);
        assert!(!metadata_verifies(&tampered, &cert));
    }
    let again = idp.p.app.client().get("/saml/metadata").await;
    assert_eq!(again.body, m.body);
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn sp_initiated_redirect_binding_signs_the_member_in() {
    if !pysaml2_available() {
        return;
    }
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let mut args = idp.sp_args(SP);
    args["binding"] = json!("redirect");
    args["relay_state"] = json!("/dashboard?tab=1&x=<y>");
    let (request, reply) = start(&idp, &mut browser, &args).await;
    let (action, saml_response, relay) = posted(&reply);
    assert_eq!(action, ACS);
    assert_eq!(relay.as_deref(), Some("/dashboard?tab=1&x=<y>"));
    let csp = reply.header("content-security-policy").unwrap();
    // Scripts stay locked down; form posts (and the SP's redirects after them) may leave.
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("form-action"),
        "{csp}"
    );

    let seen = validate(&args, &saml_response, Some(&request)).await;
    assert!(seen.get("error").is_none(), "pysaml2 refused: {seen}");
    assert_eq!(seen["issuer"], idp.entity_id.as_str());
    assert_eq!(seen["in_response_to"], request["request_id"]);
    assert_eq!(seen["name_id"], "admin@example.com");
    assert_eq!(
        seen["authn_contexts"],
        json!(["https://refeds.org/profile/mfa"])
    );
    assert_eq!(seen["attributes"]["workspace_id"], json!(["ws-acme-42"]));
    assert_eq!(seen["attributes"]["email"], json!(["admin@example.com"]));
    assert_eq!(seen["attributes"]["key_model"], json!(["YubiKey 5 NFC"]));
    assert_eq!(seen["attributes"]["key_fips"], json!(["false"]));
    assert_eq!(seen["signed_response"], json!(true));

    // xmlsec1 on its own: the response and the assertion each verify with our certificate.
    let xml = decoded(&saml_response);
    let metadata = std::fs::read_to_string(idp.metadata_file.path()).unwrap();
    let cert = idp_cert_pem(&metadata);
    assert!(xmlsec1_verifies(
        &xml,
        &cert,
        "urn:oasis:names:tc:SAML:2.0:protocol:Response"
    ));
    assert!(xmlsec1_verifies(
        assertion_of(&xml),
        &cert,
        "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
    ));
    // One changed byte in the assertion and it no longer verifies.
    let tampered = assertion_of(&xml).replace("admin@example.com", "admin@example.org");
    assert!(!xmlsec1_verifies(
        &tampered,
        &cert,
        "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
    ));

    let actions = audit_actions(&idp).await;
    assert!(
        actions.contains(&"saml.request_accepted".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"saml.assertion_issued".to_string()),
        "{actions:?}"
    );
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn a_request_without_a_session_waits_for_the_key_touch() {
    if !pysaml2_available() {
        return;
    }
    let mut idp = idp().await;
    let mut browser = idp.p.app.client();
    let mut args = idp.sp_args(SP);
    args["binding"] = json!("redirect");
    let (request, reply) = start(&idp, &mut browser, &args).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    let detour = reply.header("location").unwrap();
    assert!(
        detour.starts_with("/?continue=") && detour.contains("via=saml"),
        "{detour}"
    );
    let page = browser.get(&detour).await;
    assert!(
        page.body.contains("data-continue=\"/saml/continue?id="),
        "{}",
        page.body
    );
    idp.p.touch(&mut browser).await;
    let id = detour
        .split("continue=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let reply = browser.get(&format!("/saml/continue?id={id}")).await;
    let (_, saml_response, _) = posted(&reply);
    let seen = validate(&args, &saml_response, Some(&request)).await;
    assert!(seen.get("error").is_none(), "pysaml2 refused: {seen}");
    // The pending request is single-use.
    let again = browser.get(&format!("/saml/continue?id={id}")).await;
    assert_eq!(again.status, 400, "{}", again.body);
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn signed_post_binding_requests_are_verified() {
    if !pysaml2_available() {
        return;
    }
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let mut args = idp.sp_args(SIGNED_SP);
    args["binding"] = json!("post");
    args["sign"] = json!(true);
    let request = pysaml2("request", args.clone()).await;
    assert!(
        request["xml"].as_str().unwrap().contains(":Signature "),
        "{request}"
    );
    let reply = send(&idp, &mut browser, &request).await;
    let (action, saml_response, _) = posted(&reply);
    assert_eq!(action, SIGNED_ACS);
    let seen = validate(&args, &saml_response, Some(&request)).await;
    assert!(seen.get("error").is_none(), "pysaml2 refused: {seen}");

    // The same SP over HTTP-Redirect: the query signature is checked.
    args["binding"] = json!("redirect");
    let request = pysaml2("request", args.clone()).await;
    assert!(request["url"].as_str().unwrap().contains("Signature="));
    let reply = send(&idp, &mut browser, &request).await;
    let (_, saml_response, _) = posted(&reply);
    let seen = validate(&args, &saml_response, Some(&request)).await;
    assert!(seen.get("error").is_none(), "pysaml2 refused: {seen}");

    // Unsigned requests from this SP are refused, and nothing is posted.
    args["sign"] = json!(false);
    let (_, reply) = start(&idp, &mut browser, &args).await;
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
async fn encrypted_assertions_persistent_ids_and_idp_initiated_sign_in() {
    if !pysaml2_available() {
        return;
    }
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let reply = browser
        .get(&format!(
            "/saml/idp-initiated?sp={}&RelayState=home",
            urlencode(ENC_SP)
        ))
        .await;
    let (action, saml_response, relay) = posted(&reply);
    assert_eq!(action, ENC_ACS);
    assert_eq!(relay.as_deref(), Some("home"));
    let xml = decoded(&saml_response);
    assert!(xml.contains("<saml:EncryptedAssertion"), "{xml}");
    assert!(
        !xml.contains("admin@example.com"),
        "the assertion must be encrypted"
    );
    let args = idp.sp_args(ENC_SP);
    let seen = validate(&args, &saml_response, None).await;
    assert!(seen.get("error").is_none(), "pysaml2 refused: {seen}");
    assert_eq!(
        seen["name_id_format"],
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    );
    let first_id = seen["name_id"].as_str().unwrap().to_string();
    assert_eq!(first_id.len(), 32);
    assert_eq!(
        seen["authn_contexts"],
        json!(["http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"])
    );
    assert!(seen["in_response_to"].is_null());
    // Pairwise and stable: the same member gets the same identifier again.
    let reply = browser
        .get(&format!("/saml/idp-initiated?sp={}", urlencode(ENC_SP)))
        .await;
    let (_, again, _) = posted(&reply);
    let seen: Value = validate(&args, &again, None).await;
    assert_eq!(seen["name_id"].as_str(), Some(first_id.as_str()));

    // IdP-initiated sign-in is off for the other SPs.
    let refused = browser
        .get(&format!("/saml/idp-initiated?sp={}", urlencode(SP)))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn an_unreadable_idp_initiated_query_is_refused_and_audited() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    // ENC_SP takes IdP-initiated sign-ins, and the browser is signed in: only the escapes
    // that decode to no UTF-8 stand between these and a response.
    for query in [
        format!("sp={}&RelayState=home%FF%FE", urlencode(ENC_SP)),
        "sp=%C3%28".to_string(),
    ] {
        let reply = browser.get(&format!("/saml/idp-initiated?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert!(!reply.body.contains("SAMLResponse"), "{}", reply.body);
    }
    let storage = idp.p.app.state.storage.clone();
    let refused: Vec<_> = storage
        .run(|s| s.audit_range(0, i64::MAX, 10_000))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "saml.request_refused")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused
        .iter()
        .all(|e| e.reason.as_deref() == Some("saml_malformed")));
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn unmet_contexts_and_other_workspaces_get_saml_statuses() {
    if !pysaml2_available() {
        return;
    }
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    // A password context cannot be met: there are no passwords in keygate.
    let mut args = idp.sp_args(SP);
    args["binding"] = json!("redirect");
    args["contexts"] = json!(["urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"]);
    let (request, reply) = start(&idp, &mut browser, &args).await;
    let (_, saml_response, _) = posted(&reply);
    let xml = decoded(&saml_response);
    assert!(xml.contains("status:NoAuthnContext"), "{xml}");
    assert!(!xml.contains("<saml:Assertion"));
    // The StatusMessage names the context asked for and what keygate offers instead, and
    // so does the audit event.
    let message = status_message(&xml);
    assert!(
        message.contains(
            "asked for exact urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport;"
        ),
        "{message}"
    );
    assert!(
        message.contains(
            "offers https://refeds.org/profile/mfa, http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"
        ),
        "{message}"
    );
    assert_eq!(refused_message(&idp).await, message);
    let seen = validate(&args, &saml_response, Some(&request)).await;
    assert_eq!(seen["error"], "StatusNoAuthnContext", "{seen}");

    // `minimum` of MFA is met by the key touch, with the SP's configured context.
    let mut args = idp.sp_args(SP);
    args["binding"] = json!("post");
    args["contexts"] = json!(["https://refeds.org/profile/mfa"]);
    args["comparison"] = json!("minimum");
    let (request, reply) = start(&idp, &mut browser, &args).await;
    let (_, saml_response, _) = posted(&reply);
    let seen = validate(&args, &saml_response, Some(&request)).await;
    assert_eq!(
        seen["authn_contexts"],
        json!(["https://refeds.org/profile/mfa"]),
        "{seen}"
    );

    // The admin is not a member of the other SP's workspace.
    let mut args = idp.sp_args(OTHER_SP);
    args["binding"] = json!("redirect");
    let (request, reply) = start(&idp, &mut browser, &args).await;
    let (action, saml_response, _) = posted(&reply);
    assert_eq!(action, OTHER_ACS);
    let xml = decoded(&saml_response);
    assert!(xml.contains("status:RequestDenied"), "{xml}");
    let seen = validate(&args, &saml_response, Some(&request)).await;
    assert_eq!(seen["error"], "StatusRequestDenied", "{seen}");
    let actions = audit_actions(&idp).await;
    assert!(
        actions.iter().filter(|a| *a == "saml.refused").count() >= 2,
        "{actions:?}"
    );
    idp.p.app.stop().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[actix_web::test]
async fn force_authn_asks_for_a_fresh_touch_even_with_a_session() {
    if !pysaml2_available() {
        return;
    }
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let mut args = idp.sp_args(SP);
    args["binding"] = json!("post");
    args["force_authn"] = json!(true);
    let (request, reply) = start(&idp, &mut browser, &args).await;
    assert_eq!(
        reply.status, 303,
        "a live session is not enough: {}",
        reply.body
    );
    let detour = reply.header("location").unwrap();
    assert!(detour.contains("why=prompt_login"), "{detour}");
    let id = detour
        .split("continue=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    idp.p.touch(&mut browser).await;
    let (_, saml_response, _) = posted(&browser.get(&format!("/saml/continue?id={id}")).await);
    let seen = validate(&args, &saml_response, Some(&request)).await;
    assert!(seen.get("error").is_none(), "pysaml2 refused: {seen}");
    idp.p.app.stop().await;
}

/// SPEC §4: a sign-in with a key keygate could not attest never earns the context an SP
/// is configured with; only an SP that accepts `unspecified` signs the member in.
#[actix_web::test]
async fn an_unattested_key_never_earns_the_phishing_resistant_context() {
    if !pysaml2_available() {
        return;
    }
    let mut idp = unattested_idp().await;
    let mut browser = idp.p.browser().await;
    let mut args = idp.sp_args(SP);
    args["binding"] = json!("redirect");
    let (_, reply) = start(&idp, &mut browser, &args).await;
    let (_, saml_response, _) = posted(&reply);
    let xml = decoded(&saml_response);
    assert!(xml.contains("status:NoAuthnContext"), "{xml}");
    assert!(!xml.contains("<saml:Assertion"));
    // The request named no context: the SP's configured one is what went unmet, and an
    // unattested key earns only `unspecified`.
    let message = status_message(&xml);
    assert!(
        message.contains("named no context and the sign-in does not earn the one configured"),
        "{message}"
    );
    assert!(
        message.contains("offers urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified ("),
        "{message}"
    );

    let mut args = idp.sp_args(PLAIN_SP);
    args["binding"] = json!("redirect");
    let (request, reply) = start(&idp, &mut browser, &args).await;
    let (_, saml_response, _) = posted(&reply);
    let seen = validate(&args, &saml_response, Some(&request)).await;
    assert!(seen.get("error").is_none(), "pysaml2 refused: {seen}");
    assert_eq!(
        seen["authn_contexts"],
        json!(["urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"])
    );
    assert_eq!(seen["attributes"]["key_fips"], json!(["false"]));
    idp.p.app.stop().await;
}
