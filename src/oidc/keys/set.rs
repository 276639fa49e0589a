//! The provider's key set: one active key per algorithm plus retired keys that still verify.
//!
//! [`KeySet::rotate`] makes new active keys and keeps the old ones until `now + overlap`,
//! where `overlap` must be at least the longest token lifetime
//! ([`crate::oidc::tokens::TokenSettings::min_rotation_overlap`]). A retired key still
//! appears in [`KeySet::jwks`] until [`KeySet::prune`] removes it, but verification refuses
//! it once its `not_after` has passed.
//!
//! [`KeySet::to_stored`] gives the whole set as JSON with every private key as PKCS#8
//! (base64). **That JSON is a secret**: it goes into the database `settings` table or a
//! Kubernetes Secret, never into logs, and it comes back with [`KeySet::from_stored`].

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::{Algorithm, Jwks, KeyError, SigningKey};

/// The version of the stored key-set format.
pub const STORED_FORMAT_VERSION: u32 = 1;

#[derive(Clone)]
struct Entry {
    key: Arc<SigningKey>,
    /// `None` for the active key of its algorithm; otherwise the end of verification.
    not_after: Option<OffsetDateTime>,
}

/// The provider's signing keys: one active key per algorithm, plus retired keys that
/// still verify until their `not_after`. Cloning is cheap (keys are shared).
#[derive(Clone, Default)]
pub struct KeySet {
    entries: Vec<Entry>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| (&e.key.kid, e.key.alg, e.not_after)),
            )
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKeySet {
    version: u32,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    kid: String,
    alg: Algorithm,
    /// Unix seconds.
    created_at: i64,
    /// Unix seconds; absent for an active key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<i64>,
    /// Standard base64 of the PKCS#8 DER private key.
    private_key_pkcs8: String,
}

impl KeySet {
    /// A new set with one freshly generated active key per algorithm in `algorithms`.
    pub fn generate(algorithms: &[Algorithm], now: OffsetDateTime) -> Result<KeySet, KeyError> {
        let mut set = KeySet::default();
        for &alg in algorithms {
            set.ensure_algorithm(alg, now)?;
        }
        Ok(set)
    }

    /// Makes sure there is an active key for `alg`, generating one when there is none.
    /// Returns whether a key was added.
    pub fn ensure_algorithm(
        &mut self,
        alg: Algorithm,
        now: OffsetDateTime,
    ) -> Result<bool, KeyError> {
        if self.active(alg).is_some() {
            return Ok(false);
        }
        let key = SigningKey::generate(alg, now)?;
        self.insert(key, None)?;
        Ok(true)
    }

    /// Adds a key: active when `not_after` is `None`, otherwise retired until then.
    /// Refuses a second active key for an algorithm and a duplicate `kid`.
    pub fn insert(
        &mut self,
        key: SigningKey,
        not_after: Option<OffsetDateTime>,
    ) -> Result<(), KeyError> {
        if self.entries.iter().any(|e| e.key.kid == key.kid) {
            return Err(KeyError::Invalid {
                kid: key.kid.clone(),
                reason: "the key is already in the set".into(),
            });
        }
        if not_after.is_none() && self.active(key.alg).is_some() {
            return Err(KeyError::Invalid {
                kid: key.kid.clone(),
                reason: format!("there is already an active {} key", key.alg),
            });
        }
        self.entries.push(Entry {
            key: Arc::new(key),
            not_after,
        });
        self.sort();
        Ok(())
    }

    /// Active keys first (by algorithm), then retired keys, newest first.
    fn sort(&mut self) {
        self.entries.sort_by(|a, b| {
            (
                a.not_after.is_some(),
                a.key.alg,
                std::cmp::Reverse(a.key.created_at),
            )
                .cmp(&(
                    b.not_after.is_some(),
                    b.key.alg,
                    std::cmp::Reverse(b.key.created_at),
                ))
        });
    }

