//! Invitation links: bootstrap, invite and recovery. Only the token's hash is stored.

use diesel::prelude::*;

use super::error::{db_err, StorageError};
use super::models::{Invitation, InvitationFilter, InvitationKind, NewInvitation, Role};
use super::schema::invitations;
use super::users::normalize_email;
use super::{Storage, Tx};

#[derive(Queryable)]
struct InvitationRow {
    id: String,
    token_hash: String,
    kind: String,
    email: String,
    display_name: String,
    role: String,
    created_by: Option<String>,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    used_by: Option<String>,
    revoked_at: Option<i64>,
    approved_by: Option<String>,
    approved_at: Option<i64>,
}

impl TryFrom<InvitationRow> for Invitation {
    type Error = StorageError;

    fn try_from(row: InvitationRow) -> Result<Self, Self::Error> {
        Ok(Invitation {
            kind: row.kind.parse().map_err(StorageError::corrupt)?,
            role: row.role.parse().map_err(StorageError::corrupt)?,
            id: row.id,
            token_hash: row.token_hash,
            email: row.email,
            display_name: row.display_name,
            created_by: row.created_by,
            created_at: row.created_at,
            expires_at: row.expires_at,
            used_at: row.used_at,
            used_by: row.used_by,
            revoked_at: row.revoked_at,
            approved_by: row.approved_by,
            approved_at: row.approved_at,
        })
    }
}

fn into_invitations(rows: Vec<InvitationRow>) -> Result<Vec<Invitation>, StorageError> {
    rows.into_iter().map(Invitation::try_from).collect()
}

