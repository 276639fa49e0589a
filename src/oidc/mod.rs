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
//! | [`token_request`] | token-endpoint request shape and client authentication (`client_secret_basic`, `client_secret_post`, `private_key_jwt`, `none`) |
//! | [`client_assertion`] | `private_key_jwt`: a client's registered JWKS and the checks on its signed assertions (RFC 7523) |
//! | [`device`] | the device authorization grant (RFC 8628): user codes, polling, the canonical approval a touch is bound to |
//! | [`pkce`] | S256 verification |
//! | [`scope`] | scope values and parsing |
//!
//! A code exchange at the token endpoint; `take_code` and `find_client` stand for the
//! caller's storage (the code record is deleted as it is read: codes are single-use):
//!
//! ```no_run
//! # use keygate::oidc::{authorize::ClientKind, keys::KeySet, OidcError};
//! # use keygate::oidc::token_request::{TokenGrant, UntrustedTokenRequest};
//! # use keygate::oidc::tokens::{self, CodeRecord, Exchange, TokenSettings};
//! # fn take_code(_digest: &str) -> Option<CodeRecord> { None }
//! # fn find_client(_id: &str) -> Option<(ClientKind, Option<&'static str>)> { None }
//! # fn exchange(body: &str, authorization: Option<&str>, keys: &KeySet,
//! #     settings: &TokenSettings, now: time::OffsetDateTime) -> Result<String, OidcError> {
//! let request = UntrustedTokenRequest::from_form(body, authorization)?.parse()?;
//! request.client.verify(find_client(request.client.client_id()))?;
//! let TokenGrant::AuthorizationCode { code, redirect_uri, code_verifier } = request.grant else {
//!     return Err(OidcError::UnsupportedGrantType("not handled in this example".into()));
//! };
//! let record = take_code(&tokens::digest(&code))
//!     .ok_or_else(|| OidcError::InvalidGrant("unknown or used code".into()))?;
//! let grant = record.redeem(
//!     request.client.client_id(),
//!     redirect_uri.as_deref(),
//!     code_verifier.as_deref(),
//!     now,
//! )?;
//! let issued = tokens::issue(settings, keys, &grant, Exchange::AuthorizationCode, now)?;
//! // Store issued.refresh_token's digest with the grant and audit issued.access_token.jti;
//! // answer with Cache-Control: no-store.
//! Ok(serde_json::to_string(&issued.response()).unwrap_or_default())
//! # }
//! ```

pub mod assurance;
pub mod authorize;
pub mod client_assertion;
pub mod device;
pub mod discovery;
mod error;
pub mod jwt;
pub mod keys;
pub mod pkce;
pub mod scope;
pub mod token_request;
pub mod tokens;

pub use error::{ErrorBody, OidcError};
