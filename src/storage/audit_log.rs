//! Audit events: append (chained with [`crate::audit::link_hash`]), query, verify.
//!
//! Appends serialise on the single `audit_head` row: the first statement of an append
//! is an `UPDATE` of that row, which takes its row lock on PostgreSQL and the write
//! lock on SQLite, so seq numbers and `prev_hash` links are assigned one at a time,
//! inside the caller's transaction. Concurrent requests share that cost through the
//! group commit (`group_commit.rs`): one lock, one insert and one head update per batch.

use diesel::prelude::*;

use crate::audit::{
    AuditRecord, BreakKind, ChainBreak, ChainHead, ChainVerifier, NewAuditEvent, VerifiedChain,
};

use super::error::{db_err, StorageError};
use super::models::AuditQuery;
use super::schema::{audit_events, audit_head};
use super::{Storage, Tx};

const HEAD_ID: i32 = 1;
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
const VERIFY_PAGE: i64 = 1000;

type AuditColumns = (
    audit_events::seq,
    audit_events::id,
    audit_events::at,
    audit_events::actor,
    audit_events::action,
    audit_events::subject,
    audit_events::outcome,
    audit_events::reason,
    audit_events::details,
    audit_events::prev_hash,
    audit_events::hash,
);

const AUDIT_COLUMNS: AuditColumns = (
    audit_events::seq,
    audit_events::id,
    audit_events::at,
    audit_events::actor,
    audit_events::action,
    audit_events::subject,
    audit_events::outcome,
    audit_events::reason,
    audit_events::details,
    audit_events::prev_hash,
    audit_events::hash,
);

type AuditTuple = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
);

fn record_from(row: AuditTuple) -> AuditRecord {
    let (seq, id, at, actor, action, subject, outcome_text, reason, details_json, prev_hash, hash) =
        row;
    AuditRecord {
        seq,
        id,
        at,
        actor,
        action,
        subject,
        outcome_text,
        reason,
        details_json,
        prev_hash,
        hash,
    }
}

