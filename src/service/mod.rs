//! Services: one function per user action. They orchestrate protocol modules, policy,
//! storage and the audit chain; they know nothing of HTTP.

pub mod admins;
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
pub mod refusals;
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
    /// Someone not signed in, or whose session is not known.
    pub fn anonymous(ip: Option<String>) -> Self {
        Actor {
            id: "anonymous".into(),
            ip,
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
    refused_request(state, actor, "admin.forbidden", "not_admin", what).await
}

/// A form or API call failed its CSRF check (a stale page, or another site posting in the
/// member's name): refused (403) and audited as `csrf.refused`. `what` is the method and
/// path.
pub async fn csrf_refused(
    state: &crate::state::AppState,
    actor: &Actor,
    what: &str,
) -> crate::error::Result<()> {
    refused_request(state, actor, "csrf.refused", "csrf", what).await
}

/// Audits a ceremony request (`/api/enrol/…`, `/api/signin/…`) whose body could not be
/// read at all (`malformed_json`, …), refused before the ceremony's own code ran: as
/// `enrolment.refused` or `signin.refused`, within the per-address limit.
pub async fn unreadable_ceremony_request(
    state: &crate::state::AppState,
    actor: &Actor,
    path: &str,
    code: &'static str,
) -> crate::error::Result<()> {
    let action = if path.starts_with("/api/enrol/") {
        "enrolment.refused"
    } else if path.starts_with("/api/signin/") {
        "signin.refused"
    } else {
        return Ok(());
    };
    refused_request(state, actor, action, code, &format!("POST {path}")).await
}

async fn refused_request(
    state: &crate::state::AppState,
    actor: &Actor,
    action: &str,
    reason: &str,
    what: &str,
) -> crate::error::Result<()> {
    let event = crate::audit::NewAuditEvent {
        actor: actor.id.clone(),
        action: action.into(),
        subject: actor.id.clone(),
        outcome: crate::audit::Outcome::Refused,
        reason: Some(reason.into()),
        details: serde_json::json!({ "request": what, "ip": actor.ip }),
    };
    // Anyone can send a request without a CSRF token: within the per-address limit.
    refusals::record(state, actor, event).await
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
