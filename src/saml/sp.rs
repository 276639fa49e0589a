//! A service provider's registration: the same shape whether declared in config, entered by
//! an admin or imported from the SP's metadata.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{context, keys::PeerCert, SamlError};

/// How the subject is named to this SP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameIdFormat {
    /// The member's e-mail address.
    #[default]
    Email,
    /// An opaque identifier, stable per member and SP, different for every SP.
    Persistent,
    /// The e-mail address, labelled `unspecified`.
    Unspecified,
}

impl NameIdFormat {
    pub fn urn(self) -> &'static str {
        match self {
            NameIdFormat::Email => "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            NameIdFormat::Persistent => "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            NameIdFormat::Unspecified => "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        }
    }

    pub fn from_urn(urn: &str) -> Option<Self> {
        [Self::Email, Self::Persistent, Self::Unspecified]
            .into_iter()
            .find(|f| f.urn() == urn)
    }
}

/// What an attribute carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeSource {
    Email,
    Name,
    /// The member's workspaces (their external IDs).
    Groups,
    /// The SP's workspace (SPEC C6).
    WorkspaceId,
    KeyModel,
    KeyFips,
    KeyAaguid,
}

impl AttributeSource {
    pub const ALL: [AttributeSource; 7] = [
        Self::Email,
        Self::Name,
        Self::Groups,
        Self::WorkspaceId,
        Self::KeyModel,
        Self::KeyFips,
        Self::KeyAaguid,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Name => "name",
            Self::Groups => "groups",
            Self::WorkspaceId => "workspace_id",
            Self::KeyModel => "key_model",
            Self::KeyFips => "key_fips",
            Self::KeyAaguid => "key_aaguid",
        }
    }
}

/// An assertion consumer service: a bare URL (its position is its index) or an indexed one
/// (as metadata names them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Acs {
    Url(String),
    Indexed { url: String, index: u32 },
}

impl Acs {
    pub fn url(&self) -> &str {
        match self {
            Acs::Url(u) | Acs::Indexed { url: u, .. } => u,
        }
    }
}

fn default_attributes() -> BTreeMap<AttributeSource, String> {
    AttributeSource::ALL
        .into_iter()
        .map(|s| (s, s.key().to_string()))
        .collect()
}

fn default_context() -> String {
    context::REFEDS_MFA.into()
}

/// `[[saml.service_providers]]`, an admin's form, or imported metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceProvider {
    pub entity_id: String,
    #[serde(default)]
    pub name: String,
    /// Where responses may be posted; the first is the default.
    pub acs_urls: Vec<Acs>,
    #[serde(default)]
    pub name_id_format: NameIdFormat,
    /// Attribute source → attribute name sent. Absent sources are not sent.
    #[serde(default = "default_attributes")]
    pub attributes: BTreeMap<AttributeSource, String>,
    /// The `AuthnContextClassRef` asserted (SPEC §4; default REFEDS MFA).
    #[serde(default = "default_context")]
    pub authn_context: String,
    #[serde(default)]
    pub require_signed_requests: bool,
    /// Certificates (PEM or base64 DER) the SP signs its requests with.
    #[serde(default)]
    pub signing_certs: Vec<String>,
    /// Whether keygate may start a sign-in for this SP without a request.
    #[serde(default)]
    pub idp_initiated: bool,
    /// When set, assertions are encrypted for this certificate's key.
    #[serde(default)]
    pub encryption_cert: Option<String>,
    /// Sign the response as well as the assertion (the assertion is always signed).
    #[serde(default)]
    pub sign_response: bool,
    /// The workspace (its keygate ID) the SP is bound to.
    #[serde(default)]
    pub workspace: Option<String>,
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|_| format!("`{url}` is not an absolute URL"))?;
    let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && local) {
        return Err(format!("`{url}` must use https (http only on localhost)"));
    }
    if parsed.fragment().is_some() {
        return Err(format!("`{url}` must not have a fragment"));
    }
    Ok(())
}

impl ServiceProvider {
    /// A registration with keygate's defaults for everything but its identity (the same
    /// defaults a config entry gets).
    pub fn new(entity_id: String, acs_urls: Vec<Acs>) -> Self {
        ServiceProvider {
            entity_id,
            name: String::new(),
            acs_urls,
            name_id_format: NameIdFormat::default(),
            attributes: default_attributes(),
            authn_context: default_context(),
            require_signed_requests: false,
            signing_certs: Vec::new(),
            idp_initiated: false,
            encryption_cert: None,
            sign_response: false,
            workspace: None,
        }
    }

