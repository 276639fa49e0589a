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
