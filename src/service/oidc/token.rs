//! The token endpoint: the authorization-code exchange (PKCE, exact redirect URI, single
//! use) and refresh-token rotation, with reuse detection on both.
//!
//! - A code is taken (read-and-delete) from the ephemeral store and a "used" marker naming
//!   its grant is left behind. A code presented again finds the marker and revokes the
//!   grant, with every token issued from it (if the first exchange has not written the
//!   grant yet, a revoked placeholder is written and that exchange then fails).
//! - A refresh token is marked used in the same transaction that stores its successor. A
//!   used token presented again revokes the whole family (the grant).

use serde::{Deserialize, Serialize};

use super::authorize::StoredCode;
use super::{access_token_key, audit, clients, code_key, code_used_key, Failure};
use crate::audit::{NewAuditEvent, Outcome};
use crate::ephemeral::{Limit, Then};
use crate::oidc::client_assertion;
use crate::oidc::scope::Scopes;
use crate::oidc::token_request::{ClientAuth, TokenGrant, UntrustedTokenRequest};
use crate::oidc::tokens::{self, Exchange, IssuedTokens, RefreshRecord};
use crate::oidc::OidcError;
use crate::service::limits;
use crate::state::AppState;
use crate::storage::{OidcClient, OidcGrant, RefreshTokenRecord, StorageError, UserStatus};

/// What a used code's marker remembers.
#[derive(Serialize, Deserialize)]
struct UsedCode {
    grant_id: String,
    user_id: String,
    client_id: String,
}

/// `POST /oauth2/token` with its form body and `Authorization` header. Returns the JSON
/// response body (send it with `Cache-Control: no-store`).
///
/// Counts against the per-address token limit before anything that writes. A code
/// exchange by a client with a secret, or a public one, writes nothing before it takes
/// the code (its client authentication only reads), so there the limit is counted with
/// the take, in one step; every refusal before that step counts on its own.
pub async fn token(
    state: &AppState,
    body: &[u8],
    authorization: Option<&str>,
    ip: Option<String>,
) -> Result<Vec<u8>, Failure> {
    let per_address = limits::limit(
        state,
        "oidc-token",
        ip.as_deref().unwrap_or_default(),
        state.oidc.token_requests_per_minute,
    );
    let parsed = UntrustedTokenRequest::from_form(body, authorization).and_then(|r| r.parse());
    let request = match parsed {
        Ok(request) => request,
        Err(e) => {
            limits::count(state, &[per_address]).await?;
            return Err(e.into());
        }
    };
    let with_take = matches!(request.grant, TokenGrant::AuthorizationCode { .. })
        && !matches!(request.client, ClientAuth::Jwt { .. });
    let deferred = if with_take {
        Some(per_address)
    } else {
        limits::count(state, &[per_address]).await?;
        None
    };
    let client = match authenticate(state, &request.client).await {
        Ok(client) => client,
        Err(e) => {
            if let Some(limit) = deferred {
                limits::count(state, &[limit]).await?;
            }
            return Err(e);
        }
    };
    match request.grant {
        TokenGrant::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => {
            exchange_code(
                state,
                &client,
                &code,
                redirect_uri.as_deref(),
                code_verifier.as_deref(),
                deferred,
                ip,
            )
            .await
        }
        TokenGrant::RefreshToken {
            refresh_token,
            scope,
        } => refresh(state, &client, &refresh_token, scope, ip).await,
        TokenGrant::ClientCredentials { scope } => {
            client_credentials(state, &client, scope, ip).await
        }
    }
}

/// What the ephemeral store remembers for a client credentials access token (in place of
/// a grant ID): the client it was issued to.
pub(crate) fn client_token_marker(client_id: &str) -> String {
    format!("client:{client_id}")
}

