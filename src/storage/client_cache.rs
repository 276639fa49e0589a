//! OpenID Connect clients as read a moment ago, so the protocol endpoints do not ask the
//! database for the same row on every request.
//!
//! Every code exchange, refresh, introspection and authorization request looks up its
//! client; under load that is the one row asked for thousands of times a second. A row
//! is kept for [`TTL`] after it was read. A change made through this process (created,
//! edited, secret rotated, disabled) forgets every kept row at once
//! ([`super::Storage::forget_oidc_clients`]), and a lookup that was on its way while the
//! change committed does not keep what it read (the generation moved on). A change made by
//! another replica, or by the CLI against the same database, is seen within [`TTL`]
//! (docs/decisions.md). Rows that were not found are not kept: a client registered
//! elsewhere is usable at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::oidc::OidcClient;

/// How long a row read from the database is used without reading it again.
pub(super) const TTL: Duration = Duration::from_secs(1);

/// Most rows kept (clients are few; past this the expired ones go, or all of them).
const MAX_ROWS: usize = 4096;

struct Kept {
    read_at: Instant,
    client: OidcClient,
}

#[derive(Default)]
struct Inner {
    /// Moves on with every change made through this process.
    generation: u64,
    rows: HashMap<String, Kept>,
}

pub(super) struct ClientCache {
    inner: Mutex<Inner>,
    ttl: Duration,
}

/// Where a lookup stands: the row, or the generation to read it under.
pub(super) enum Cached {
    Hit(Box<OidcClient>),
    Miss(u64),
}

impl ClientCache {
    pub(super) fn new() -> Self {
        ClientCache::with_ttl(TTL)
    }

    pub(super) fn with_ttl(ttl: Duration) -> Self {
        ClientCache {
            inner: Mutex::default(),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The row kept for `client_id`, if it was read less than [`TTL`] ago.
    pub(super) fn get(&self, client_id: &str, now: Instant) -> Cached {
        let inner = self.lock();
        match inner.rows.get(client_id) {
            Some(kept) if now.saturating_duration_since(kept.read_at) < self.ttl => {
                Cached::Hit(Box::new(kept.client.clone()))
            }
            _ => Cached::Miss(inner.generation),
        }
    }

    /// Keeps `client`, read at `read_at` under `generation`, unless a change was made
    /// since (then what was read may predate it).
    pub(super) fn keep(&self, generation: u64, client: &OidcClient, read_at: Instant) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.rows.len() >= MAX_ROWS {
            let ttl = self.ttl;
            inner
                .rows
                .retain(|_, kept| read_at.saturating_duration_since(kept.read_at) < ttl);
            if inner.rows.len() >= MAX_ROWS {
                inner.rows.clear();
            }
        }
        inner.rows.insert(
            client.client_id.clone(),
            Kept {
                read_at,
                client: client.clone(),
            },
        );
    }

    /// Forgets every row: a client was changed through this process.
    pub(super) fn forget_all(&self) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.rows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, name: &str) -> OidcClient {
        OidcClient {
            client_id: id.into(),
            name: name.into(),
            secret_sha256: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            allowed_scopes: Vec::new(),
            id_token_alg: "ES256".into(),
            workspace_id: None,
            required_acr: Vec::new(),
            source: "admin".into(),
            created_at: 0,
            disabled_at: None,
            jwks: None,
        }
    }

    fn hit(cache: &ClientCache, id: &str, now: Instant) -> Option<String> {
        match cache.get(id, now) {
            Cached::Hit(c) => Some(c.name),
            Cached::Miss(_) => None,
        }
    }

    #[test]
    fn a_row_is_kept_for_its_time_to_live_only() {
        let cache = ClientCache::with_ttl(Duration::from_secs(1));
        let t0 = Instant::now();
        let Cached::Miss(generation) = cache.get("app", t0) else {
            panic!("nothing kept yet")
        };
        cache.keep(generation, &client("app", "App"), t0);
        assert_eq!(hit(&cache, "app", t0), Some("App".into()));
        assert_eq!(
            hit(&cache, "app", t0 + Duration::from_millis(999)),
            Some("App".into())
        );
        assert_eq!(hit(&cache, "app", t0 + Duration::from_secs(1)), None);
        assert_eq!(hit(&cache, "other", t0), None);
    }

    #[test]
    fn a_change_forgets_every_row_and_a_read_from_before_it_is_not_kept() {
        let cache = ClientCache::with_ttl(Duration::from_secs(60));
        let t0 = Instant::now();
        let Cached::Miss(before) = cache.get("app", t0) else {
            panic!("nothing kept yet")
        };
        cache.keep(before, &client("app", "Old"), t0);
        // A lookup starts, a change commits, the lookup ends with the old row.
        cache.forget_all();
        assert_eq!(hit(&cache, "app", t0), None);
        cache.keep(before, &client("app", "Old"), t0);
        assert_eq!(
            hit(&cache, "app", t0),
            None,
            "a stale read must not be kept"
        );
        let Cached::Miss(after) = cache.get("app", t0) else {
            panic!("forgotten")
        };
        cache.keep(after, &client("app", "New"), t0);
        assert_eq!(hit(&cache, "app", t0), Some("New".into()));
    }

    #[test]
    fn the_rows_kept_stay_bounded() {
        let cache = ClientCache::with_ttl(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_ROWS + 10) {
            cache.keep(0, &client(&format!("c{i}"), "C"), t0);
        }
        assert!(cache.lock().rows.len() <= MAX_ROWS);
    }
}
