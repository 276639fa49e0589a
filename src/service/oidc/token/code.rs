//! The authorization-code exchange (RFC 6749 §4.1.3, PKCE): single use across replicas,
//! a code presented again revokes its grant.

use serde::{Deserialize, Serialize};

use super::{access_entry_ttl, audit, clients, event, issued_rows, to_json, Failure, GrantOwner};
use crate::audit::Outcome;
use crate::ephemeral::{Limit, Then};
use crate::oidc::tokens::{self, Exchange};
use crate::oidc::OidcError;
use crate::service::limits;
use crate::service::oidc::authorize::StoredCode;
use crate::service::oidc::{access_token_key, code_key, code_used_key};
use crate::state::AppState;
use crate::storage::{OidcClient, OidcGrant, StorageError};

/// What a used code's marker remembers.
#[derive(Serialize, Deserialize)]
struct UsedCode {
    grant_id: String,
    user_id: String,
    client_id: String,
}

/// What the shared store holds for a code: two marks, then the code itself. Taking the
/// code leaves the marks in the same step (`Then::TakeMarking`): the used-code marker (so a
/// replay never falls between the code and its marker) and the grant ID under the access
/// token's `jti` (the entry that keeps the token alive).
pub(crate) fn code_value(stored: &StoredCode) -> Result<Vec<u8>, crate::error::Error> {
    let used = UsedCode {
        grant_id: stored.grant_id.clone(),
        user_id: stored.user_id.clone(),
        client_id: stored.record.grant.client_id.clone(),
    };
    let internal = |e: &dyn std::fmt::Display| crate::error::Error::Internal(e.to_string());
    let used = serde_json::to_vec(&used).map_err(|e| internal(&e))?;
    let body = serde_json::to_vec(stored).map_err(|e| internal(&e))?;
    crate::ephemeral::with_marks(&[&used, stored.grant_id.as_bytes()], &body)
        .map_err(|e| internal(&e))
}

/// `limit`, when given, is counted with the code's take (past it, nothing is taken).
#[allow(clippy::too_many_arguments)]
pub(super) async fn exchange_code(
    state: &AppState,
    client: &OidcClient,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    limit: Option<Limit>,
    ip: Option<String>,
) -> Result<Vec<u8>, Failure> {
    let digest = tokens::digest(code);
    let unknown = || {
        OidcError::InvalidGrant("the authorization code is unknown, expired or already used".into())
    };
    // The access token's `jti` is chosen now: taking the code stores its entry (the grant
    // ID) and the used-code marker in one step. Until the response is sent nobody holds
    // the token, and an exchange that fails leaves an entry no token will ever name.
    // The marker lives long after the code expired, as long as the access token it
    // gives: a marker per exchange must stay cheap in the shared store.
    let jti = tokens::new_jti()?;
    let marker_ttl = state.oidc.settings.access_token_ttl.whole_seconds().max(1) as u64;
    let (used_key, entry_key) = (code_used_key(&digest), access_token_key(&jti));
    let marks = [
        (
            used_key.as_str(),
            std::time::Duration::from_secs(marker_ttl),
        ),
        (entry_key.as_str(), access_entry_ttl(state)),
    ];
    let code_key = code_key(&digest);
    let take = Then::TakeMarking {
        key: &code_key,
        marks: &marks,
    };
    let Some(raw) = limits::counted(state, limit.as_slice(), take).await? else {
        if let Some(marker) = state.ephemeral.get(&used_key).await? {
            if let Ok(used) = serde_json::from_slice::<UsedCode>(&marker) {
                code_reused(state, &used, ip).await?;
            }
        }
        return Err(unknown().into());
    };
    let stored: StoredCode = serde_json::from_slice(&raw).map_err(|_| unknown())?;
    let now = state.clock.now();
    // Checked against the client as registered now, after the checks of the request.
    let fits = stored.record.fits(&clients::view(client));
    let grant = match stored
        .record
        .redeem(&client.client_id, redirect_uri, code_verifier, now)
        .and_then(|grant| fits.map(|()| grant))
    {
        Ok(g) => g,
        Err(e) => {
            audit(
                state,
                event(
                    "oidc.refused",
                    Outcome::Refused,
                    &stored.user_id,
                    Some(e.code()),
                    serde_json::json!({
                        "client_id": client.client_id,
                        "grant_type": "authorization_code",
                        "message": e.description(),
                        "ip": ip,
                    }),
                ),
            )
            .await?;
            return Err(e.into());
        }
    };
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
    let at = now.unix_timestamp();
    let grant_id = stored.grant_id.clone();
    let (row, refresh) = issued_rows(
        GrantOwner {
            grant_id: &grant_id,
            user_id: &stored.user_id,
            client_id: &client.client_id,
            session_id: &stored.session_id,
            key_id: stored.key_id.clone(),
        },
        &grant,
        &issued,
        settings,
        now,
    )?;
    let issued_event = event(
        "oidc.token_issued",
        Outcome::Success,
        &stored.user_id,
        None,
        serde_json::json!({
            "client_id": client.client_id,
            "grant_type": "authorization_code",
            "grant": grant_id,
            "jti": issued.access_token.jti,
            "scope": grant.scopes.to_string(),
            "refresh_token": refresh.is_some(),
            "ip": ip,
        }),
    );
    let written = state
        .storage
        .audited(move |tx| {
            tx.insert_issued_grant(row.clone(), refresh.clone())?;
            tx.queue_audit(&issued_event, at)
        })
        .await;
    match written {
        Ok(()) => {}
        // The grant row exists already: a second use of the code revoked it first.
        Err(StorageError::Conflict(_)) => {
            return Err(OidcError::InvalidGrant(
                "the authorization code was used twice; everything issued from it is revoked"
                    .into(),
            )
            .into())
        }
        Err(e) => return Err(e.into()),
    }
    to_json(&issued.response())
}

/// A code came back after its exchange: revoke its grant (or leave a revoked placeholder
/// when the exchange has not written it yet) and audit it.
async fn code_reused(state: &AppState, used: &UsedCode, ip: Option<String>) -> Result<(), Failure> {
    let at = state.now();
    let placeholder = OidcGrant {
        id: used.grant_id.clone(),
        user_id: used.user_id.clone(),
        client_id: used.client_id.clone(),
        session_id: None,
        key_id: None,
        auth_time: at,
        acr: String::new(),
        amr: Vec::new(),
        created_at: at,
        revoked_at: Some(at),
        revoked_reason: Some("code_reuse".into()),
    };
    let reuse = event(
        "oidc.reuse_detected",
        Outcome::Refused,
        &used.user_id,
        Some("code_reuse"),
        serde_json::json!({
            "client_id": used.client_id,
            "kind": "authorization_code",
            "grant": used.grant_id,
            "ip": ip,
        }),
    );
    state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                tx.revoke_or_reserve_grant(&placeholder, "code_reuse", at)?;
                tx.append_audit(&reuse, at)?;
                Ok(())
            })
        })
        .await?;
    tracing::warn!(
        oidc.grant = %used.grant_id,
        oidc.client = %used.client_id,
        "an authorization code was used twice; its grant is revoked"
    );
    Ok(())
}
