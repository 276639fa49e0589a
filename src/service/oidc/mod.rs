//! keygate as an OpenID Connect provider (SPEC C4): the flows around the protocol core in
//! [`crate::oidc`], with clients, grants and refresh tokens in storage and pending
//! requests, codes and access-token bookkeeping in the ephemeral store.
//!
//! | file | what |
//! | --- | --- |
//! | `config.rs` | the `[oidc]` section and the checks shared with admin-created clients |
//! | `keys.rs` | the signing-key set: loaded from (or first stored in) the database, reloaded when another replica or `keygate keys rotate` changed it |
//! | `clients.rs` | clients: synced from the config, created and disabled by admins |
//! | `authorize.rs` | the authorization endpoint: sign-in, workspace forcing, codes |
//! | `token/` | the token endpoint, one file per grant: code exchange, refresh rotation (reuse detection on both), client credentials, device code |
//! | `device.rs` | the device authorization grant (RFC 8628): device and user codes, the member's bound approval or denial |
//! | `resource.rs` | userinfo, introspection and revocation |
//! | `logout.rs` | RP-initiated logout |
//!
//! Ephemeral keys: `oidc:req:{id}` (a request waiting for a key touch), `oidc:code:{digest}`
//! (a code, taken on use), `oidc:code_used:{digest}` (a used code: seeing it again revokes
//! the grant), `oidc:at:{jti}` (the grant an access token belongs to; deleted on revocation).
//! Token values are never logged or audited: the audit chain gets grant IDs and `jti`s.

pub mod authorize;
pub mod clients;
pub mod config;
pub mod device;
pub mod keys;
pub mod logout;
pub mod resource;
pub mod token;

use std::time::Duration;

pub use config::{OidcClientConfig, OidcConfig};

use crate::ephemeral::EphemeralError;
use crate::error::Error;
use crate::oidc::discovery::{self, Endpoints};
use crate::oidc::tokens::TokenSettings;
use crate::oidc::OidcError;
use crate::storage::StorageError;

/// The provider's fixed parts, built once at start-up.
pub struct Provider {
    pub settings: TokenSettings,
    /// The discovery document, ready to serve.
    pub discovery: Vec<u8>,
    pub keys: keys::KeyCache,
    pub request_ttl: Duration,
    pub token_requests_per_minute: u64,
}

impl Provider {
    /// The issuer is `server.public_url` without a trailing slash.
    pub fn new(config: &crate::Config, keys: keys::KeyCache) -> Result<Provider, Error> {
        let issuer = config.server.public_url.trim_end_matches('/').to_string();
        let oidc = &config.oidc;
        let secs = |s: u64| time::Duration::seconds(s as i64);
        let settings = TokenSettings {
            issuer: issuer.clone(),
            id_token_ttl: secs(oidc.id_token_ttl_secs),
            access_token_ttl: secs(oidc.access_token_ttl_secs),
            refresh_token_ttl: secs(oidc.refresh_token_ttl_secs),
            code_ttl: secs(oidc.code_ttl_secs),
            workspace_claim: oidc.workspace_claim.clone(),
        };
        settings.validate().map_err(Error::Internal)?;
        let discovery = discovery::document(
            &issuer,
            &Endpoints::under(&issuer),
            &settings.workspace_claim,
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Provider {
            settings,
            discovery,
            keys,
            request_ttl: Duration::from_secs(oidc.request_ttl_secs),
            token_requests_per_minute: oidc.token_requests_per_minute,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }
}

/// Why an OAuth endpoint did not answer with success: a protocol error (answered with the
/// standard error body) or a service failure (storage down, a bug).
#[derive(Debug)]
pub enum Failure {
    OAuth(OidcError),
    Service(Error),
}

impl From<OidcError> for Failure {
    fn from(e: OidcError) -> Self {
        Failure::OAuth(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Service(e)
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Failure::Service(e.into())
    }
}

impl From<EphemeralError> for Failure {
    fn from(e: EphemeralError) -> Self {
        Failure::Service(e.into())
    }
}

pub(crate) use crate::service::audit;

pub(crate) fn code_key(digest: &str) -> String {
    format!("oidc:code:{digest}")
}

pub(crate) fn code_used_key(digest: &str) -> String {
    format!("oidc:code_used:{digest}")
}

pub(crate) fn access_token_key(jti: &str) -> String {
    format!("oidc:at:{jti}")
}

pub(crate) fn request_key(id: &str) -> String {
    format!("oidc:req:{id}")
}
