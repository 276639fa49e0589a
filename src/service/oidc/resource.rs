//! Userinfo (OpenID Connect Core §5.3), introspection (RFC 7662) and revocation
//! (RFC 7009).
//!
//! An access token is accepted when its signature and claims verify *and* the grant it
//! was issued under is known (`oidc:at:{jti}`) and not revoked: revoking a grant (reuse,
//! revocation, a disabled client) ends its access tokens at once, not when they expire;
//! so does disabling its client.

use serde_json::{Map, Value};

use super::token::authenticate;
use super::{access_token_key, audit, Failure};
use crate::audit::{NewAuditEvent, Outcome};
use crate::oidc::jwt::VerifiedJwt;
use crate::oidc::scope::{self, Scopes};
use crate::oidc::token_request::{ClientAuth, UntrustedTokenRequest};
use crate::oidc::tokens::{self, KeyEvidence, UserClaims, REFRESH_TOKEN_PREFIX};
use crate::oidc::OidcError;
use crate::state::AppState;
use crate::storage::{OidcGrant, UserStatus};

/// An access token that verified and whose grant stands.
pub struct ActiveToken {
    pub jwt: VerifiedJwt,
    pub grant: OidcGrant,
}

/// Verifies an access token and checks its grant. Every failure is `invalid_token`.
pub async fn verify_access(state: &AppState, token: &str) -> Result<ActiveToken, Failure> {
    let jwt = verify_signature(state, token).await?;
    let revoked = || OidcError::InvalidToken("the access token was revoked".into());
    let jti = jwt.str_claim("jti").ok_or_else(revoked)?;
    let marker = state
        .ephemeral
        .get(&access_token_key(jti))
        .await?
        .ok_or_else(revoked)?;
    // A live client credentials token: valid, but it stands for a client, not a member.
    if let Some(client_id) = jwt.str_claim("client_id") {
        if jwt.subject() == Some(client_id)
            && marker == super::token::client_token_marker(client_id).as_bytes()
        {
            return Err(OidcError::InvalidToken(
                "the access token was issued to a client for itself (client credentials): it names no user".into(),
            )
            .into());
        }
    }
    let grant_id = String::from_utf8(marker).map_err(|_| revoked())?;
    let grant = state
        .storage
        .run(move |s| s.oidc_grant(&grant_id))
        .await?
        .filter(|g| g.revoked_at.is_none())
        .ok_or_else(revoked)?;
    if jwt.subject() != Some(grant.user_id.as_str())
        || jwt.str_claim("client_id") != Some(grant.client_id.as_str())
    {
        return Err(revoked().into());
    }
    // A disabled client's grants are revoked as it is disabled; this also ends one a
    // replica issued in the moment before it saw the change (docs/decisions.md).
    if super::clients::find_enabled(state, &grant.client_id)
        .await?
        .is_none()
    {
        return Err(revoked().into());
    }
    Ok(ActiveToken { jwt, grant })
}

/// A client credentials access token that verified, with the client it was issued to.
pub struct ActiveClientToken {
    pub jwt: VerifiedJwt,
    pub client: crate::storage::OidcClient,
}

/// Verifies a bearer token issued with the client credentials grant and requires
/// `required` among its scopes: no or a bad token is `invalid_token`; a valid token
/// without the scope (a user's, say) is `insufficient_scope`; a token that was not issued
/// to a client acting for itself, or whose client is disabled, is `invalid_token`.
pub async fn verify_client_access(
    state: &AppState,
    bearer: Option<&str>,
    required: &str,
) -> Result<ActiveClientToken, Failure> {
    let token =
        bearer.ok_or_else(|| OidcError::InvalidToken("an access token is required".into()))?;
    let jwt = verify_signature(state, token).await?;
    if !jwt.scopes().contains(&required) {
        return Err(OidcError::InsufficientScope(format!(
            "the token was not issued for {required}"
        ))
        .into());
    }
    let revoked = || OidcError::InvalidToken("the access token was revoked".into());
    let jti = jwt.str_claim("jti").ok_or_else(revoked)?;
    let client_id = jwt.str_claim("client_id").ok_or_else(revoked)?;
    if jwt.subject() != Some(client_id) {
        return Err(revoked().into());
    }
    let marker = state.ephemeral.get(&access_token_key(jti)).await?;
    if marker.as_deref() != Some(super::token::client_token_marker(client_id).as_bytes()) {
        return Err(revoked().into());
    }
    let client = super::clients::find_enabled(state, client_id)
        .await?
        .ok_or_else(revoked)?;
    Ok(ActiveClientToken { jwt, client })
}

