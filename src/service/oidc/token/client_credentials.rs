//! The client credentials grant (RFC 6749 §4.4).

use super::{audit, clients, to_json, Failure};
use crate::audit::{NewAuditEvent, Outcome};
use crate::oidc::scope::Scopes;
use crate::oidc::tokens;
use crate::oidc::OidcError;
use crate::service::oidc::access_token_key;
use crate::state::AppState;
use crate::storage::OidcClient;

/// What the ephemeral store remembers for a client credentials access token (in place of
/// a grant ID): the client it was issued to.
pub(crate) fn client_token_marker(client_id: &str) -> String {
    format!("client:{client_id}")
}

/// The client credentials grant (RFC 6749 §4.4): confidential clients only, and only for
/// the client-only scopes (`keygate:compliance`) registered for the client. The access
/// token is short-lived; no refresh token, no ID token. Audited as `oidc.token_issued`.
pub(super) async fn client_credentials(
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
