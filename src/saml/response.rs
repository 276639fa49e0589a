//! Building and signing `samlp:Response` messages.
//!
//! The assertion is written canonically (see [`super::xml`]) and signed with an enveloped
//! RSA-SHA256 signature over its exclusive-c14n form; the response around it is signed the
//! same way when the SP asks for it. The signature sits right after `saml:Issuer`, as the
//! schema requires, and references the signed element's `ID`.

use base64::Engine;
use time::OffsetDateTime;

use super::keys::SigningKey;
use super::xml::Writer;
use super::{encrypt, SamlError, NS_ASSERTION, NS_DSIG, NS_PROTOCOL};

const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const ATTRNAME_BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";
const ATTRNAME_URI: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";

/// One attribute of the assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub values: Vec<String>,
}

/// The subject's identifier.
pub struct NameId<'a> {
    pub format: &'a str,
    pub value: &'a str,
    /// Set for pairwise persistent identifiers (the SP they are valid for).
    pub sp_name_qualifier: Option<&'a str>,
}

/// Everything a successful response states.
pub struct Assertion<'a> {
    pub issuer: &'a str,
    pub assertion_id: &'a str,
    pub issue_instant: OffsetDateTime,
    pub audience: &'a str,
    /// The ACS URL the response is posted to (`Destination`, `Recipient`).
    pub destination: &'a str,
    pub in_response_to: Option<&'a str>,
    pub name_id: NameId<'a>,
    /// End of the bearer confirmation and of the conditions.
    pub not_on_or_after: OffsetDateTime,
    pub not_before: OffsetDateTime,
    pub authn_instant: OffsetDateTime,
    pub session_index: &'a str,
    pub session_not_on_or_after: Option<OffsetDateTime>,
    pub authn_context: &'a str,
    pub attributes: &'a [Attribute],
}

/// How the response is protected.
pub struct Protection<'a> {
    pub key: &'a SigningKey,
    /// Sign the response as well as the assertion.
    pub sign_response: bool,
    /// Encrypt the (signed) assertion for the SP.
    pub encrypt_for: Option<&'a encrypt::RecipientKey>,
}

/// A status other than success.
pub struct Status<'a> {
    /// Top-level code (`Requester` / `Responder`).
    pub code: &'a str,
    pub second: Option<&'a str>,
    pub message: Option<&'a str>,
}

/// SAML's `xs:dateTime`, UTC, whole seconds.
pub fn instant(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
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

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The enveloped signature of the element whose `ID` is `id` and whose canonical form
/// (without this signature) has SHA-256 `digest`.
fn signature(id: &str, digest: &[u8], key: &SigningKey) -> Result<String, SamlError> {
    let mut w = Writer::new();
    w.leaf(
        "ds:CanonicalizationMethod",
        &[],
        &[("Algorithm", EXC_C14N)],
        "",
    );
    w.leaf("ds:SignatureMethod", &[], &[("Algorithm", RSA_SHA256)], "");
    let uri = format!("#{id}");
    w.open("ds:Reference", &[], &[("URI", &uri)]);
    w.open("ds:Transforms", &[], &[]);
    w.leaf("ds:Transform", &[], &[("Algorithm", ENVELOPED)], "");
    w.leaf("ds:Transform", &[], &[("Algorithm", EXC_C14N)], "");
    w.close("ds:Transforms");
    w.leaf("ds:DigestMethod", &[], &[("Algorithm", SHA256)], "");
    w.leaf("ds:DigestValue", &[], &[], &b64(digest));
    w.close("ds:Reference");
    let inner = w.finish();
    // SignedInfo is canonicalised on its own, so there it declares `ds` itself; inside
    // `ds:Signature` (which declares it) it does not.
    let canonical = format!("<ds:SignedInfo xmlns:ds=\"{NS_DSIG}\">{inner}</ds:SignedInfo>");
    let value = key.sign(canonical.as_bytes())?;
    let mut w = Writer::new();
    w.open("ds:Signature", &[("ds", NS_DSIG)], &[]);
    w.open("ds:SignedInfo", &[], &[]);
    w.raw(&inner);
    w.close("ds:SignedInfo");
    w.leaf("ds:SignatureValue", &[], &[], &b64(&value));
    w.open("ds:KeyInfo", &[], &[]);
    w.open("ds:X509Data", &[], &[]);
    w.leaf("ds:X509Certificate", &[], &[], &key.cert_b64);
    w.close("ds:X509Data");
    w.close("ds:KeyInfo");
    w.close("ds:Signature");
    Ok(w.finish())
}

/// Signs an element written as `head` (its start tag and `Issuer`) and `tail` (the rest):
/// returns `head + Signature + tail`.
pub(super) fn sign_element(
    id: &str,
    head: &str,
    tail: &str,
    key: &SigningKey,
) -> Result<String, SamlError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(head.as_bytes());
    ctx.update(tail.as_bytes());
    let sig = signature(id, ctx.finish().as_ref(), key)?;
    let mut out = String::with_capacity(head.len() + sig.len() + tail.len());
    out.push_str(head);
    out.push_str(&sig);
    out.push_str(tail);
    Ok(out)
}

