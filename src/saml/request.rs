//! Receiving an `AuthnRequest`: decoding each binding, then verifying what it claims.
//!
//! [`Received`] is the message as it arrived (decoded, nothing trusted). [`Received::peek`]
//! reads the issuer so the caller can find the SP's registration; [`Received::verify`]
//! checks the signature the SP's registration calls for, version, age and destination, and
//! returns an [`AuthnRequest`] read from the signed bytes only.
//!
//! HTTP-Redirect: the signature covers the query string exactly as received
//! (`SAMLRequest=…&RelayState=…&SigAlg=…`), never a re-encoding of it. HTTP-POST: the XML
//! signature must cover the root `AuthnRequest`; the request is read from what xmlsec
//! verified (samael's reduction), so a signed element elsewhere in the document (signature
//! wrapping) never becomes the request.

use std::io::Read;

use base64::Engine;
use quick_xml::events::Event;
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode,
};
use samael::schema::AuthnContextComparison;
use time::OffsetDateTime;

use super::keys::PeerCert;
use super::{xml, Binding, SamlError, NS_PROTOCOL};

/// Largest encoded message accepted, and largest inflated one.
const MAX_ENCODED: usize = 64 * 1024;
const MAX_INFLATED: u64 = 128 * 1024;
/// Longest RelayState the bindings allow (80 bytes by the spec; SPs send more in practice).
const MAX_RELAY_STATE: usize = 1024;

const ALLOWED: &[AllowedSignatureAlgorithm] = &[
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// A redirect-binding query signature, over the received bytes.
struct QuerySignature {
    signed: String,
    sig_alg: String,
    value: Vec<u8>,
}

/// The message as received: decoded, nothing in it trusted yet.
pub struct Received {
    pub binding: Binding,
    pub xml: String,
    pub relay_state: Option<String>,
    query_signature: Option<QuerySignature>,
}

/// What an unverified request says about who sent it.
pub struct Peek {
    pub issuer: String,
    pub id: String,
}

/// How the SP's registration says its requests are trusted.
pub struct Trust<'a> {
    pub certs: &'a [PeerCert],
    pub require_signed: bool,
}

/// The checks that do not depend on the SP.
pub struct Checks<'a> {
    pub now: OffsetDateTime,
    pub skew_secs: i64,
    /// How old a request may be (beyond the skew).
    pub max_age_secs: i64,
    /// The SSO endpoint URLs a `Destination` may name.
    pub destinations: &'a [String],
}

/// `RequestedAuthnContext`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestedContext {
    pub comparison: Comparison,
    pub class_refs: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Comparison {
    Exact,
    Minimum,
    Better,
    Maximum,
}

/// A verified request: everything keygate acts on.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AuthnRequest {
    pub id: String,
    pub issuer: String,
    pub issue_instant: i64,
    pub acs_url: Option<String>,
    pub acs_index: Option<usize>,
    pub protocol_binding: Option<String>,
    pub force_authn: bool,
    pub is_passive: bool,
    pub name_id_format: Option<String>,
    pub requested_context: Option<RequestedContext>,
    /// Whether a signature was checked.
    pub signed: bool,
}

fn malformed(what: &str) -> SamlError {
    SamlError::Malformed(what.into())
}

fn decode_b64(value: &str) -> Result<Vec<u8>, SamlError> {
    if value.len() > MAX_ENCODED {
        return Err(malformed("the message is too large"));
    }
    let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| malformed("the message is not valid base64"))
}

fn utf8(bytes: Vec<u8>) -> Result<String, SamlError> {
    String::from_utf8(bytes).map_err(|_| malformed("the message is not UTF-8 text"))
}

