//! Shared test support.
pub mod browser;
pub mod db;
