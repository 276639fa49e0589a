//! Recovery requests: a member who lost every key is recovered only when two different
//! admins agree. Approval and completion are conditional `UPDATE`s, so concurrent
//! attempts cannot both win.

use diesel::prelude::*;
use serde::Serialize;

use super::error::{db_err, StorageError};
use super::schema::recovery_requests as rr;
use super::{Storage, Tx};

/// One recovery request and where it stands (`pending`, `approved`, `completed`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Queryable, Insertable)]
#[diesel(table_name = rr)]
pub struct RecoveryRequest {
    pub id: String,
    pub user_id: String,
    pub requested_by: String,
    pub reason: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    pub invitation_id: Option<String>,
    pub completed_at: Option<i64>,
    pub status: String,
}

impl Tx<'_> {
    pub fn insert_recovery_request(&mut self, new: &RecoveryRequest) -> Result<(), StorageError> {
        diesel::insert_into(rr::table)
            .values(new)
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(())
    }

    pub fn recovery_request_by_id(
        &mut self,
        id: &str,
    ) -> Result<Option<RecoveryRequest>, StorageError> {
        rr::table
            .find(id)
            .first::<RecoveryRequest>(self.conn)
            .optional()
            .map_err(db_err)
    }

    /// The request whose approval issued invitation `invitation_id`.
    pub fn recovery_request_by_invitation(
        &mut self,
        invitation_id: &str,
    ) -> Result<Option<RecoveryRequest>, StorageError> {
        rr::table
            .filter(rr::invitation_id.eq(invitation_id))
            .first::<RecoveryRequest>(self.conn)
            .optional()
            .map_err(db_err)
    }

    /// A member's recovery requests, newest first.
    pub fn recovery_requests_for_user(
        &mut self,
        user_id: &str,
    ) -> Result<Vec<RecoveryRequest>, StorageError> {
        rr::table
            .filter(rr::user_id.eq(user_id))
            .order((rr::created_at.desc(), rr::id.asc()))
            .load::<RecoveryRequest>(self.conn)
            .map_err(db_err)
    }

    /// Approves a pending, unexpired request by `approver` and binds it to the recovery
    /// invitation: `true` for exactly one caller, and never for the admin who opened the
    /// request or the member it recovers.
    pub fn approve_recovery_request(
        &mut self,
        id: &str,
        approver: &str,
        invitation_id: &str,
        at: i64,
    ) -> Result<bool, StorageError> {
        let changed = diesel::update(
            rr::table
                .find(id)
                .filter(rr::status.eq("pending"))
                .filter(rr::approved_by.is_null())
                .filter(rr::requested_by.ne(approver))
                .filter(rr::user_id.ne(approver))
                .filter(rr::expires_at.gt(at)),
        )
        .set((
            rr::approved_by.eq(Some(approver)),
            rr::approved_at.eq(Some(at)),
            rr::invitation_id.eq(Some(invitation_id)),
            rr::status.eq("approved"),
        ))
        .execute(self.conn)
        .map_err(db_err)?;
        Ok(changed == 1)
    }

    /// Marks an approved request completed (its link was used): `true` once.
    pub fn complete_recovery_request(&mut self, id: &str, at: i64) -> Result<bool, StorageError> {
        let changed = diesel::update(
            rr::table
                .find(id)
                .filter(rr::status.eq("approved"))
                .filter(rr::completed_at.is_null()),
        )
        .set((rr::completed_at.eq(Some(at)), rr::status.eq("completed")))
        .execute(self.conn)
        .map_err(db_err)?;
        Ok(changed == 1)
    }
}

/// One-call conveniences.
impl Storage {
    pub fn recovery_request_by_id(
        &self,
        id: &str,
    ) -> Result<Option<RecoveryRequest>, StorageError> {
        self.with_conn(|tx| tx.recovery_request_by_id(id))
    }

    pub fn recovery_request_by_invitation(
        &self,
        invitation_id: &str,
    ) -> Result<Option<RecoveryRequest>, StorageError> {
        self.with_conn(|tx| tx.recovery_request_by_invitation(invitation_id))
    }

    pub fn recovery_requests_for_user(
        &self,
        user_id: &str,
    ) -> Result<Vec<RecoveryRequest>, StorageError> {
        self.with_conn(|tx| tx.recovery_requests_for_user(user_id))
    }
}
