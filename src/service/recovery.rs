//! Recovery of a member who lost every key (SPEC C2): no single admin can do it.
//!
//! One admin opens a request with a reason; a second, different admin approves it, each
//! with a fresh key touch. The approver must have been admin since before the request was
//! opened and must not have been made admin by the admin who opened it (see `admins`). The approval revokes the member's remaining keys, ends their
//! sessions and issues a short-lived one-time recovery link bound to that member, shown
//! once to the approving admin. Enrolling through the link adds the new key to the same
//! member (see `enrolment`), which completes the request.

use serde::Serialize;

use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::service::admins::{self, Approval};
use crate::service::session::{self, Session};
use crate::service::{tokens, Actor};
use crate::state::AppState;
use crate::storage::{
    InvitationKind, NewInvitation, RecoveryRequest, SessionScope, StorageError, UserStatus,
};

const REASON_MAX_CHARS: usize = 500;

/// A configured lifetime (bounded when the config is read) in seconds.
fn secs(configured: u64) -> i64 {
    i64::try_from(configured).unwrap_or(i64::MAX)
}

/// A request as admins see it (no link: that is shown once, at approval).
#[derive(Clone, Debug, Serialize)]
pub struct RecoveryView {
    pub id: String,
    pub user_id: String,
    pub requested_by: String,
    pub reason: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// `pending`, `approved`, `completed` or `expired`.
    pub status: String,
}

impl RecoveryView {
    fn of(r: RecoveryRequest, now: i64) -> Self {
        let status = if r.status == "pending" && r.expires_at <= now {
            "expired".to_string()
        } else {
            r.status
        };
        RecoveryView {
            id: r.id,
            user_id: r.user_id,
            requested_by: r.requested_by,
            reason: r.reason,
            created_at: r.created_at,
            expires_at: r.expires_at,
            approved_by: r.approved_by,
            approved_at: r.approved_at,
            completed_at: r.completed_at,
            status,
        }
    }

    pub fn is_pending(&self) -> bool {
        self.status == "pending"
    }
}

/// The approval's result: the one time the recovery link is visible.
#[derive(Clone, Debug, Serialize)]
pub struct IssuedRecovery {
    pub request: RecoveryView,
    pub invitation_id: String,
    pub link: String,
    pub expires_at: i64,
    pub revoked_keys: usize,
}

fn clean_reason(reason: &str) -> Result<String> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::bad_request(
            "reason_required",
            "say why this member needs recovery",
        ));
    }
    if reason.chars().count() > REASON_MAX_CHARS
        || reason
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r')
    {
        return Err(Error::bad_request(
            "invalid_reason",
            "the reason must be at most 500 printable characters",
        ));
    }
    Ok(reason.to_string())
}

/// Opens a recovery request for `user_id`. Revokes nothing; audited `recovery.requested`.
pub async fn request(
    state: &AppState,
    admin: &Session,
    actor: &Actor,
    user_id: &str,
    reason: &str,
) -> Result<RecoveryView> {
    let admin_id = admin.user_id().ok_or(Error::Unauthenticated)?.to_string();
    session::step_up(state, admin, actor, "recovery.request").await?;
    let reason = clean_reason(reason)?;
    let uid = user_id.to_string();
    let user = state
        .storage
        .run(move |s| s.user_by_id(&uid))
        .await?
        .ok_or(Error::NotFound)?;
    if user.id == admin_id {
        let err = Error::Forbidden("you cannot request your own recovery; ask two other admins");
        return refuse(state, actor, &user.id, None, "own_recovery", err).await;
    }
    if user.status != UserStatus::Active {
        return Err(Error::Conflict {
            code: "member_disabled",
            message: "this member is disabled; enable them before recovering their keys".into(),
        });
    }
    let now = state.now();
    let req = RecoveryRequest {
        id: tokens::new_id(),
        user_id: user.id.clone(),
        requested_by: admin_id,
        reason,
        created_at: now,
        expires_at: now + secs(state.config.enrolment.recovery_request_ttl_secs),
        approved_by: None,
        approved_at: None,
        invitation_id: None,
        completed_at: None,
        status: "pending".into(),
    };
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "recovery.requested".into(),
        subject: format!("user:{}", user.id),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({
            "request": req.id, "reason": req.reason, "expires_at": req.expires_at, "ip": actor.ip,
        }),
    };
    let stored = req.clone();
    state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                tx.insert_recovery_request(&stored)?;
                tx.append_audit(&event, now)?;
                Ok(())
            })
        })
        .await?;
    Ok(RecoveryView::of(req, now))
}

