//! The token endpoint: request parsing, client authentication and the dispatch to one
//! file per grant, with the helpers they share.
//!
//! | file | grant |
//! | --- | --- |
//! | `code.rs` | `authorization_code`: PKCE, exact redirect URI, single use, reuse detection |
//! | `refresh.rs` | `refresh_token`: rotation, reuse revokes the family |
//! | `client_credentials.rs` | `client_credentials`: confidential clients, client-only scopes |
//! | `device.rs` | `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628): polling, single use |
//!
//! - A code is taken (read-and-delete) from the ephemeral store and a "used" marker naming
//!   its grant is left behind. A code presented again finds the marker and revokes the
//!   grant, with every token issued from it (if the first exchange has not written the
//!   grant yet, a revoked placeholder is written and that exchange then fails).
//! - A refresh token is marked used in the same transaction that stores its successor. A
//!   used token presented again revokes the whole family (the grant).

mod client_credentials;
mod code;
mod device;
mod refresh;

use serde::Serialize;

pub(crate) use client_credentials::client_token_marker;
pub(crate) use code::code_value;

use super::{access_token_key, audit, clients, Failure};
use crate::audit::{NewAuditEvent, Outcome};
use crate::oidc::client_assertion;
use crate::oidc::token_request::{ClientAuth, TokenGrant, UntrustedTokenRequest};
use crate::oidc::tokens;
use crate::oidc::OidcError;
use crate::service::limits;
use crate::state::AppState;
use crate::storage::{OidcClient, OidcGrant, RefreshTokenRecord};

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
            code::exchange_code(
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
        } => refresh::refresh(state, &client, &refresh_token, scope, ip).await,
        TokenGrant::ClientCredentials { scope } => {
            client_credentials::client_credentials(state, &client, scope, ip).await
        }
        TokenGrant::DeviceCode { device_code } => {
            device::exchange_device_code(state, &client, &device_code, ip).await
        }
    }
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

/// Whose grant a newly issued set of tokens starts, and through which session and key.
struct GrantOwner<'a> {
    grant_id: &'a str,
    user_id: &'a str,
    client_id: &'a str,
    session_id: &'a str,
    key_id: Option<String>,
}

/// The rows an issuance writes: the grant, and the first refresh record of its family when
/// a refresh token was issued (the code and device grants both start a grant this way).
fn issued_rows(
    owner: GrantOwner<'_>,
    grant: &tokens::Grant,
    issued: &tokens::IssuedTokens,
    settings: &tokens::TokenSettings,
    now: time::OffsetDateTime,
) -> Result<(OidcGrant, Option<RefreshTokenRecord>), Failure> {
    let at = now.unix_timestamp();
    let row = OidcGrant {
        id: owner.grant_id.to_string(),
        user_id: owner.user_id.to_string(),
        client_id: owner.client_id.to_string(),
        session_id: Some(owner.session_id.to_string()),
        key_id: owner.key_id,
        auth_time: grant.auth_time,
        acr: grant.assurance.acr.clone(),
        amr: grant.assurance.amr.clone(),
        created_at: at,
        revoked_at: None,
        revoked_reason: None,
    };
    let refresh = match &issued.refresh_token {
        Some(t) => {
            let mut record = tokens::RefreshRecord::first(grant.clone(), settings, now)?;
            record.family = owner.grant_id.to_string();
            Some(RefreshTokenRecord {
                digest: t.digest.clone(),
                grant_id: owner.grant_id.to_string(),
                client_id: owner.client_id.to_string(),
                user_id: owner.user_id.to_string(),
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
    Ok((row, refresh))
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
