//! The SAML identity provider (SPEC C5, C6): its settings and keys, the SP registry and
//! single sign-on.

pub mod config;
pub mod keys;
pub mod registry;
pub mod sso;

pub use config::SamlConfig;

use std::time::Duration;

use crate::error::{Error, Result};

/// The identity provider's fixed parts, built once at start-up.
pub struct Idp {
    pub entity_id: String,
    /// The one SSO endpoint (both bindings).
    pub sso_url: String,
    /// What a request's `Destination` may say.
    pub destinations: Vec<String>,
    pub keys: keys::KeyCache,
    pub assertion_ttl: time::Duration,
    pub max_age_secs: i64,
    pub skew_secs: i64,
    pub pending_ttl: Duration,
}

impl Idp {
    pub fn new(config: &crate::Config, keys: keys::KeyCache) -> Result<Idp> {
        let base = config.server.public_url.trim_end_matches('/');
        let saml = &config.saml;
        saml.validate().map_err(Error::Internal)?;
        let sso_url = format!("{base}/saml/sso");
        Ok(Idp {
            entity_id: saml
                .entity_id
                .clone()
                .unwrap_or_else(|| format!("{base}/saml/metadata")),
            destinations: vec![sso_url.clone()],
            sso_url,
            keys,
            assertion_ttl: time::Duration::seconds(saml.assertion_ttl_secs as i64),
            max_age_secs: saml.request_max_age_secs as i64,
            skew_secs: saml.clock_skew_secs as i64,
            pending_ttl: Duration::from_secs(saml.pending_ttl_secs),
        })
    }

    /// The IdP metadata document.
    pub async fn metadata(&self, state: &crate::state::AppState) -> String {
        let keys = self.keys.get(state).await;
        crate::saml::metadata::idp(&crate::saml::metadata::IdpMetadata {
            entity_id: &self.entity_id,
            sso_url: &self.sso_url,
            current: &keys.current,
            next: keys.next.as_ref(),
            want_requests_signed: false,
        })
    }
}
