//! The provider's signing keys, kept in the database (`settings` key `oidc_keys`, the
//! secret stored form of [`KeySet`]) so every replica signs with the same keys.
//!
//! Each replica holds the parsed set behind a lock that is only written on change; readers
//! clone an `Arc`. At most every `oidc.key_reload_secs` (and, rate-limited, when a token
//! fails verification, e.g. signed with a `kid` this replica has not seen yet) a replica
//! reads the stored text again and re-parses it if it changed. Changes are
//! compare-and-swap writes, so two writers never lose each other's keys.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use secrecy::ExposeSecret;
use time::{Duration, OffsetDateTime};

use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::oidc::keys::{Algorithm, KeySet};
use crate::service::Actor;
use crate::state::AppState;
use crate::storage::{Storage, StorageError};

/// The `settings` key of the stored key set.
pub const SETTING: &str = "oidc_keys";

/// Seconds between reloads forced by a failed verification.
const FORCED_RELOAD_SECS: i64 = 5;

/// One parsed key set and what is served from it.
pub struct LoadedKeys {
    pub set: KeySet,
    /// The JWKS document, ready to serve.
    pub jwks: Vec<u8>,
    /// SHA-256 of the stored text it was parsed from.
    stored_digest: String,
}

impl LoadedKeys {
    fn parse(stored: &str) -> Result<LoadedKeys> {
        let set = KeySet::from_stored(stored)
            .map_err(|e| Error::Internal(format!("stored OIDC signing keys: {e}")))?;
        let jwks = serde_json::to_vec(&set.jwks()).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(LoadedKeys {
            set,
            jwks,
            stored_digest: digest(stored),
        })
    }
}

fn digest(stored: &str) -> String {
    crate::service::tokens::digest_hex(stored.as_bytes())
}

/// The replica's copy of the key set.
pub struct KeyCache {
    current: RwLock<Arc<LoadedKeys>>,
    checked_at: AtomicI64,
    forced_at: AtomicI64,
    reload_secs: i64,
}

impl KeyCache {
    /// Loads the stored set, storing a new one (ES256) when there is none: of replicas
    /// starting together, the first writer wins and all use its keys.
    pub async fn load(storage: &Storage, now: OffsetDateTime, reload_secs: u64) -> Result<Self> {
        let candidate = KeySet::generate(&[Algorithm::Es256], now)
            .map_err(|e| Error::Internal(e.to_string()))?
            .to_stored();
        let at = now.unix_timestamp();
        let stored = storage
            .run(move |s| s.setting_or_insert(SETTING, candidate.expose_secret(), at))
            .await?;
        let loaded = LoadedKeys::parse(&stored)?;
        Ok(KeyCache {
            current: RwLock::new(Arc::new(loaded)),
            checked_at: AtomicI64::new(at),
            forced_at: AtomicI64::new(0),
            reload_secs: reload_secs as i64,
        })
    }

    fn current(&self) -> Arc<LoadedKeys> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key set, re-read from the database when the last check is older than
    /// `oidc.key_reload_secs`. A failed reload keeps the keys held (and is logged).
    pub async fn get(&self, state: &AppState) -> Arc<LoadedKeys> {
        let now = state.now();
        let last = self.checked_at.load(Ordering::Relaxed);
        if now - last >= self.reload_secs
            && self
                .checked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.reload(state).await;
        }
        self.current()
    }

    /// Reloads now (at most every few seconds): after a token failed verification, in
    /// case another replica rotated. Returns whether the set changed.
    pub async fn reload_soon(&self, state: &AppState) -> bool {
        let now = state.now();
        let last = self.forced_at.load(Ordering::Relaxed);
        if now - last < FORCED_RELOAD_SECS
            || self
                .forced_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        self.reload(state).await
    }

    /// Re-reads the stored set; `true` when it changed and was swapped in.
    pub async fn reload(&self, state: &AppState) -> bool {
        let stored = match state.storage.run(|s| s.get_setting(SETTING)).await {
            Ok(Some(s)) => s,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error.detail = %e, "cannot reload the OIDC signing keys");
                return false;
            }
        };
        if digest(&stored) == self.current().stored_digest {
            return false;
        }
        match LoadedKeys::parse(&stored) {
            Ok(loaded) => {
                let kids: Vec<String> = loaded
                    .set
                    .keys()
                    .map(|(k, _)| k.kid().to_string())
                    .collect();
                match self.current.write() {
                    Ok(mut g) => *g = Arc::new(loaded),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(loaded),
                }
                tracing::info!(keys.kids = ?kids, "OIDC signing keys reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error.detail = %e, "the stored OIDC signing keys do not parse; keeping the keys held");
                false
            }
        }
    }
}

