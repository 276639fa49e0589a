//! Bad SAML input: each gets a clear error page (never a response posted to an SP keygate
//! could not trust, never a 500) and an audit event naming the reason.

use std::io::Write;

use base64::Engine;
use serde_json::json;

use crate::support::app::{Client, Reply};
use crate::support::saml::*;

/// The document without its XML declaration, to embed it in another.
fn without_declaration(xml: &str) -> &str {
    let xml = xml.trim_start();
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map(|(_, r)| r.trim_start())
            .unwrap_or(xml),
        None => xml,
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn deflate(xml: &str) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(xml.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// Now plus `offset_secs`, as SAML writes instants.
fn instant(offset_secs: i64) -> String {
    keygate::saml::response::instant(
        time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_secs),
    )
}

/// A hand-written AuthnRequest.
fn request(id: &str, issuer: &str, acs: &str, issued: &str) -> String {
    format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ns2="http://www.w3.org/2000/09/xmldsig#" ID="{id}" Version="2.0" IssueInstant="{issued}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"><saml:Issuer>{issuer}</saml:Issuer></samlp:AuthnRequest>"#
    )
}

async fn redirect(browser: &mut Client, query: &str) -> Reply {
    browser.get(&format!("/saml/sso?{query}")).await
}

async fn redirect_xml(browser: &mut Client, xml: &str) -> Reply {
    redirect(
        browser,
        &format!("SAMLRequest={}", enc(&b64(&deflate(xml)))),
    )
    .await
}

async fn post_xml(browser: &mut Client, xml: &str) -> Reply {
    browser
        .post_form("/saml/sso", &[("SAMLRequest", &b64(xml.as_bytes()))])
        .await
}

async fn last_refusal(idp: &Idp) -> Option<String> {
    let storage = idp.p.app.state.storage.clone();
    storage
        .run(|s| s.audit_range(0, i64::MAX, 10_000))
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find(|e| e.action == "saml.request_refused")
        .and_then(|e| e.reason)
}

/// A refusal shown on a page, audited with `reason`, nothing posted.
async fn refused(idp: &Idp, reply: &Reply, reason: &str) {
    assert_eq!(reply.status, 400, "{reason}: {}", reply.body);
    assert!(
        !reply.body.contains("SAMLResponse"),
        "{reason}: a response was posted"
    );
    assert_eq!(
        last_refusal(idp).await.as_deref(),
        Some(reason),
        "{}",
        reply.body
    );
}