fn relay_state(value: Option<String>) -> Result<Option<String>, SamlError> {
    match value {
        Some(r) if r.len() > MAX_RELAY_STATE => Err(malformed("RelayState is too long")),
        Some(r) if r.is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// One name or value of a query or form, percent-decoded (`+` is a space, as browsers and
/// SAML libraries encode it). Escapes that decode to no UTF-8 are refused, not replaced:
/// a RelayState goes back to the SP as it came.
pub fn decode_component(raw: &str) -> Result<String, SamlError> {
    crate::form::component(raw)
        .map_err(|_| malformed("a query parameter is not UTF-8 once decoded"))
}

/// HTTP-Redirect: `raw_query` exactly as received.
pub fn from_redirect(raw_query: &str) -> Result<Received, SamlError> {
    if raw_query.len() > 2 * MAX_ENCODED {
        return Err(malformed("the query is too long"));
    }
    let (mut request, mut relay, mut sig_alg, mut signature) = (None, None, None, None);
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "SAMLRequest" => &mut request,
            "RelayState" => &mut relay,
            "SigAlg" => &mut sig_alg,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(malformed("a SAML parameter appears twice"));
        }
    }
    let raw_request = request.ok_or_else(|| malformed("SAMLRequest is missing"))?;
    let deflated = decode_b64(&decode_component(raw_request)?)?;
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(deflated.as_slice())
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut inflated)
        .map_err(|_| malformed("SAMLRequest is not DEFLATE-compressed"))?;
    if inflated.len() as u64 > MAX_INFLATED {
        return Err(malformed("the inflated request is too large"));
    }
    let query_signature = match (sig_alg, signature) {
        (None, None) => None,
        (Some(alg), Some(sig)) => {
            let mut signed = format!("SAMLRequest={raw_request}");
            if let Some(r) = relay {
                signed.push_str("&RelayState=");
                signed.push_str(r);
            }
            signed.push_str("&SigAlg=");
            signed.push_str(alg);
            Some(QuerySignature {
                signed,
                sig_alg: decode_component(alg)?,
                value: decode_b64(&decode_component(sig)?)?,
            })
        }
        _ => return Err(malformed("SigAlg and Signature must come together")),
    };
    Ok(Received {
        binding: Binding::Redirect,
        xml: utf8(inflated)?,
        relay_state: relay_state(relay.map(decode_component).transpose()?)?,
        query_signature,
    })
}

/// HTTP-POST: the form's `SAMLRequest` and `RelayState`.
pub fn from_post(saml_request: &str, relay: Option<String>) -> Result<Received, SamlError> {
    Ok(Received {
        binding: Binding::Post,
        xml: utf8(decode_b64(saml_request)?)?,
        relay_state: relay_state(relay)?,
        query_signature: None,
    })
}

fn parse(xml: &str) -> Result<samael::schema::AuthnRequest, SamlError> {
    xml::refuse_dtd(xml)?;
    // One root element and nothing after it, on either binding: a parser reading only the
    // first element must never be handed a document that carries a second one.
    let root = xml::single_root(xml)?;
    if root.local_name != "AuthnRequest" || root.namespace.as_deref() != Some(NS_PROTOCOL) {
        return Err(malformed("the message is not a SAML 2.0 AuthnRequest"));
    }
    xml.parse::<samael::schema::AuthnRequest>()
        .map_err(|_| malformed("the AuthnRequest cannot be read"))
}

fn issuer_of(r: &samael::schema::AuthnRequest) -> Result<String, SamlError> {
    r.issuer
        .as_ref()
        .and_then(|i| i.value.as_deref())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| malformed("the AuthnRequest names no Issuer"))
}

