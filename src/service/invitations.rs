//! Invitation links: admin-created (single use, short TTL) and the first admin's
//! bootstrap link, printed once at start-up while no admin exists.
//!
//! An invitation with the admin role is how the admin role is granted (see `admins`): an
//! admin makes one with a fresh key touch; once two admins exist it is used only after a
//! second admin approved it (also with a fresh touch); the operator's `keygate invite`
//! makes one only while fewer than two admins exist.

use serde::Serialize;

use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::service::admins::{self, Approval};
use crate::service::session::{self, Session};
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
    /// An admin invitation the link of which works only once a second admin approved it.
    pub awaiting_approval: bool,
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
    /// The second admin who approved an admin invitation, and when.
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    /// `pending`, `awaiting_approval` (an admin invitation that needs a second admin
    /// first), `used`, `revoked` or `expired`.
    pub status: &'static str,
}

/// Where `inv` stands at `now` with `admins` active admins.
pub fn status_of(inv: &Invitation, now: i64, admins: i64) -> &'static str {
    match inv.state(now) {
        InvitationState::Pending if awaits_approval(inv, admins) => "awaiting_approval",
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

/// Whether `inv`, pending, waits for a second admin: an admin invitation no second admin
/// approved, while `admins` (two or more) exist.
fn awaits_approval(inv: &Invitation, admins: i64) -> bool {
    inv.grants_admin_unapproved() && admins >= 2
}

/// The invitation's checked fields.
fn checked(email: &str, display_name: &str, role: &str) -> Result<(String, String, Role)> {
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
    Ok((email, clean_name(display_name)?, role))
}

async fn count_admins(state: &AppState) -> Result<i64> {
    Ok(state.storage.run(|s| s.count_admins()).await?)
}

/// The operator's invitation (`keygate invite`, with access to the server's config and
/// database), for `email` with `role`; returns the link (shown once). An admin invitation
/// only while fewer than two admins exist (refused and audited otherwise: admins invite
/// admins from the admin pages, where a second admin approves); used once two admins
/// exist, it too needs a second admin's approval first. Admins use [`invite`].
pub async fn create(
    state: &AppState,
    actor: &Actor,
    email: &str,
    display_name: &str,
    role: &str,
) -> Result<IssuedInvitation> {
    let (email, display_name, role) = checked(email, display_name, role)?;
    if role == Role::Admin {
        // An admin's own grants go through `invite`, with a fresh touch and, once two
        // admins exist, a second admin.
        if actor.id.starts_with("user:") {
            return Err(Error::Forbidden(
                "admins invite admins from the admin pages, with a fresh key touch",
            ));
        }
        if count_admins(state).await? >= 2 {
            let err = Error::Forbidden(
                "two or more admins exist: an admin invites the new admin from the admin pages and a second admin approves it",
            );
            return refuse(state, actor, None, "admin_approval_required", err).await;
        }
    }
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

/// An admin's invitation for `email` with `role`; returns the link (shown once). Granting
/// the admin role needs a fresh key touch (refused and audited as `step_up.refused`
/// otherwise); once two admins exist, the link works only after a second admin approved
/// it ([`approve`]).
pub async fn invite(
    state: &AppState,
    admin: &Session,
    actor: &Actor,
    email: &str,
    display_name: &str,
    role: &str,
) -> Result<IssuedInvitation> {
    let (email, display_name, role) = checked(email, display_name, role)?;
    if role == Role::Admin {
        session::step_up(state, admin, actor, "invitation.create_admin").await?;
    }
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
    let mut event = NewAuditEvent {
        actor: actor.id.clone(),
        action: action.into(),
        subject: format!("invitation:{}", inv.id),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({ "role": role.as_str(), "kind": kind.as_str(), "expires_at": inv.expires_at, "ip": actor.ip }),
    };
    let mut issued = IssuedInvitation {
        id: inv.id.clone(),
        email: email.into(),
        role: role.as_str().into(),
        link: state.link(&format!("/enrol/{token}")),
        expires_at: inv.expires_at,
        awaiting_approval: false,
    };
    let grants_admin = kind == InvitationKind::Invite && role == Role::Admin;
    let admins = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                // Counted with the insert, so the audit event says what held when it was made.
                let admins = if grants_admin { tx.count_admins()? } else { 0 };
                if grants_admin {
                    event.details["approval_required"] = serde_json::json!(admins >= 2);
                }
                tx.insert_invitation(&inv)?;
                tx.append_audit(&event, now)?;
                Ok(admins)
            })
        })
        .await?;
    issued.awaiting_approval = grants_admin && admins >= 2;
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
/// A known invitation that is used, expired or revoked is refused with an audit event; so is
/// an unknown token, through the refusal limiter (anyone can make those up: a flood from one
/// address is summarised, `service::refusals`).
pub async fn find_usable(state: &AppState, actor: &Actor, token: &str) -> Result<Invitation> {
    let hash = (token.len() <= 128).then(|| tokens::digest_hex(token.as_bytes()));
    let found = match hash {
        Some(hash) => {
            state
                .storage
                .run(move |s| s.invitation_by_token_hash(&hash))
                .await?
        }
        None => None,
    };
    let Some(inv) = found else {
        tracing::warn!(
            client.ip = actor.ip.as_deref().unwrap_or("-"),
            "unknown enrolment link"
        );
        let err = unusable();
        let event = crate::service::refusals::event(
            actor,
            "invitation.refused",
            "invitation:unknown",
            &err,
            serde_json::json!({}),
        );
        crate::service::refusals::record(state, actor, event).await?;
        return Err(err);
    };
    let admins = if inv.kind == InvitationKind::Bootstrap || inv.grants_admin_unapproved() {
        count_admins(state).await?
    } else {
        0
    };
    let err = match inv.state(state.now()) {
        // A bootstrap link dies the moment any admin exists, however that admin came to be.
        InvitationState::Pending if inv.kind == InvitationKind::Bootstrap && admins > 0 => {
            unusable()
        }
        InvitationState::Pending if awaits_approval(&inv, admins) => awaiting_approval(),
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

/// An admin invitation used before a second admin approved it.
pub(crate) fn awaiting_approval() -> Error {
    Error::Conflict {
        code: "invitation_awaiting_approval",
        message: "this admin invitation waits for a second admin's approval; try the link again once it is approved".into(),
    }
}

/// Audits `invitation.refused` (`why`, about invitation `id` when there is one), then
/// answers `err`.
async fn refuse<T>(
    state: &AppState,
    actor: &Actor,
    id: Option<&str>,
    why: &str,
    err: Error,
) -> Result<T> {
    let now = state.now();
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "invitation.refused".into(),
        subject: id.map_or_else(|| actor.id.clone(), |id| format!("invitation:{id}")),
        outcome: Outcome::Refused,
        reason: Some(why.to_string()),
        details: serde_json::json!({ "ip": actor.ip }),
    };
    state
        .storage
        .run(move |s| s.append_audit(&event, now).map(|_| ()))
        .await?;
    Err(err)
}

/// A second admin approves admin invitation `id` with a fresh key touch; its link works
/// from then on. Refused (403, audited `invitation.refused`) for the admin who created
/// it, an admin who became admin after it was created or whom its creator made admin;
/// audited `invitation.approved`.
pub async fn approve(
    state: &AppState,
    admin: &Session,
    actor: &Actor,
    id: &str,
) -> Result<InvitationView> {
    let approver_id = admin.user_id().ok_or(Error::Unauthenticated)?.to_string();
    session::step_up(state, admin, actor, "invitation.approve").await?;
    let (iid, uid) = (id.to_string(), approver_id.clone());
    let (inv, approver) = state
        .storage
        .run(move |s| Ok((s.invitation_by_id(&iid)?, s.user_by_id(&uid)?)))
        .await?;
    let inv = inv.ok_or(Error::NotFound)?;
    let now = state.now();
    let first = inv.created_by.clone().unwrap_or_default();
    let refusal = if inv.kind != InvitationKind::Invite || inv.role != Role::Admin {
        Some((
            "not_admin_invitation",
            Error::Conflict {
                code: "not_admin_invitation",
                message: "only admin invitations wait for a second admin".into(),
            },
        ))
    } else if first == actor.id {
        Some((
            "own_invitation",
            Error::Forbidden("you created this invitation; a different admin must approve it"),
        ))
    } else if inv.approved_by.is_some() {
        Some((
            "invitation_already_approved",
            Error::Conflict {
                code: "invitation_already_approved",
                message: "this invitation was already approved".into(),
            },
        ))
    } else if inv.state(now) != InvitationState::Pending {
        Some((
            "invitation_not_pending",
            Error::Conflict {
                code: "invitation_not_pending",
                message: "this invitation was used, revoked or has expired".into(),
            },
        ))
    } else {
        admins::refusal(
            approver.as_ref(),
            &first,
            inv.created_at,
            Approval::Invitation,
        )
    };
    if let Some((why, err)) = refusal {
        return refuse(state, actor, Some(&inv.id), why, err).await;
    }
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "invitation.approved".into(),
        subject: format!("invitation:{}", inv.id),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({ "role": inv.role.as_str(), "created_by": inv.created_by, "ip": actor.ip }),
    };
    let (iid, by) = (inv.id.clone(), actor.id.clone());
    let approved = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                if !tx.approve_invitation(&iid, &by, now)? {
                    return Ok(false);
                }
                tx.append_audit(&event, now)?;
                Ok(true)
            })
        })
        .await?;
    if !approved {
        // Lost a race with another approval, a use or a revocation.
        let err = Error::Conflict {
            code: "invitation_not_pending",
            message: "this invitation was approved, used or revoked meanwhile".into(),
        };
        return refuse(state, actor, Some(&inv.id), "invitation_not_pending", err).await;
    }
    let admins = count_admins(state).await?;
    let iid = inv.id.clone();
    let inv = state
        .storage
        .run(move |s| s.invitation_by_id(&iid))
        .await?
        .ok_or(Error::NotFound)?;
    Ok(view(inv, now, admins))
}

fn view(i: Invitation, now: i64, admins: i64) -> InvitationView {
    InvitationView {
        status: status_of(&i, now, admins),
        id: i.id,
        kind: i.kind.as_str().into(),
        email: i.email,
        display_name: i.display_name,
        role: i.role.as_str().into(),
        created_by: i.created_by,
        created_at: i.created_at,
        expires_at: i.expires_at,
        approved_by: i.approved_by,
        approved_at: i.approved_at,
    }
}

pub async fn list(state: &AppState) -> Result<Vec<InvitationView>> {
    let now = state.now();
    let (all, admins) = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                Ok((
                    tx.list_invitations(InvitationFilter::All, now)?,
                    tx.count_admins()?,
                ))
            })
        })
        .await?;
    Ok(all.into_iter().map(|i| view(i, now, admins)).collect())
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
