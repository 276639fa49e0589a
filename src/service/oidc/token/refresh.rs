//! Refresh-token rotation (RFC 6749 §6): a token is marked used in the same transaction
//! that stores its successor; a used token presented again revokes the whole family.

use super::{event, remember_access_token, to_json, Failure};
use crate::audit::Outcome;
use crate::oidc::scope::Scopes;
use crate::oidc::tokens::{self, Exchange, IssuedTokens, RefreshRecord};
use crate::oidc::OidcError;
use crate::state::AppState;
use crate::storage::{OidcClient, RefreshTokenRecord, StorageError, UserStatus};

enum Refreshed {
    Issued(Box<IssuedTokens>),
    Refused(OidcError),
    Reused,
}

pub(super) async fn refresh(
    state: &AppState,
    client: &OidcClient,
    token: &str,
    scope: Option<Scopes>,
    ip: Option<String>,
) -> Result<Vec<u8>, Failure> {
    let digest = tokens::digest(token);
    let keys = state.oidc.keys.get(state).await;
    let settings = state.oidc.settings.clone();
    let (client_id, workspace) = (client.client_id.clone(), client.workspace_id.clone());
    let now = state.clock.now();
    let at = now.unix_timestamp();
    // The new access token's entry is stored before the refresh token is used up: a
    // shared store that fails then fails the request with nothing spent, and the client's
    // retry is not taken for a reuse. An entry whose refresh is then refused names a token
    // nobody holds, and expires with it.
    let jti = tokens::new_jti()?;
    let looked_up = digest.clone();
    let family = state
        .storage
        .run(move |s| s.refresh_token(&looked_up))
        .await?
        .map(|row| row.grant_id);
    if let Some(grant_id) = &family {
        remember_access_token(state, &jti, grant_id).await?;
    }
    let outcome = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let refuse = |m: &str| Ok(Refreshed::Refused(OidcError::InvalidGrant(m.into())));
                let Some(row) = tx.refresh_token(&digest)? else {
                    return refuse("the refresh token is unknown");
                };
                if family.as_ref() != Some(&row.grant_id) {
                    // Rows are never re-pointed; this only guards the entry stored above.
                    return refuse("the refresh token is unknown");
                }
                let details = |kind: &str| {
                    serde_json::json!({
                        "client_id": row.client_id,
                        "kind": kind,
                        "grant": row.grant_id,
                        "ip": ip,
                    })
                };
                // A live member's token presented where it should not be (another
                // client, or after its revocation): refused, and audited, as a token that
                // may have leaked. Nothing of it is spent.
                let refuse_audited = |tx: &mut crate::storage::Tx<'_>, message: &str| {
                    let mut d = details("refresh_token");
                    d["presented_by"] = serde_json::json!(client_id);
                    d["message"] = serde_json::json!(message);
                    let refused = event(
                        "oidc.refused",
                        Outcome::Refused,
                        &row.user_id,
                        Some("invalid_grant"),
                        d,
                    );
                    tx.append_audit(&refused, at)?;
                    refuse(message)
                };
                if row.client_id != client_id {
                    return refuse_audited(tx, "the refresh token was issued to another client");
                }
                let reused = |tx: &mut crate::storage::Tx<'_>| {
                    tx.revoke_oidc_grant(&row.grant_id, "refresh_token_reuse", at)?;
                    tx.append_audit(
                        &event(
                            "oidc.reuse_detected",
                            Outcome::Refused,
                            &row.user_id,
                            Some("refresh_token_reuse"),
                            details("refresh_token"),
                        ),
                        at,
                    )?;
                    Ok::<_, StorageError>(Refreshed::Reused)
                };
                if row.used_at.is_some() {
                    return reused(tx);
                }
                if row.revoked_at.is_some() {
                    return refuse_audited(tx, "the refresh token was revoked");
                }
                match tx.oidc_grant(&row.grant_id)? {
                    Some(g) if g.revoked_at.is_none() => {}
                    _ => return refuse_audited(tx, "the refresh token was revoked"),
                }
                let Ok(record) = serde_json::from_str::<RefreshRecord>(&row.record) else {
                    return refuse("the refresh token cannot be read");
                };
                let (grant, next) = match record.redeem(&row.client_id, scope.as_ref(), now) {
                    Ok(x) => x,
                    Err(e) => return Ok(Refreshed::Refused(e)),
                };
                let active = tx
                    .user_by_id(&row.user_id)?
                    .is_some_and(|u| u.status == UserStatus::Active);
                let member = match &workspace {
                    Some(w) => tx.is_workspace_member(w, &row.user_id)?,
                    None => true,
                };
                if !active || !member {
                    let reason = if active {
                        "workspace_membership"
                    } else {
                        "account_disabled"
                    };
                    tx.revoke_oidc_grant(&row.grant_id, reason, at)?;
                    tx.append_audit(
                        &event(
                            "oidc.refused",
                            Outcome::Refused,
                            &row.user_id,
                            Some(reason),
                            details("refresh_token"),
                        ),
                        at,
                    )?;
                    return refuse(if active {
                        "the member no longer belongs to this client's workspace"
                    } else {
                        "the account is disabled"
                    });
                }
                if !tx.use_refresh_token(&digest, at)? {
                    // Another request exchanged it a moment ago: that is reuse too.
                    return reused(tx);
                }
                let issued = tokens::issue_with_jti(
                    &settings,
                    &keys.set,
                    &grant,
                    Exchange::RefreshToken,
                    jti.clone(),
                    now,
                )
                .map_err(|e| StorageError::Backend(format!("signing: {}", e.description())))?;
                if let Some(t) = &issued.refresh_token {
                    tx.insert_refresh_token(&RefreshTokenRecord {
                        digest: t.digest.clone(),
                        grant_id: row.grant_id.clone(),
                        client_id: row.client_id.clone(),
                        user_id: row.user_id.clone(),
                        scope: next.grant.scopes.to_string(),
                        record: serde_json::to_string(&next)
                            .map_err(|e| StorageError::Backend(e.to_string()))?,
                        created_at: at,
                        expires_at: next.expires_at,
                        used_at: None,
                        revoked_at: None,
                    })?;
                }
                tx.append_audit(
                    &event(
                        "oidc.token_issued",
                        Outcome::Success,
                        &row.user_id,
                        None,
                        serde_json::json!({
                            "client_id": row.client_id,
                            "grant_type": "refresh_token",
                            "grant": row.grant_id,
                            "jti": issued.access_token.jti,
                            "scope": grant.scopes.to_string(),
                            "refresh_token": issued.refresh_token.is_some(),
                            "ip": ip,
                        }),
                    ),
                    at,
                )?;
                Ok(Refreshed::Issued(Box::new(issued)))
            })
        })
        .await?;
    match outcome {
        Refreshed::Issued(issued) => to_json(&issued.response()),
        Refreshed::Refused(e) => Err(e.into()),
        Refreshed::Reused => {
            tracing::warn!(oidc.client = %client.client_id, "a used refresh token came back; its family is revoked");
            Err(OidcError::InvalidGrant(
                "the refresh token was already used; every token of this grant is revoked".into(),
            )
            .into())
        }
    }
}