#[actix_web::test]
async fn undecodable_messages_are_refused() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let r = redirect(&mut browser, "SAMLRequest=%%%not-base64").await;
    refused(&idp, &r, "saml_malformed").await;
    let r = redirect(
        &mut browser,
        &format!("SAMLRequest={}", enc(&b64(b"not deflated at all"))),
    )
    .await;
    refused(&idp, &r, "saml_malformed").await;
    let r = redirect_xml(&mut browser, "<samlp:AuthnRequest xmlns:samlp=").await;
    refused(&idp, &r, "saml_malformed").await;
    let r = redirect_xml(&mut browser, "<html><body>hello</body></html>").await;
    refused(&idp, &r, "saml_malformed").await;
    let r = redirect(&mut browser, "RelayState=x").await;
    refused(&idp, &r, "saml_malformed").await;
    let r = browser
        .post_form("/saml/sso", &[("SAMLRequest", "@@@")])
        .await;
    refused(&idp, &r, "saml_malformed").await;
    let r = browser
        .post_form("/saml/sso", &[("RelayState", "only")])
        .await;
    refused(&idp, &r, "saml_malformed").await;
    // A deflate bomb is cut off, not inflated.
    let bomb = deflate(&" ".repeat(8 * 1024 * 1024));
    let r = redirect(&mut browser, &format!("SAMLRequest={}", enc(&b64(&bomb)))).await;
    refused(&idp, &r, "saml_malformed").await;
    // Both SigAlg and Signature, or neither.
    let xml = request("_a1", SP, ACS, &instant(0));
    let q = format!("SAMLRequest={}&SigAlg=x", enc(&b64(&deflate(&xml))));
    refused(&idp, &redirect(&mut browser, &q).await, "saml_malformed").await;
    // A RelayState whose escapes decode to no UTF-8 is refused, not repaired and echoed,
    // on both bindings; so is a POST form that repeats SAMLRequest.
    let xml = request("_a2", SP, ACS, &instant(0));
    let q = format!(
        "SAMLRequest={}&RelayState=home%FF",
        enc(&b64(&deflate(&xml)))
    );
    refused(&idp, &redirect(&mut browser, &q).await, "saml_malformed").await;
    let ctype = "application/x-www-form-urlencoded";
    let xml = request("_a3", SP, ACS, &instant(0));
    let field = enc(&b64(xml.as_bytes()));
    for body in [
        format!("SAMLRequest={field}&RelayState=home%C3%28"),
        format!("SAMLRequest={field}&SAMLRequest={field}"),
    ] {
        let r = browser
            .post_with("/saml/sso", &[], ctype, body.into_bytes())
            .await;
        refused(&idp, &r, "saml_malformed").await;
    }
    // The same request with a readable RelayState goes through.
    let body = format!("SAMLRequest={field}&RelayState=home%C3%A9");
    let r = browser
        .post_with("/saml/sso", &[], ctype, body.into_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("value=\"homeé\""), "{}", r.body);
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn dtds_and_external_entities_are_refused_on_both_bindings() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let xxe = format!(
        r#"<?xml version="1.0"?><!DOCTYPE samlp:AuthnRequest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>{}"#,
        request("_x1", "&xxe;", ACS, &instant(0))
    );
    refused(
        &idp,
        &redirect_xml(&mut browser, &xxe).await,
        "saml_forbidden_construct",
    )
    .await;
    refused(
        &idp,
        &post_xml(&mut browser, &xxe).await,
        "saml_forbidden_construct",
    )
    .await;
    let billion = format!(
        r#"<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>{}"#,
        request("_x2", SP, ACS, &instant(0))
    );
    refused(
        &idp,
        &post_xml(&mut browser, &billion).await,
        "saml_forbidden_construct",
    )
    .await;
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn unknown_sps_wrong_acs_urls_replays_and_stale_requests_are_refused() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let now = instant(0);
    let r = redirect_xml(
        &mut browser,
        &request("_u1", "https://stranger.example", ACS, &now),
    )
    .await;
    refused(&idp, &r, "saml_unknown_sp").await;
    let r = redirect_xml(
        &mut browser,
        &request("_u2", SP, "https://evil.example/acs", &now),
    )
    .await;
    refused(&idp, &r, "saml_acs_mismatch").await;
    let r = redirect_xml(&mut browser, &request("_u3", SP, &format!("{ACS}/"), &now)).await;
    refused(&idp, &r, "saml_acs_mismatch").await;
    let r = redirect_xml(&mut browser, &request("_u4", SP, ACS, &instant(-3600))).await;
    refused(&idp, &r, "saml_issue_instant").await;
    let r = redirect_xml(&mut browser, &request("_u5", SP, ACS, &instant(3600))).await;
    refused(&idp, &r, "saml_issue_instant").await;
    let r = redirect_xml(
        &mut browser,
        &request("_u6", SP, ACS, &now).replace("Version=\"2.0\"", "Version=\"1.1\""),
    )
    .await;
    refused(&idp, &r, "saml_version").await;
    let r = redirect_xml(
        &mut browser,
        &request("_u7", SP, ACS, &now).replace(
            "IssueInstant",
            "Destination=\"https://elsewhere.example/sso\" IssueInstant",
        ),
    )
    .await;
    refused(&idp, &r, "saml_destination").await;

    // A fresh request is answered once; the same ID again is a replay.
    let ok = request("_fresh-1", SP, ACS, &now);
    let first = redirect_xml(&mut browser, &ok).await;
    let (action, _, _) = posted(&first);
    assert_eq!(action, ACS);
    refused(&idp, &redirect_xml(&mut browser, &ok).await, "saml_replay").await;
    refused(&idp, &post_xml(&mut browser, &ok).await, "saml_replay").await;
    idp.p.app.stop().await;
}

