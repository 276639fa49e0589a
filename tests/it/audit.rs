//! The audit chain on whichever backend the environment selects: appends, queries,
//! verification, and tampering done directly in SQL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use keygate::audit::{
    link_hash, verify, BreakKind, ChainBreak, ChainHead, LinkInput, NewAuditEvent, Outcome, GENESIS,
};
use keygate::storage::{AuditQuery, StorageError};
use serde_json::json;

use crate::support::db::{backend_name, test_storage, test_storage_with_pool, TestDb};

const T0: i64 = 1_764_000_000;

fn event(i: usize) -> NewAuditEvent {
    let (action, outcome) = match i % 3 {
        0 => ("enrolment.accepted", Outcome::Success),
        1 => ("enrolment.refused", Outcome::Refused),
        _ => ("signin.success", Outcome::Success),
    };
    let event = NewAuditEvent::new(
        format!("actor-{}", i % 2),
        action,
        format!("user:{i}"),
        outcome,
    )
    .with_details(json!({ "i": i, "nested": { "z": 1, "a": [1, 2, "three"] } }));
    if outcome == Outcome::Refused {
        event.with_reason("key is not attested")
    } else {
        event
    }
}

/// A database holding `n` events at T0, T0+1, …
fn filled(n: usize) -> TestDb {
    let db = test_storage();
    for i in 0..n {
        db.append_audit(&event(i), T0 + i as i64).unwrap();
    }
    db
}

fn verdict(db: &TestDb) -> Result<(u64, i64), ChainBreak> {
    db.verify_audit_chain()
        .unwrap()
        .map(|ok| (ok.count, ok.head_seq))
}

fn broken(seq: i64, kind: BreakKind) -> Result<(u64, i64), ChainBreak> {
    Err(ChainBreak { seq, kind })
}

#[test]
fn audit_empty_chain_verifies() {
    let db = test_storage();
    assert_eq!(
        db.audit_head().unwrap(),
        ChainHead {
            seq: 0,
            hash: GENESIS.to_owned()
        }
    );
    assert_eq!(verdict(&db), Ok((0, 0)));
}

#[test]
fn audit_appends_chain_and_verify() {
    let db = test_storage();
    let first = db.append_audit(&event(0), T0).unwrap();
    assert_eq!((first.seq, first.prev_hash.as_str()), (1, GENESIS));
    assert_eq!(first.hash, link_hash(&LinkInput::of(&first)));
    assert_eq!(first.outcome(), Some(Outcome::Success));
    assert_eq!(first.details_value()["nested"]["a"][2], "three");

    let second = db
        .transaction(|tx| {
            tx.put_setting("policy", "{}", T0)?;
            tx.append_audit(&event(1), T0 + 1)
        })
        .unwrap();
    assert_eq!((second.seq, &second.prev_hash), (2, &first.hash));
    assert_eq!(second.reason.as_deref(), Some("key is not attested"));

    // Outside a transaction an append still runs in one of its own.
    let third = db
        .with_conn(|tx| tx.append_audit(&event(2), T0 + 2))
        .unwrap();
    assert_eq!(third.seq, 3);

    for i in 3..60 {
        db.append_audit(&event(i), T0 + i as i64).unwrap();
    }
    let ok = db.verify_audit_chain().unwrap().unwrap();
    assert_eq!((ok.count, ok.head_seq), (60, 60));
    assert_eq!(ok.head(), db.audit_head().unwrap());

    // The pure verifier agrees on what storage returns.
    let all = db.audit_range(0, i64::MAX, 1000).unwrap();
    assert_eq!(all.len(), 60);
    assert_eq!(verify(all).unwrap(), ok);
}

