//! The in-process store: one mutex over a map of entries with expiry instants.
//!
//! Expired entries are invisible at once and removed lazily: each read removes the
//! expired entry it meets, and writes sweep the whole map when it has doubled since
//! the last sweep (amortised constant cost per write, no background task).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{split_marks, ttl_millis, Counted, EphemeralError, EphemeralStore, Limit, Then};

const MIN_SWEEP_AT: usize = 1024;

struct Entry {
    value: Vec<u8>,
    expires_at: Instant,
}

struct Inner {
    entries: HashMap<String, Entry>,
    /// Sweep expired entries when the map reaches this size.
    sweep_at: usize,
}

impl Inner {
    /// The live entry at `key`, removing it if it has expired.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.expires_at <= now)
        {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    /// Takes the live entry at `key`.
    fn take(&mut self, key: &str, now: Instant) -> Option<Vec<u8>> {
        match self.entries.remove(key) {
            Some(entry) if entry.expires_at > now => Some(entry.value),
            _ => None,
        }
    }

    /// Adds one to the counter at `key`, made to expire at `expires_at` when new.
    fn count(
        &mut self,
        key: &str,
        expires_at: Instant,
        now: Instant,
    ) -> Result<u64, EphemeralError> {
        if let Some(entry) = self.live(key, now) {
            let count = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| EphemeralError::Backend(format!("{key:?} is not a counter")))?;
            let count = count.saturating_add(1);
            entry.value = count.to_string().into_bytes();
            return Ok(count);
        }
        let entry = Entry {
            value: b"1".to_vec(),
            expires_at,
        };
        self.insert(key, entry, now);
        Ok(1)
    }

    fn insert(&mut self, key: &str, entry: Entry, now: Instant) {
        if self.entries.len() >= self.sweep_at {
            self.entries.retain(|_, entry| entry.expires_at > now);
            self.sweep_at = (self.entries.len() * 2).max(MIN_SWEEP_AT);
        }
        self.entries.insert(key.to_owned(), entry);
    }
}

/// In-process [`EphemeralStore`]: the embedded default. State lives and dies with the
/// process, so it suits a single replica only.
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                sweep_at: MIN_SWEEP_AT,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave an entry half-written (each
        // operation is a single map call), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of entries held, expired ones not yet swept included (for tests).
    pub fn len_including_expired(&self) -> usize {
        self.lock().entries.len()
    }
}

fn expiry(now: Instant, ttl: Duration) -> Result<Instant, EphemeralError> {
    let ttl = Duration::from_millis(ttl_millis(ttl)?);
    now.checked_add(ttl).ok_or(EphemeralError::InvalidTtl)
}

#[async_trait::async_trait]
impl EphemeralStore for MemoryStore {
    async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError> {
        let now = Instant::now();
        let expires_at = expiry(now, ttl)?;
        let entry = Entry {
            value: value.to_vec(),
            expires_at,
        };
        self.lock().insert(key, entry, now);
        Ok(())
    }

    async fn set_nx_ex(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, EphemeralError> {
        let now = Instant::now();
        let expires_at = expiry(now, ttl)?;
        let mut inner = self.lock();
        if inner.live(key, now).is_some() {
            return Ok(false);
        }
        let entry = Entry {
            value: value.to_vec(),
            expires_at,
        };
        inner.insert(key, entry, now);
        Ok(true)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let now = Instant::now();
        Ok(self.lock().live(key, now).map(|entry| entry.value.clone()))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        Ok(self.lock().take(key, Instant::now()))
    }

    async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        self.lock().entries.remove(key);
        Ok(())
    }

    async fn counted(&self, limits: &[Limit], then: Then<'_>) -> Result<Counted, EphemeralError> {
        // Every time to live is checked before anything changes.
        let now = Instant::now();
        let windows = limits
            .iter()
            .map(|limit| expiry(now, limit.window))
            .collect::<Result<Vec<_>, _>>()?;
        let expiries = match then {
            Then::Write { set, .. } => set.iter().map(|e| expiry(now, e.ttl)).collect(),
            Then::TakeMarking { marks, .. } => {
                marks.iter().map(|(_, ttl)| expiry(now, *ttl)).collect()
            }
            Then::Nothing | Then::Take(_) => Ok(Vec::new()),
        }?;
        let mut inner = self.lock();
        let mut limited = false;
        for (limit, expires_at) in limits.iter().zip(windows) {
            limited |= inner.count(&limit.key, expires_at, now)? > limit.max;
        }
        if limited {
            return Ok(Counted::Limited);
        }
        let taken = match then {
            Then::Nothing => None,
            Then::Write { delete, set } => {
                for key in delete {
                    inner.entries.remove(*key);
                }
                for (e, expires_at) in set.iter().zip(expiries) {
                    let entry = Entry {
                        value: e.value.to_vec(),
                        expires_at,
                    };
                    inner.insert(e.key, entry, now);
                }
                None
            }
            Then::Take(key) => inner.take(key, now),
            Then::TakeMarking { key, marks } => {
                let value = inner.take(key, now);
                // A value without as many marks is taken and reported absent.
                match value.as_deref().and_then(|v| split_marks(v, marks.len())) {
                    None => None,
                    Some((lines, body)) => {
                        for ((mark, _), (line, expires_at)) in
                            marks.iter().zip(lines.into_iter().zip(expiries))
                        {
                            let entry = Entry {
                                value: line.to_vec(),
                                expires_at,
                            };
                            inner.insert(mark, entry, now);
                        }
                        Some(body.to_vec())
                    }
                }
            }
        };
        Ok(Counted::Done(taken))
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expired_entries_are_swept_on_writes() {
        let store = MemoryStore::new();
        for i in 0..MIN_SWEEP_AT {
            store
                .set_ex(&format!("old{i}"), b"x", Duration::from_millis(1))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        store
            .set_ex("new", b"y", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(store.len_including_expired(), 1);
        assert_eq!(store.get("new").await.unwrap(), Some(b"y".to_vec()));
    }
}
