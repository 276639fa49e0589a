//! Exports of the managed configuration that pins a vendor's tool to a workspace (SPEC C6):
//! finds the workspace, renders the file with `crate::managed_config` and audits the export
//! (`workspace.managed_config_exported`: workspace, tool, file; the actor).

use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::managed_config::{self, ManagedConfigError, ManagedFile, PinTarget};
use crate::service::Actor;
use crate::state::AppState;
use crate::storage::Workspace;

/// A rendered file and the workspace it pins to.
#[derive(Clone, Debug)]
pub struct Export {
    pub workspace: Workspace,
    pub file: ManagedFile,
}

fn refused(e: ManagedConfigError) -> Error {
    match e {
        ManagedConfigError::Time(_) | ManagedConfigError::Toml(_) => Error::Internal(e.to_string()),
        other => Error::Conflict {
            code: "invalid_vendor_id",
            message: other.to_string(),
        },
    }
}

/// The workspace with keygate ID (or, failing that, vendor ID) `workspace`.
async fn find(state: &AppState, workspace: &str) -> Result<Workspace> {
    let wanted = workspace.to_owned();
    state
        .storage
        .run(move |s| {
            Ok(match s.workspace(&wanted)? {
                Some(w) => Some(w),
                None => s
                    .list_workspaces()?
                    .into_iter()
                    .find(|w| w.external_id == wanted),
            })
        })
        .await?
        .ok_or(Error::NotFound)
}

/// Codex's `requirements.toml` for `workspace` (its ID or vendor ID), audited. An unknown
/// workspace is [`Error::NotFound`]; a vendor ID that cannot be pinned (empty, control
/// characters, a comma) is a `Conflict` naming what to fix, and nothing is audited.
pub async fn codex_requirements(
    state: &AppState,
    actor: &Actor,
    workspace: &str,
) -> Result<Export> {
    let workspace = find(state, workspace).await?;
    let now = state.now();
    let file = managed_config::codex_requirements(
        &PinTarget {
            id: &workspace.id,
            name: &workspace.name,
            vendor_id: &workspace.external_id,
        },
        now,
    )
    .map_err(refused)?;
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "workspace.managed_config_exported".into(),
        subject: format!("workspace:{}", workspace.id),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({
            "workspace": workspace.id,
            "external_id": workspace.external_id,
            "tool": "codex",
            "file": file.filename,
            "ip": actor.ip,
        }),
    };
    state
        .storage
        .run(move |s| s.append_audit(&event, now))
        .await?;
    Ok(Export { workspace, file })
}
