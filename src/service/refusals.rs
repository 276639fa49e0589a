//! Refusals anyone can cause, recorded in the audit chain without letting a flood fill it.
//!
//! A refusal that proves nothing about any account (no live challenge, an unknown key, a
//! malformed answer, a rate limit, a failed CSRF check) is recorded like any other, up to
//! `rate_limit.refusal_events_per_minute` events of one kind (the event's action) from one
//! client address (IPv6: one /64) in a clock minute, counted in the shared store so the
//! limit holds across replicas. The first refusal past it writes one `audit.throttled`
//! event instead (exactly one per kind, address and minute, whichever replica sees it);
//! the rest of that minute are counted and logged, not recorded. A new minute records
//! again.

use std::time::Duration;

use crate::audit::{NewAuditEvent, Outcome};
use crate::ephemeral::{Counted, Then};
use crate::error::{Error, Result};
use crate::service::{limits, Actor};
use crate::state::AppState;
use crate::storage::StorageError;

/// How long the mark that the summary was written lives: the minute, and a second more.
const MARK_TTL: Duration = Duration::from_secs(61);

/// Whether `err` refuses the caller (a 4xx: something they sent or did) rather than
/// reporting a failure of ours (storage, shared store, bug), which is logged, not audited.
pub fn is_refusal(err: &Error) -> bool {
    match err {
        Error::Storage(e) => matches!(e, StorageError::Conflict(_) | StorageError::NotFound),
        Error::Ephemeral(_) | Error::Internal(_) => false,
        _ => true,
    }
}

/// Records `event`, a refusal of `actor` that anyone could cause, within the limit (see
/// the module's documentation). Past it, `Ok(())` all the same: the refusal stands.
pub async fn record(state: &AppState, actor: &Actor, event: NewAuditEvent) -> Result<()> {
    let who = actor.ip.as_deref().unwrap_or(actor.id.as_str());
    let max = state.config.rate_limit.refusal_events_per_minute;
    let limit = limits::limit(state, &format!("audit:{}", event.action), who, max);
    let mark = format!("{}:summary", limit.key);
    match state.ephemeral.counted(&[limit], Then::Nothing).await? {
        Counted::Done(_) => Ok(crate::service::audit(state, event).await?),
        Counted::Limited => {
            if state.ephemeral.set_nx_ex(&mark, b"1", MARK_TTL).await? {
                let minute = state.now() / 60 * 60;
                let summary = NewAuditEvent {
                    actor: actor.id.clone(),
                    action: "audit.throttled".into(),
                    subject: actor.id.clone(),
                    outcome: Outcome::Refused,
                    reason: Some(event.action.clone()),
                    details: serde_json::json!({
                        "action": event.action,
                        "limit": max,
                        "minute": minute,
                        "until": minute + 60,
                        "ip": actor.ip,
                        "message": format!(
                            "more than {max} {} events from this address this minute; the rest of the minute is logged, not recorded",
                            event.action
                        ),
                    }),
                };
                Ok(crate::service::audit(state, summary).await?)
            } else {
                tracing::info!(
                    audit.action = %event.action,
                    error.code = event.reason.as_deref().unwrap_or("-"),
                    client.ip = actor.ip.as_deref().unwrap_or("-"),
                    "refusal not recorded: past the audit limit for this address and minute"
                );
                Ok(())
            }
        }
    }
}

/// A refusal event: `action` (e.g. `signin.refused`) for `err`, on `subject`, with
/// `details` and the caller's address added.
pub fn event(
    actor: &Actor,
    action: &str,
    subject: &str,
    err: &Error,
    mut details: serde_json::Value,
) -> NewAuditEvent {
    if let Some(map) = details.as_object_mut() {
        map.insert("message".into(), err.to_string().into());
        map.insert("ip".into(), serde_json::json!(actor.ip));
    }
    NewAuditEvent {
        actor: actor.id.clone(),
        action: action.into(),
        subject: subject.into(),
        outcome: Outcome::Refused,
        reason: Some(err.code().to_string()),
        details,
    }
}