    /// Everything a registration must satisfy before keygate trusts it.
    pub fn validate(&self) -> Result<(), SamlError> {
        let bad = |m: String| Err(SamlError::Registration(m));
        let id = self.entity_id.trim();
        if id.is_empty() || id.len() > 1024 || id != self.entity_id {
            return bad(
                "entity_id must be set, without surrounding spaces, at most 1024 characters".into(),
            );
        }
        if self.acs_urls.is_empty() {
            return bad("at least one ACS URL is required".into());
        }
        for acs in &self.acs_urls {
            check_url(acs.url()).or_else(bad)?;
        }
        if !context::configurable(&self.authn_context)
            && url::Url::parse(&self.authn_context).is_err()
        {
            return bad(format!(
                "authn_context `{}` is neither a context keygate knows nor a URI",
                self.authn_context
            ));
        }
        if self.require_signed_requests && self.signing_certs.is_empty() {
            return bad("require_signed_requests needs at least one signing certificate".into());
        }
        for cert in &self.signing_certs {
            PeerCert::parse(cert)
                .map_err(|e| SamlError::Registration(format!("signing certificate: {e}")))?;
        }
        if let Some(cert) = &self.encryption_cert {
            super::encrypt::RecipientKey::from_cert(cert)
                .map_err(|e| SamlError::Registration(format!("encryption certificate: {e}")))?;
        }
        for name in self.attributes.values() {
            if name.trim().is_empty() || name.len() > 256 {
                return bad("attribute names must be 1 to 256 characters".into());
            }
        }
        Ok(())
    }

    /// The ACS URL a request asks for (by URL or index), or the default one.
    pub fn acs_for(&self, url: Option<&str>, index: Option<usize>) -> Result<&str, SamlError> {
        if let Some(url) = url {
            return self
                .acs_urls
                .iter()
                .map(Acs::url)
                .find(|u| *u == url)
                .ok_or(SamlError::AcsMismatch);
        }
        if let Some(i) = index {
            let by_index = self.acs_urls.iter().find_map(|a| match a {
                Acs::Indexed { url, index } if *index as usize == i => Some(url.as_str()),
                _ => None,
            });
            let by_position = self.acs_urls.get(i).and_then(|a| match a {
                Acs::Url(u) => Some(u.as_str()),
                Acs::Indexed { .. } => None,
            });
            return by_index.or(by_position).ok_or(SamlError::AcsMismatch);
        }
        Ok(self.acs_urls[0].url())
    }

    pub fn peer_certs(&self) -> Result<Vec<PeerCert>, SamlError> {
        self.signing_certs
            .iter()
            .map(|c| PeerCert::parse(c))
            .collect()
    }

    pub fn display_name(&self) -> &str {
        if self.name.trim().is_empty() {
            &self.entity_id
        } else {
            &self.name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp() -> ServiceProvider {
        toml::from_str(
            r#"
            entity_id = "https://sp.example/metadata"
            acs_urls = ["https://sp.example/acs", { url = "https://sp.example/acs2", index = 7 }]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_and_acs_selection() {
        let sp = sp();
        sp.validate().unwrap();
        let built = ServiceProvider::new(sp.entity_id.clone(), sp.acs_urls.clone());
        assert_eq!(
            built, sp,
            "config entries and built registrations share their defaults"
        );
        assert_eq!(sp.authn_context, context::REFEDS_MFA);
        assert_eq!(sp.name_id_format, NameIdFormat::Email);
        assert_eq!(sp.attributes.len(), AttributeSource::ALL.len());
        assert!(!sp.sign_response && !sp.idp_initiated);
        assert_eq!(sp.acs_for(None, None).unwrap(), "https://sp.example/acs");
        assert_eq!(
            sp.acs_for(None, Some(7)).unwrap(),
            "https://sp.example/acs2"
        );
        assert_eq!(sp.acs_for(None, Some(0)).unwrap(), "https://sp.example/acs");
        assert!(sp.acs_for(None, Some(1)).is_err());
        assert!(sp.acs_for(Some("https://sp.example/acs/"), None).is_err());
        assert!(sp.acs_for(Some("https://sp.example/acs2"), None).is_ok());
    }

    #[test]
    fn registrations_are_checked() {
        let mut s = sp();
        s.acs_urls = vec![Acs::Url("http://sp.example/acs".into())];
        assert!(s.validate().is_err());
        let mut s = sp();
        s.require_signed_requests = true;
        assert!(s.validate().is_err());
        let mut s = sp();
        s.signing_certs = vec!["not a cert".into()];
        assert!(s.validate().is_err());
        let mut s = sp();
        s.authn_context = "strong please".into();
        assert!(s.validate().is_err());
    }
}
