//! Shared test support.
pub mod browser;
pub mod db;
pub mod authenticator;
pub mod fixtures;
