//! OpenID Connect clients: declared in the config file (kept in step at start-up) or
//! created by an admin (the secret is shown once and stored as its SHA-256), each
//! optionally bound to a workspace (SPEC C6).

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::config::{check_client, OidcClientConfig};
use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::oidc::authorize::{ClientKind, ClientView};
use crate::oidc::client_assertion::ClientKeys;
use crate::oidc::keys::Algorithm;
use crate::service::{tokens, Actor};
use crate::state::AppState;
use crate::storage::{OidcClient, StorageError};

/// Prefix of generated client secrets (helps secret scanners).
pub const SECRET_PREFIX: &str = "kgs_";

/// What the authorization endpoint needs to know about a client.
pub fn view(c: &OidcClient) -> ClientView {
    ClientView {
        client_id: c.client_id.clone(),
        redirect_uris: c.redirect_uris.clone(),
        kind: kind(c),
        allowed_scopes: c.allowed_scopes.clone(),
        id_token_alg: algorithm(c),
        workspace_id: c.workspace_id.clone(),
        default_acr_values: Vec::new(),
        required_acr_values: c.required_acr.clone(),
    }
}

/// Confidential: it authenticates with a secret or with a JWT signed by a registered key.
pub fn kind(c: &OidcClient) -> ClientKind {
    if c.secret_sha256.is_some() || c.jwks.is_some() {
        ClientKind::Confidential
    } else {
        ClientKind::Public
    }
}

pub fn algorithm(c: &OidcClient) -> Algorithm {
    Algorithm::from_name(&c.id_token_alg).unwrap_or_default()
}

/// The client with this ID if it exists and is not disabled.
pub async fn find_enabled(state: &AppState, client_id: &str) -> Result<Option<OidcClient>> {
    if !super::config::valid_client_id(client_id) {
        return Ok(None);
    }
    Ok(state
        .storage
        .find_oidc_client(client_id.to_string())
        .await?
        .filter(|c| c.disabled_at.is_none()))
}

fn secret_digest(secret: &str) -> String {
    tokens::digest_hex(secret.as_bytes())
}

fn event(
    actor: &Actor,
    action: &str,
    client_id: &str,
    details: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.id.clone(),
        action: action.into(),
        subject: format!("oidc_client:{client_id}"),
        outcome: Outcome::Success,
        reason: None,
        details,
    }
}

/// Brings config-declared clients into the database (creating or updating them; a client
/// an admin disabled stays disabled), then makes sure every algorithm they sign ID tokens
/// with has a key. Secrets are read from their files or environment variables here.
pub async fn sync_from_config(state: &AppState) -> Result<()> {
    let declared: Vec<OidcClientConfig> = state.config.oidc.clients.clone();
    let now = state.now();
    let mut clients = Vec::with_capacity(declared.len());
    for c in &declared {
        let secret = c.secret().map_err(Error::Internal)?;
        let jwks = c.jwks_document().map_err(Error::Internal)?;
        clients.push(OidcClient {
            client_id: c.client_id.clone(),
            name: c.name.trim().to_string(),
            secret_sha256: secret.map(|s| secret_digest(s.expose_secret())),
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            allowed_scopes: c.scopes.clone(),
            id_token_alg: c.id_token_alg.as_str().into(),
            workspace_id: c.workspace.clone(),
            required_acr: c.required_acr.clone(),
            source: "config".into(),
            created_at: now,
            disabled_at: None,
            jwks,
        });
    }
    if !clients.is_empty() {
        state
            .storage
            .run(move |s| {
                s.transaction(|tx| {
                    for c in &clients {
                        if let Some(w) = &c.workspace_id {
                            if tx.workspace(w)?.is_none() {
                                return Err(StorageError::Conflict(format!(
                                    "oidc.clients `{}` names the workspace `{w}`, which does not exist",
                                    c.client_id
                                )));
                            }
                        }
                        if !tx.update_oidc_client(c)? {
                            tx.insert_oidc_client(c)?;
                            tx.append_audit(
                                &event(
                                    &Actor::system(),
                                    "oidc.client_created",
                                    &c.client_id,
                                    serde_json::json!({ "source": "config", "workspace": c.workspace_id }),
                                ),
                                now,
                            )?;
                        }
                    }
                    Ok(())
                })
            })
            .await
            .map_err(|e| match e {
                StorageError::Conflict(m) if m.starts_with("oidc.clients") => Error::Internal(m),
                other => other.into(),
            })?;
    }
    let clients = state.storage.run(|s| s.list_oidc_clients()).await?;
    if clients
        .iter()
        .any(|c| c.disabled_at.is_none() && algorithm(c) == Algorithm::Rs256)
    {
        super::keys::ensure(state, Algorithm::Rs256).await?;
    }
    Ok(())
}