/// Whether the root element has an XML-DSig `Signature` child.
fn has_xml_signature(xml: &str) -> bool {
    let mut reader = quick_xml::NsReader::from_str(xml);
    let mut depth = 0usize;
    loop {
        match reader.read_resolved_event() {
            Ok((ns, Event::Start(e))) => {
                if depth == 1 && is_dsig_signature(&ns, e.local_name().as_ref()) {
                    return true;
                }
                depth += 1;
            }
            Ok((ns, Event::Empty(e))) => {
                if depth == 1 && is_dsig_signature(&ns, e.local_name().as_ref()) {
                    return true;
                }
            }
            Ok((_, Event::End(_))) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return false;
                }
            }
            Ok((_, Event::Eof)) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

fn is_dsig_signature(ns: &quick_xml::name::ResolveResult<'_>, local: &[u8]) -> bool {
    matches!(ns, quick_xml::name::ResolveResult::Bound(n) if n.as_ref() == super::NS_DSIG.as_bytes())
        && local == b"Signature"
}

impl Received {
    /// Who the request says it is from; nothing else is read before it is verified.
    pub fn peek(&self) -> Result<Peek, SamlError> {
        let r = parse(&self.xml)?;
        Ok(Peek {
            issuer: issuer_of(&r)?,
            id: r.id,
        })
    }

    /// Checks the signature (as `trust` requires), then the request itself.
    pub fn verify(
        &self,
        trust: &Trust<'_>,
        checks: &Checks<'_>,
    ) -> Result<AuthnRequest, SamlError> {
        let outer = parse(&self.xml)?;
        let (request, signed) = match self.binding {
            Binding::Redirect => match &self.query_signature {
                Some(sig) if !trust.certs.is_empty() => {
                    let ok = trust
                        .certs
                        .iter()
                        .any(|c| c.verify(&sig.sig_alg, sig.signed.as_bytes(), &sig.value));
                    if !ok {
                        return Err(SamlError::BadSignature(
                            "the query signature does not verify with the SP's certificate",
                        ));
                    }
                    (outer, true)
                }
                _ => (outer, false),
            },
            Binding::Post if has_xml_signature(&self.xml) && !trust.certs.is_empty() => {
                let certs: Vec<CertificateDer> = trust
                    .certs
                    .iter()
                    .map(|c| CertificateDer::from(c.der.clone()))
                    .collect();
                let reduced = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
                    &self.xml,
                    &certs,
                    ReduceMode::ValidateAndMarkNoAncestors,
                    Some(ALLOWED),
                )
                .map_err(|_| {
                    SamlError::BadSignature(
                        "the XML signature does not verify with the SP's certificate",
                    )
                })?;
                // Only what the signature covers is read; it must be the whole request.
                let signed = parse(&reduced).map_err(|_| {
                    SamlError::BadSignature("the signature does not cover the AuthnRequest")
                })?;
                if signed.id != outer.id || signed.id.is_empty() {
                    return Err(SamlError::BadSignature(
                        "the signature covers another element than the AuthnRequest",
                    ));
                }
                (signed, true)
            }
            Binding::Post => (outer, false),
        };
        if trust.require_signed && !signed {
            return Err(SamlError::SignatureRequired);
        }
        check(request, signed, checks)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn check(
    r: samael::schema::AuthnRequest,
    signed: bool,
    checks: &Checks<'_>,
) -> Result<AuthnRequest, SamlError> {
    if r.version != "2.0" {
        return Err(SamlError::Version);
    }
    if !valid_id(&r.id) {
        return Err(malformed(
            "the AuthnRequest ID is missing or not a valid identifier",
        ));
    }
    let issued = r.issue_instant.timestamp();
    let now = checks.now.unix_timestamp();
    if issued > now + checks.skew_secs {
        return Err(SamlError::Stale("the request was issued in the future"));
    }
    if issued < now - checks.skew_secs - checks.max_age_secs {
        return Err(SamlError::Stale("the request is too old"));
    }
    if let Some(d) = r.destination.as_deref() {
        if !checks.destinations.iter().any(|ours| ours == d) {
            return Err(SamlError::Destination);
        }
    }
    let issuer = issuer_of(&r)?;
    let requested_context = r.requested_authn_context.as_ref().and_then(|c| {
        let class_refs: Vec<String> = c
            .authn_context_class_refs
            .iter()
            .flatten()
            .filter_map(|r| r.value.as_ref().map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
            .collect();
        (!class_refs.is_empty()).then_some(RequestedContext {
            comparison: match c.comparison {
                None | Some(AuthnContextComparison::Exact) => Comparison::Exact,
                Some(AuthnContextComparison::Minimum) => Comparison::Minimum,
                Some(AuthnContextComparison::Better) => Comparison::Better,
                Some(AuthnContextComparison::Maximum) => Comparison::Maximum,
            },
            class_refs,
        })
    });
    // Only a context named by class reference can be met; a declaration reference cannot.
    let decl_only = r
        .requested_authn_context
        .as_ref()
        .is_some_and(|c| c.authn_context_decl_refs.is_some() && requested_context.is_none());
    let requested_context = if decl_only {
        Some(RequestedContext {
            comparison: Comparison::Exact,
            class_refs: vec!["urn:keygate:unmet:declaration-reference".into()],
        })
    } else {
        requested_context
    };
    Ok(AuthnRequest {
        id: r.id,
        issuer,
        issue_instant: issued,
        acs_url: r
            .assertion_consumer_service_url
            .map(|u| u.trim().to_string()),
        acs_index: r.assertion_consumer_service_index,
        protocol_binding: r.protocol_binding,
        force_authn: r.force_authn.unwrap_or(false),
        is_passive: r.is_passive.unwrap_or(false),
        name_id_format: r.name_id_policy.and_then(|p| p.format),
        requested_context,
        signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_signature_is_found_and_a_nested_one_is_not() {
        let signed = "<?xml version=\"1.0\"?>\n<ns0:AuthnRequest xmlns:ns0=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:ns1=\"urn:oasis:names:tc:SAML:2.0:assertion\" xmlns:ns2=\"http://www.w3.org/2000/09/xmldsig#\" ID=\"id-1\" Version=\"2.0\"><ns1:Issuer>x</ns1:Issuer><ns2:Signature Id=\"Signature1\"><ns2:SignedInfo/></ns2:Signature></ns0:AuthnRequest>\n";
        assert!(has_xml_signature(signed));
        let nested = "<p:AuthnRequest xmlns:p=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><p:Extensions><ds:Signature/></p:Extensions></p:AuthnRequest>";
        assert!(!has_xml_signature(nested));
        let other_ns = "<p:AuthnRequest xmlns:p=\"urn:oasis:names:tc:SAML:2.0:protocol\"><p:Signature/></p:AuthnRequest>";
        assert!(!has_xml_signature(other_ns));
    }
}
