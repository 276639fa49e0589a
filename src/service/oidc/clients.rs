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
        state.storage.forget_oidc_clients();
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

/// The scopes asked for, or `openid profile email` when none were.
fn scopes_or_default(scopes: &[String]) -> Vec<String> {
    if scopes.is_empty() {
        vec!["openid".into(), "profile".into(), "email".into()]
    } else {
        scopes.to_vec()
    }
}

/// A client's JWKS as stored (text), once it parses as public signing keys; `null` is none.
fn checked_jwks(doc: serde_json::Value) -> Result<Option<String>> {
    if doc.is_null() {
        return Ok(None);
    }
    let text = doc.to_string();
    ClientKeys::parse(&text).map_err(|m| Error::bad_request("invalid_client_metadata", m))?;
    Ok(Some(text))
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
    let scopes = scopes_or_default(&new.scopes);
    check_client(
        &new.name,
        &new.redirect_uris,
        &new.post_logout_redirect_uris,
        &scopes,
        &new.required_acr,
    )
    .map_err(|m| Error::bad_request("invalid_client_metadata", m))?;
    let workspace_id = new.workspace_id.filter(|w| !w.trim().is_empty());
    check_workspace(state, workspace_id.as_ref()).await?;
    let jwks = match new.jwks.filter(|j| !j.is_null()) {
        None => None,
        Some(_) if new.public => {
            return Err(Error::bad_request(
                "invalid_client_metadata",
                "a public client has no keys: drop jwks or public",
            ))
        }
        Some(doc) => checked_jwks(doc)?,
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
    let created = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                tx.insert_oidc_client(&c)?;
                tx.append_audit(&audit, now)?;
                Ok(())
            })
        })
        .await;
    state.storage.forget_oidc_clients();
    created?;
    Ok(CreatedClient {
        client,
        client_secret: secret,
    })
}

/// An admin's change to a client: its metadata, replaced as a whole. Whether it is public,
/// and how it authenticates (a secret, or keys), stay as created: a client of another kind
/// is a new client. A `private_key_jwt` client's `jwks` is replaced (key rotation).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientChange {
    pub name: String,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Allowed scopes; default `openid profile email`.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub id_token_alg: Algorithm,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub required_acr: Vec<String>,
    /// Required for, and only for, a `private_key_jwt` client.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
}

/// What a change to a stored client found.
enum Changed<T> {
    Done(T),
    Unknown,
    DeclaredInConfig,
    WrongMethod(&'static str),
}

fn declared_in_config() -> Error {
    Error::Conflict {
        code: "declared_in_config",
        message: "this client is declared in the config file; change it there".into(),
    }
}

async fn check_workspace(state: &AppState, workspace_id: Option<&String>) -> Result<()> {
    let Some(w) = workspace_id else {
        return Ok(());
    };
    let wid = w.clone();
    match state.storage.run(move |s| s.workspace(&wid)).await? {
        Some(_) => Ok(()),
        None => Err(Error::bad_request(
            "unknown_workspace",
            "there is no workspace with this id",
        )),
    }
}

/// Changes an admin-created client. Its live grants (and the tokens issued from them) are
/// revoked when the change narrows who may hold them: another workspace, other required
/// `acr` values, or a scope taken away. Audited as `oidc.client_updated`.
pub async fn update(
    state: &AppState,
    actor: &Actor,
    client_id: &str,
    change: ClientChange,
) -> Result<OidcClient> {
    let scopes = scopes_or_default(&change.scopes);
    check_client(
        &change.name,
        &change.redirect_uris,
        &change.post_logout_redirect_uris,
        &scopes,
        &change.required_acr,
    )
    .map_err(|m| Error::bad_request("invalid_client_metadata", m))?;
    let workspace_id = change.workspace_id.filter(|w| !w.trim().is_empty());
    check_workspace(state, workspace_id.as_ref()).await?;
    let jwks = change.jwks.map(checked_jwks).transpose()?.flatten();
    if change.id_token_alg != Algorithm::Es256 {
        super::keys::ensure(state, change.id_token_alg).await?;
    }
    let (id, now, ip) = (client_id.to_string(), state.now(), actor.ip.clone());
    let actor = actor.clone();
    let name = change.name.trim().to_string();
    let (redirect_uris, post_logout) = (change.redirect_uris, change.post_logout_redirect_uris);
    let (alg, required_acr) = (change.id_token_alg, change.required_acr);
    let outcome = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let Some(old) = tx.oidc_client(&id)? else {
                    return Ok(Changed::Unknown);
                };
                if old.source == "config" {
                    return Ok(Changed::DeclaredInConfig);
                }
                match (old.jwks.is_some(), jwks.is_some()) {
                    (true, false) => {
                        return Ok(Changed::WrongMethod(
                            "this client authenticates with private_key_jwt: send its jwks",
                        ))
                    }
                    (false, true) => {
                        return Ok(Changed::WrongMethod(
                            "this client does not authenticate with keys: create a new client for private_key_jwt",
                        ))
                    }
                    _ => {}
                }
                let new = OidcClient {
                    name: name.clone(),
                    redirect_uris: redirect_uris.clone(),
                    post_logout_redirect_uris: post_logout.clone(),
                    allowed_scopes: scopes.clone(),
                    id_token_alg: alg.as_str().into(),
                    workspace_id: workspace_id.clone(),
                    required_acr: required_acr.clone(),
                    jwks: jwks.clone(),
                    ..old.clone()
                };
                let changed = changed_fields(&old, &new);
                let narrowed = old.workspace_id != new.workspace_id
                    || old.required_acr != new.required_acr
                    || old
                        .allowed_scopes
                        .iter()
                        .any(|s| !new.allowed_scopes.contains(s));
                tx.update_oidc_client(&new)?;
                let revoked = if narrowed {
                    tx.revoke_client_grants(&new.client_id, "client_changed", now)?
                } else {
                    0
                };
                tx.append_audit(
                    &event(
                        &actor,
                        "oidc.client_updated",
                        &new.client_id,
                        serde_json::json!({
                            "changed": changed,
                            "grants_revoked": revoked,
                            "ip": ip,
                        }),
                    ),
                    now,
                )?;
                Ok(Changed::Done(new))
            })
        })
        .await;
    state.storage.forget_oidc_clients();
    let outcome = outcome?;
    match outcome {
        Changed::Done(c) => Ok(c),
        Changed::Unknown => Err(Error::NotFound),
        Changed::DeclaredInConfig => Err(declared_in_config()),
        Changed::WrongMethod(m) => Err(Error::bad_request("invalid_client_metadata", m)),
    }
}

