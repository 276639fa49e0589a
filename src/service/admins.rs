//! The admin role: how it is granted, and who counts as a second admin.
//!
//! The two-admin rules (recovery of a member; an admin invitation once two admins exist)
//! are only as strong as the way admins come to exist. So the admin role comes only through
//! an invitation (the bootstrap link, an admin's invitation made with a fresh key touch,
//! or the operator's `keygate invite` while fewer than two admins exist); once two admins
//! exist, an admin invitation is used only after a second admin approved it. Each admin
//! records who made them admin and since when, and an admin never counts as the second to
//! the one who made them admin, nor to a request opened before they were admin.
//! See docs/decisions.md.

use crate::audit::{NewAuditEvent, Outcome};
use crate::error::Error;
use crate::service::Actor;
use crate::storage::{Role, StorageError, Tx, User, UserStatus};

/// What a second admin is asked to approve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Approval {
    /// A recovery request (the first admin opened it).
    Recovery,
    /// An admin invitation (the first admin created it).
    Invitation,
}

/// Why `approver` does not count as the second admin to `first` (the actor id,
/// `user:<id>`, of who opened the request or created the invitation at `opened_at`):
/// a reason code for the audit event and the 403 to answer. `None` when they do.
pub(crate) fn refusal(
    approver: Option<&User>,
    first: &str,
    opened_at: i64,
    what: Approval,
) -> Option<(&'static str, Error)> {
    let Some(approver) =
        approver.filter(|u| u.role == Role::Admin && u.status == UserStatus::Active)
    else {
        return Some((
            "not_admin",
            Error::Forbidden("only an active admin can approve this"),
        ));
    };
    // An admin with no recorded start (a role set outside keygate) approves nothing.
    if approver.admin_since.is_none_or(|since| since >= opened_at) {
        return Some((
            "admin_after_request",
            Error::Forbidden(match what {
                Approval::Recovery => "you became admin after this recovery request was opened; an admin who held the role before it must approve it",
                Approval::Invitation => "you became admin after this invitation was created; an admin who held the role before it must approve it",
            }),
        ));
    }
    if approver.made_admin_by(first) {
        return Some((
            "made_admin_by_requester",
            Error::Forbidden(match what {
                Approval::Recovery => "the admin who opened this request made you admin; a different admin must approve it",
                Approval::Invitation => "the admin who created this invitation made you admin; a different admin must approve it",
            }),
        ));
    }
    None
}

/// The admin role an invitation grants, recorded on the member it creates.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub invitation: String,
    pub granted_by: String,
    pub approved_by: Option<String>,
}

/// In the transaction that creates a member from invitation `invitation_id`, before the
/// member is inserted: the admin grant it carries (`None` for a member's invitation).
/// An admin invitation no second admin approved is refused, as
/// `Conflict("invitation_awaiting_approval")`, once two admins exist: checked here again
/// because admins may have come to exist since the link was opened.
pub(crate) fn grant_of(
    tx: &mut Tx<'_>,
    invitation_id: &str,
) -> Result<Option<Grant>, StorageError> {
    let Some(inv) = tx.invitation_by_id(invitation_id)? else {
        return Ok(None);
    };
    if inv.role != Role::Admin {
        return Ok(None);
    }
    if inv.grants_admin_unapproved() && tx.count_admins()? >= 2 {
        return Err(StorageError::Conflict(
            "invitation_awaiting_approval".into(),
        ));
    }
    Ok(Some(Grant {
        invitation: inv.id,
        granted_by: inv.created_by.unwrap_or_else(|| "system".into()),
        approved_by: inv.approved_by,
    }))
}

/// Records `grant` on the admin `user_id` just created, with its audit event
/// (`admin.granted`), in the same transaction.
pub(crate) fn record(
    tx: &mut Tx<'_>,
    user_id: &str,
    grant: &Grant,
    actor: &Actor,
    now: i64,
) -> Result<(), StorageError> {
    if !tx.record_admin_grant(user_id, &grant.granted_by, grant.approved_by.as_deref())? {
        return Err(StorageError::Conflict("admin_grant".into()));
    }
    tx.append_audit(
        &NewAuditEvent {
            actor: actor.id.clone(),
            action: "admin.granted".into(),
            subject: format!("user:{user_id}"),
            outcome: Outcome::Success,
            reason: None,
            details: serde_json::json!({
                "invitation": grant.invitation,
                "granted_by": grant.granted_by,
                "approved_by": grant.approved_by,
                "ip": actor.ip,
            }),
        },
        now,
    )?;
    Ok(())
}