    /// The key that signs new tokens for `alg`.
    pub fn active(&self, alg: Algorithm) -> Option<&Arc<SigningKey>> {
        self.entries
            .iter()
            .find(|e| e.not_after.is_none() && e.key.alg == alg)
            .map(|e| &e.key)
    }

    /// The key with this `kid` if it may still verify at `now` (active, or retired with
    /// `not_after` not yet passed).
    pub fn verification_key(&self, kid: &str, now: OffsetDateTime) -> Option<&Arc<SigningKey>> {
        self.entries
            .iter()
            .find(|e| e.key.kid == kid)
            .filter(|e| e.not_after.is_none_or(|end| now <= end))
            .map(|e| &e.key)
    }

    /// Every key held, with its `not_after` (`None` = active).
    pub fn keys(&self) -> impl Iterator<Item = (&Arc<SigningKey>, Option<OffsetDateTime>)> {
        self.entries.iter().map(|e| (&e.key, e.not_after))
    }

    /// Replaces every active key with a new one of the same algorithm; each old key keeps
    /// verifying until `now + overlap` (negative overlaps count as zero). Returns the new
    /// keys' IDs.
    pub fn rotate(
        &mut self,
        now: OffsetDateTime,
        overlap: Duration,
    ) -> Result<Vec<String>, KeyError> {
        let algs: Vec<Algorithm> = self
            .entries
            .iter()
            .filter(|e| e.not_after.is_none())
            .map(|e| e.key.alg)
            .collect();
        let mut kids = Vec::new();
        for alg in algs {
            kids.push(self.rotate_algorithm(alg, now, overlap)?);
        }
        Ok(kids)
    }

    /// [`KeySet::rotate`] for one algorithm (also adds a key when there was none).
    pub fn rotate_algorithm(
        &mut self,
        alg: Algorithm,
        now: OffsetDateTime,
        overlap: Duration,
    ) -> Result<String, KeyError> {
        let new = SigningKey::generate(alg, now)?;
        let kid = new.kid.clone();
        let end = now + overlap.max(Duration::ZERO);
        for e in &mut self.entries {
            if e.not_after.is_none() && e.key.alg == alg {
                e.not_after = Some(end);
            }
        }
        self.insert(new, None)?;
        Ok(kid)
    }

