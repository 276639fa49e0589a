//! Group commit for audited writes: the writes of many requests, each with its audit
//! events, share one transaction and one append to the chain.
//!
//! One committer thread per [`Storage`] takes every job queued while the previous batch
//! was committing, runs them in order inside one transaction (each job's audit events
//! are queued with [`Tx::queue_audit`], its sign-ins with [`Tx::record_sign_in`], the
//! grants of exchanged codes with [`Tx::insert_issued_grant`]), writes the queued sign-ins
//! and grants together, then chains the queued events in that order onto the
//! stored head, inserts them, moves the head and commits. The head row is locked
//! only for that last step, after the jobs' own writes, as a plain append does, so
//! batches of several replicas and plain appends serialise on it as before and the chain
//! stays one exact sequence (`keygate audit verify` checks it unchanged).
//!
//! A caller's answer waits for the commit: its writes and its audit events are durable
//! together or not at all, and an audit write that fails fails the caller. A job that
//! returns an error (a conflict, say) must not take the batch down with it: the batch is
//! rolled back and each of its jobs is run again in a transaction of its own, so jobs are
//! `FnMut` and must only touch the database.

use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel::r2d2::{Pool, PooledConnection};

use crate::audit::{link_hash, AuditRecord, LinkInput, NewAuditEvent};

use super::error::{db_err, StorageError};
use super::ids::new_id;
use super::prepared::{self, AppendAuditEvents, AuditColumns, MoveAuditHead, ReserveAuditSeq};
use super::schema::audit_events;
use super::worker::Worker;
use super::{in_transaction, Backend, Manager, Tx};

/// Most jobs in one transaction (more wait for the next one).
const MAX_BATCH: usize = 256;
const HEAD_ID: i32 = 1;

/// An audit event queued inside a batch, chained when the batch commits.
pub(super) struct QueuedAudit {
    id: String,
    at: i64,
    actor: String,
    action: String,
    subject: String,
    outcome: &'static str,
    reason: Option<String>,
    details_json: String,
}

impl QueuedAudit {
    pub(super) fn new(event: &NewAuditEvent, at: i64) -> Result<Self, StorageError> {
        Ok(QueuedAudit {
            id: new_id()?,
            at,
            actor: event.actor.clone(),
            action: event.action.clone(),
            subject: event.subject.clone(),
            outcome: event.outcome.as_str(),
            reason: event.reason.clone(),
            details_json: serde_json::to_string(&event.details)
                .map_err(|err| StorageError::Backend(format!("audit details: {err}")))?,
        })
    }
}

type Reply<T> = Box<dyn FnOnce(Result<(T, Vec<AuditRecord>), StorageError>) + Send>;

/// A caller's writes, run (perhaps twice, see the module docs) then answered once.
trait Job: Send {
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), StorageError>;
    /// When it was queued (for the metrics of the wait).
    fn queued(&self) -> std::time::Instant;
    fn answer(self: Box<Self>, outcome: Result<Vec<AuditRecord>, StorageError>);
}

