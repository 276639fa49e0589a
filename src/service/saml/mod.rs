//! The SAML identity provider (SPEC C5, C6): its settings and keys, the SP registry and
//! single sign-on.

pub mod config;
pub mod keys;
pub mod registry;
pub mod sso;

pub use config::SamlConfig;

use std::sync::{Arc, Mutex};
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
    signed_metadata: Mutex<SignedMetadata>,
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
            signed_metadata: Mutex::default(),
        })
    }

    /// The IdP metadata document, signed. Signed once per key set: a request for it costs
    /// no signature unless the keys changed since the last one.
    pub async fn metadata(&self, state: &crate::state::AppState) -> Result<Arc<str>> {
        let keys = self.keys.get(state).await;
        let held = |signed: &SignedMetadata| {
            signed
                .as_ref()
                .filter(|(k, _)| Arc::ptr_eq(k, &keys))
                .map(|(_, doc)| doc.clone())
        };
        if let Some(doc) = held(&lock(&self.signed_metadata)) {
            return Ok(doc);
        }
        let doc: Arc<str> = crate::saml::metadata::idp(&crate::saml::metadata::IdpMetadata {
            entity_id: &self.entity_id,
            sso_url: &self.sso_url,
            current: &keys.current,
            next: keys.next.as_ref(),
            want_requests_signed: false,
        })
        .map_err(|e| Error::Internal(format!("signing the SAML metadata: {e}")))?
        .into();
        *lock(&self.signed_metadata) = Some((keys, doc.clone()));
        Ok(doc)
    }
}

/// The last signed metadata and the key set it was signed with.
type SignedMetadata = Option<(Arc<crate::saml::keys::KeyPair>, Arc<str>)>;

fn lock(m: &Mutex<SignedMetadata>) -> std::sync::MutexGuard<'_, SignedMetadata> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