#[test]
fn audit_rolled_back_append_leaves_no_trace() {
    let db = filled(3);
    let head = db.audit_head().unwrap();
    let result: Result<(), StorageError> = db.transaction(|tx| {
        tx.append_audit(&event(3), T0 + 3)?;
        Err(StorageError::Conflict("later write failed".into()))
    });
    assert!(result.is_err());
    assert_eq!(db.audit_head().unwrap(), head);
    let next = db.append_audit(&event(4), T0 + 4).unwrap();
    assert_eq!(next.seq, 4);
    assert_eq!(verdict(&db), Ok((4, 4)));
}

#[test]
fn audit_edited_field_is_a_hash_mismatch() {
    let db = filled(10);
    db.debug_execute("UPDATE audit_events SET subject = 'user:someone-else' WHERE seq = 4")
        .unwrap();
    assert_eq!(verdict(&db), broken(4, BreakKind::HashMismatch));
}

#[test]
fn audit_edited_details_are_a_hash_mismatch() {
    let db = filled(10);
    db.debug_execute(r#"UPDATE audit_events SET details = '{"i":7}' WHERE seq = 8"#)
        .unwrap();
    assert_eq!(verdict(&db), broken(8, BreakKind::HashMismatch));
}

#[test]
fn audit_edited_and_rehashed_row_is_a_prev_mismatch_on_the_next() {
    let db = filled(10);
    let mut record = db.audit_range(4, 5, 1).unwrap().remove(0);
    record.outcome_text = "success".into();
    record.reason = None;
    let forged = link_hash(&LinkInput::of(&record));
    db.debug_execute(&format!(
        "UPDATE audit_events SET outcome = 'success', reason = NULL, hash = '{forged}' WHERE seq = 5"
    ))
    .unwrap();
    assert_eq!(verdict(&db), broken(6, BreakKind::PrevMismatch));
}

#[test]
fn audit_deleted_middle_row_is_a_gap() {
    let db = filled(10);
    db.debug_execute("DELETE FROM audit_events WHERE seq = 5")
        .unwrap();
    assert_eq!(verdict(&db), broken(5, BreakKind::Gap));
}

#[test]
fn audit_deleted_last_rows_are_a_gap_against_the_head() {
    let db = filled(10);
    db.debug_execute("DELETE FROM audit_events WHERE seq = 10")
        .unwrap();
    assert_eq!(verdict(&db), broken(10, BreakKind::Gap));
    db.debug_execute("DELETE FROM audit_events WHERE seq >= 8")
        .unwrap();
    assert_eq!(verdict(&db), broken(8, BreakKind::Gap));
}

#[test]
fn audit_head_rewound_is_a_head_mismatch() {
    let db = filled(10);
    db.debug_execute("UPDATE audit_head SET hash = 'beef' WHERE id = 1")
        .unwrap();
    assert_eq!(verdict(&db), broken(10, BreakKind::HeadMismatch));
}

/// A row inserted past the head (any hash) is written around the chain: the walk up to
/// the head finds nothing, so the verifier must look past it.
#[test]
fn audit_row_past_the_head_is_found() {
    let db = filled(10);
    assert_eq!(db.audit_ends_agree().unwrap(), None);
    db.debug_execute(&forged_row(11)).unwrap();
    assert_eq!(verdict(&db), broken(11, BreakKind::BeyondHead));
    assert_eq!(
        db.audit_ends_agree().unwrap(),
        Some(ChainBreak {
            seq: 11,
            kind: BreakKind::BeyondHead
        })
    );
    // Further out than the next seq too.
    let db = filled(4);
    db.debug_execute(&forged_row(40)).unwrap();
    assert_eq!(verdict(&db), broken(40, BreakKind::BeyondHead));
}

#[test]
fn audit_ends_agree_names_a_rewound_or_missing_head_record() {
    let db = filled(5);
    db.debug_execute("UPDATE audit_head SET hash = 'beef' WHERE id = 1")
        .unwrap();
    assert_eq!(
        db.audit_ends_agree().unwrap().map(|b| b.kind),
        Some(BreakKind::HeadMismatch)
    );
    let db = filled(5);
    db.debug_execute("DELETE FROM audit_events WHERE seq = 5")
        .unwrap();
    assert_eq!(
        db.audit_ends_agree().unwrap().map(|b| b.kind),
        Some(BreakKind::Gap)
    );
    assert_eq!(test_storage().audit_ends_agree().unwrap(), None, "empty");
}

/// SQL that writes an event row at `seq` directly, as someone with database access would.
pub fn forged_row(seq: i64) -> String {
    format!(
        "INSERT INTO audit_events (seq, id, at, actor, action, subject, outcome, reason, details, prev_hash, hash) \
         VALUES ({seq}, 'forged-{seq}', {T0}, 'cli', 'key.revoked', 'user:x', 'success', NULL, '{{}}', '{GENESIS}', '{GENESIS}')"
    )
}

#[test]
fn audit_swapped_rows_are_detected() {
    let db = filled(10);
    // Swap the seq numbers of rows 3 and 4: row 3 now holds the event hashed as 4.
    db.debug_execute(
        "UPDATE audit_events SET seq = -4 WHERE seq = 4; \
         UPDATE audit_events SET seq = 4 WHERE seq = 3; \
         UPDATE audit_events SET seq = 3 WHERE seq = -4;",
    )
    .unwrap();
    assert_eq!(verdict(&db), broken(3, BreakKind::HashMismatch));
}

#[test]
fn audit_reordered_export_is_detected() {
    let db = filled(10);
    let mut records = db.audit_range(0, 10, 100).unwrap();
    records.swap(5, 6);
    assert_eq!(
        verify(records),
        Err(ChainBreak {
            seq: 6,
            kind: BreakKind::Reordered
        })
    );
}

#[test]
fn audit_concurrent_appends_keep_the_chain() {
    const THREADS: usize = 4;
    const EACH: usize = 25;
    let db = test_storage_with_pool(Some(THREADS as u32));
    let barrier = Arc::new(Barrier::new(THREADS));
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let storage = db.storage.clone();
            let barrier = Arc::clone(&barrier);
            scope.spawn(move || {
                barrier.wait();
                for i in 0..EACH {
                    storage
                        .transaction(|tx| {
                            // A read before the append, as services do.
                            tx.get_setting("policy")?;
                            tx.append_audit(&event(t * EACH + i), T0)
                        })
                        .unwrap();
                }
            });
        }
    });
    let ok = db.verify_audit_chain().unwrap().unwrap();
    let total = (THREADS * EACH) as i64;
    assert_eq!((ok.count, ok.head_seq), (total as u64, total));
}