/// A member's recovery requests, newest first.
pub async fn list_for(state: &AppState, user_id: &str) -> Result<Vec<RecoveryView>> {
    let uid = user_id.to_string();
    let now = state.now();
    let all = state
        .storage
        .run(move |s| s.recovery_requests_for_user(&uid))
        .await?;
    Ok(all.into_iter().map(|r| RecoveryView::of(r, now)).collect())
}

/// Why an approval is refused, checked before writing and again by the conditional update.
fn refusal(req: &RecoveryRequest, approver: &str, now: i64) -> Option<(&'static str, Error)> {
    if req.requested_by == approver {
        return Some((
            "own_request",
            Error::Forbidden("you opened this recovery request; a different admin must approve it"),
        ));
    }
    if req.user_id == approver {
        return Some((
            "own_recovery",
            Error::Forbidden("you cannot approve your own recovery"),
        ));
    }
    if req.status != "pending" || req.approved_by.is_some() {
        return Some((
            "already_approved",
            Error::Conflict {
                code: "recovery_already_approved",
                message: "this recovery request was already approved".into(),
            },
        ));
    }
    if req.expires_at <= now {
        return Some((
            "expired",
            Error::gone(
                "recovery_expired",
                "this recovery request has expired; open a new one",
            ),
        ));
    }
    None
}

/// Audits `recovery.refused` for the member `user_id` (and the request, once there is
/// one), then answers `err`.
async fn refuse<T>(
    state: &AppState,
    actor: &Actor,
    user_id: &str,
    request: Option<&str>,
    why: &str,
    err: Error,
) -> Result<T> {
    let now = state.now();
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "recovery.refused".into(),
        subject: format!("user:{user_id}"),
        outcome: Outcome::Refused,
        reason: Some(why.to_string()),
        details: serde_json::json!({ "request": request, "ip": actor.ip }),
    };
    state
        .storage
        .run(move |s| s.append_audit(&event, now).map(|_| ()))
        .await?;
    Err(err)
}

/// The second admin approves: revokes the member's keys, ends their sessions and issues
/// the one-time recovery link, all or nothing.
/// An earlier approval's link still unused dies: one live recovery link at most.
fn retire_earlier_links(
    tx: &mut crate::storage::Tx<'_>,
    user_id: &str,
    now: i64,
) -> std::result::Result<(), StorageError> {
    for earlier in tx.recovery_requests_for_user(user_id)? {
        if let (Some(inv), "approved") = (&earlier.invitation_id, earlier.status.as_str()) {
            tx.revoke_invitation(inv, now)?;
        }
    }
    Ok(())
}

/// Whatever keys are left are presumed lost or stolen: none outlives recovery. Each
/// revocation is audited; returns how many were revoked.
fn revoke_remaining_keys(
    tx: &mut crate::storage::Tx<'_>,
    user_id: &str,
    by: &str,
    request_id: &str,
    ip: Option<&str>,
    now: i64,
) -> std::result::Result<usize, StorageError> {
    let mut revoked = 0;
    for key in tx.credentials_for_user(user_id, true)? {
        if tx.revoke_credential(&key.id, by, now)? {
            revoked += 1;
            tx.append_audit(
                &NewAuditEvent {
                    actor: by.to_owned(),
                    action: "key.revoked".into(),
                    subject: format!("user:{user_id}"),
                    outcome: Outcome::Success,
                    reason: None,
                    details: serde_json::json!({ "key_id": key.id, "aaguid": key.aaguid, "model": key.model, "by_admin": true, "recovery": request_id, "ip": ip }),
                },
                now,
            )?;
        }
    }
    Ok(revoked)
}

