//! `AppState`: everything a request needs, built once, cloned cheaply. No globals.

use std::sync::Arc;

use crate::attestation::{Policy, Verifier};
use crate::config::Config;
use crate::ephemeral::EphemeralStore;
use crate::storage::Storage;

/// Wall-clock time, behind a trait so tests can move it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> time::OffsetDateTime;
    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub ephemeral: Arc<dyn EphemeralStore>,
    pub verifier: Arc<Verifier>,
    pub clock: Arc<dyn Clock>,
    /// The exact origin browsers must report (from `server.public_url`).
    pub origin: Arc<str>,
    pub rp_id: Arc<str>,
}

impl AppState {
    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }

    pub fn now(&self) -> i64 {
        self.clock.unix()
    }

    /// A link to a path of this gateway, for people (printed, e-mailed, shown).
    pub fn link(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.config.server.public_url.trim_end_matches('/'),
            path
        )
    }
}
