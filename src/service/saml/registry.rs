//! The SP registry: SPs declared in config (kept in step at start-up), and SPs admins add
//! by hand or by importing metadata. Each registration is checked before it is stored.

use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::saml::sp::ServiceProvider;
use crate::service::Actor;
use crate::state::AppState;
use crate::storage::SamlSpRecord;

/// A registered SP as keygate uses it.
#[derive(Clone, Debug)]
pub struct RegisteredSp {
    pub sp: ServiceProvider,
    pub source: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub disabled_at: Option<i64>,
}

fn decode(r: SamlSpRecord) -> Result<RegisteredSp> {
    let sp: ServiceProvider = serde_json::from_str(&r.settings).map_err(|e| {
        Error::Internal(format!(
            "stored SAML SP `{}` does not parse: {e}",
            r.entity_id
        ))
    })?;
    Ok(RegisteredSp {
        sp,
        source: r.source,
        created_at: r.created_at,
        updated_at: r.updated_at,
        disabled_at: r.disabled_at,
    })
}

fn record(sp: &ServiceProvider, source: &str, now: i64) -> Result<SamlSpRecord> {
    Ok(SamlSpRecord {
        entity_id: sp.entity_id.clone(),
        name: sp.display_name().to_string(),
        settings: serde_json::to_string(sp).map_err(|e| Error::Internal(e.to_string()))?,
        workspace_id: sp.workspace.clone(),
        source: source.into(),
        created_at: now,
        updated_at: now,
        disabled_at: None,
    })
}

fn event(actor: &str, action: &str, entity_id: &str, details: serde_json::Value) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.into(),
        action: action.into(),
        subject: format!("saml_sp:{entity_id}"),
        outcome: Outcome::Success,
        reason: None,
        details,
    }
}

/// An enabled SP by entity ID.
pub async fn find_enabled(state: &AppState, entity_id: &str) -> Result<Option<RegisteredSp>> {
    if entity_id.len() > 1024 {
        return Ok(None);
    }
    let id = entity_id.to_string();
    let row = state.storage.run(move |s| s.saml_sp(&id)).await?;
    match row {
        Some(r) if r.disabled_at.is_none() => decode(r).map(Some),
        _ => Ok(None),
    }
}

pub async fn find(state: &AppState, entity_id: &str) -> Result<Option<RegisteredSp>> {
    let id = entity_id.to_string();
    state
        .storage
        .run(move |s| s.saml_sp(&id))
        .await?
        .map(decode)
        .transpose()
}

pub async fn list(state: &AppState) -> Result<Vec<RegisteredSp>> {
    state
        .storage
        .run(|s| s.list_saml_sps())
        .await?
        .into_iter()
        .map(decode)
        .collect()
}

/// Brings config-declared SPs into the database (creating or updating them). An SP an
/// admin added under the same entity ID is taken over by the config; nothing is removed.
pub async fn sync_from_config(state: &AppState) -> Result<()> {
    let declared = state.config.saml.service_providers.clone();
    if declared.is_empty() {
        return Ok(());
    }
    let now = state.now();
    let records = declared
        .iter()
        .map(|sp| record(sp, "config", now))
        .collect::<Result<Vec<_>>>()?;
    state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                for r in &records {
                    match tx.saml_sp(&r.entity_id)? {
                        Some(existing)
                            if existing.settings == r.settings && existing.source == "config" => {}
                        Some(_) => {
                            tx.update_saml_sp(r)?;
                            tx.append_audit(
                                &event(
                                    "system",
                                    "saml.sp_updated",
                                    &r.entity_id,
                                    serde_json::json!({ "source": "config" }),
                                ),
                                now,
                            )?;
                        }
                        None => {
                            tx.insert_saml_sp(r)?;
                            tx.append_audit(
                                &event(
                                    "system",
                                    "saml.sp_registered",
                                    &r.entity_id,
                                    serde_json::json!({ "source": "config" }),
                                ),
                                now,
                            )?;
                        }
                    }
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| match e {
            crate::storage::StorageError::Conflict(c) if c.contains("foreign") => {
                Error::bad_request(
                    "unknown_workspace",
                    "a declared SAML service provider names a workspace that does not exist",
                )
            }
            e => e.into(),
        })?;
    Ok(())
}

fn invalid(e: crate::saml::SamlError) -> Error {
    Error::bad_request("invalid_saml_sp", e.to_string())
}

/// Creates or replaces an admin-managed SP. SPs declared in config are changed in config.
pub async fn save(state: &AppState, actor: &Actor, sp: ServiceProvider) -> Result<RegisteredSp> {
    sp.validate().map_err(invalid)?;
    if let Some(w) = &sp.workspace {
        let id = w.clone();
        if state
            .storage
            .run(move |s| s.workspace(&id))
            .await?
            .is_none()
        {
            return Err(Error::bad_request(
                "unknown_workspace",
                "the workspace does not exist",
            ));
        }
    }
    let now = state.now();
    let r = record(&sp, "admin", now)?;
    let actor_id = actor.id.clone();
    let ip = actor.ip.clone();
    let entity = sp.entity_id.clone();
    state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let action = match tx.saml_sp(&r.entity_id)? {
                    Some(existing) if existing.source == "config" => {
                        return Err(crate::storage::StorageError::Conflict(
                            "saml_sp.config".into(),
                        ))
                    }
                    Some(_) => {
                        tx.update_saml_sp(&r)?;
                        "saml.sp_updated"
                    }
                    None => {
                        tx.insert_saml_sp(&r)?;
                        "saml.sp_registered"
                    }
                };
                tx.append_audit(
                    &event(
                        &actor_id,
                        action,
                        &r.entity_id,
                        serde_json::json!({
                            "source": "admin",
                            "workspace": r.workspace_id,
                            "ip": ip,
                        }),
                    ),
                    now,
                )?;
                Ok(())
            })
        })
        .await
        .map_err(|e| match e {
            crate::storage::StorageError::Conflict(c) if c == "saml_sp.config" => Error::Conflict {
                code: "declared_in_config",
                message: "this service provider is declared in the config file; change it there"
                    .into(),
            },
            e => e.into(),
        })?;
    find(state, &entity).await?.ok_or(Error::NotFound)
}

/// Reads an SP's metadata into a registration the admin can review (nothing is stored).
pub fn import(metadata: &str) -> Result<ServiceProvider> {
    crate::saml::metadata::import_sp(metadata)
        .map_err(|e| Error::bad_request("invalid_metadata", e.to_string()))
}

/// Disables (or re-enables) an SP: a disabled SP gets no responses.
pub async fn set_enabled(
    state: &AppState,
    actor: &Actor,
    entity_id: &str,
    enabled: bool,
) -> Result<()> {
    let now = state.now();
    let (id, actor_id, ip) = (entity_id.to_string(), actor.id.clone(), actor.ip.clone());
    let found = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                if !tx.set_saml_sp_disabled(&id, (!enabled).then_some(now))? {
                    return Ok(false);
                }
                let action = if enabled {
                    "saml.sp_enabled"
                } else {
                    "saml.sp_disabled"
                };
                tx.append_audit(
                    &event(&actor_id, action, &id, serde_json::json!({ "ip": ip })),
                    now,
                )?;
                Ok(true)
            })
        })
        .await?;
    if found {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}