#[actix_web::test]
async fn bad_signatures_and_signature_wrapping_are_refused() {
    if !pysaml2_available() {
        return;
    }
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;

    // Signed with a key that is not the SP's registered one.
    let stranger = KeyPair::new("stranger");
    let mut args = idp.sp_args(SIGNED_SP);
    args["binding"] = json!("post");
    args["sign"] = json!(true);
    args["key_file"] = json!(stranger.key_file);
    args["cert_file"] = json!(stranger.cert_file);
    let forged = pysaml2("request", args).await;
    refused(
        &idp,
        &send(&idp, &mut browser, &forged).await,
        "saml_bad_signature",
    )
    .await;

    // A genuine signed request whose ACS URL is edited afterwards.
    let mut args = idp.sp_args(SIGNED_SP);
    args["binding"] = json!("post");
    args["sign"] = json!(true);
    let genuine = pysaml2("request", args.clone()).await;
    let xml = genuine["xml"].as_str().unwrap().to_string();
    let edited = xml.replace(SIGNED_ACS, "https://evil.example/acs");
    assert_ne!(edited, xml);
    refused(
        &idp,
        &post_xml(&mut browser, &edited).await,
        "saml_bad_signature",
    )
    .await;

    // Wrapping: an unsigned request (another ID, the attacker's ACS URL) carrying the
    // genuine signed request inside it. The signature verifies — over the wrong element.
    let inner = without_declaration(&xml);
    let wrapper = format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_wrapper" Version="2.0" IssueInstant="{now}" AssertionConsumerServiceURL="{SIGNED_ACS}"><saml:Issuer>{SIGNED_SP}</saml:Issuer><samlp:Extensions>{inner}</samlp:Extensions></samlp:AuthnRequest>"#,
        now = instant(0)
    );
    // The request keygate would act on is the unsigned wrapper: refused as unsigned.
    refused(
        &idp,
        &post_xml(&mut browser, &wrapper).await,
        "saml_signature_required",
    )
    .await;

    // The signature moved out of the signed request into a wrapper that names the same ID.
    let sig_start = xml.find("<ns2:Signature").unwrap();
    let sig_end = xml.find("</ns2:Signature>").unwrap() + "</ns2:Signature>".len();
    let signature = &xml[sig_start..sig_end];
    let stripped = xml.replace(signature, "");
    let id_start = xml.find(" ID=\"").unwrap() + 5;
    let id = &xml[id_start..id_start + xml[id_start..].find('"').unwrap()];
    let wrapped2 = format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ns2="http://www.w3.org/2000/09/xmldsig#" ID="{id}" Version="2.0" IssueInstant="{now}" AssertionConsumerServiceURL="https://evil.example/acs"><saml:Issuer>{SIGNED_SP}</saml:Issuer>{signature}<samlp:Extensions>{inner}</samlp:Extensions></samlp:AuthnRequest>"#,
        now = instant(0),
        inner = without_declaration(&stripped),
    );
    assert!(
        wrapped2.contains("<ns2:Signature"),
        "the signature moved: {wrapped2}"
    );
    refused(
        &idp,
        &post_xml(&mut browser, &wrapped2).await,
        "saml_bad_signature",
    )
    .await;

    // Redirect binding: a RelayState changed after signing breaks the query signature.
    args["binding"] = json!("redirect");
    args["relay_state"] = json!("original");
    let signed = pysaml2("request", args).await;
    let url = signed["url"]
        .as_str()
        .unwrap()
        .replace("RelayState=original", "RelayState=changed");
    let path = url.strip_prefix(&idp.p.app.base).unwrap().to_string();
    refused(&idp, &browser.get(&path).await, "saml_bad_signature").await;
    idp.p.app.stop().await;
}

/// A second AuthnRequest (unsigned, the attacker's ACS URL) to append after a genuine one.
fn second_request(issuer: &str) -> String {
    request("_second", issuer, "https://evil.example/acs", &instant(0))
}

