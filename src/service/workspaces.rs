//! Workspaces (SPEC C6): members belong to workspaces, clients and service providers are
//! bound to one, and a sign-in for a workspace the member does not belong to is refused.
//! Workspaces come from the config file (GitOps; kept in step at start-up) or the admin.

use serde::{Deserialize, Serialize};

use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::service::{tokens, Actor};
use crate::state::AppState;
use crate::storage::{StorageError, Workspace};

/// A workspace declared in the config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// keygate's id for it (letters, digits, `-`, `_`).
    pub id: String,
    pub name: String,
    /// The vendor's workspace or organisation ID.
    pub external_id: String,
    /// E-mail addresses of members (added when they exist; others when they enrol).
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkspaceView {
    #[serde(flatten)]
    pub workspace: Workspace,
    pub members: Vec<WorkspaceMember>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkspaceMember {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
}

pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_fields(name: &str, external_id: &str) -> Result<()> {
    let printable = |s: &str, max: usize| {
        !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
    };
    if !printable(name, 100) {
        return Err(Error::bad_request(
            "invalid_workspace",
            "a workspace needs a name of at most 100 printable characters",
        ));
    }
    if !printable(external_id, 200) {
        return Err(Error::bad_request(
            "invalid_workspace",
            "a workspace needs the vendor's workspace ID (at most 200 printable characters)",
        ));
    }
    Ok(())
}

fn audit(
    actor: &Actor,
    action: &str,
    workspace: &str,
    details: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.id.clone(),
        action: action.into(),
        subject: format!("workspace:{workspace}"),
        outcome: Outcome::Success,
        reason: None,
        details,
    }
}

/// Brings config-declared workspaces into the database: creates or updates them and adds
/// the listed members that exist. Never removes anything an admin added.
pub async fn sync_from_config(state: &AppState) -> Result<()> {
    let declared = state.config.workspaces.clone();
    if declared.is_empty() {
        return Ok(());
    }
    let now = state.now();
    state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                for w in &declared {
                    match tx.workspace(&w.id)? {
                        Some(existing) => {
                            if existing.name != w.name || existing.external_id != w.external_id {
                                tx.update_workspace(&w.id, &w.name, &w.external_id)?;
                            }
                        }
                        None => {
                            tx.insert_workspace(&Workspace {
                                id: w.id.clone(),
                                name: w.name.clone(),
                                external_id: w.external_id.clone(),
                                source: "config".into(),
                                created_at: now,
                            })?;
                            tx.append_audit(
                                &audit(&Actor::system(), "workspace.created", &w.id, serde_json::json!({ "source": "config", "external_id": w.external_id })),
                                now,
                            )?;
                        }
                    }
                    for email in &w.members {
                        if let Some(user) = tx.user_by_email(email)? {
                            tx.add_workspace_member(&w.id, &user.id, "config", now)?;
                        }
                    }
                }
                Ok(())
            })
        })
        .await?;
    Ok(())
}

/// Adds a newly enrolled member to the config-declared workspaces that list them.
pub async fn join_declared(state: &AppState, user_id: &str, email: &str) -> Result<()> {
    let ids: Vec<String> = state
        .config
        .workspaces
        .iter()
        .filter(|w| w.members.iter().any(|m| m.eq_ignore_ascii_case(email)))
        .map(|w| w.id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let (uid, now) = (user_id.to_string(), state.now());
    state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                for id in &ids {
                    if tx.workspace(id)?.is_some() {
                        tx.add_workspace_member(id, &uid, "config", now)?;
                    }
                }
                Ok(())
            })
        })
        .await?;
    Ok(())
}