/// A client credentials access token issued to `client_id` that is still accepted (for
/// introspection and revocation by that client).
async fn own_client_token(state: &AppState, token: &str, client_id: &str) -> Option<VerifiedJwt> {
    let jwt = verify_signature(state, token).await.ok()?;
    if jwt.str_claim("client_id") != Some(client_id) || jwt.subject() != Some(client_id) {
        return None;
    }
    let jti = jwt.str_claim("jti")?;
    let marker = state.ephemeral.get(&access_token_key(jti)).await.ok()??;
    (marker == super::token::client_token_marker(client_id).as_bytes()).then_some(jwt)
}

/// Checks an access token's signature and claims (not yet its grant).
async fn verify_signature(state: &AppState, token: &str) -> Result<VerifiedJwt, Failure> {
    let settings = &state.oidc.settings;
    let now = state.clock.now();
    let keys = state.oidc.keys.get(state).await;
    let jwt = match tokens::verify_access_token(settings, &keys.set, token, now) {
        Ok(v) => v,
        // Perhaps signed with a key another replica made after our last reload.
        Err(e) => {
            if !state.oidc.keys.reload_soon(state).await {
                return Err(e.into());
            }
            let keys = state.oidc.keys.get(state).await;
            tokens::verify_access_token(settings, &keys.set, token, now)?
        }
    };
    Ok(jwt)
}

/// `GET`/`POST /oauth2/userinfo` with a bearer token: claims by the token's scopes.
pub async fn userinfo(
    state: &AppState,
    bearer: Option<&str>,
) -> Result<Map<String, Value>, Failure> {
    let token =
        bearer.ok_or_else(|| OidcError::InvalidToken("an access token is required".into()))?;
    let active = verify_access(state, token).await?;
    let scopes = Scopes::from_values(active.jwt.scopes());
    if !scopes.contains(scope::OPENID) {
        return Err(
            OidcError::InsufficientScope("the token was not issued for openid".into()).into(),
        );
    }
    let (uid, key_id) = (active.grant.user_id.clone(), active.grant.key_id.clone());
    let (user, key) = state
        .storage
        .run(move |s| {
            let user = s.user_by_id(&uid)?;
            let key = match key_id {
                Some(k) => s.credential_by_id(&k)?,
                None => None,
            };
            Ok((user, key))
        })
        .await?;
    let user = user
        .filter(|u| u.status == UserStatus::Active)
        .ok_or_else(|| OidcError::InvalidToken("the account is disabled".into()))?;
    let claims = UserClaims {
        name: Some(user.display_name).filter(|n| !n.trim().is_empty()),
        email: Some(user.email),
        email_verified: true,
    };
    let evidence = key.map(|k| KeyEvidence {
        aaguid: k.aaguid,
        model: k.model,
        fips: k.fips,
    });
    let settings = &state.oidc.settings;
    let workspace = active.jwt.str_claim(&settings.workspace_claim);
    Ok(tokens::userinfo(
        settings,
        &user.id,
        &scopes,
        &claims,
        workspace,
        evidence.as_ref(),
    ))
}

/// Reads the form of an introspection or revocation request and authenticates the client.
async fn client_request(
    state: &AppState,
    body: &[u8],
    authorization: Option<&str>,
    secret_required: bool,
) -> Result<(crate::storage::OidcClient, String, Option<String>), Failure> {
    let request = UntrustedTokenRequest::from_form(body, authorization)?;
    let auth = request.client_auth()?;
    if secret_required && matches!(auth, ClientAuth::None { .. }) {
        return Err(OidcError::InvalidClient("client authentication failed".into()).into());
    }
    let client = authenticate(state, &auth).await?;
    let token = request
        .param("token")?
        .ok_or_else(|| OidcError::InvalidRequest("token is required".into()))?
        .to_string();
    let hint = request.param("token_type_hint")?.map(str::to_string);
    Ok((client, token, hint))
}