/// The names of the fields a change touched (for the audit event; never a value of `jwks`).
fn changed_fields(old: &OidcClient, new: &OidcClient) -> Vec<&'static str> {
    [
        ("name", old.name != new.name),
        ("redirect_uris", old.redirect_uris != new.redirect_uris),
        (
            "post_logout_redirect_uris",
            old.post_logout_redirect_uris != new.post_logout_redirect_uris,
        ),
        ("scopes", old.allowed_scopes != new.allowed_scopes),
        ("id_token_alg", old.id_token_alg != new.id_token_alg),
        ("workspace_id", old.workspace_id != new.workspace_id),
        ("required_acr", old.required_acr != new.required_acr),
        ("jwks", old.jwks != new.jwks),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}

/// Gives an admin-created client that authenticates with a secret a new one, shown this
/// once; the old one stops working at once. Audited as `oidc.client_secret_rotated`.
pub async fn rotate_secret(
    state: &AppState,
    actor: &Actor,
    client_id: &str,
) -> Result<CreatedClient> {
    let secret = format!("{SECRET_PREFIX}{}", tokens::secret_token());
    let digest = secret_digest(&secret);
    let (id, now) = (client_id.to_string(), state.now());
    let audit = event(
        actor,
        "oidc.client_secret_rotated",
        client_id,
        serde_json::json!({ "ip": actor.ip }),
    );
    let outcome = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let Some(old) = tx.oidc_client(&id)? else {
                    return Ok(Changed::Unknown);
                };
                if old.source == "config" {
                    return Ok(Changed::DeclaredInConfig);
                }
                if old.secret_sha256.is_none() {
                    return Ok(Changed::WrongMethod(
                        "this client has no secret (a public or private_key_jwt client)",
                    ));
                }
                let new = OidcClient {
                    secret_sha256: Some(digest.clone()),
                    ..old
                };
                tx.update_oidc_client(&new)?;
                tx.append_audit(&audit, now)?;
                Ok(Changed::Done(new))
            })
        })
        .await;
    state.storage.forget_oidc_clients();
    let outcome = outcome?;
    match outcome {
        Changed::Done(client) => Ok(CreatedClient {
            client,
            client_secret: Some(secret),
        }),
        Changed::Unknown => Err(Error::NotFound),
        Changed::DeclaredInConfig => Err(declared_in_config()),
        Changed::WrongMethod(m) => Err(Error::bad_request("invalid_request", m)),
    }
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
        .await;
    state.storage.forget_oidc_clients();
    let done = done?;
    match done {
        None => Err(Error::NotFound),
        Some(_) => Ok(()),
    }
}

pub async fn list(state: &AppState) -> Result<Vec<OidcClient>> {
    Ok(state.storage.run(|s| s.list_oidc_clients()).await?)
}
