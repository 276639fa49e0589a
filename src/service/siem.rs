//! Streaming the audit chain to a SIEM (`[audit] siem_webhook_url`).
//!
//! A background task follows the chain by seq: every `siem_poll_ms` it reads the events
//! committed after the last one it saw and POSTs each, in order, as JSON (see [`body`]),
//! through the shared webhook sender (bounded timeout, retries with backoff, optional HMAC
//! signature). Nothing in the request path waits for it: an action only appends its event,
//! and a rolled-back event is never seen.
//!
//! - Several replicas: each event is claimed in the ephemeral store (`siem:seq:<n>`,
//!   `SET NX`, kept an hour) before it is sent, so one replica sends it.
//! - Restarts: the last seq seen is kept in the ephemeral store (`siem:cursor`) and the
//!   stream resumes there (at most [`MAX_BACKLOG`] events back); with no cursor it starts
//!   at the head.
//! - A receiver that keeps failing: an event that fails every attempt is skipped (logged
//!   with its seq); the first skip of an outage is audited as `siem.failed` (seq, host,
//!   attempts, reason; never the URL), and until a delivery succeeds again each event gets
//!   one attempt, so the stream cannot fall ever further behind. Each body carries `seq`,
//!   `prev_hash` and `hash`, so the receiver sees any gap and can fill it from an export.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::json;

use super::webhook::{Retry, WebhookSender};
use crate::audit::{AuditRecord, NewAuditEvent, Outcome};
use crate::config::ConfigError;
use crate::state::AppState;

/// The `X-Keygate-Event` and `type` of each body.
pub const AUDIT_EVENT: &str = "audit.event";
/// Events read per poll.
const BATCH: i64 = 200;
/// How far back a restart resumes.
pub const MAX_BACKLOG: i64 = 10_000;
const CURSOR_KEY: &str = "siem:cursor";
const CURSOR_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Replicas reach the same seq within a few polls of each other; a restarted one resumes
/// from the shared cursor. An hour of claims covers both.
const CLAIM_TTL: Duration = Duration::from_secs(3600);

/// The JSON each event is sent as: the event exactly as stored and hashed (as in an
/// export line: `details` is the stored JSON text), plus the details parsed and the time
/// in RFC 3339 for the receiver's convenience.
pub fn body(organisation: &str, record: &AuditRecord) -> serde_json::Value {
    let time = time::OffsetDateTime::from_unix_timestamp(record.at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    json!({
        "type": AUDIT_EVENT,
        "organisation": organisation,
        "time": time,
        "event": record,
        "details": record.details_value(),
    })
}

/// Starts streaming when `[audit] siem_webhook_url` is set; `Ok(false)` when it is not.
/// Must run inside the Tokio runtime that will carry the deliveries.
pub fn spawn(state: &AppState) -> Result<bool, ConfigError> {
    let cfg = &state.config.audit;
    let Some(url) = &cfg.siem_webhook_url else {
        return Ok(false);
    };
    let secret = cfg.siem_webhook_secret()?;
    let sender = Arc::new(WebhookSender::new(
        url.clone(),
        secret,
        Duration::from_millis(cfg.siem_timeout_ms),
        state.config.outbound.policy()?,
    ));
    let retry = Retry {
        attempts: cfg.siem_attempts,
        backoff: Duration::from_millis(cfg.siem_backoff_ms),
    };
    let poll = Duration::from_millis(cfg.siem_poll_ms);
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        ConfigError::Invalid("audit streaming needs a running Tokio runtime".into())
    })?;
    runtime.spawn(follow(state.clone(), sender, retry, poll));
    Ok(true)
}

