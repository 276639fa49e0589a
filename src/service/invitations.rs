//! Invitation links: admin-created (single use, short TTL) and the first admin's
//! bootstrap link, printed once at start-up while no admin exists.

use serde::Serialize;

use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::service::{tokens, Actor};
use crate::state::AppState;
use crate::storage::{
    Invitation, InvitationFilter, InvitationKind, InvitationState, NewInvitation, Role,
};

/// A freshly created invitation: the only time the link is ever visible.
#[derive(Clone, Debug, Serialize)]
pub struct IssuedInvitation {
    pub id: String,
    pub email: String,
    pub role: String,
    pub link: String,
    pub expires_at: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct InvitationView {
    pub id: String,
    pub kind: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: &'static str,
}

pub fn status_of(inv: &Invitation, now: i64) -> &'static str {
    match inv.state(now) {
        InvitationState::Pending => "pending",
        InvitationState::Used => "used",
        InvitationState::Revoked => "revoked",
        InvitationState::Expired => "expired",
    }
}

pub(crate) fn valid_email(email: &str) -> bool {
    let email = email.trim();
    email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub(crate) fn clean_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "invalid_display_name",
            "the display name must be at most 100 printable characters",
        ));
    }
    Ok(name.to_string())
}

/// Creates an invitation for `email` with `role`; returns the link (shown once).
pub async fn create(
    state: &AppState,
    actor: &Actor,
    email: &str,
    display_name: &str,
    role: &str,
) -> Result<IssuedInvitation> {
    let email = email.trim().to_ascii_lowercase();
    if !valid_email(&email) {
        return Err(Error::bad_request(
            "invalid_email",
            "enter a valid e-mail address",
        ));
    }
    let role: Role = role
        .parse()
        .map_err(|_| Error::bad_request("invalid_role", "role must be member or admin"))?;
    let display_name = clean_name(display_name)?;
    let ttl = state.config.enrolment.invitation_ttl_secs as i64;
    issue(
        state,
        actor,
        InvitationKind::Invite,
        &email,
        &display_name,
        role,
        ttl,
        "invitation.created",
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn issue(
    state: &AppState,
    actor: &Actor,
    kind: InvitationKind,
    email: &str,
    display_name: &str,
    role: Role,
    ttl: i64,
    action: &str,
) -> Result<IssuedInvitation> {
    let token = tokens::secret_token();
    let now = state.now();
    let inv = NewInvitation {
        id: tokens::new_id(),
        token_hash: tokens::digest_hex(token.as_bytes()),
        kind,
        email: email.into(),
        display_name: display_name.into(),
        role,
        created_by: Some(actor.id.clone()),
        created_at: now,
        expires_at: now + ttl,
    };
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: action.into(),
        subject: format!("invitation:{}", inv.id),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({ "role": role.as_str(), "kind": kind.as_str(), "expires_at": inv.expires_at, "ip": actor.ip }),
    };
    let issued = IssuedInvitation {
        id: inv.id.clone(),
        email: email.into(),
        role: role.as_str().into(),
        link: state.link(&format!("/enrol/{token}")),
        expires_at: inv.expires_at,
    };
    state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                tx.insert_invitation(&inv)?;
                tx.append_audit(&event, now)?;
                Ok(())
            })
        })
        .await?;
    Ok(issued)
}

/// At start-up: while no admin exists, revoke earlier bootstrap links and issue a new one.
pub async fn ensure_bootstrap(state: &AppState) -> Result<Option<IssuedInvitation>> {
    let admins = state.storage.run(|s| s.count_admins()).await?;
    if admins > 0 {
        return Ok(None);
    }
    let now = state.now();
    state
        .storage
        .run(move |s| s.revoke_pending_invitations(InvitationKind::Bootstrap, now))
        .await?;
    let ttl = state.config.enrolment.bootstrap_ttl_secs as i64;
    let issued = issue(
        state,
        &Actor::system(),
        InvitationKind::Bootstrap,
        "",
        "",
        Role::Admin,
        ttl,
        "bootstrap.issued",
    )
    .await?;
    Ok(Some(issued))
}

/// Finds a usable invitation by its token: pending, not expired, not revoked.
///
/// A known invitation that is used, expired or revoked is refused with an audit event; an
/// unknown token is only logged (anyone can make those up, and the audit chain is not a
/// place for noise they choose).
pub async fn find_usable(state: &AppState, actor: &Actor, token: &str) -> Result<Invitation> {
    if token.len() > 128 {
        return Err(unusable());
    }
    let hash = tokens::digest_hex(token.as_bytes());
    let Some(inv) = state
        .storage
        .run(move |s| s.invitation_by_token_hash(&hash))
        .await?
    else {
        tracing::warn!(
            client.ip = actor.ip.as_deref().unwrap_or("-"),
            "unknown enrolment link"
        );
        return Err(unusable());
    };
    let bootstrap_closed =
        inv.kind == InvitationKind::Bootstrap && state.storage.run(|s| s.count_admins()).await? > 0;
    let err = match inv.state(state.now()) {
        // A bootstrap link dies the moment any admin exists, however that admin came to be.
        InvitationState::Pending if bootstrap_closed => unusable(),
        InvitationState::Pending => return Ok(inv),
        InvitationState::Used => Error::gone(
            "invitation_used",
            "this enrolment link was already used; ask your admin for a new one",
        ),
        InvitationState::Expired => Error::gone(
            "invitation_expired",
            "this enrolment link has expired; ask your admin for a new one",
        ),
        InvitationState::Revoked => unusable(),
    };
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "invitation.refused".into(),
        subject: format!("invitation:{}", inv.id),
        outcome: Outcome::Refused,
        reason: Some(err.code().to_string()),
        details: serde_json::json!({ "kind": inv.kind.as_str(), "ip": actor.ip }),
    };
    let now = state.now();
    state
        .storage
        .run(move |s| s.append_audit(&event, now).map(|_| ()))
        .await?;
    Err(err)
}

fn unusable() -> Error {
    Error::gone(
        "invitation_invalid",
        "this enrolment link is not valid; ask your admin for a new one",
    )
}

pub async fn list(state: &AppState) -> Result<Vec<InvitationView>> {
    let now = state.now();
    let all = state
        .storage
        .run(move |s| s.list_invitations(InvitationFilter::All, now))
        .await?;
    Ok(all
        .into_iter()
        .map(|i| InvitationView {
            status: status_of(&i, now),
            id: i.id,
            kind: i.kind.as_str().into(),
            email: i.email,
            display_name: i.display_name,
            role: i.role.as_str().into(),
            created_by: i.created_by,
            created_at: i.created_at,
            expires_at: i.expires_at,
        })
        .collect())
}

pub async fn revoke(state: &AppState, actor: &Actor, id: &str) -> Result<()> {
    let now = state.now();
    let id = id.to_string();
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "invitation.revoked".into(),
        subject: format!("invitation:{id}"),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({ "ip": actor.ip }),
    };
    let revoked = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let revoked = tx.revoke_invitation(&id, now)?;
                if revoked {
                    tx.append_audit(&event, now)?;
                }
                Ok(revoked)
            })
        })
        .await?;
    if revoked {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}
