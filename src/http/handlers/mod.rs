//! Thin handlers, one file per area: read the request, call one service, render.

pub mod admin;
pub mod assets;
pub mod audit;
pub mod clients;
pub mod compliance;
pub mod device;
pub mod enrol;
pub mod health;
pub mod me;
pub mod oidc;
pub mod openapi;
pub mod recovery;
pub mod saml;
pub mod saml_admin;
pub mod signin;
pub mod workspaces;