/// `POST /oauth2/introspect` (RFC 7662): confidential clients only, and only about tokens
/// issued to themselves; anything else is `{"active": false}`.
pub async fn introspect(
    state: &AppState,
    body: &[u8],
    authorization: Option<&str>,
) -> Result<Value, Failure> {
    let (client, token, _hint) = client_request(state, body, authorization, true).await?;
    if token.starts_with(REFRESH_TOKEN_PREFIX) {
        let digest = tokens::digest(&token);
        let now = state.now();
        let found = state
            .storage
            .run(move |s| {
                let Some(r) = s.refresh_token(&digest)? else {
                    return Ok(None);
                };
                let grant = s.oidc_grant(&r.grant_id)?;
                Ok(Some((r, grant)))
            })
            .await?;
        return Ok(match found {
            Some((r, Some(g)))
                if r.client_id == client.client_id
                    && r.used_at.is_none()
                    && r.revoked_at.is_none()
                    && g.revoked_at.is_none()
                    && r.expires_at > now =>
            {
                serde_json::json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "client_id": r.client_id,
                    "sub": r.user_id,
                    "scope": r.scope,
                    "exp": r.expires_at,
                    "iat": r.created_at,
                    "iss": state.oidc.issuer(),
                })
            }
            _ => tokens::introspection_inactive(),
        });
    }
    Ok(match verify_access(state, &token).await {
        Ok(active) if active.grant.client_id == client.client_id => {
            tokens::introspection(&active.jwt)
        }
        _ => match own_client_token(state, &token, &client.client_id).await {
            Some(jwt) => tokens::introspection(&jwt),
            None => tokens::introspection_inactive(),
        },
    })
}

/// `POST /oauth2/revoke` (RFC 7009): a refresh token revokes its whole grant (and so the
/// access tokens issued under it); an access token stops being accepted. Unknown tokens
/// and other clients' tokens are answered the same way, with success.
pub async fn revoke(
    state: &AppState,
    body: &[u8],
    authorization: Option<&str>,
    ip: Option<String>,
) -> Result<(), Failure> {
    let (client, token, _hint) = client_request(state, body, authorization, false).await?;
    let at = state.now();
    if token.starts_with(REFRESH_TOKEN_PREFIX) {
        let digest = tokens::digest(&token);
        let client_id = client.client_id.clone();
        state
            .storage
            .run(move |s| {
                s.transaction(|tx| {
                    let Some(r) = tx.refresh_token(&digest)? else {
                        return Ok(());
                    };
                    if r.client_id != client_id {
                        return Ok(());
                    }
                    if tx.revoke_oidc_grant(&r.grant_id, "revoked_by_client", at)? {
                        tx.append_audit(
                            &revoked_event(
                                &r.user_id,
                                &client_id,
                                "refresh_token",
                                &r.grant_id,
                                ip,
                            ),
                            at,
                        )?;
                    }
                    Ok(())
                })
            })
            .await?;
        return Ok(());
    }
    if let Ok(active) = verify_access(state, &token).await {
        if active.grant.client_id == client.client_id {
            if let Some(jti) = active.jwt.str_claim("jti") {
                state.ephemeral.delete(&access_token_key(jti)).await?;
            }
            audit(
                state,
                revoked_event(
                    &active.grant.user_id,
                    &client.client_id,
                    "access_token",
                    &active.grant.id,
                    ip,
                ),
            )
            .await?;
        }
    } else if let Some(jwt) = own_client_token(state, &token, &client.client_id).await {
        if let Some(jti) = jwt.str_claim("jti") {
            state.ephemeral.delete(&access_token_key(jti)).await?;
        }
        audit(
            state,
            NewAuditEvent {
                actor: format!("oidc_client:{}", client.client_id),
                action: "oidc.revoked".into(),
                subject: format!("oidc_client:{}", client.client_id),
                outcome: Outcome::Success,
                reason: None,
                details: serde_json::json!({
                    "kind": "access_token",
                    "grant_type": "client_credentials",
                    "ip": ip,
                }),
            },
        )
        .await?;
    }
    Ok(())
}

fn revoked_event(
    user_id: &str,
    client_id: &str,
    kind: &str,
    grant: &str,
    ip: Option<String>,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: format!("oidc_client:{client_id}"),
        action: "oidc.revoked".into(),
        subject: format!("user:{user_id}"),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({ "kind": kind, "grant": grant, "ip": ip }),
    }
}