/// An admin's new client.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Allowed scopes; default `openid profile email`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A public client (no secret, PKCE only).
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub id_token_alg: Algorithm,
    /// keygate's workspace id.
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub required_acr: Vec<String>,
    /// The public keys (a JWKS) of a `private_key_jwt` client: it gets no secret.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
}

/// A client as created: the secret is in here once and nowhere else.
#[derive(Clone, Debug, Serialize)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: OidcClient,
    /// Show once; keygate keeps only its SHA-256.
    pub client_secret: Option<String>,
}

/// Creates a client for an admin. Audited as `oidc.client_created`.
pub async fn create(state: &AppState, actor: &Actor, new: NewClient) -> Result<CreatedClient> {
    let scopes = if new.scopes.is_empty() {
        vec!["openid".into(), "profile".into(), "email".into()]
    } else {
        new.scopes.clone()
    };
    check_client(
        &new.name,
        &new.redirect_uris,
        &new.post_logout_redirect_uris,
        &scopes,
        &new.required_acr,
    )
    .map_err(|m| Error::bad_request("invalid_client_metadata", m))?;
    let workspace_id = new.workspace_id.filter(|w| !w.trim().is_empty());
    if let Some(w) = &workspace_id {
        let wid = w.clone();
        if state
            .storage
            .run(move |s| s.workspace(&wid))
            .await?
            .is_none()
        {
            return Err(Error::bad_request(
                "unknown_workspace",
                "there is no workspace with this id",
            ));
        }
    }
    let jwks = match new.jwks.filter(|j| !j.is_null()) {
        None => None,
        Some(_) if new.public => {
            return Err(Error::bad_request(
                "invalid_client_metadata",
                "a public client has no keys: drop jwks or public",
            ))
        }
        Some(doc) => {
            let text = doc.to_string();
            ClientKeys::parse(&text)
                .map_err(|m| Error::bad_request("invalid_client_metadata", m))?;
            Some(text)
        }
    };
    let secret = (!new.public && jwks.is_none())
        .then(|| format!("{SECRET_PREFIX}{}", tokens::secret_token()));
    let client = OidcClient {
        client_id: format!("kg-{}", &tokens::new_id()[..20]),
        name: new.name.trim().to_string(),
        secret_sha256: secret.as_deref().map(secret_digest),
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        allowed_scopes: scopes,
        id_token_alg: new.id_token_alg.as_str().into(),
        workspace_id,
        required_acr: new.required_acr,
        source: "admin".into(),
        created_at: state.now(),
        disabled_at: None,
        jwks,
    };
    if new.id_token_alg != Algorithm::Es256 {
        super::keys::ensure(state, new.id_token_alg).await?;
    }
    let audit = event(
        actor,
        "oidc.client_created",
        &client.client_id,
        serde_json::json!({
            "source": "admin",
            "public": kind(&client) == ClientKind::Public,
            "private_key_jwt": client.jwks.is_some(),
            "redirect_uris": client.redirect_uris,
            "workspace": client.workspace_id,
            "ip": actor.ip,
        }),
    );
    let (c, now) = (client.clone(), state.now());
    state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                tx.insert_oidc_client(&c)?;
                tx.append_audit(&audit, now)?;
                Ok(())
            })
        })
        .await?;
    Ok(CreatedClient {
        client,
        client_secret: secret,
    })
}

/// Disables a client and revokes every grant it holds. Audited as `oidc.client_disabled`.
pub async fn disable(state: &AppState, actor: &Actor, client_id: &str) -> Result<()> {
    let (id, now) = (client_id.to_string(), state.now());
    let audit = event(
        actor,
        "oidc.client_disabled",
        client_id,
        serde_json::json!({ "ip": actor.ip }),
    );
    let done = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                if tx.oidc_client(&id)?.is_none() {
                    return Ok(None);
                }
                let changed = tx.disable_oidc_client(&id, now)?;
                if changed {
                    tx.append_audit(&audit, now)?;
                }
                Ok(Some(changed))
            })
        })
        .await?;
    match done {
        None => Err(Error::NotFound),
        Some(_) => Ok(()),
    }
}

pub async fn list(state: &AppState) -> Result<Vec<OidcClient>> {
    Ok(state.storage.run(|s| s.list_oidc_clients()).await?)
}
