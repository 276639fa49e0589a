//! Ceremony state: what `begin` leaves for `finish`, bound to the browser session,
//! short-lived and single-use (read-and-delete).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ephemeral::{Entry, Limit, Then};
use crate::error::{Error, Result};
use crate::service::session::{self, Session};
use crate::service::{limits, tokens};
use crate::state::AppState;

/// The browser session a ceremony runs in: the browser's own, or a new anonymous one
/// (a browser's first ceremony) that is stored with the ceremony's challenge and counts
/// against the `session` limit of the address that asked for it.
pub struct Ceremony {
    pub session: Session,
    /// For a new session: the address that asked for it.
    new_from: Option<String>,
}

impl Ceremony {
    /// A ceremony in the browser's stored session.
    pub fn within(session: Session) -> Ceremony {
        Ceremony {
            session,
            new_from: None,
        }
    }

    /// A ceremony in a new anonymous session for `ip`, stored when the ceremony is.
    pub fn in_new_session(state: &AppState, csrf: &str, ip: &str) -> Ceremony {
        Ceremony {
            session: session::anonymous(state, csrf),
            new_from: Some(ip.to_owned()),
        }
    }

    /// Whether the browser needs the new session's cookie.
    pub fn is_new(&self) -> bool {
        self.new_from.is_some()
    }
}

/// Stores `pending` for the ceremony's `kind` (`reg`, `auth`) for `ttl_secs`, with a new
/// session if the ceremony has one, in one step with counting `limits` (and the new
/// session's): past a limit, nothing is stored.
pub async fn remember<T: Serialize>(
    state: &AppState,
    kind: &str,
    ceremony: &Ceremony,
    pending: &T,
    ttl_secs: u64,
    mut limits: Vec<Limit>,
) -> Result<()> {
    let body = serde_json::to_vec(pending).map_err(|e| Error::Internal(e.to_string()))?;
    let key = key(kind, &ceremony.session.token);
    let challenge = Entry {
        key: &key,
        value: &body,
        ttl: Duration::from_secs(ttl_secs),
    };
    let stored = match &ceremony.new_from {
        Some(ip) => {
            limits.push(limits::ceremony(state, "session", ip));
            Some(session::Stored::of(state, &ceremony.session)?)
        }
        None => None,
    };
    let set = match &stored {
        Some(s) => vec![s.entry(), challenge],
        None => vec![challenge],
    };
    let write = Then::Write {
        delete: &[],
        set: &set,
    };
    limits::counted(state, &limits, write).await?;
    Ok(())
}

/// Takes (and so ends) what `begin` left for the session whose cookie value is
/// `session_token`, in one step with counting `limits` (past one, nothing is taken);
/// `None` when there is none or it is unreadable. Needs only the cookie, not the loaded
/// session, so it can run alongside `session::load`.
pub async fn take<T: DeserializeOwned>(
    state: &AppState,
    kind: &str,
    session_token: &str,
    limits: &[Limit],
) -> Result<Option<T>> {
    let key = key(kind, session_token);
    Ok(limits::counted(state, limits, Then::Take(&key))
        .await?
        .and_then(|raw| serde_json::from_slice(&raw).ok()))
}

/// Under the digest of the session's cookie value, as the session itself: bound to the
/// browser that asked, and never the cookie value itself.
fn key(kind: &str, session_token: &str) -> String {
    format!("{kind}:{}", tokens::digest_hex(session_token.as_bytes()))
}