#[test]
fn audit_group_commit_keeps_one_chain_beside_plain_appends() {
    const THREADS: usize = 8;
    const EACH: usize = 30;
    let db = test_storage_with_pool(Some(4));
    let barrier = Arc::new(Barrier::new(THREADS));
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let storage = db.storage.clone();
            let barrier = Arc::clone(&barrier);
            scope.spawn(move || {
                barrier.wait();
                for i in 0..EACH {
                    let n = t * EACH + i;
                    if t == 0 {
                        // Plain appends interleave with the batches.
                        storage.append_audit(&event(n), T0).unwrap();
                        continue;
                    }
                    let (value, records) = storage
                        .audited_blocking(move |tx| {
                            tx.put_setting(&format!("k{n}"), "v", T0)?;
                            tx.queue_audit(&event(n), T0)?;
                            tx.queue_audit(&event(n + 1), T0)?;
                            Ok(n)
                        })
                        .unwrap();
                    assert_eq!(value, n);
                    assert_eq!(records.len(), 2);
                    assert_eq!(records[1].seq, records[0].seq + 1);
                    assert_eq!(records[1].prev_hash, records[0].hash);
                }
            });
        }
    });
    let ok = db.verify_audit_chain().unwrap().unwrap();
    let total = (EACH + (THREADS - 1) * EACH * 2) as i64;
    assert_eq!((ok.count, ok.head_seq), (total as u64, total));
    assert_eq!(ok.head(), db.audit_head().unwrap());
}