/// `LIKE` pattern matching values that start with `prefix` (escape char `\`).
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Tx<'_> {
    /// Appends an event at `at` (unix seconds): assigns the next seq and links it to
    /// the previous event. Inside a [`Storage::transaction`] it commits or rolls back
    /// with the caller's other writes; outside one it runs in its own transaction.
    pub fn append_audit(
        &mut self,
        event: &NewAuditEvent,
        at: i64,
    ) -> Result<AuditRecord, StorageError> {
        let queued = vec![super::group_commit::QueuedAudit::new(event, at)?];
        self.atomically(|tx| {
            // Takes the lock that serialises appends, as a group commit's batch does.
            tx.append_queued(queued)?
                .pop()
                .ok_or_else(|| StorageError::Backend("audit append wrote nothing".into()))
        })
    }

    /// The stored head: seq and hash of the last event (0 and GENESIS when empty).
    pub fn audit_head(&mut self) -> Result<ChainHead, StorageError> {
        let (seq, hash) = audit_head::table
            .find(HEAD_ID)
            .select((audit_head::seq, audit_head::hash))
            .first::<(i64, String)>(self.conn)
            .optional()
            .map_err(db_err)?
            .ok_or_else(|| StorageError::Backend("audit head row is missing".into()))?;
        Ok(ChainHead { seq, hash })
    }

    /// One page of events for the viewer (see [`AuditQuery`]).
    pub fn list_audit(&mut self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StorageError> {
        let limit = match q.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let mut query = audit_events::table.select(AUDIT_COLUMNS).into_boxed();
        if let Some(from) = q.from {
            query = query.filter(audit_events::at.ge(from));
        }
        if let Some(to) = q.to {
            query = query.filter(audit_events::at.lt(to));
        }
        if let Some(actor) = &q.actor {
            query = query.filter(audit_events::actor.eq(actor.clone()));
        }
        if let Some(action) = &q.action {
            query = query.filter(audit_events::action.eq(action.clone()));
        }
        if let Some(prefix) = &q.action_prefix {
            query = query.filter(
                audit_events::action
                    .like(prefix_pattern(prefix))
                    .escape('\\'),
            );
        }
        if let Some(subject) = &q.subject {
            query = query.filter(audit_events::subject.eq(subject.clone()));
        }
        if let Some(outcome) = q.outcome {
            query = query.filter(audit_events::outcome.eq(outcome.as_str()));
        }
        query = match (q.newest_first, q.cursor) {
            (false, Some(cursor)) => query.filter(audit_events::seq.gt(cursor)),
            (true, Some(cursor)) => query.filter(audit_events::seq.lt(cursor)),
            (_, None) => query,
        };
        query = if q.newest_first {
            query.order(audit_events::seq.desc())
        } else {
            query.order(audit_events::seq.asc())
        };
        let rows = query
            .limit(i64::from(limit))
            .load::<AuditTuple>(self.conn)
            .map_err(db_err)?;
        Ok(rows.into_iter().map(record_from).collect())
    }

    /// Up to `limit` events with `after_seq < seq <= up_to_seq`, in seq order (for
    /// verification and exports).
    pub fn audit_range(
        &mut self,
        after_seq: i64,
        up_to_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        let rows = audit_events::table
            .select(AUDIT_COLUMNS)
            .filter(audit_events::seq.gt(after_seq))
            .filter(audit_events::seq.le(up_to_seq))
            .order(audit_events::seq.asc())
            .limit(limit.max(1))
            .load::<AuditTuple>(self.conn)
            .map_err(db_err)?;
        Ok(rows.into_iter().map(record_from).collect())
    }

    /// Verifies the whole chain against the stored head, page by page. Events
    /// appended while it runs are not covered (it stops at the head it read first).
    /// The outer `Result` is storage failing; the inner one is the verdict.
    pub fn verify_audit_chain(
        &mut self,
    ) -> Result<Result<VerifiedChain, ChainBreak>, StorageError> {
        let head = self.audit_head()?;
        let mut verifier = ChainVerifier::from_genesis();
        let mut after = 0;
        loop {
            let page = self.audit_range(after, head.seq, VERIFY_PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in &page {
                if let Err(broken) = verifier.push(record) {
                    return Ok(Err(broken));
                }
            }
        }
        let verdict = verifier.finish(Some(&head));
        if verdict.is_err() {
            return Ok(verdict);
        }
        if let Some(beyond) = self.audit_past_head()? {
            return Ok(Err(beyond));
        }
        Ok(verdict)
    }

    /// The first record past the stored head, as a [`BreakKind::BeyondHead`] break. A
    /// record appended while this runs moves the head first (same transaction), so the
    /// head is read again before a row past the first reading is called foreign.
    pub fn audit_past_head(&mut self) -> Result<Option<ChainBreak>, StorageError> {
        let head = self.audit_head()?;
        let first_past: Option<i64> = audit_events::table
            .select(diesel::dsl::min(audit_events::seq))
            .filter(audit_events::seq.gt(head.seq))
            .first(self.conn)
            .map_err(db_err)?;
        let Some(seq) = first_past else {
            return Ok(None);
        };
        if self.audit_head()?.seq >= seq {
            return Ok(None);
        }
        Ok(Some(ChainBreak {
            seq,
            kind: BreakKind::BeyondHead,
        }))
    }

    /// A cheap check of the chain's ends, for start-up and `/readyz`: the stored head is
    /// the last record (its seq and hash) and nothing lies past it. The links in between
    /// are `keygate audit verify`'s work.
    pub fn audit_ends_agree(&mut self) -> Result<Option<ChainBreak>, StorageError> {
        let head = self.audit_head()?;
        if head.seq > 0 {
            let hash: Option<String> = audit_events::table
                .select(audit_events::hash)
                .filter(audit_events::seq.eq(head.seq))
                .first(self.conn)
                .optional()
                .map_err(db_err)?;
            match hash {
                None => {
                    return Ok(Some(ChainBreak {
                        seq: head.seq,
                        kind: BreakKind::Gap,
                    }))
                }
                Some(h) if h != head.hash => {
                    return Ok(Some(ChainBreak {
                        seq: head.seq,
                        kind: BreakKind::HeadMismatch,
                    }))
                }
                Some(_) => {}
            }
        }
        self.audit_past_head()
    }
}

/// One-call conveniences; compose an append with other writes in
/// [`Storage::transaction`].
impl Storage {
    /// Appends one event through the group commit (see [`Storage::audited`]).
    pub fn append_audit(
        &self,
        event: &NewAuditEvent,
        at: i64,
    ) -> Result<AuditRecord, StorageError> {
        let event = event.clone();
        let (_, mut records) = self.audited_blocking(move |tx| tx.queue_audit(&event, at))?;
        records
            .pop()
            .ok_or_else(|| StorageError::Backend("group commit: no audit record".into()))
    }

    pub fn audit_head(&self) -> Result<ChainHead, StorageError> {
        self.with_conn(|tx| tx.audit_head())
    }

    pub fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StorageError> {
        self.with_conn(|tx| tx.list_audit(query))
    }

    pub fn audit_range(
        &self,
        after_seq: i64,
        up_to_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        self.with_conn(|tx| tx.audit_range(after_seq, up_to_seq, limit))
    }

    pub fn verify_audit_chain(&self) -> Result<Result<VerifiedChain, ChainBreak>, StorageError> {
        self.with_conn(|tx| tx.verify_audit_chain())
    }

    pub fn audit_ends_agree(&self) -> Result<Option<ChainBreak>, StorageError> {
        self.with_conn(|tx| tx.audit_ends_agree())
    }
}