impl Tx<'_> {
    /// Stores an invitation. A token hash seen before is
    /// `Conflict("invitations.token_hash")`.
    pub fn insert_invitation(&mut self, new: &NewInvitation) -> Result<Invitation, StorageError> {
        let invitation = Invitation {
            id: new.id.clone(),
            token_hash: new.token_hash.clone(),
            kind: new.kind,
            email: normalize_email(&new.email),
            display_name: new.display_name.clone(),
            role: new.role,
            created_by: new.created_by.clone(),
            created_at: new.created_at,
            expires_at: new.expires_at,
            used_at: None,
            used_by: None,
            revoked_at: None,
            approved_by: None,
            approved_at: None,
        };
        diesel::insert_into(invitations::table)
            .values((
                invitations::id.eq(&invitation.id),
                invitations::token_hash.eq(&invitation.token_hash),
                invitations::kind.eq(invitation.kind.as_str()),
                invitations::email.eq(&invitation.email),
                invitations::display_name.eq(&invitation.display_name),
                invitations::role.eq(invitation.role.as_str()),
                invitations::created_by.eq(&invitation.created_by),
                invitations::created_at.eq(invitation.created_at),
                invitations::expires_at.eq(invitation.expires_at),
            ))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(invitation)
    }

    pub fn invitation_by_id(&mut self, id: &str) -> Result<Option<Invitation>, StorageError> {
        invitations::table
            .find(id)
            .first::<InvitationRow>(self.conn)
            .optional()
            .map_err(db_err)?
            .map(Invitation::try_from)
            .transpose()
    }

    /// Looks an invitation up by the hash of its token ([`super::hash_token`]),
    /// whatever its state: check [`Invitation::state`].
    pub fn invitation_by_token_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<Invitation>, StorageError> {
        invitations::table
            .filter(invitations::token_hash.eq(token_hash))
            .first::<InvitationRow>(self.conn)
            .optional()
            .map_err(db_err)?
            .map(Invitation::try_from)
            .transpose()
    }

    /// Invitations in the given state at `now`, newest first.
    pub fn list_invitations(
        &mut self,
        filter: InvitationFilter,
        now: i64,
    ) -> Result<Vec<Invitation>, StorageError> {
        let mut query = invitations::table.into_boxed();
        query = match filter {
            InvitationFilter::All => query,
            InvitationFilter::Pending => query
                .filter(invitations::used_at.is_null())
                .filter(invitations::revoked_at.is_null())
                .filter(invitations::expires_at.gt(now)),
            InvitationFilter::Used => query.filter(invitations::used_at.is_not_null()),
            InvitationFilter::Expired => query
                .filter(invitations::used_at.is_null())
                .filter(invitations::revoked_at.is_null())
                .filter(invitations::expires_at.le(now)),
            InvitationFilter::Revoked => query
                .filter(invitations::used_at.is_null())
                .filter(invitations::revoked_at.is_not_null()),
        };
        let rows = query
            .order((invitations::created_at.desc(), invitations::id.asc()))
            .load::<InvitationRow>(self.conn)
            .map_err(db_err)?;
        into_invitations(rows)
    }

    /// Uses an invitation: `true` for exactly one caller, and only while it is
    /// pending at `at` (not used, not revoked, not expired). A single conditional
    /// `UPDATE`, so concurrent attempts cannot both win.
    pub fn mark_invitation_used(
        &mut self,
        id: &str,
        by: &str,
        at: i64,
    ) -> Result<bool, StorageError> {
        let changed = diesel::update(
            invitations::table
                .find(id)
                .filter(invitations::used_at.is_null())
                .filter(invitations::revoked_at.is_null())
                .filter(invitations::expires_at.gt(at)),
        )
        .set((
            invitations::used_at.eq(Some(at)),
            invitations::used_by.eq(Some(by)),
        ))
        .execute(self.conn)
        .map_err(db_err)?;
        Ok(changed == 1)
    }

    /// A second admin approves a pending admin invitation: `true` for exactly one caller,
    /// and only while it is pending at `at`, not yet approved, and `approver` (`user:<id>`)
    /// did not create it. A single conditional `UPDATE`.
    pub fn approve_invitation(
        &mut self,
        id: &str,
        approver: &str,
        at: i64,
    ) -> Result<bool, StorageError> {
        let changed = diesel::update(
            invitations::table
                .find(id)
                .filter(invitations::kind.eq(InvitationKind::Invite.as_str()))
                .filter(invitations::role.eq(Role::Admin.as_str()))
                .filter(invitations::approved_by.is_null())
                .filter(invitations::used_at.is_null())
                .filter(invitations::revoked_at.is_null())
                .filter(invitations::expires_at.gt(at))
                .filter(
                    invitations::created_by
                        .is_null()
                        .or(invitations::created_by.ne(approver)),
                ),
        )
        .set((
            invitations::approved_by.eq(Some(approver)),
            invitations::approved_at.eq(Some(at)),
        ))
        .execute(self.conn)
        .map_err(db_err)?;
        Ok(changed == 1)
    }

    /// Revokes a pending invitation; `false` if it was already used or revoked, or
    /// does not exist.
    pub fn revoke_invitation(&mut self, id: &str, at: i64) -> Result<bool, StorageError> {
        let changed = diesel::update(
            invitations::table
                .find(id)
                .filter(invitations::used_at.is_null())
                .filter(invitations::revoked_at.is_null()),
        )
        .set(invitations::revoked_at.eq(Some(at)))
        .execute(self.conn)
        .map_err(db_err)?;
        Ok(changed == 1)
    }

    /// Revokes every pending invitation of `kind` at `at` (e.g. an old bootstrap link
    /// once an admin exists); returns how many were revoked.
    pub fn revoke_pending_invitations(
        &mut self,
        kind: InvitationKind,
        at: i64,
    ) -> Result<usize, StorageError> {
        diesel::update(
            invitations::table
                .filter(invitations::kind.eq(kind.as_str()))
                .filter(invitations::used_at.is_null())
                .filter(invitations::revoked_at.is_null())
                .filter(invitations::expires_at.gt(at)),
        )
        .set(invitations::revoked_at.eq(Some(at)))
        .execute(self.conn)
        .map_err(db_err)
    }
}

/// One-call conveniences; compose several writes with [`Storage::transaction`].
impl Storage {
    pub fn insert_invitation(&self, new: &NewInvitation) -> Result<Invitation, StorageError> {
        self.with_conn(|tx| tx.insert_invitation(new))
    }

    pub fn invitation_by_id(&self, id: &str) -> Result<Option<Invitation>, StorageError> {
        self.with_conn(|tx| tx.invitation_by_id(id))
    }

    pub fn invitation_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<Invitation>, StorageError> {
        self.with_conn(|tx| tx.invitation_by_token_hash(token_hash))
    }

    pub fn list_invitations(
        &self,
        filter: InvitationFilter,
        now: i64,
    ) -> Result<Vec<Invitation>, StorageError> {
        self.with_conn(|tx| tx.list_invitations(filter, now))
    }

    pub fn mark_invitation_used(&self, id: &str, by: &str, at: i64) -> Result<bool, StorageError> {
        self.with_conn(|tx| tx.mark_invitation_used(id, by, at))
    }

    pub fn revoke_invitation(&self, id: &str, at: i64) -> Result<bool, StorageError> {
        self.with_conn(|tx| tx.revoke_invitation(id, at))
    }

    pub fn revoke_pending_invitations(
        &self,
        kind: InvitationKind,
        at: i64,
    ) -> Result<usize, StorageError> {
        self.with_conn(|tx| tx.revoke_pending_invitations(kind, at))
    }
}