#[test]
fn audit_group_commit_failed_job_leaves_no_trace_and_others_commit() {
    const THREADS: usize = 8;
    const EACH: usize = 20;
    let db = test_storage_with_pool(Some(4));
    let barrier = Arc::new(Barrier::new(THREADS));
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let storage = db.storage.clone();
            let barrier = Arc::clone(&barrier);
            scope.spawn(move || {
                barrier.wait();
                for i in 0..EACH {
                    let n = t * EACH + i;
                    let fail = n % 3 == 0;
                    let outcome = storage.audited_blocking(move |tx| {
                        tx.put_setting(&format!("k{n}"), "v", T0)?;
                        tx.queue_audit(&event(n), T0)?;
                        if fail {
                            return Err(StorageError::Conflict("refused".into()));
                        }
                        Ok(())
                    });
                    assert_eq!(outcome.is_err(), fail, "job {n}");
                }
            });
        }
    });
    let total = THREADS * EACH;
    let committed = (0..total).filter(|n| n % 3 != 0).count() as i64;
    let ok = db.verify_audit_chain().unwrap().unwrap();
    assert_eq!((ok.count, ok.head_seq), (committed as u64, committed));
    for n in 0..total {
        let stored = db.get_setting(&format!("k{n}")).unwrap();
        assert_eq!(stored.is_some(), n % 3 != 0, "setting k{n}");
    }
    let subjects: std::collections::HashSet<String> = db
        .audit_range(0, i64::MAX, 1000)
        .unwrap()
        .into_iter()
        .map(|r| r.subject)
        .collect();
    assert!(subjects
        .iter()
        .all(|s| s[5..].parse::<usize>().unwrap() % 3 != 0));
}

#[test]
fn audit_list_filters_and_pages() {
    let db = filled(30);
    let all = |q: AuditQuery| -> Vec<i64> {
        db.list_audit(&q)
            .unwrap()
            .into_iter()
            .map(|r| r.seq)
            .collect()
    };

    let first_page = all(AuditQuery {
        limit: 10,
        ..AuditQuery::default()
    });
    assert_eq!(first_page, (1..=10).collect::<Vec<_>>());
    let next_page = all(AuditQuery {
        limit: 10,
        cursor: Some(10),
        ..AuditQuery::default()
    });
    assert_eq!(next_page, (11..=20).collect::<Vec<_>>());
    let newest = all(AuditQuery {
        limit: 3,
        newest_first: true,
        ..AuditQuery::default()
    });
    assert_eq!(newest, vec![30, 29, 28]);
    let older = all(AuditQuery {
        limit: 3,
        newest_first: true,
        cursor: Some(28),
        ..AuditQuery::default()
    });
    assert_eq!(older, vec![27, 26, 25]);
    assert_eq!(all(AuditQuery::default()).len(), 30);

    // event(i) is stored at seq i+1: refused when i % 3 == 1.
    let refused = all(AuditQuery {
        outcome: Some(Outcome::Refused),
        ..AuditQuery::default()
    });
    assert_eq!(
        refused,
        (0..30)
            .filter(|i| i % 3 == 1)
            .map(|i| i + 1)
            .collect::<Vec<_>>()
    );
    let refused_action = all(AuditQuery {
        action: Some("enrolment.refused".into()),
        ..AuditQuery::default()
    });
    assert_eq!(refused_action, refused);
    let enrolment = all(AuditQuery {
        action_prefix: Some("enrolment.".into()),
        ..AuditQuery::default()
    });
    assert_eq!(enrolment.len(), 20);
    let wildcard_is_literal = all(AuditQuery {
        action_prefix: Some("enrol%".into()),
        ..AuditQuery::default()
    });
    assert!(wildcard_is_literal.is_empty());
    let by_actor = all(AuditQuery {
        actor: Some("actor-1".into()),
        from: Some(T0 + 10),
        to: Some(T0 + 20),
        ..AuditQuery::default()
    });
    assert_eq!(by_actor, vec![12, 14, 16, 18, 20]);
    let by_subject = all(AuditQuery {
        subject: Some("user:7".into()),
        ..AuditQuery::default()
    });
    assert_eq!(by_subject, vec![8]);
}

