//! Services: one function per user action. They orchestrate protocol modules, policy,
//! storage and the audit chain; they know nothing of HTTP.

pub mod alerts;
pub mod audit_log;
pub mod ceremony;
pub mod compliance;
pub mod dashboard;
pub mod enrolment;
pub mod invitations;
pub mod limits;
pub mod managed_config;
pub mod members;
pub mod oidc;
pub mod recovery;
pub mod saml;
pub mod session;
pub mod siem;
pub mod signin;
pub mod tokens;
pub mod webhook;
pub mod workspaces;

/// Who or what performed an action, as recorded in the audit chain.
#[derive(Clone, Debug)]
pub struct Actor {
    /// `user:<id>`, `invitation:<id>`, `cli`, `system` or `anonymous`.
    pub id: String,
    /// Client address, when the action came over HTTP.
    pub ip: Option<String>,
}

impl Actor {
    pub fn user(id: &str, ip: Option<String>) -> Self {
        Actor {
            id: format!("user:{id}"),
            ip,
        }
    }
    pub fn cli() -> Self {
        Actor {
            id: "cli".into(),
            ip: None,
        }
    }
    pub fn system() -> Self {
        Actor {
            id: "system".into(),
            ip: None,
        }
    }
}

/// A signed-in member who is not an admin asked for an admin page or API: refused (403)
/// and audited as `admin.forbidden`, since it may be someone probing for more than their
/// role allows. `what` is the method and path asked for.
pub async fn forbidden(
    state: &crate::state::AppState,
    actor: &Actor,
    what: &str,
) -> crate::error::Result<()> {
    let event = crate::audit::NewAuditEvent {
        actor: actor.id.clone(),
        action: "admin.forbidden".into(),
        subject: actor.id.clone(),
        outcome: crate::audit::Outcome::Refused,
        reason: Some("not_admin".into()),
        details: serde_json::json!({ "request": what, "ip": actor.ip }),
    };
    Ok(audit(state, event).await?)
}

/// Appends one audit event (through the group commit) and waits for it.
pub(crate) async fn audit(
    state: &crate::state::AppState,
    event: crate::audit::NewAuditEvent,
) -> Result<(), crate::storage::StorageError> {
    let now = state.now();
    state
        .storage
        .audited(move |tx| tx.queue_audit(&event, now))
        .await
}
