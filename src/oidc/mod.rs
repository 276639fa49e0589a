//! keygate as an OpenID Connect provider: the protocol core, free of HTTP and storage.
//!
//! The HTTP layer parses requests into these types, the services keep codes, refresh
//! tokens and sessions in storage, and everything in between is here as plain functions:
//!
//! | module | what |
//! | --- | --- |
//! | [`keys`] | ES256/RS256 signing keys (`kid` = RFC 7638 thumbprint), the stored secret form, rotation with overlap, the public JWKS |
//! | [`jwt`] | compact JWS signing and strict verification against our own keys |
//! | [`discovery`] | the `/.well-known/openid-configuration` document |
//! | [`authorize`] | authorization-request parsing (client, exact redirect URI, PKCE S256, prompt, max_age, acr) and the next step for a session |
//! | [`assurance`] | sign-in facts → `acr` / `amr` in each vocabulary clients ask in (SPEC §4) |
//! | [`tokens`] | grants, code records, ID and access tokens, refresh tokens, token/userinfo/introspection responses |
//! | [`pkce`] | S256 verification |
//! | [`scope`] | scope values and parsing |
//!
//! A code exchange, once the client is authenticated and the code record taken from the
//! store by the digest of the presented code:
//!
//! ```no_run
//! # use keygate::oidc::{tokens::{self, CodeRecord, Exchange, TokenSettings}, keys::KeySet};
//! # fn exchange(record: CodeRecord, keys: &KeySet, settings: &TokenSettings,
//! #     client_id: &str, redirect_uri: Option<&str>, verifier: Option<&str>,
//! #     now: time::OffsetDateTime) -> Result<String, keygate::oidc::OidcError> {
//! let grant = record.redeem(client_id, redirect_uri, verifier, now)?;
//! let issued = tokens::issue(settings, keys, &grant, Exchange::AuthorizationCode, now)?;
//! // Store issued.refresh_token's digest with the grant, audit issued.access_token.jti, then:
//! let body = serde_json::to_string(&issued.response()).unwrap_or_default();
//! # Ok(body) }
//! ```

pub mod assurance;
pub mod authorize;
pub mod discovery;
mod error;
pub mod jwt;
pub mod keys;
pub mod pkce;
pub mod scope;
pub mod tokens;

pub use error::{ErrorBody, OidcError};
