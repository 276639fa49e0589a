//! Credentials: enrolled hardware keys and their attestation evidence.

use diesel::prelude::*;

use super::error::{db_err, StorageError};
use super::models::{Credential, NewCredential, SignInKey, User};
use super::schema::{credentials, users};
use super::users::UserRow;
use super::{Storage, Tx};

impl Tx<'_> {
    /// Stores a credential. A WebAuthn credential id seen before is
    /// `Conflict("credentials.credential_id")`; an unknown user is
    /// `Conflict("foreign_key")`.
    pub fn insert_credential(&mut self, new: &NewCredential) -> Result<Credential, StorageError> {
        diesel::insert_into(credentials::table)
            .values(new)
            .execute(self.conn)
            .map_err(db_err)?;
        let new = new.clone();
        Ok(Credential {
            id: new.id,
            user_id: new.user_id,
            credential_id: new.credential_id,
            public_key_cose: new.public_key_cose,
            alg: new.alg,
            sign_count: new.sign_count,
            aaguid: new.aaguid,
            model: new.model,
            fips: new.fips,
            firmware: new.firmware,
            fmt: new.fmt,
            attestation_kind: new.attestation_kind,
            trust_anchor: new.trust_anchor,
            trust_anchor_sha256: new.trust_anchor_sha256,
            leaf_sha256: new.leaf_sha256,
            chain_json: new.chain_json,
            attestation_object: new.attestation_object,
            client_data_json: new.client_data_json,
            user_verified: new.user_verified,
            backup_eligible: new.backup_eligible,
            phishing_resistant: new.phishing_resistant,
            policy_version: new.policy_version,
            decision_json: new.decision_json,
            nickname: new.nickname,
            enrolled_at: new.enrolled_at,
            enrolled_by: new.enrolled_by,
            revoked_at: None,
            revoked_by: None,
            last_used_at: None,
        })
    }

    pub fn credential_by_id(&mut self, id: &str) -> Result<Option<Credential>, StorageError> {
        credentials::table
            .find(id)
            .first::<Credential>(self.conn)
            .optional()
            .map_err(db_err)
    }

    /// Looks a credential up by its WebAuthn credential id (revoked ones included:
    /// check [`Credential::is_active`]).
    pub fn credential_by_credential_id(
        &mut self,
        credential_id: &[u8],
    ) -> Result<Option<Credential>, StorageError> {
        credentials::table
            .filter(credentials::credential_id.eq(credential_id))
            .first::<Credential>(self.conn)
            .optional()
            .map_err(db_err)
    }

    /// The key with this WebAuthn credential id, as a sign-in needs it, and its member,
    /// in one query (revoked keys included). The attestation evidence, most of the row,
    /// stays in the database.
    pub fn sign_in_key(
        &mut self,
        credential_id: &[u8],
    ) -> Result<Option<(SignInKey, User)>, StorageError> {
        credentials::table
            .inner_join(users::table)
            .filter(credentials::credential_id.eq(credential_id))
            .select((SignInKey::as_select(), users::all_columns))
            .first::<(SignInKey, UserRow)>(self.conn)
            .optional()
            .map_err(db_err)?
            .map(|(key, user)| Ok((key, User::try_from(user)?)))
            .transpose()
    }

    /// A user's credentials, oldest first; only the not-revoked ones if `active_only`.
    pub fn credentials_for_user(
        &mut self,
        user_id: &str,
        active_only: bool,
    ) -> Result<Vec<Credential>, StorageError> {
        let mut query = credentials::table
            .filter(credentials::user_id.eq(user_id))
            .into_boxed();
        if active_only {
            query = query.filter(credentials::revoked_at.is_null());
        }
        query
            .order((credentials::enrolled_at.asc(), credentials::id.asc()))
            .load::<Credential>(self.conn)
            .map_err(db_err)
    }

    /// Every credential (for the compliance export), by user then enrolment time.
    pub fn list_credentials(&mut self) -> Result<Vec<Credential>, StorageError> {
        credentials::table
            .order((
                credentials::user_id.asc(),
                credentials::enrolled_at.asc(),
                credentials::id.asc(),
            ))
            .load::<Credential>(self.conn)
            .map_err(db_err)
    }

    /// Revokes a credential; `false` if there is no such credential or it was
    /// already revoked (the first revocation's time and author are kept).
    pub fn revoke_credential(&mut self, id: &str, by: &str, at: i64) -> Result<bool, StorageError> {
        let changed = diesel::update(
            credentials::table
                .find(id)
                .filter(credentials::revoked_at.is_null()),
        )
        .set((
            credentials::revoked_at.eq(Some(at)),
            credentials::revoked_by.eq(Some(by)),
        ))
        .execute(self.conn)
        .map_err(db_err)?;
        Ok(changed > 0)
    }

    /// Records a successful sign-in: the new signature counter and the time. `false`
    /// if there is no such active credential, or the stored counter is no longer below
    /// the new one (both 0 is the one equal case allowed): a concurrent use of the same
    /// counter value, which only a cloned key or a replay produces.
    pub fn update_sign_count_and_last_used(
        &mut self,
        id: &str,
        sign_count: i64,
        at: i64,
    ) -> Result<bool, StorageError> {
        // An authenticator without a counter always reports 0; once a counter was seen,
        // 0 is a regression and writes nothing (see `UpdateSignCount`).
        let update = super::prepared::UpdateSignCount { id, sign_count, at };
        let changed = super::prepared::execute(self.conn, update).map_err(db_err)?;
        Ok(changed > 0)
    }
}

/// One-call conveniences; compose several writes with [`Storage::transaction`].
impl Storage {
    pub fn insert_credential(&self, new: &NewCredential) -> Result<Credential, StorageError> {
        self.with_conn(|tx| tx.insert_credential(new))
    }

    pub fn credential_by_id(&self, id: &str) -> Result<Option<Credential>, StorageError> {
        self.with_conn(|tx| tx.credential_by_id(id))
    }

    pub fn credential_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<Credential>, StorageError> {
        self.with_conn(|tx| tx.credential_by_credential_id(credential_id))
    }

    pub fn credentials_for_user(
        &self,
        user_id: &str,
        active_only: bool,
    ) -> Result<Vec<Credential>, StorageError> {
        self.with_conn(|tx| tx.credentials_for_user(user_id, active_only))
    }

    pub fn list_credentials(&self) -> Result<Vec<Credential>, StorageError> {
        self.with_conn(|tx| tx.list_credentials())
    }

    pub fn revoke_credential(&self, id: &str, by: &str, at: i64) -> Result<bool, StorageError> {
        self.with_conn(|tx| tx.revoke_credential(id, by, at))
    }

    pub fn update_sign_count_and_last_used(
        &self,
        id: &str,
        sign_count: i64,
        at: i64,
    ) -> Result<bool, StorageError> {
        self.with_conn(|tx| tx.update_sign_count_and_last_used(id, sign_count, at))
    }
}