struct TypedJob<T, F> {
    f: F,
    value: Option<T>,
    reply: Reply<T>,
    queued: std::time::Instant,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnMut(&mut Tx<'_>) -> Result<T, StorageError> + Send,
{
    fn run(&mut self, tx: &mut Tx<'_>) -> Result<(), StorageError> {
        self.value = Some((self.f)(tx)?);
        Ok(())
    }

    fn queued(&self) -> std::time::Instant {
        self.queued
    }

    fn answer(self: Box<Self>, outcome: Result<Vec<AuditRecord>, StorageError>) {
        let TypedJob { value, reply, .. } = *self;
        reply(outcome.and_then(|records| {
            value
                .map(|v| (v, records))
                .ok_or_else(|| StorageError::Backend("group commit: job did not run".into()))
        }));
    }
}

/// The committer of one [`Storage`]: started on first use, stopped and joined when the
/// last clone of the storage handle is dropped.
pub(super) struct GroupCommit {
    worker: Worker<Box<dyn Job>>,
    pool: Pool<Manager>,
    backend: Backend,
    write_gate: Arc<Mutex<()>>,
}

impl GroupCommit {
    pub(super) fn new(pool: Pool<Manager>, backend: Backend, write_gate: Arc<Mutex<()>>) -> Self {
        GroupCommit {
            worker: Worker::new(),
            pool,
            backend,
            write_gate,
        }
    }

    /// Queues `f`; `reply` gets its value and the audit records it queued, after commit.
    pub(super) fn submit<T, F>(&self, f: F, reply: Reply<T>)
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, StorageError> + Send + 'static,
    {
        let job: Box<dyn Job> = Box::new(TypedJob {
            f,
            value: None,
            reply,
            queued: std::time::Instant::now(),
        });
        let (pool, backend, gate) = (&self.pool, self.backend, &self.write_gate);
        let sent = self
            .worker
            .start_batching("keygate-audit-commit", MAX_BATCH, || {
                let (pool, gate) = (pool.clone(), gate.clone());
                let mut held = None;
                move |batch| commit_batch(&pool, backend, &gate, &mut held, batch)
            })
            .send(job);
        if let Err(job) = sent {
            job.answer(Err(StorageError::Unavailable(
                "the audit committer has stopped".into(),
            )));
        }
    }
}

/// Commits one batch. On SQLite the committer keeps its connection between batches
/// (`held`; the pool has one more for it): SQLite drops a connection's page cache whenever
/// another connection wrote since it last read, so a writer that took whichever
/// connection was free re-read, batch after batch, the index pages it was about to change.
/// After a failure the connection goes back to the pool, which closes it if it is broken.
fn commit_batch(
    pool: &Pool<Manager>,
    backend: Backend,
    gate: &Mutex<()>,
    held: &mut Option<PooledConnection<Manager>>,
    mut batch: Vec<Box<dyn Job>>,
) {
    let metrics = &crate::metrics::PROCESS;
    let started = std::time::Instant::now();
    metrics.batch_size.observe(batch.len() as f64);
    for job in &batch {
        metrics
            .batch_wait
            .observe_duration(started.saturating_duration_since(job.queued()));
    }
    let got = match held.take() {
        Some(conn) => Ok(conn),
        None => pool.get(),
    };
    let mut conn = match got {
        Ok(conn) => conn,
        Err(err) => {
            let err = StorageError::Unavailable(format!("no database connection: {err}"));
            for job in batch {
                job.answer(Err(err.clone()));
            }
            return;
        }
    };
    // SQLite has one writer: writers of this process queue here rather than in
    // SQLite's sleeping busy handler.
    let _gate = (backend == Backend::Sqlite)
        .then(|| gate.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let together = run_together(&mut conn, &mut batch);
    metrics.batch_commit.observe_duration(started.elapsed());
    match together {
        Ok(records) => {
            for (job, records) in batch.into_iter().zip(records) {
                job.answer(Ok(records));
            }
            if backend == Backend::Sqlite {
                *held = Some(conn);
            }
        }
        Err(err) if batch.len() == 1 => {
            for job in batch {
                job.answer(Err(err.clone()));
            }
        }
        Err(_) => {
            // One job failed (or the commit did): give each its own transaction.
            for mut job in batch {
                let outcome = run_together(&mut conn, std::slice::from_mut(&mut job));
                job.answer(outcome.map(|mut records| records.pop().unwrap_or_default()));
            }
        }
    }
}

/// What the jobs of one batch leave for its end: audit events (chained at commit) and
/// sign-ins, each with the index of the job that queued it, and grants (sign-ins and
/// grants are written together once every job has run).
#[derive(Default)]
pub(super) struct Batch {
    /// The job running now.
    pub(super) job: usize,
    pub(super) audits: Vec<(usize, QueuedAudit)>,
    pub(super) sign_ins: Vec<(usize, super::signins::QueuedSignIn)>,
    /// OIDC grants of exchanged codes, each with its first refresh token.
    pub(super) grants: Vec<(super::OidcGrant, Option<super::RefreshTokenRecord>)>,
}

/// Runs `jobs` in one transaction, writes the sign-ins and grants they queued and chains
/// their audit events; returns each job's audit records.
fn run_together(
    conn: &mut super::DbConnection,
    jobs: &mut [Box<dyn Job>],
) -> Result<Vec<Vec<AuditRecord>>, StorageError> {
    in_transaction(conn, |tx| {
        tx.batch = Some(Batch::default());
        for (i, job) in jobs.iter_mut().enumerate() {
            if let Some(batch) = tx.batch.as_mut() {
                batch.job = i;
            }
            job.run(tx)?;
        }
        tx.record_queued_sign_ins()?;
        tx.insert_queued_grants()?;
        let batch = tx.batch.take().unwrap_or_default();
        let (owners, queued): (Vec<usize>, Vec<QueuedAudit>) = batch.audits.into_iter().unzip();
        let mut records: Vec<Vec<AuditRecord>> = jobs.iter().map(|_| Vec::new()).collect();
        for (owner, record) in owners.into_iter().zip(tx.append_queued(queued)?) {
            if let Some(mine) = records.get_mut(owner) {
                mine.push(record);
            }
        }
        Ok(records)
    })
}

impl Tx<'_> {
    /// Records `event` at `at` (unix seconds) with this transaction's writes: chained when
    /// the batch commits inside [`super::Storage::audited`], appended at once elsewhere.
    pub fn queue_audit(&mut self, event: &NewAuditEvent, at: i64) -> Result<(), StorageError> {
        match self.batch.as_mut() {
            Some(batch) => {
                batch.audits.push((batch.job, QueuedAudit::new(event, at)?));
                Ok(())
            }
            None => self.append_audit(event, at).map(|_| ()),
        }
    }

    /// Chains `queued` onto the head (locking it), inserts the records and moves the head.
    pub(super) fn append_queued(
        &mut self,
        queued: Vec<QueuedAudit>,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        if queued.is_empty() {
            return Ok(Vec::new());
        }
        let n = queued.len() as i64;
        let reserve = ReserveAuditSeq {
            head_id: HEAD_ID,
            n,
        };
        let (last_seq, mut prev_hash) = prepared::reserve_audit_seq(self.conn, reserve)
            .map_err(db_err)?
            .ok_or_else(|| StorageError::Backend("audit head row is missing".into()))?;
        let mut records = Vec::with_capacity(queued.len());
        for (i, q) in queued.into_iter().enumerate() {
            let mut record = AuditRecord {
                seq: last_seq - n + 1 + i as i64,
                id: q.id,
                at: q.at,
                actor: q.actor,
                action: q.action,
                subject: q.subject,
                outcome_text: q.outcome.to_owned(),
                reason: q.reason,
                details_json: q.details_json,
                prev_hash,
                hash: String::new(),
            };
            record.hash = link_hash(&LinkInput::of(&record));
            prev_hash = record.hash.clone();
            records.push(record);
        }
        match &mut *self.conn {
            // One statement of one fixed text for the events and the head: a single
            // round trip, prepared once per connection.
            super::DbConnection::Pg(pg) => {
                let mut rows = AuditColumns::default();
                for r in &records {
                    rows.seq.push(r.seq);
                    rows.id.push(r.id.clone());
                    rows.at.push(r.at);
                    rows.actor.push(r.actor.clone());
                    rows.action.push(r.action.clone());
                    rows.subject.push(r.subject.clone());
                    rows.outcome.push(r.outcome_text.clone());
                    rows.reason.push(r.reason.clone());
                    rows.details.push(r.details_json.clone());
                    rows.prev_hash.push(r.prev_hash.clone());
                    rows.hash.push(r.hash.clone());
                }
                let append = AppendAuditEvents {
                    rows: &rows,
                    head_id: HEAD_ID,
                    head_hash: &prev_hash,
                };
                diesel::RunQueryDsl::execute(append, pg).map_err(db_err)?;
            }
            // In-process: a statement per row costs no round trip.
            super::DbConnection::Sqlite(sqlite) => {
                for r in &records {
                    diesel::insert_into(audit_events::table)
                        .values((
                            audit_events::seq.eq(r.seq),
                            audit_events::id.eq(&r.id),
                            audit_events::at.eq(r.at),
                            audit_events::actor.eq(&r.actor),
                            audit_events::action.eq(&r.action),
                            audit_events::subject.eq(&r.subject),
                            audit_events::outcome.eq(&r.outcome_text),
                            audit_events::reason.eq(&r.reason),
                            audit_events::details.eq(&r.details_json),
                            audit_events::prev_hash.eq(&r.prev_hash),
                            audit_events::hash.eq(&r.hash),
                        ))
                        .execute(sqlite)
                        .map_err(db_err)?;
                }
                let head = MoveAuditHead {
                    head_id: HEAD_ID,
                    hash: &prev_hash,
                };
                prepared::execute(self.conn, head).map_err(db_err)?;
            }
        }
        Ok(records)
    }
}