pub async fn approve(
    state: &AppState,
    admin: &Session,
    actor: &Actor,
    request_id: &str,
) -> Result<IssuedRecovery> {
    let approver = admin.user_id().ok_or(Error::Unauthenticated)?.to_string();
    session::step_up(state, admin, actor, "recovery.approve").await?;
    let (rid, aid) = (request_id.to_string(), approver.clone());
    let (req, user, approving) = state
        .storage
        .run(move |s| {
            let Some(req) = s.recovery_request_by_id(&rid)? else {
                return Ok(None);
            };
            let user = s.user_by_id(&req.user_id)?;
            let approving = s.user_by_id(&aid)?;
            Ok(user.map(|u| (req, u, approving)))
        })
        .await?
        .ok_or(Error::NotFound)?;
    let now = state.now();
    // A second admin only if neither the requester's making nor newer than the request.
    let second = || {
        let requester = format!("user:{}", req.requested_by);
        admins::refusal(
            approving.as_ref(),
            &requester,
            req.created_at,
            Approval::Recovery,
        )
    };
    if let Some((why, err)) = refusal(&req, &approver, now).or_else(second) {
        return refuse(state, actor, &req.user_id, Some(&req.id), why, err).await;
    }

    // The member's sessions end first: should the shared store fail, nothing is approved
    // or revoked yet (a retry does it all), and the link is never lost to a later failure.
    session::end(state, actor, &req.user_id, SessionScope::All).await?;

    let token = tokens::secret_token();
    let inv = NewInvitation {
        id: tokens::new_id(),
        token_hash: tokens::digest_hex(token.as_bytes()),
        kind: InvitationKind::Recovery,
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        role: user.role,
        created_by: Some(actor.id.clone()),
        created_at: now,
        expires_at: now + secs(state.config.enrolment.recovery_link_ttl_secs),
    };
    let subject = format!("user:{}", user.id);
    let approved = NewAuditEvent {
        actor: actor.id.clone(),
        action: "recovery.approved".into(),
        subject: subject.clone(),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({ "request": req.id, "requested_by": req.requested_by, "ip": actor.ip }),
    };
    let issued_event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "recovery.link_issued".into(),
        subject: subject.clone(),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({ "request": req.id, "invitation": inv.id, "expires_at": inv.expires_at, "ip": actor.ip }),
    };
    let (rid, uid, by, ip) = (
        req.id.clone(),
        user.id.clone(),
        actor.id.clone(),
        actor.ip.clone(),
    );
    let invitation = inv.clone();
    let result = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                retire_earlier_links(tx, &uid, now)?;
                tx.insert_invitation(&invitation)?;
                if !tx.approve_recovery_request(&rid, &approver, &invitation.id, now)? {
                    return Err(StorageError::Conflict("recovery_request".into()));
                }
                tx.append_audit(&approved, now)?;
                let revoked = revoke_remaining_keys(tx, &uid, &by, &rid, ip.as_deref(), now)?;
                tx.append_audit(&issued_event, now)?;
                Ok(revoked)
            })
        })
        .await;
    let revoked_keys = match result {
        Ok(n) => n,
        // Lost a race with another approval (or it expired meanwhile): refuse as such.
        Err(StorageError::Conflict(_)) => {
            let rid = req.id.clone();
            let fresh = state
                .storage
                .run(move |s| s.recovery_request_by_id(&rid))
                .await?
                .unwrap_or(req);
            let approver = admin.user_id().unwrap_or_default();
            let (why, err) = refusal(&fresh, approver, state.now()).unwrap_or((
                "already_approved",
                Error::Conflict {
                    code: "recovery_already_approved",
                    message: "this recovery request was already approved".into(),
                },
            ));
            return refuse(state, actor, &fresh.user_id, Some(&fresh.id), why, err).await;
        }
        Err(e) => return Err(e.into()),
    };
    // Once more after the commit, for a sign-in that finished in between with a key now
    // revoked. The approval stands either way: the link is shown only in this answer.
    if let Err(e) = session::end(state, actor, &user.id, SessionScope::All).await {
        tracing::warn!(error = %e, user = %user.id, "sessions begun during a recovery approval could not be ended");
    }
    let rid = req.id.clone();
    let req = state
        .storage
        .run(move |s| s.recovery_request_by_id(&rid))
        .await?
        .ok_or(Error::NotFound)?;
    Ok(IssuedRecovery {
        request: RecoveryView::of(req, now),
        invitation_id: inv.id,
        link: state.link(&format!("/enrol/{token}")),
        expires_at: inv.expires_at,
        revoked_keys,
    })
}
