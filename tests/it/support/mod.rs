//! Shared test support.
pub mod app;
pub mod authenticator;
pub mod bin;
pub mod browser;
pub mod db;
pub mod fixtures;
pub mod meddled;
pub mod oidc;
pub mod saml;
pub mod skip;
