//! The IdP's signing keys, kept in the database (`settings` key `saml_keys`) so every
//! replica signs with the same key and publishes the same metadata. Each replica keeps the
//! parsed pair and re-reads the stored text every `saml.key_reload_secs`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::saml::keys::{KeyPair, SigningKey, StoredKeys};
use crate::service::Actor;
use crate::state::AppState;
use crate::storage::Storage;

pub const SETTING: &str = "saml_keys";
const COMMON_NAME: &str = "keygate SAML signing";

struct Loaded {
    pair: Arc<KeyPair>,
    stored: String,
}

pub struct KeyCache {
    current: RwLock<Arc<Loaded>>,
    checked_at: AtomicI64,
    reload_secs: i64,
}

fn parse(stored: &str) -> Result<Loaded> {
    let keys: StoredKeys = serde_json::from_str(stored)
        .map_err(|e| Error::Internal(format!("stored SAML keys: {e}")))?;
    let pair = KeyPair::from_stored(&keys).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Loaded {
        pair: Arc::new(pair),
        stored: stored.to_string(),
    })
}

fn generate(now: i64) -> Result<String> {
    let current =
        SigningKey::generate(COMMON_NAME, now).map_err(|e| Error::Internal(e.to_string()))?;
    serde_json::to_string(&StoredKeys {
        current,
        next: None,
    })
    .map_err(|e| Error::Internal(e.to_string()))
}

impl KeyCache {
    /// Loads the stored pair, storing a new one when there is none (first writer wins).
    pub async fn load(storage: &Storage, now: i64, reload_secs: u64) -> Result<Self> {
        let stored = match storage.run(|s| s.get_setting(SETTING)).await? {
            Some(s) => s,
            None => {
                let candidate = tokio::task::spawn_blocking(move || generate(now))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))??;
                storage
                    .run(move |s| s.setting_or_insert(SETTING, &candidate, now))
                    .await?
            }
        };
        Ok(KeyCache {
            current: RwLock::new(Arc::new(parse(&stored)?)),
            checked_at: AtomicI64::new(now),
            reload_secs: reload_secs as i64,
        })
    }

    fn held(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The key pair, re-read when the last check is older than the reload interval.
    pub async fn get(&self, state: &AppState) -> Arc<KeyPair> {
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
        self.held().pair.clone()
    }

    pub async fn reload(&self, state: &AppState) {
        let stored = match state.storage.run(|s| s.get_setting(SETTING)).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error.detail = %e, "cannot reload the SAML signing keys");
                return;
            }
        };
        if stored == self.held().stored {
            return;
        }
        match parse(&stored) {
            Ok(loaded) => {
                match self.current.write() {
                    Ok(mut g) => *g = Arc::new(loaded),
                    Err(p) => *p.into_inner() = Arc::new(loaded),
                }
                tracing::info!("SAML signing keys reloaded");
            }
            Err(e) => {
                tracing::error!(error.detail = %e, "the stored SAML keys do not parse; keeping the keys held")
            }
        }
    }
}

/// What a rotation step did.
#[derive(Debug)]
pub enum Rotation {
    /// A next certificate is now published in metadata; it signs after the next step.
    Staged { fingerprint: String },
    /// The staged key now signs; the old one is gone from metadata.
    Promoted { fingerprint: String },
}

/// One rotation step: stage a next key (published, not yet signing), or, when one is
/// staged, make it the signing key. SP operators re-read metadata between the two steps.
pub async fn rotate(state: &AppState, actor: &Actor) -> Result<Rotation> {
    let now = state.now();
    let fresh = tokio::task::spawn_blocking(move || SigningKey::generate(COMMON_NAME, now))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(e.to_string()))?;
    let actor_id = actor.id.clone();
    let rotation = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let stored = tx.get_setting(SETTING)?.ok_or_else(|| {
                    crate::storage::StorageError::Backend("no SAML keys stored".into())
                })?;
                let mut keys: StoredKeys = serde_json::from_str(&stored)
                    .map_err(|e| crate::storage::StorageError::Backend(e.to_string()))?;
                let (action, staged) = match keys.next.take() {
                    Some(next) => {
                        keys.current = next;
                        ("saml.keys_promoted", false)
                    }
                    None => {
                        keys.next = Some(fresh);
                        ("saml.keys_staged", true)
                    }
                };
                let shown = if staged {
                    keys.next.as_ref().unwrap_or(&keys.current)
                } else {
                    &keys.current
                };
                let fingerprint = SigningKey::from_stored(shown)
                    .map(|k| k.fingerprint)
                    .map_err(|e| crate::storage::StorageError::Backend(e.to_string()))?;
                let text = serde_json::to_string(&keys)
                    .map_err(|e| crate::storage::StorageError::Backend(e.to_string()))?;
                tx.put_setting(SETTING, &text, now)?;
                tx.append_audit(
                    &NewAuditEvent {
                        actor: actor_id.clone(),
                        action: action.into(),
                        subject: "saml:idp".into(),
                        outcome: Outcome::Success,
                        reason: None,
                        details: serde_json::json!({ "fingerprint": fingerprint }),
                    },
                    now,
                )?;
                Ok(if staged {
                    Rotation::Staged { fingerprint }
                } else {
                    Rotation::Promoted { fingerprint }
                })
            })
        })
        .await?;
    state.saml.keys.reload(state).await;
    Ok(rotation)
}
