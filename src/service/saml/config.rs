//! The `[saml]` configuration section.

use serde::{Deserialize, Serialize};

use crate::saml::sp::ServiceProvider;

/// `[saml]`: the identity provider's entity ID, lifetimes, skew and declared SPs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamlConfig {
    /// The IdP's entity ID; default `<public_url>/saml/metadata`.
    pub entity_id: Option<String>,
    /// How long an assertion may be used (`NotOnOrAfter`).
    pub assertion_ttl_secs: u64,
    /// How old an `AuthnRequest` may be when it arrives (beyond the skew).
    pub request_max_age_secs: u64,
    /// Clock difference tolerated with SPs.
    pub clock_skew_secs: u64,
    /// How long a request waits for the member's key touch.
    pub pending_ttl_secs: u64,
    /// How often each replica looks for rotated signing keys in the database.
    pub key_reload_secs: u64,
    /// SPs declared here are kept in step at start-up (GitOps).
    pub service_providers: Vec<ServiceProvider>,
}

impl Default for SamlConfig {
    fn default() -> Self {
        SamlConfig {
            entity_id: None,
            assertion_ttl_secs: 300,
            request_max_age_secs: 300,
            clock_skew_secs: 90,
            pending_ttl_secs: 600,
            key_reload_secs: 30,
            service_providers: Vec::new(),
        }
    }
}

impl SamlConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(id) = &self.entity_id {
            if id.trim().is_empty() || id.trim() != id {
                return Err("saml.entity_id must not be empty or padded".into());
            }
        }
        if !(30..=3600).contains(&self.assertion_ttl_secs) {
            return Err("saml.assertion_ttl_secs must be between 30 and 3600".into());
        }
        if self.clock_skew_secs > 600 || self.request_max_age_secs > 3600 {
            return Err(
                "saml.clock_skew_secs (≤ 600) or saml.request_max_age_secs (≤ 3600) is too large"
                    .into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for sp in &self.service_providers {
            sp.validate()
                .map_err(|e| format!("saml.service_providers `{}`: {e}", sp.entity_id))?;
            if !seen.insert(sp.entity_id.as_str()) {
                return Err(format!(
                    "saml.service_providers: `{}` is declared twice",
                    sp.entity_id
                ));
            }
        }
        Ok(())
    }
}
