//! The device code grant (RFC 8628 §3.4–3.5): the device polls until the member decided.
//! Answers, in order: `invalid_grant` (unknown, another client's, or already used),
//! `expired_token`, `slow_down` (polled sooner than the interval; it grows by 5 s),
//! `access_denied`, the tokens (the approval is taken once, across replicas), else
//! `authorization_pending`.

use super::{access_entry_ttl, event, issued_rows, to_json, Failure, GrantOwner};
use crate::audit::Outcome;
use crate::ephemeral::Then;
use crate::oidc::device::Polling;
use crate::oidc::tokens::{self, Exchange};
use crate::oidc::OidcError;
use crate::service::limits;
use crate::service::oidc::access_token_key;
use crate::service::oidc::device::{
    approved_key, denied_key, poll_key, request_key, used_key, Approved, DeviceRequest,
};
use crate::state::AppState;
use crate::storage::OidcClient;

pub(super) async fn exchange_device_code(
    state: &AppState,
    client: &OidcClient,
    device_code: &str,
    ip: Option<String>,
) -> Result<Vec<u8>, Failure> {
    let digest = tokens::digest(device_code);
    let unknown =
        || OidcError::InvalidGrant("the device code is unknown or was already used".into());
    let request: Option<DeviceRequest> = state
        .ephemeral
        .get(&request_key(&digest))
        .await?
        .and_then(|raw| serde_json::from_slice(&raw).ok());
    let Some(request) = request.filter(|r| r.client_id == client.client_id) else {
        return Err(unknown().into());
    };
    if state.ephemeral.get(&used_key(&digest)).await?.is_some() {
        return Err(unknown().into());
    }
    let now = state.clock.now();
    let at = now.unix_timestamp();
    if at >= request.expires_at {
        return Err(
            OidcError::ExpiredToken("the device code has expired; start again".into()).into(),
        );
    }
    let left = std::time::Duration::from_secs((request.expires_at - at).max(1) as u64 + 600);
    let mut polling: Polling = state
        .ephemeral
        .get(&poll_key(&digest))
        .await?
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or_else(|| Polling::new(request.interval));
    let too_soon = polling.poll(at);
    let body = serde_json::to_vec(&polling)
        .map_err(|e| Failure::Service(crate::error::Error::Internal(e.to_string())))?;
    state
        .ephemeral
        .set_ex(&poll_key(&digest), &body, left)
        .await?;
    if too_soon {
        return Err(OidcError::SlowDown(format!(
            "polling too fast; wait {} seconds between requests",
            polling.interval
        ))
        .into());
    }
    if state.ephemeral.get(&denied_key(&digest)).await?.is_some() {
        return Err(OidcError::AccessDenied("the member denied this request".into()).into());
    }
    // Taking the approval leaves the used mark in the same step: one poll, on one
    // replica, gets the tokens.
    let jti = tokens::new_jti()?;
    let (used, entry) = (used_key(&digest), access_token_key(&jti));
    let marks = [(used.as_str(), left)];
    let approved_at = approved_key(&digest);
    let taken = limits::counted(
        state,
        &[],
        Then::TakeMarking {
            key: &approved_at,
            marks: &marks,
        },
    )
    .await?;
    let Some(raw) = taken else {
        return Err(OidcError::AuthorizationPending(
            "the member has not approved this request yet".into(),
        )
        .into());
    };
    let approved: Approved = serde_json::from_slice(&raw).map_err(|_| unknown())?;
    let grant = approved.grant;
    let settings = &state.oidc.settings;
    let keys = state.oidc.keys.get(state).await;
    let issued = tokens::issue_with_jti(
        settings,
        &keys.set,
        &grant,
        Exchange::AuthorizationCode,
        jti,
        now,
    )?;
    state
        .ephemeral
        .set_ex(
            &entry,
            approved.grant_id.as_bytes(),
            access_entry_ttl(state),
        )
        .await?;
    let grant_id = approved.grant_id.clone();
    let (row, refresh) = issued_rows(
        GrantOwner {
            grant_id: &grant_id,
            user_id: &approved.user_id,
            client_id: &client.client_id,
            session_id: &approved.session_id,
            key_id: Some(approved.key_id.clone()),
        },
        &grant,
        &issued,
        settings,
        now,
    )?;
    let issued_event = event(
        "oidc.token_issued",
        Outcome::Success,
        &approved.user_id,
        None,
        serde_json::json!({
            "client_id": client.client_id,
            "grant_type": crate::oidc::device::GRANT_TYPE,
            "grant": grant_id,
            "jti": issued.access_token.jti,
            "scope": grant.scopes.to_string(),
            "refresh_token": refresh.is_some(),
            "approval_digest": approved.approval_digest,
            "ip": ip,
        }),
    );
    state
        .storage
        .audited(move |tx| {
            tx.insert_issued_grant(row.clone(), refresh.clone())?;
            tx.queue_audit(&issued_event, at)
        })
        .await?;
    to_json(&issued.response())
}