/// The signed `saml:Assertion`.
pub fn signed_assertion(a: &Assertion<'_>, key: &SigningKey) -> Result<String, SamlError> {
    let issued = instant(a.issue_instant);
    let mut w = Writer::new();
    w.open(
        "saml:Assertion",
        &[("saml", NS_ASSERTION)],
        &[
            ("ID", a.assertion_id),
            ("IssueInstant", &issued),
            ("Version", "2.0"),
        ],
    );
    w.leaf("saml:Issuer", &[], &[], a.issuer);
    let head_len = w.len();

    w.open("saml:Subject", &[], &[]);
    let mut name_attrs = vec![("Format", a.name_id.format)];
    if let Some(q) = a.name_id.sp_name_qualifier {
        name_attrs.push(("SPNameQualifier", q));
    }
    w.leaf("saml:NameID", &[], &name_attrs, a.name_id.value);
    w.open("saml:SubjectConfirmation", &[], &[("Method", BEARER)]);
    let until = instant(a.not_on_or_after);
    let mut conf = vec![
        ("NotOnOrAfter", until.as_str()),
        ("Recipient", a.destination),
    ];
    if let Some(irt) = a.in_response_to {
        conf.push(("InResponseTo", irt));
    }
    w.leaf("saml:SubjectConfirmationData", &[], &conf, "");
    w.close("saml:SubjectConfirmation");
    w.close("saml:Subject");

    let from = instant(a.not_before);
    w.open(
        "saml:Conditions",
        &[],
        &[("NotBefore", &from), ("NotOnOrAfter", &until)],
    );
    w.open("saml:AudienceRestriction", &[], &[]);
    w.leaf("saml:Audience", &[], &[], a.audience);
    w.close("saml:AudienceRestriction");
    w.close("saml:Conditions");

    let authn = instant(a.authn_instant);
    let session_end = a.session_not_on_or_after.map(instant);
    let mut st = vec![
        ("AuthnInstant", authn.as_str()),
        ("SessionIndex", a.session_index),
    ];
    if let Some(end) = &session_end {
        st.push(("SessionNotOnOrAfter", end));
    }
    w.open("saml:AuthnStatement", &[], &st);
    w.open("saml:AuthnContext", &[], &[]);
    w.leaf("saml:AuthnContextClassRef", &[], &[], a.authn_context);
    w.close("saml:AuthnContext");
    w.close("saml:AuthnStatement");

    if !a.attributes.is_empty() {
        w.open("saml:AttributeStatement", &[], &[]);
        for attr in a.attributes {
            let format = if attr.name.starts_with("urn:") || attr.name.contains("://") {
                ATTRNAME_URI
            } else {
                ATTRNAME_BASIC
            };
            w.open(
                "saml:Attribute",
                &[],
                &[("Name", &attr.name), ("NameFormat", format)],
            );
            for v in &attr.values {
                w.leaf("saml:AttributeValue", &[], &[], v);
            }
            w.close("saml:Attribute");
        }
        w.close("saml:AttributeStatement");
    }
    w.close("saml:Assertion");
    let tail = w.split_off(head_len);
    sign_element(a.assertion_id, &w.finish(), &tail, key)
}

/// The response's start tag, Issuer, status; `body` follows; signed when asked.
#[allow(clippy::too_many_arguments)]
fn envelope(
    issuer: &str,
    response_id: &str,
    issue_instant: OffsetDateTime,
    destination: &str,
    in_response_to: Option<&str>,
    status: &Status<'_>,
    body: &str,
    key: &SigningKey,
    sign: bool,
) -> Result<String, SamlError> {
    let issued = instant(issue_instant);
    let mut attrs = vec![
        ("Destination", destination),
        ("ID", response_id),
        ("IssueInstant", issued.as_str()),
        ("Version", "2.0"),
    ];
    if let Some(irt) = in_response_to {
        attrs.push(("InResponseTo", irt));
    }
    let mut w = Writer::new();
    w.open("samlp:Response", &[("samlp", NS_PROTOCOL)], &attrs);
    w.leaf("saml:Issuer", &[("saml", NS_ASSERTION)], &[], issuer);
    let head_len = w.len();
    w.open("samlp:Status", &[], &[]);
    w.open("samlp:StatusCode", &[], &[("Value", status.code)]);
    if let Some(second) = status.second {
        w.leaf("samlp:StatusCode", &[], &[("Value", second)], "");
    }
    w.close("samlp:StatusCode");
    if let Some(m) = status.message {
        w.leaf("samlp:StatusMessage", &[], &[], m);
    }
    w.close("samlp:Status");
    w.raw(body);
    w.close("samlp:Response");
    if !sign {
        return Ok(w.finish());
    }
    let tail = w.split_off(head_len);
    sign_element(response_id, &w.finish(), &tail, key)
}

/// A successful response carrying the signed (and, for SPs with an encryption key,
/// encrypted) assertion.
pub fn success(
    a: &Assertion<'_>,
    response_id: &str,
    p: &Protection<'_>,
) -> Result<String, SamlError> {
    let assertion = signed_assertion(a, p.key)?;
    let body = match p.encrypt_for {
        Some(recipient) => encrypt::encrypted_assertion(&assertion, recipient)?,
        None => assertion,
    };
    envelope(
        a.issuer,
        response_id,
        a.issue_instant,
        a.destination,
        a.in_response_to,
        &Status {
            code: super::status::SUCCESS,
            second: None,
            message: None,
        },
        &body,
        p.key,
        p.sign_response,
    )
}

/// An error response (no assertion). Always signed, so the SP can trust the status.
pub fn failure(
    issuer: &str,
    response_id: &str,
    issue_instant: OffsetDateTime,
    destination: &str,
    in_response_to: Option<&str>,
    status: &Status<'_>,
    key: &SigningKey,
) -> Result<String, SamlError> {
    envelope(
        issuer,
        response_id,
        issue_instant,
        destination,
        in_response_to,
        status,
        "",
        key,
        true,
    )
}

/// `SAMLResponse` form value.
pub fn encode(response: &str) -> String {
    b64(response.as_bytes())
}
