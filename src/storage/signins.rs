//! Recording a key sign-in: the key's new signature counter, the session it opened and
//! its audit event, in one transaction.
//!
//! Inside a group commit ([`super::Storage::audited`]) the sign-ins of a batch are
//! recorded together when its jobs have run: on PostgreSQL one statement stores every
//! counter and inserts every session ([`super::prepared::RecordSignIns`]), where one
//! round trip per write would cost the database more than the writes themselves. A job
//! learns whether its sign-in was recorded from its [`SignInTicket`] once the commit
//! returned.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use crate::audit::NewAuditEvent;

use super::error::{db_err, StorageError};
use super::group_commit::{Batch, QueuedAudit};
use super::prepared::RecordSignIns;
use super::sessions::SessionRecord;
use super::{DbConnection, Tx};

/// A proven sign-in to record: the counter goes up (or stays 0 for a key without one)
/// while the key is not revoked; then the session and `success` are written, otherwise
/// `refused` alone.
#[derive(Debug, Clone)]
pub struct SignInWrite {
    /// The credential's row id.
    pub key_id: String,
    pub sign_count: i64,
    /// Unix seconds: the key's last use and the audit event's time.
    pub at: i64,
    pub session: SessionRecord,
    pub success: NewAuditEvent,
    pub refused: NewAuditEvent,
}

/// Whether a sign-in was recorded; meaningful once the write that queued it committed.
#[derive(Debug, Clone, Default)]
pub struct SignInTicket(Arc<OnceLock<bool>>);

impl SignInTicket {
    pub fn recorded(&self) -> bool {
        self.0.get().copied().unwrap_or(false)
    }
}

pub(super) struct QueuedSignIn {
    write: SignInWrite,
    ticket: SignInTicket,
}

/// Session rows as one array per column, for PostgreSQL's `unnest`.
#[derive(Default)]
pub(super) struct SessionColumns {
    pub id: Vec<String>,
    pub user_id: Vec<String>,
    pub token_hash: Vec<String>,
    pub key_id: Vec<Option<String>>,
    pub user_verified: Vec<bool>,
    pub ip: Vec<Option<String>>,
    pub user_agent: Vec<Option<String>>,
    pub created_at: Vec<i64>,
    pub expires_at: Vec<i64>,
    pub ended_at: Vec<Option<i64>>,
    pub ended_by: Vec<Option<String>>,
}

impl SessionColumns {
    fn push(&mut self, r: &SessionRecord) {
        self.id.push(r.id.clone());
        self.user_id.push(r.user_id.clone());
        self.token_hash.push(r.token_hash.clone());
        self.key_id.push(r.key_id.clone());
        self.user_verified.push(r.user_verified);
        self.ip.push(r.ip.clone());
        self.user_agent.push(r.user_agent.clone());
        self.created_at.push(r.created_at);
        self.expires_at.push(r.expires_at);
        self.ended_at.push(r.ended_at);
        self.ended_by.push(r.ended_by.clone());
    }
}

impl Tx<'_> {
    /// Records `write` (see [`SignInWrite`]). In a group commit it is queued and written
    /// with the batch's other sign-ins; elsewhere at once.
    pub fn record_sign_in(&mut self, write: SignInWrite) -> Result<SignInTicket, StorageError> {
        // The PostgreSQL statement joins each session to its key's update by this column.
        if write.session.key_id.as_deref() != Some(write.key_id.as_str()) {
            return Err(StorageError::Backend(
                "a sign-in's session must name the key that signed in".into(),
            ));
        }
        let ticket = SignInTicket::default();
        let queued = QueuedSignIn {
            write,
            ticket: ticket.clone(),
        };
        match self.batch.as_mut() {
            Some(batch) => batch.sign_ins.push((batch.job, queued)),
            None => self.atomically(|tx| {
                tx.batch = Some(Batch::default());
                let written = tx.write_queued_sign_ins(vec![(0, queued)]);
                let batch = tx.batch.take().unwrap_or_default();
                written?;
                let events = batch.audits.into_iter().map(|(_, a)| a).collect();
                tx.append_queued(events).map(|_| ())
            })?,
        }
        Ok(ticket)
    }

    /// Writes the sign-ins the batch's jobs queued and queues their audit events.
    pub(super) fn record_queued_sign_ins(&mut self) -> Result<(), StorageError> {
        let queued = match self.batch.as_mut() {
            Some(batch) => std::mem::take(&mut batch.sign_ins),
            None => return Ok(()),
        };
        self.write_queued_sign_ins(queued)
    }

    fn write_queued_sign_ins(
        &mut self,
        mut rest: Vec<(usize, QueuedSignIn)>,
    ) -> Result<(), StorageError> {
        while !rest.is_empty() {
            // A key at most once per round: the same counter sent twice at once must
            // find the first one stored, as it would one after the other.
            let mut seen = HashSet::new();
            let (round, later): (Vec<_>, Vec<_>) = rest
                .into_iter()
                .partition(|(_, q)| seen.insert(q.write.key_id.clone()));
            rest = later;
            let bulk = round.len() > 1 && matches!(self.conn, DbConnection::Pg(_));
            let recorded = if bulk {
                self.write_round(&round)?
            } else {
                let mut recorded = HashSet::new();
                for (_, q) in &round {
                    let w = &q.write;
                    if self.update_sign_count_and_last_used(&w.key_id, w.sign_count, w.at)? {
                        self.insert_session(&w.session)?;
                        recorded.insert(w.key_id.clone());
                    }
                }
                recorded
            };
            for (job, q) in round {
                let ok = recorded.contains(&q.write.key_id);
                let event = if ok {
                    &q.write.success
                } else {
                    &q.write.refused
                };
                let audit = QueuedAudit::new(event, q.write.at)?;
                if let Some(batch) = self.batch.as_mut() {
                    batch.audits.push((job, audit));
                }
                let _ = q.ticket.0.set(ok);
            }
        }
        Ok(())
    }

    /// PostgreSQL: one statement for a round; the ids of the keys whose counter it stored.
    fn write_round(
        &mut self,
        round: &[(usize, QueuedSignIn)],
    ) -> Result<HashSet<String>, StorageError> {
        let (mut key_ids, mut sign_counts, mut ats) = (Vec::new(), Vec::new(), Vec::new());
        let mut sessions = SessionColumns::default();
        for (_, q) in round {
            key_ids.push(q.write.key_id.clone());
            sign_counts.push(q.write.sign_count);
            ats.push(q.write.at);
            sessions.push(&q.write.session);
        }
        let DbConnection::Pg(pg) = &mut *self.conn else {
            return Err(StorageError::Backend(
                "bulk sign-in writes are for PostgreSQL".into(),
            ));
        };
        let statement = RecordSignIns {
            key_ids: &key_ids,
            sign_counts: &sign_counts,
            ats: &ats,
            sessions: &sessions,
        };
        let updated: Vec<String> = diesel::RunQueryDsl::load(statement, pg).map_err(db_err)?;
        Ok(updated.into_iter().collect())
    }
}
