//! Ceremony state: what `begin` leaves for `finish`, bound to the browser session,
//! short-lived and single-use (read-and-delete).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::service::session::Session;
use crate::state::AppState;

/// Stores `pending` for `session`'s `kind` of ceremony (`reg`, `auth`) for `ttl_secs`.
pub async fn remember<T: Serialize>(
    state: &AppState,
    kind: &str,
    session: &Session,
    pending: &T,
    ttl_secs: u64,
) -> Result<()> {
    let body = serde_json::to_vec(pending).map_err(|e| Error::Internal(e.to_string()))?;
    state
        .ephemeral
        .set_ex(&key(kind, session), &body, Duration::from_secs(ttl_secs))
        .await?;
    Ok(())
}

/// Takes (and so ends) what `begin` left; `None` when there is none or it is unreadable.
pub async fn take<T: DeserializeOwned>(
    state: &AppState,
    kind: &str,
    session: &Session,
) -> Result<Option<T>> {
    Ok(state
        .ephemeral
        .take(&key(kind, session))
        .await?
        .and_then(|raw| serde_json::from_slice(&raw).ok()))
}

fn key(kind: &str, session: &Session) -> String {
    format!("{kind}:{}", session.data.id)
}