#[actix_web::test]
async fn content_after_the_root_element_is_refused_on_both_bindings() {
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let tails = [
        second_request(SP),
        "<samlp:Extensions xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"/>".to_string(),
        "trailing text".to_string(),
        // XML allows a comment or a processing instruction after the root; keygate does
        // not: nothing but whitespace may follow the request.
        "<!-- a comment -->".to_string(),
        "<?keygate pi?>".to_string(),
    ];
    for (i, tail) in tails.iter().enumerate() {
        let xml = format!(
            "{}\n{tail}",
            request(&format!("_t{i}"), SP, ACS, &instant(0))
        );
        refused(
            &idp,
            &redirect_xml(&mut browser, &xml).await,
            "saml_malformed",
        )
        .await;
        refused(&idp, &post_xml(&mut browser, &xml).await, "saml_malformed").await;
    }
    // The page says why.
    let xml = format!("{}{}", request("_t9", SP, ACS, &instant(0)), tails[0]);
    let r = post_xml(&mut browser, &xml).await;
    assert!(
        html_unescape(&r.body).contains("after its root element"),
        "{}",
        r.body
    );

    // Whitespace after the root element (and an XML declaration before it) is still fine.
    let ws = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}\r\n\t \n",
        request("_ws-redirect", SP, ACS, &instant(0))
    );
    let (action, _, _) = posted(&redirect_xml(&mut browser, &ws).await);
    assert_eq!(action, ACS);
    let ws = ws.replace("_ws-redirect", "_ws-post");
    let (action, _, _) = posted(&post_xml(&mut browser, &ws).await);
    assert_eq!(action, ACS);
    idp.p.app.stop().await;
}

/// An HTTP-Redirect query carrying `xml`, signed (RSA-SHA256) with the signing SP's key.
fn signed_query(idp: &Idp, xml: &str) -> String {
    use openssl::{hash::MessageDigest, pkey::PKey, sign::Signer};
    let alg = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
    let signed = format!(
        "SAMLRequest={}&SigAlg={}",
        enc(&b64(&deflate(xml))),
        enc(alg)
    );
    let key = PKey::private_key_from_pem(&std::fs::read(&idp.signing.key_file).unwrap()).unwrap();
    let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
    signer.update(signed.as_bytes()).unwrap();
    let signature = signer.sign_to_vec().unwrap();
    format!("{signed}&Signature={}", enc(&b64(&signature)))
}

#[actix_web::test]
async fn a_signed_request_followed_by_another_element_is_refused() {
    if !pysaml2_available() {
        return;
    }
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    let mut args = idp.sp_args(SIGNED_SP);
    args["binding"] = json!("post");
    args["sign"] = json!(true);

    // The genuine signed request, then a second (unsigned) one after it.
    let genuine = pysaml2("request", args.clone()).await;
    let xml = genuine["xml"].as_str().unwrap().trim_end().to_string();
    let appended = format!("{xml}\n{}", second_request(SIGNED_SP));
    refused(
        &idp,
        &post_xml(&mut browser, &appended).await,
        "saml_malformed",
    )
    .await;
    let commented = format!("{xml}<!-- x -->");
    refused(
        &idp,
        &post_xml(&mut browser, &commented).await,
        "saml_malformed",
    )
    .await;

    // The same signed request with only whitespace after it is answered.
    let (action, _, _) = posted(&post_xml(&mut browser, &format!("{xml}\n\n  ")).await);
    assert_eq!(action, SIGNED_ACS);

    // Redirect binding: a query signed with the SP's key over a request that has a second
    // element after it. The same signing over the request alone is answered.
    let alone = request("_redirect-alone", SIGNED_SP, SIGNED_ACS, &instant(0));
    let (action, _, _) = posted(&redirect(&mut browser, &signed_query(&idp, &alone)).await);
    assert_eq!(action, SIGNED_ACS);
    let appended = format!(
        "{}{}",
        request("_redirect-appended", SIGNED_SP, SIGNED_ACS, &instant(0)),
        second_request(SIGNED_SP)
    );
    refused(
        &idp,
        &redirect(&mut browser, &signed_query(&idp, &appended)).await,
        "saml_malformed",
    )
    .await;
    idp.p.app.stop().await;
}