/// Where to resume: the stored cursor (if not too far back), else the head.
async fn start_at(state: &AppState) -> i64 {
    let head = loop {
        match state.storage.run(|s| s.audit_head()).await {
            Ok(h) => break h.seq,
            Err(e) => {
                tracing::warn!(error = %e, "audit streaming waits for the database");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let stored = state
        .ephemeral
        .get(CURSOR_KEY)
        .await
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok());
    match stored {
        Some(seq) if seq <= head && seq >= head - MAX_BACKLOG => seq,
        _ => head,
    }
}

/// One replica claims each event; a store outage sends rather than drops. The in-process
/// store means one replica: nothing to claim.
async fn claim(state: &AppState, seq: i64) -> bool {
    if state.config.ephemeral.url.expose_secret() == "memory://" {
        return true;
    }
    state
        .ephemeral
        .set_nx_ex(&format!("siem:seq:{seq}"), b"1", CLAIM_TTL)
        .await
        .unwrap_or(true)
}

async fn follow(state: AppState, sender: Arc<WebhookSender>, retry: Retry, poll: Duration) {
    let mut cursor = start_at(&state).await;
    tracing::info!(
        host = sender.host(),
        from_seq = cursor + 1,
        "audit streaming started"
    );
    let mut failing = false;
    loop {
        tokio::time::sleep(poll).await;
        let after = cursor;
        let page = match state
            .storage
            .run(move |s| s.audit_range(after, i64::MAX, BATCH))
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "audit streaming cannot read the chain");
                continue;
            }
        };
        if page.is_empty() {
            continue;
        }
        for record in &page {
            cursor = record.seq;
            if !claim(&state, record.seq).await {
                continue;
            }
            let bytes = body(&state.config.organisation.name, record)
                .to_string()
                .into_bytes();
            let tries = if failing {
                Retry {
                    attempts: 1,
                    ..retry
                }
            } else {
                retry
            };
            match sender
                .send(tries, state.clock.clone(), AUDIT_EVENT, bytes)
                .await
            {
                Ok(_) => {
                    if failing {
                        tracing::info!(seq = record.seq, "audit streaming delivers again");
                    }
                    failing = false;
                }
                Err((attempts, failed)) => {
                    tracing::warn!(
                        seq = record.seq,
                        attempts,
                        host = sender.host(),
                        reason = %failed.reason,
                        "audit event not delivered to the SIEM"
                    );
                    if !failing {
                        failing = true;
                        let event = NewAuditEvent::new(
                            "system",
                            "siem.failed",
                            format!("audit:{}", record.seq),
                            Outcome::Failure,
                        )
                        .with_reason(failed.reason.clone())
                        .with_details(json!({
                            "seq": record.seq,
                            "host": sender.host(),
                            "attempts": attempts,
                        }));
                        let now = state.now();
                        if let Err(e) = state
                            .storage
                            .run(move |s| s.append_audit(&event, now).map(|_| ()))
                            .await
                        {
                            tracing::error!(error = %e, "cannot audit a failed SIEM delivery");
                        }
                    }
                }
            }
        }
        let _ = state
            .ephemeral
            .set_ex(CURSOR_KEY, cursor.to_string().as_bytes(), CURSOR_TTL)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{link_hash, LinkInput, GENESIS};
    use crate::config::Config;

    #[test]
    fn the_body_carries_the_event_as_hashed() {
        let mut r = AuditRecord {
            seq: 1,
            id: "e1".into(),
            at: 1_767_312_000,
            actor: "cli".into(),
            action: "invitation.created".into(),
            subject: "invitation:1".into(),
            outcome_text: "success".into(),
            reason: None,
            details_json: r#"{"role" : "member"}"#.into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        r.hash = link_hash(&LinkInput::of(&r));
        let b = body("Org", &r);
        assert_eq!(b["type"], "audit.event");
        assert_eq!(b["time"], "2026-01-02T00:00:00Z");
        assert_eq!(b["details"]["role"], "member");
        let back: AuditRecord = serde_json::from_value(b["event"].clone()).unwrap();
        assert_eq!(link_hash(&LinkInput::of(&back)), r.hash);
    }

    #[test]
    fn siem_config_is_off_by_default_and_checked_when_on() {
        let ok = |pairs: &[(&str, &str)]| {
            let env = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>();
            let c = Config::load(None, env)?;
            c.validate()?;
            Ok::<_, ConfigError>(c.audit)
        };
        assert!(Config::default().audit.siem_webhook_url.is_none());
        let on = ok(&[(
            "KEYGATE__AUDIT__SIEM_WEBHOOK_URL",
            "https://siem.example.com/in?token=abc",
        )])
        .unwrap();
        assert!(on.siem_webhook_url.is_some());
        for (pairs, words) in [
            (
                vec![(
                    "KEYGATE__AUDIT__SIEM_WEBHOOK_URL",
                    "http://siem.example.com/",
                )],
                "https",
            ),
            (
                vec![(
                    "KEYGATE__AUDIT__SIEM_WEBHOOK_URL",
                    "ftp://siem.example.com/",
                )],
                "http(s)",
            ),
            (
                vec![("KEYGATE__AUDIT__SIEM_WEBHOOK_SECRET", "0123456789abcdef")],
                "siem_webhook_url is not",
            ),
            (
                vec![
                    ("KEYGATE__AUDIT__SIEM_WEBHOOK_URL", "http://127.0.0.1:9/"),
                    ("KEYGATE__AUDIT__SIEM_WEBHOOK_SECRET", "short"),
                ],
                "16",
            ),
            (
                vec![
                    ("KEYGATE__AUDIT__SIEM_WEBHOOK_URL", "http://127.0.0.1:9/"),
                    ("KEYGATE__AUDIT__SIEM_ATTEMPTS", "0"),
                ],
                "siem_attempts",
            ),
        ] {
            let err = ok(&pairs).unwrap_err().to_string();
            assert!(err.contains(words), "{pairs:?}: {err}");
            assert!(!err.contains("token=abc"));
        }
    }
}
