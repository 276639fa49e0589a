//! A shared store that wraps the real one and misbehaves on purpose, for tests of what
//! keygate does when the shared store fails or something happens between two steps.

use std::sync::Arc;
use std::time::Duration;

use keygate::ephemeral::{Counted, EphemeralError, EphemeralStore, Limit, Then};
use keygate::service::{members, Actor};

/// What the test shared store does differently from the store it wraps.
pub enum Meddling {
    /// Every delete and every counted step fails: a Redis outage in the middle of an
    /// admin action.
    FailWrites,
    /// Every plain write (`set_ex`) fails; everything else works.
    FailSets,
    /// The first signed-in session it is asked to make live waits for `then` before it
    /// lands: something happening in the middle of a sign-in. The session's key is kept in
    /// `landed`.
    BeforeLanding {
        state: Box<keygate::state::AppState>,
        then: Landing,
        landed: std::sync::Mutex<Option<String>>,
    },
}

/// What happens just before a session lands.
pub enum Landing {
    /// The member's key is revoked (its sessions ended and all).
    Revoke { user_id: String, key_id: String },
    /// The database starts refusing new session rows (a trigger raises an error).
    RefuseSessionRows,
}

impl Landing {
    pub async fn happen(&self, state: &keygate::state::AppState) {
        match self {
            Landing::Revoke { user_id, key_id } => {
                let actor = Actor {
                    id: format!("user:{user_id}"),
                    ip: None,
                };
                members::revoke_key(state, &actor, user_id, true, key_id)
                    .await
                    .expect("the revocation");
            }
            Landing::RefuseSessionRows => {
                let sql = match crate::support::db::backend_name() {
                    "postgres" => {
                        "CREATE FUNCTION refuse_sessions() RETURNS trigger LANGUAGE plpgsql AS
                         $$ BEGIN RAISE EXCEPTION 'session rows refused by the test'; END $$;
                         CREATE TRIGGER refuse_sessions BEFORE INSERT ON sessions
                         FOR EACH ROW EXECUTE FUNCTION refuse_sessions();"
                    }
                    _ => {
                        "CREATE TRIGGER refuse_sessions BEFORE INSERT ON sessions BEGIN
                         SELECT RAISE(ABORT, 'session rows refused by the test'); END;"
                    }
                };
                state.storage.debug_execute(sql).expect("the trigger");
            }
        }
    }
}

/// The shared store as it is, except for its [`Meddling`].
pub struct MeddledStore {
    pub inner: Arc<dyn EphemeralStore>,
    pub meddling: Meddling,
}

fn switched_off() -> EphemeralError {
    EphemeralError::Unavailable("switched off by the test".into())
}

#[async_trait::async_trait]
impl EphemeralStore for MeddledStore {
    async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError> {
        match self.meddling {
            Meddling::FailSets => Err(switched_off()),
            _ => self.inner.set_ex(key, value, ttl).await,
        }
    }
    async fn set_nx_ex(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, EphemeralError> {
        self.inner.set_nx_ex(key, value, ttl).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        self.inner.get(key).await
    }
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        self.inner.take(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        match self.meddling {
            Meddling::FailWrites => Err(switched_off()),
            _ => self.inner.delete(key).await,
        }
    }
    async fn counted(&self, limits: &[Limit], then: Then<'_>) -> Result<Counted, EphemeralError> {
        match (&self.meddling, then) {
            (Meddling::FailWrites, _) => return Err(switched_off()),
            (
                Meddling::BeforeLanding {
                    state,
                    then,
                    landed,
                },
                Then::Write { set: [entry], .. },
            ) => {
                let first = landed.lock().unwrap().is_none();
                if first {
                    *landed.lock().unwrap() = Some(entry.key.to_string());
                    then.happen(state).await;
                }
            }
            _ => {}
        }
        self.inner.counted(limits, then).await
    }
    async fn ping(&self) -> Result<(), EphemeralError> {
        self.inner.ping().await
    }
}