/// The client credentials grant (RFC 6749 §4.4): confidential clients only, and only for
/// the client-only scopes (`keygate:compliance`) registered for the client. The access
/// token is short-lived; no refresh token, no ID token. Audited as `oidc.token_issued`.
async fn client_credentials(
    state: &AppState,
    client: &OidcClient,
    scope: Option<Scopes>,
    ip: Option<String>,
) -> Result<Vec<u8>, Failure> {
    if clients::kind(client) != crate::oidc::authorize::ClientKind::Confidential {
        return Err(OidcError::UnauthorizedClient(
            "only confidential clients may use the client credentials grant".into(),
        )
        .into());
    }
    let allowed = Scopes::from_values(
        client
            .allowed_scopes
            .iter()
            .filter(|s| crate::oidc::scope::CLIENT_ONLY.contains(&s.as_str()))
            .cloned(),
    );
    if allowed.is_empty() {
        return Err(OidcError::UnauthorizedClient(
            "this client is not registered for the client credentials grant".into(),
        )
        .into());
    }
    let scopes = match scope {
        Some(s) if !s.is_empty() => s,
        _ => allowed.clone(),
    };
    if !scopes.is_subset_of(&allowed) {
        return Err(OidcError::InvalidScope(
            "a requested scope is not allowed for this client with client credentials".into(),
        )
        .into());
    }
    let now = state.clock.now();
    let keys = state.oidc.keys.get(state).await;
    let token = tokens::client_access_token(
        &state.oidc.settings,
        &keys.set,
        &client.client_id,
        &scopes,
        client.workspace_id.as_deref(),
        now,
    )?;
    let ttl = (token.expires_at - now.unix_timestamp()).max(1) as u64
        + crate::oidc::jwt::DEFAULT_LEEWAY.whole_seconds() as u64;
    state
        .ephemeral
        .set_ex(
            &access_token_key(&token.jti),
            client_token_marker(&client.client_id).as_bytes(),
            std::time::Duration::from_secs(ttl),
        )
        .await?;
    audit(
        state,
        NewAuditEvent {
            actor: format!("oidc_client:{}", client.client_id),
            action: "oidc.token_issued".into(),
            subject: format!("oidc_client:{}", client.client_id),
            outcome: Outcome::Success,
            reason: None,
            details: serde_json::json!({
                "client_id": client.client_id,
                "grant_type": "client_credentials",
                "jti": token.jti,
                "scope": scopes.to_string(),
                "refresh_token": false,
                "ip": ip,
            }),
        },
    )
    .await?;
    to_json(&tokens::client_token_response(&token, &scopes, now))
}

/// Checks the client's credentials; every failure is `invalid_client`. A failure for a
/// registered client is audited as `oidc.client_auth_refused` (a wrong secret, a missing
/// one, a refused assertion: a guessed, stolen or replayed credential); one naming no
/// registered client is only logged, so that anonymous callers cannot write to the audit
/// chain at will (the per-address token limit counts both).
pub(crate) async fn authenticate(
    state: &AppState,
    auth: &ClientAuth,
) -> Result<OidcClient, Failure> {
    let Some(client) = clients::find_enabled(state, auth.client_id()).await? else {
        tracing::info!(
            oidc.client = auth.client_id(),
            "client authentication refused: no such enabled client"
        );
        return Err(OidcError::InvalidClient("client authentication failed".into()).into());
    };
    let refusal = match auth {
        ClientAuth::Jwt { assertion, .. } => {
            match assertion_refusal(state, &client, assertion).await? {
                None => return Ok(client),
                Some(refusal) => refusal,
            }
        }
        _ => match auth.verify(Some((
            clients::kind(&client),
            client.secret_sha256.as_deref(),
        ))) {
            Ok(()) => return Ok(client),
            Err(refusal) => refusal,
        },
    };
    let subject = format!("oidc_client:{}", client.client_id);
    audit(
        state,
        NewAuditEvent {
            actor: subject.clone(),
            action: "oidc.client_auth_refused".into(),
            subject,
            outcome: Outcome::Refused,
            reason: Some(refusal.code().into()),
            details: serde_json::json!({
                "client_id": client.client_id,
                "method": auth.method(),
                "message": refusal.description(),
            }),
        },
    )
    .await?;
    Err(refusal.into())
}