/// Applies `change` to the stored set with compare-and-swap (retrying when another writer
/// got there first); `change` returns `None` when there is nothing to write. Returns the
/// change's result and, when written, appends `event(result)` in the same transaction.
async fn update<T, F, E>(state: &AppState, change: F, event: E) -> Result<Option<T>>
where
    T: Send + 'static,
    F: Fn(&mut KeySet, OffsetDateTime) -> Result<Option<T>> + Send + Sync + 'static,
    E: Fn(&T) -> NewAuditEvent + Send + Sync + 'static,
{
    let change = Arc::new(change);
    let event = Arc::new(event);
    for _ in 0..5 {
        let now = state.clock.now();
        let old = state
            .storage
            .run(|s| s.get_setting(SETTING))
            .await?
            .ok_or(Error::Internal("no stored OIDC signing keys".into()))?;
        let mut set = KeySet::from_stored(&old)
            .map_err(|e| Error::Internal(format!("stored OIDC signing keys: {e}")))?;
        let change = change.clone();
        // Key generation (RSA above all) is slow: off the async workers.
        let (set, result) =
            tokio::task::spawn_blocking(move || change(&mut set, now).map(|r| (set, r)))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
        let Some(result) = result else {
            return Ok(None);
        };
        let new = set.to_stored();
        let audit = event(&result);
        let at = now.unix_timestamp();
        let written = state
            .storage
            .run(move |s| {
                s.transaction(|tx| {
                    if !tx.replace_setting(SETTING, &old, new.expose_secret(), at)? {
                        return Ok(false);
                    }
                    tx.append_audit(&audit, at)?;
                    Ok(true)
                })
            })
            .await?;
        if written {
            state.oidc.keys.reload(state).await;
            return Ok(Some(result));
        }
    }
    Err(Error::Storage(StorageError::Unavailable(
        "the OIDC key set kept changing under us; try again".into(),
    )))
}

/// What a rotation did.
#[derive(Clone, Debug)]
pub struct Rotated {
    pub new_kids: Vec<String>,
    pub retired_until: OffsetDateTime,
    pub pruned: usize,
}

/// Replaces every active key; the old ones keep verifying for `overlap`, which must be
/// at least the longest token lifetime plus leeway. Keys whose overlap ended are dropped.
/// Audited as `keys.rotated`.
pub async fn rotate(state: &AppState, actor: &Actor, overlap: Option<Duration>) -> Result<Rotated> {
    let min = state.oidc.settings.min_rotation_overlap();
    let overlap = overlap.unwrap_or(min);
    if overlap < min {
        return Err(Error::bad_request(
            "overlap_too_short",
            format!(
                "the overlap must be at least {} seconds (the longest token lifetime plus leeway), or tokens signed just before would stop verifying",
                min.whole_seconds()
            ),
        ));
    }
    let actor = actor.clone();
    let rotated = update(
        state,
        move |set, now| {
            let pruned = set.prune(now);
            let new_kids = set
                .rotate(now, overlap)
                .map_err(|e| Error::Internal(e.to_string()))?;
            Ok(Some(Rotated {
                new_kids,
                retired_until: now + overlap,
                pruned,
            }))
        },
        move |r: &Rotated| NewAuditEvent {
            actor: actor.id.clone(),
            action: "keys.rotated".into(),
            subject: "oidc:keys".into(),
            outcome: Outcome::Success,
            reason: None,
            details: serde_json::json!({
                "new_kids": r.new_kids,
                "retired_until": r.retired_until.unix_timestamp(),
                "pruned": r.pruned,
                "ip": actor.ip,
            }),
        },
    )
    .await?;
    rotated.ok_or_else(|| Error::Internal("rotation wrote nothing".into()))
}

/// Makes sure an active key for `alg` exists (RS256 keys are made only once a client
/// needs them: RSA generation is slow). Audited as `keys.added` when one was made.
pub async fn ensure(state: &AppState, alg: Algorithm) -> Result<()> {
    if state.oidc.keys.get(state).await.set.active(alg).is_some() {
        return Ok(());
    }
    update(
        state,
        move |set, now| {
            if set.active(alg).is_some() {
                return Ok(None);
            }
            set.ensure_algorithm(alg, now)
                .map_err(|e| Error::Internal(e.to_string()))?;
            Ok(set.active(alg).map(|k| k.kid().to_string()))
        },
        move |kid: &String| NewAuditEvent {
            actor: "system".into(),
            action: "keys.added".into(),
            subject: "oidc:keys".into(),
            outcome: Outcome::Success,
            reason: None,
            details: serde_json::json!({ "kid": kid, "alg": alg.as_str() }),
        },
    )
    .await?;
    Ok(())
}