/// A new SQLite database is made with 1 KiB pages (a changed index leaf costs the log a
/// quarter of what a 4 KiB page did): read from the file's own header, bytes 16–17.
#[test]
fn sqlite_database_is_made_with_1_kib_pages() {
    let db = test_storage_with_pool(None);
    let Some(path) = db.url.strip_prefix("sqlite://") else {
        crate::support::skip::in_other_pass(&format!(
            "SQLite only (this pass is on {})",
            backend_name()
        ));
        return;
    };
    let event = NewAuditEvent::new("admin:1", "page.size", "page", Outcome::Success);
    db.storage
        .audited_blocking(move |tx| tx.queue_audit(&event, T0))
        .unwrap();
    let header = std::fs::read(path).unwrap();
    assert_eq!(&header[..16], b"SQLite format 3\0");
    assert_eq!(u16::from_be_bytes([header[16], header[17]]), 1024);
}

/// Under a steady stream of audited writes, with readers alongside, SQLite's write-ahead
/// log restarts from its beginning instead of growing with every commit (a passive
/// checkpoint leaves the restart to the next writer, which seldom finds a moment with the
/// log copied in full and no reader on it).
#[test]
fn audit_sqlite_log_stays_bounded_under_a_steady_stream_of_writes() {
    const WRITERS: usize = 4;
    /// Six times the log limit set below, three times `journal_size_limit` (64 MiB).
    const WRITE: u64 = 192 << 20;
    const BOUND: u64 = 128 << 20;
    let db = test_storage_with_pool(Some(6));
    db.storage.set_sqlite_log_limit(32 << 20);
    let Some(path) = db.url.strip_prefix("sqlite://") else {
        crate::support::skip::in_other_pass(&format!(
            "SQLite only (this pass is on {})",
            backend_name()
        ));
        return;
    };
    let wal = std::path::PathBuf::from(format!("{path}-wal"));
    // 16 KiB of details per event: four overflow pages each, so the log grows fast.
    let blob = "x".repeat(16 * 1024);
    let written = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut largest = 0u64;
    std::thread::scope(|scope| {
        for _ in 0..WRITERS {
            let (storage, blob) = (db.storage.clone(), blob.clone());
            let (written, stop) = (&written, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let event = NewAuditEvent::new("bulk", "bulk.write", "bulk", Outcome::Success)
                        .with_details(json!({ "blob": blob }));
                    storage
                        .audited_blocking(move |tx| tx.queue_audit(&event, T0))
                        .unwrap();
                    written.fetch_add(blob.len() as u64, Ordering::Relaxed);
                }
            });
        }
        let (storage, stop) = (db.storage.clone(), &stop);
        scope.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                storage.audit_head().unwrap();
            }
        });
        // Bounded: a machine that cannot write WRITE in a minute fails below.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while written.load(Ordering::Relaxed) < WRITE && std::time::Instant::now() < deadline {
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let written = written.load(Ordering::Relaxed);
    assert!(
        written >= WRITE,
        "only {} MiB written in a minute",
        written >> 20
    );
    assert!(
        largest < BOUND,
        "the log grew to {} MiB while {} MiB were written",
        largest >> 20,
        written >> 20
    );
    let ok = db.verify_audit_chain().unwrap().unwrap();
    assert_eq!(ok.head(), db.audit_head().unwrap());
}