/// `private_key_jwt`: the assertion must verify against the client's registered keys and
/// its `jti` must be new (kept in the shared store until the assertion expires, so a
/// replay is refused on every replica). `None` when it does, else why not.
async fn assertion_refusal(
    state: &AppState,
    client: &OidcClient,
    assertion: &str,
) -> Result<Option<OidcError>, Failure> {
    let Some(keys) = client
        .jwks
        .as_deref()
        .and_then(|j| client_assertion::ClientKeys::parse(j).ok())
    else {
        return Ok(Some(OidcError::InvalidClient(
            "client authentication failed".into(),
        )));
    };
    let issuer = state.oidc.settings.issuer.as_str();
    let token_endpoint = crate::oidc::discovery::Endpoints::under(issuer).token;
    let now = state.clock.now().unix_timestamp();
    let refusal = match client_assertion::verify(
        assertion,
        &keys,
        &client.client_id,
        &[token_endpoint.as_str(), issuer],
        now,
    ) {
        Ok(verified) => {
            let key = format!(
                "oidc:client_assertion:{}",
                tokens::digest(&format!("{}\n{}", client.client_id, verified.jti))
            );
            let ttl = std::time::Duration::from_secs((verified.expires_at - now).max(1) as u64);
            if state.ephemeral.set_nx_ex(&key, b"1", ttl).await? {
                return Ok(None);
            }
            OidcError::InvalidClient("the client assertion was already used".into())
        }
        Err(e) => e,
    };
    Ok(Some(refusal))
}

fn event(
    action: &str,
    outcome: Outcome,
    user_id: &str,
    reason: Option<&str>,
    details: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: format!("user:{user_id}"),
        action: action.into(),
        subject: format!("user:{user_id}"),
        outcome,
        reason: reason.map(str::to_string),
        details,
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(v)
        .map_err(|e| Failure::Service(crate::error::Error::Internal(e.to_string())))
}

/// How long the shared store keeps an access token's entry: its lifetime and the leeway.
fn access_entry_ttl(state: &AppState) -> std::time::Duration {
    let ttl = state.oidc.settings.access_token_ttl.whole_seconds().max(1) as u64
        + crate::oidc::jwt::DEFAULT_LEEWAY.whole_seconds() as u64;
    std::time::Duration::from_secs(ttl)
}

/// Stores the entry that keeps the access token `jti` alive (its grant ID).
async fn remember_access_token(state: &AppState, jti: &str, grant_id: &str) -> Result<(), Failure> {
    state
        .ephemeral
        .set_ex(
            &access_token_key(jti),
            grant_id.as_bytes(),
            access_entry_ttl(state),
        )
        .await?;
    Ok(())
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
async fn exchange_code(
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
    let row = OidcGrant {
        id: grant_id.clone(),
        user_id: stored.user_id.clone(),
        client_id: client.client_id.clone(),
        session_id: Some(stored.session_id.clone()),
        key_id: stored.key_id.clone(),
        auth_time: grant.auth_time,
        acr: grant.assurance.acr.clone(),
        amr: grant.assurance.amr.clone(),
        created_at: at,
        revoked_at: None,
        revoked_reason: None,
    };
    let refresh = match &issued.refresh_token {
        Some(t) => {
            let mut record = RefreshRecord::first(grant.clone(), settings, now)?;
            record.family = grant_id.clone();
            Some(RefreshTokenRecord {
                digest: t.digest.clone(),
                grant_id: grant_id.clone(),
                client_id: client.client_id.clone(),
                user_id: stored.user_id.clone(),
                scope: grant.scopes.to_string(),
                expires_at: record.expires_at,
                record: String::from_utf8(to_json(&record)?).unwrap_or_default(),
                created_at: at,
                used_at: None,
                revoked_at: None,
            })
        }
        None => None,
    };
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

enum Refreshed {
    Issued(Box<IssuedTokens>),
    Refused(OidcError),
    Reused,
}

async fn refresh(
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