    /// Drops retired keys whose `not_after` has passed; returns how many were dropped.
    pub fn prune(&mut self, now: OffsetDateTime) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|e| e.not_after.is_none_or(|end| now <= end));
        before - self.entries.len()
    }

    /// The public JWKS: every key held (active first), public parts only.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.entries.iter().map(|e| e.key.jwk.clone()).collect(),
        }
    }

    /// The stored form: JSON with every private key as base64 PKCS#8. A secret: keep it
    /// in the `settings` table or a Secret, never in logs.
    pub fn to_stored(&self) -> SecretString {
        let stored = StoredKeySet {
            version: STORED_FORMAT_VERSION,
            keys: self
                .entries
                .iter()
                .map(|e| StoredKey {
                    kid: e.key.kid.clone(),
                    alg: e.key.alg,
                    created_at: e.key.created_at.unix_timestamp(),
                    not_after: e.not_after.map(OffsetDateTime::unix_timestamp),
                    private_key_pkcs8: STANDARD.encode(e.key.pkcs8.expose_secret()),
                })
                .collect(),
        };
        // Serialising plain strings and integers cannot fail.
        SecretString::from(serde_json::to_string(&stored).unwrap_or_default())
    }

    /// Loads [`KeySet::to_stored`]'s output, parsing every key once. Each stored `kid` must
    /// match the key's thumbprint.
    pub fn from_stored(json: &str) -> Result<KeySet, KeyError> {
        let stored: StoredKeySet =
            serde_json::from_str(json).map_err(|e| KeyError::Malformed(e.to_string()))?;
        if stored.version != STORED_FORMAT_VERSION {
            return Err(KeyError::Malformed(format!(
                "format version {} is not supported (expected {STORED_FORMAT_VERSION})",
                stored.version
            )));
        }
        let time = |t: i64, kid: &str| {
            OffsetDateTime::from_unix_timestamp(t).map_err(|_| KeyError::Invalid {
                kid: kid.to_owned(),
                reason: "timestamp out of range".into(),
            })
        };
        let mut set = KeySet::default();
        for k in stored.keys {
            let der = STANDARD
                .decode(k.private_key_pkcs8.as_bytes())
                .map_err(|_| KeyError::Invalid {
                    kid: k.kid.clone(),
                    reason: "private_key_pkcs8 is not base64".into(),
                })?;
            let der = SecretSlice::from(der);
            let key =
                SigningKey::from_pkcs8(k.alg, der.expose_secret(), time(k.created_at, &k.kid)?)
                    .map_err(|e| KeyError::Invalid {
                        kid: k.kid.clone(),
                        reason: match e {
                            KeyError::Invalid { reason, .. } => reason,
                            other => other.to_string(),
                        },
                    })?;
            if key.kid != k.kid {
                return Err(KeyError::Invalid {
                    kid: k.kid,
                    reason: "the kid does not match the key's thumbprint".into(),
                });
            }
            let not_after = k.not_after.map(|t| time(t, &k.kid)).transpose()?;
            set.insert(key, not_after)?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::keys::SigningKey;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn stored_form_round_trips_and_keeps_kids() {
        let mut set = KeySet::generate(&[Algorithm::Es256], t(0)).unwrap();
        set.rotate(t(10), Duration::minutes(30)).unwrap();
        let stored = set.to_stored();
        let back = KeySet::from_stored(stored.expose_secret()).unwrap();
        let kids = |s: &KeySet| {
            s.keys()
                .map(|(k, na)| (k.kid().to_owned(), na))
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(&set), kids(&back));
    }

    #[test]
    fn malformed_stored_sets_are_errors() {
        for bad in [
            "",
            "{}",
            r#"{"version":2,"keys":[]}"#,
            r#"{"version":1,"keys":[{"kid":"x","alg":"ES256","created_at":0,"private_key_pkcs8":"!!"}]}"#,
            r#"{"version":1,"keys":[{"kid":"x","alg":"ES256","created_at":0,"private_key_pkcs8":"AAAA"}]}"#,
            r#"{"version":1,"keys":[{"kid":"x","alg":"HS256","created_at":0,"private_key_pkcs8":"AAAA"}]}"#,
        ] {
            assert!(KeySet::from_stored(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stored_kid_must_match_the_key() {
        let set = KeySet::generate(&[Algorithm::Es256], t(0)).unwrap();
        let stored = set.to_stored();
        let kid = set.active(Algorithm::Es256).unwrap().kid().to_owned();
        let edited = stored.expose_secret().replace(&kid, "someone-else");
        assert!(matches!(
            KeySet::from_stored(&edited),
            Err(KeyError::Invalid { .. })
        ));
    }

    #[test]
    fn rotation_keeps_the_old_key_until_the_overlap_ends() {
        let mut set = KeySet::generate(&[Algorithm::Es256], t(0)).unwrap();
        let old = set.active(Algorithm::Es256).unwrap().kid().to_owned();
        let new = set.rotate(t(100), Duration::seconds(600)).unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(set.active(Algorithm::Es256).unwrap().kid(), new[0]);
        assert!(set.verification_key(&old, t(700)).is_some());
        assert!(set.verification_key(&old, t(701)).is_none());
        assert_eq!(set.jwks().keys.len(), 2);
        assert_eq!(set.prune(t(701)), 1);
        assert_eq!(set.jwks().keys.len(), 1);
        assert_eq!(set.jwks().keys[0].kid, new[0]);
    }

    #[test]
    fn a_second_active_key_for_one_algorithm_is_refused() {
        let mut set = KeySet::generate(&[Algorithm::Es256], t(0)).unwrap();
        let other = SigningKey::generate(Algorithm::Es256, t(1)).unwrap();
        assert!(set.insert(other, None).is_err());
        assert!(!set.ensure_algorithm(Algorithm::Es256, t(2)).unwrap());
    }
}
