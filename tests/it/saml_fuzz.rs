//! Deterministic fuzz-style test of the SAML request parsers (no nightly needed): thousands
//! of mutations of real AuthnRequests — the XML itself, the DEFLATE stream, the base64 and
//! the redirect query — through decoding, `peek` and full verification (with and without a
//! registered certificate, on both bindings). Every input must give `Ok` or `Err`, never a
//! panic, and quickly.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use base64::Engine;
use keygate::saml::keys::PeerCert;
use keygate::saml::request::{self, Checks, Trust};

use crate::webauthn_fuzz::{mutate, Rng};

const ROUNDS: usize = 800;
const MAX_CALL: Duration = Duration::from_secs(2);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn corpus() -> Vec<Vec<u8>> {
    let plain = r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_f1" Version="2.0" IssueInstant="2026-11-25T12:00:00Z" Destination="https://idp.example/saml/sso" AssertionConsumerServiceURL="https://sp.example/acs" ForceAuthn="true" IsPassive="false"><saml:Issuer>https://sp.example/metadata</saml:Issuer><samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" AllowCreate="true"/><samlp:RequestedAuthnContext Comparison="minimum"><saml:AuthnContextClassRef>https://refeds.org/profile/mfa</saml:AuthnContextClassRef></samlp:RequestedAuthnContext></samlp:AuthnRequest>"#;
    let signed_shape = r##"<?xml version="1.0"?><ns0:AuthnRequest xmlns:ns0="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:ns1="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ns2="http://www.w3.org/2000/09/xmldsig#" ID="id-abc" Version="2.0" IssueInstant="2026-11-25T12:00:00Z"><ns1:Issuer>https://sp.example/metadata</ns1:Issuer><ns2:Signature><ns2:SignedInfo><ns2:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ns2:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ns2:Reference URI="#id-abc"><ns2:Transforms><ns2:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/></ns2:Transforms><ns2:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ns2:DigestValue>AAAA</ns2:DigestValue></ns2:Reference></ns2:SignedInfo><ns2:SignatureValue>AAAA</ns2:SignatureValue></ns2:Signature></ns0:AuthnRequest>"##;
    let dtd = r#"<!DOCTYPE x [<!ENTITY e "&e;&e;">]><x>&e;</x>"#;
    vec![
        plain.as_bytes().to_vec(),
        signed_shape.as_bytes().to_vec(),
        dtd.as_bytes().to_vec(),
    ]
}

/// Decodes, peeks and verifies; must return, never panic.
fn exercise(received: Result<request::Received, keygate::saml::SamlError>, certs: &[PeerCert]) {
    let Ok(r) = received else { return };
    let _ = r.peek();
    let destinations = vec!["https://idp.example/saml/sso".to_string()];
    let checks = Checks {
        now: time::OffsetDateTime::from_unix_timestamp(1_764_072_000).unwrap(),
        skew_secs: 90,
        max_age_secs: 300,
        destinations: &destinations,
    };
    for require_signed in [false, true] {
        let _ = r.verify(
            &Trust {
                certs,
                require_signed,
            },
            &checks,
        );
    }
}

fn timed(what: &str, input: &[u8], f: impl FnOnce()) {
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(f));
    assert!(
        outcome.is_ok(),
        "{what} panicked on input (base64) {}",
        b64(input)
    );
    assert!(
        start.elapsed() < MAX_CALL,
        "{what} took {:?}",
        start.elapsed()
    );
}

#[test]
fn saml_request_parsers_never_panic() {
    let sp = crate::support::saml::KeyPair::new("fuzz-sp");
    let certs = vec![PeerCert::parse(&sp.cert_pem).unwrap()];
    let corpus = corpus();
    let mut rng = Rng(0x5a31_2f0e_9c44_d1b7);
    for seed in &corpus {
        for _ in 0..ROUNDS {
            // The XML itself, over both bindings.
            let xml = mutate(&mut rng, seed, &corpus);
            timed("POST binding", &xml, || {
                exercise(request::from_post(&b64(&xml), Some("r".into())), &certs)
            });
            timed("redirect binding", &xml, || {
                let q = format!("SAMLRequest={}&RelayState=x", enc(&b64(&deflate(&xml))));
                exercise(request::from_redirect(&q), &certs)
            });
            // The DEFLATE stream and the base64 text.
            let stream = mutate(&mut rng, &deflate(seed), &corpus);
            timed("inflate", &stream, || {
                let q = format!("SAMLRequest={}", enc(&b64(&stream)));
                exercise(request::from_redirect(&q), &certs)
            });
            let text = mutate(&mut rng, b64(seed).as_bytes(), &corpus);
            timed("base64", &text, || {
                exercise(
                    request::from_post(&String::from_utf8_lossy(&text), None),
                    &certs,
                )
            });
            // The query string, signature parameters included.
            let query = format!(
                "SAMLRequest={}&RelayState=abc&SigAlg={}&Signature={}",
                enc(&b64(&deflate(seed))),
                enc("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
                enc(&b64(&[7u8; 256]))
            );
            let q = mutate(&mut rng, query.as_bytes(), &corpus);
            timed("query", &q, || {
                exercise(request::from_redirect(&String::from_utf8_lossy(&q)), &certs)
            });
        }
    }
}

#[test]
fn sp_metadata_import_never_panics() {
    let sp = crate::support::saml::KeyPair::new("fuzz-md");
    let cert_b64: String = sp
        .cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let metadata = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://sp.example/metadata"><md:SPSSODescriptor AuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example/acs" index="1" isDefault="true"/></md:SPSSODescriptor></md:EntityDescriptor>"#
    );
    let imported = keygate::saml::metadata::import_sp(&metadata).expect("the seed imports");
    assert!(imported.require_signed_requests);
    let corpus = vec![metadata.into_bytes()];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..ROUNDS * 2 {
        let m = mutate(&mut rng, &corpus[0], &corpus);
        timed("metadata import", &m, || {
            let _ = keygate::saml::metadata::import_sp(&String::from_utf8_lossy(&m));
        });
    }
}