pub async fn create(
    state: &AppState,
    actor: &Actor,
    name: &str,
    external_id: &str,
) -> Result<Workspace> {
    check_fields(name, external_id)?;
    let now = state.now();
    let workspace = Workspace {
        id: tokens::new_id()[..12].to_string(),
        name: name.trim().into(),
        external_id: external_id.trim().into(),
        source: "admin".into(),
        created_at: now,
    };
    let w = workspace.clone();
    let event = audit(
        actor,
        "workspace.created",
        &w.id,
        serde_json::json!({ "source": "admin", "external_id": w.external_id, "ip": actor.ip }),
    );
    state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                tx.insert_workspace(&w)?;
                tx.append_audit(&event, now)?;
                Ok(())
            })
        })
        .await
        .map_err(|e| match e {
            StorageError::Conflict(_) => Error::Conflict {
                code: "workspace_exists",
                message: "a workspace with this vendor ID already exists".into(),
            },
            other => other.into(),
        })?;
    Ok(workspace)
}

pub async fn list(state: &AppState) -> Result<Vec<WorkspaceView>> {
    let workspaces = state.storage.run(|s| s.list_workspaces()).await?;
    let mut out = Vec::with_capacity(workspaces.len());
    for w in workspaces {
        out.push(view(state, w).await?);
    }
    Ok(out)
}

pub async fn detail(state: &AppState, id: &str) -> Result<WorkspaceView> {
    let wid = id.to_string();
    let w = state
        .storage
        .run(move |s| s.workspace(&wid))
        .await?
        .ok_or(Error::NotFound)?;
    view(state, w).await
}

async fn view(state: &AppState, workspace: Workspace) -> Result<WorkspaceView> {
    let wid = workspace.id.clone();
    let members = state
        .storage
        .run(move |s| {
            let ids = s.workspace_member_ids(&wid)?;
            let mut members = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(u) = s.user_by_id(&id)? {
                    members.push(WorkspaceMember {
                        user_id: u.id,
                        email: u.email,
                        display_name: u.display_name,
                    });
                }
            }
            Ok(members)
        })
        .await?;
    Ok(WorkspaceView { workspace, members })
}

/// Adds the member with `email` to the workspace.
pub async fn add_member(state: &AppState, actor: &Actor, id: &str, email: &str) -> Result<()> {
    let (wid, email, by, now) = (
        id.to_string(),
        email.trim().to_ascii_lowercase(),
        actor.id.clone(),
        state.now(),
    );
    let ip = actor.ip.clone();
    let added = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                if tx.workspace(&wid)?.is_none() {
                    return Ok(None);
                }
                let Some(user) = tx.user_by_email(&email)? else {
                    return Ok(Some(false));
                };
                if tx.add_workspace_member(&wid, &user.id, &by, now)? {
                    tx.append_audit(
                        &NewAuditEvent {
                            actor: by.clone(),
                            action: "workspace.member_added".into(),
                            subject: format!("user:{}", user.id),
                            outcome: Outcome::Success,
                            reason: None,
                            details: serde_json::json!({ "workspace": wid, "ip": ip }),
                        },
                        now,
                    )?;
                }
                Ok(Some(true))
            })
        })
        .await?;
    match added {
        None => Err(Error::NotFound),
        Some(false) => Err(Error::bad_request(
            "unknown_member",
            "no member has this e-mail address; invite them first",
        )),
        Some(true) => Ok(()),
    }
}

pub async fn remove_member(state: &AppState, actor: &Actor, id: &str, user_id: &str) -> Result<()> {
    let (wid, uid, now) = (id.to_string(), user_id.to_string(), state.now());
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "workspace.member_removed".into(),
        subject: format!("user:{user_id}"),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({ "workspace": id, "ip": actor.ip }),
    };
    let removed = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let removed = tx.remove_workspace_member(&wid, &uid)?;
                if removed {
                    tx.append_audit(&event, now)?;
                }
                Ok(removed)
            })
        })
        .await?;
    if removed {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// Whether `user_id` may sign in for `workspace_id` (the forcing rule of C6).
pub async fn is_member(state: &AppState, workspace_id: &str, user_id: &str) -> Result<bool> {
    let (w, u) = (workspace_id.to_string(), user_id.to_string());
    Ok(state
        .storage
        .run(move |s| s.is_workspace_member(&w, &u))
        .await?)
}
