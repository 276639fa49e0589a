//! Metadata: the identity provider's own document, and importing an SP's.

use samael::metadata::EntityDescriptor;

use super::keys::SigningKey;
use super::response::sign_element;
use super::sp::{Acs, NameIdFormat, ServiceProvider};
use super::xml::{self, Writer};
use super::{SamlError, BINDING_POST, BINDING_REDIRECT, NS_DSIG, NS_METADATA, NS_PROTOCOL};

/// What the IdP metadata names.
pub struct IdpMetadata<'a> {
    pub entity_id: &'a str,
    pub sso_url: &'a str,
    /// Signs the document, and is its first signing certificate.
    pub current: &'a SigningKey,
    /// Published ahead of a rotation so SPs trust it before it signs.
    pub next: Option<&'a SigningKey>,
    pub want_requests_signed: bool,
}

/// The IdP's `md:EntityDescriptor`, signed by the current key (an enveloped signature
/// over the whole descriptor, its first child, as the metadata schema places it), so an
/// SP that pins keygate's certificate can check a copy it did not fetch over TLS itself.
/// Its `ID` is a digest of what it says: the same metadata keeps the same ID.
pub fn idp(m: &IdpMetadata<'_>) -> Result<String, SamlError> {
    let mut w = Writer::new();
    let want = if m.want_requests_signed {
        "true"
    } else {
        "false"
    };
    w.open(
        "md:IDPSSODescriptor",
        &[],
        &[
            ("WantAuthnRequestsSigned", want),
            ("protocolSupportEnumeration", NS_PROTOCOL),
        ],
    );
    for key in std::iter::once(m.current).chain(m.next) {
        w.open("md:KeyDescriptor", &[], &[("use", "signing")]);
        // Declared where first used, as exclusive c14n writes it.
        w.open("ds:KeyInfo", &[("ds", NS_DSIG)], &[]);
        w.open("ds:X509Data", &[], &[]);
        w.leaf("ds:X509Certificate", &[], &[], &key.cert_b64);
        w.close("ds:X509Data");
        w.close("ds:KeyInfo");
        w.close("md:KeyDescriptor");
    }
    for f in [
        NameIdFormat::Email,
        NameIdFormat::Persistent,
        NameIdFormat::Unspecified,
    ] {
        w.leaf("md:NameIDFormat", &[], &[], f.urn());
    }
    for binding in [BINDING_REDIRECT, BINDING_POST] {
        w.leaf(
            "md:SingleSignOnService",
            &[],
            &[("Binding", binding), ("Location", m.sso_url)],
            "",
        );
    }
    w.close("md:IDPSSODescriptor");
    w.close("md:EntityDescriptor");
    let tail = w.finish();

    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(m.entity_id.as_bytes());
    digest.update(b"\0");
    digest.update(tail.as_bytes());
    let id = format!("_{}", hex::encode(&digest.finish().as_ref()[..20]));
    let mut head = Writer::new();
    head.open(
        "md:EntityDescriptor",
        &[("md", NS_METADATA)],
        &[("ID", &id), ("entityID", m.entity_id)],
    );
    let signed = sign_element(&id, &head.finish(), &tail, m.current)?;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{signed}"
    ))
}

/// Reads an SP's metadata into a registration: entity ID, the HTTP-POST ACS endpoints (by
/// index, default first), signing and encryption certificates, whether it signs its
/// requests, and its preferred NameID format. Everything else keeps keygate's defaults;
/// the admin reviews the result before it is saved.
pub fn import_sp(metadata: &str) -> Result<ServiceProvider, SamlError> {
    if metadata.len() > 512 * 1024 {
        return Err(SamlError::Malformed("the metadata is too large".into()));
    }
    xml::refuse_dtd(metadata)?;
    // One EntityDescriptor and nothing after it: what the admin reviews is all there is.
    xml::single_root(metadata).map_err(|e| match e {
        SamlError::Malformed(m) => {
            SamlError::Malformed(format!("the metadata is not a SAML EntityDescriptor: {m}"))
        }
        other => other,
    })?;
    let body = metadata.trim_start_matches('\u{feff}');
    let ed: EntityDescriptor = body
        .parse()
        .map_err(|_| SamlError::Malformed("the metadata is not a SAML EntityDescriptor".into()))?;
    let entity_id = ed
        .entity_id
        .clone()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .ok_or_else(|| SamlError::Malformed("the metadata names no entityID".into()))?;
    let sp = ed
        .sp_sso_descriptors
        .as_ref()
        .and_then(|d| d.first())
        .ok_or_else(|| SamlError::Malformed("the metadata has no SPSSODescriptor".into()))?;
    let mut endpoints: Vec<_> = sp
        .assertion_consumer_services
        .iter()
        .filter(|e| e.binding == BINDING_POST)
        .collect();
    endpoints.sort_by_key(|e| (!e.is_default.unwrap_or(false), e.index));
    let acs_urls: Vec<Acs> = endpoints
        .iter()
        .map(|e| Acs::Indexed {
            url: e.location.trim().to_string(),
            index: e.index as u32,
        })
        .collect();
    if acs_urls.is_empty() {
        return Err(SamlError::Malformed(
            "the metadata has no HTTP-POST AssertionConsumerService".into(),
        ));
    }
    let certs = |wanted: &str| -> Vec<String> {
        sp.key_descriptors
            .iter()
            .flatten()
            .filter(|k| k.key_use.as_deref().is_none_or(|u| u == wanted))
            .filter_map(|k| k.key_info.x509_data.as_ref())
            .flat_map(|x| x.certificates.iter())
            .map(|c| c.split_whitespace().collect::<String>())
            .collect()
    };
    let signing_certs = certs("signing");
    let encryption_cert = certs("encryption").into_iter().next();
    let name_id_format = sp
        .name_id_formats
        .iter()
        .flatten()
        .find_map(|f| NameIdFormat::from_urn(f.trim()))
        .unwrap_or_default();
    let mut imported = ServiceProvider::new(entity_id, acs_urls);
    imported.name = ed
        .organization
        .as_ref()
        .and_then(|o| o.organization_display_names.as_ref())
        .and_then(|n| n.first())
        .map(|n| n.value.trim().to_string())
        .unwrap_or_default();
    imported.name_id_format = name_id_format;
    imported.require_signed_requests =
        sp.authn_requests_signed.unwrap_or(false) && !signing_certs.is_empty();
    imported.signing_certs = signing_certs;
    imported.encryption_cert = encryption_cert;
    imported.validate()?;
    Ok(imported)
}
