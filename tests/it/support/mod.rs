//! Shared test support.
pub mod db;
