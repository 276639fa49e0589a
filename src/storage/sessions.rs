//! The durable index of signed-in sessions (the live records are in the ephemeral store).

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::{db_err, StorageError};
use super::schema::sessions;
use super::{Storage, Tx};

/// One signed-in session, as recorded when it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    /// Digest of the cookie value: the ephemeral store's key for the live session.
    #[serde(skip_serializing)]
    pub token_hash: String,
    /// The key that signed this session in (`None` for an enrolment that created it).
    pub key_id: Option<String>,
    pub user_verified: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub ended_by: Option<String>,
}

/// Which of a member's sessions to end.
#[derive(Debug, Clone, Copy)]
pub enum SessionScope<'a> {
    One(&'a str),
    All,
    /// Every session the key signed in.
    Key(&'a str),
}

impl Tx<'_> {
    pub fn insert_session(&mut self, record: &SessionRecord) -> Result<(), StorageError> {
        // Every column bound (NULLs too): one SQL text, prepared once per connection.
        let r = record;
        diesel::insert_into(sessions::table)
            .values((
                sessions::id.eq(&r.id),
                sessions::user_id.eq(&r.user_id),
                sessions::token_hash.eq(&r.token_hash),
                sessions::key_id.eq(&r.key_id),
                sessions::user_verified.eq(r.user_verified),
                sessions::ip.eq(&r.ip),
                sessions::user_agent.eq(&r.user_agent),
                sessions::created_at.eq(r.created_at),
                sessions::expires_at.eq(r.expires_at),
                sessions::ended_at.eq(r.ended_at),
                sessions::ended_by.eq(&r.ended_by),
            ))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(())
    }

    /// The member's sessions that have neither ended nor expired at `now`, newest first.
    pub fn live_sessions(
        &mut self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StorageError> {
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::ended_at.is_null())
            .filter(sessions::expires_at.gt(now))
            .order(sessions::created_at.desc())
            .load(self.conn)
            .map_err(db_err)
    }

    /// The live sessions of `user_id` that `scope` names.
    pub fn live_sessions_in(
        &mut self,
        user_id: &str,
        scope: SessionScope<'_>,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StorageError> {
        let mut live = self.live_sessions(user_id, now)?;
        live.retain(|s| match scope {
            SessionScope::One(id) => s.id == id,
            SessionScope::All => true,
            SessionScope::Key(key) => s.key_id.as_deref() == Some(key),
        });
        Ok(live)
    }

    /// Marks live sessions of `user_id` in `scope` ended; returns their token digests so
    /// the caller can delete the live records.
    pub fn end_sessions(
        &mut self,
        user_id: &str,
        scope: SessionScope<'_>,
        by: &str,
        now: i64,
    ) -> Result<Vec<String>, StorageError> {
        let chosen = self.live_sessions_in(user_id, scope, now)?;
        let ids: Vec<&str> = chosen.iter().map(|s| s.id.as_str()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(sessions::table.filter(sessions::id.eq_any(&ids)))
            .set((
                sessions::ended_at.eq(Some(now)),
                sessions::ended_by.eq(Some(by)),
            ))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(chosen.iter().map(|s| s.token_hash.clone()).collect())
    }

    /// Sessions of `user_id` that started at or after `since` (for reports).
    pub fn sessions_since(
        &mut self,
        user_id: &str,
        since: i64,
    ) -> Result<Vec<SessionRecord>, StorageError> {
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::created_at.ge(since))
            .order(sessions::created_at.desc())
            .load(self.conn)
            .map_err(db_err)
    }

    /// Every member's sessions that started at or after `since` (for compliance views).
    pub fn all_sessions_since(&mut self, since: i64) -> Result<Vec<SessionRecord>, StorageError> {
        sessions::table
            .filter(sessions::created_at.ge(since))
            .load(self.conn)
            .map_err(db_err)
    }
}

impl Storage {
    pub fn insert_session(&self, record: &SessionRecord) -> Result<(), StorageError> {
        self.with_conn(|tx| tx.insert_session(record))
    }

    pub fn live_sessions(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StorageError> {
        self.with_conn(|tx| tx.live_sessions(user_id, now))
    }

    pub fn end_sessions(
        &self,
        user_id: &str,
        scope: SessionScope<'_>,
        by: &str,
        now: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.transaction(|tx| tx.end_sessions(user_id, scope, by, now))
    }
}
