//! The hash chain: how each record is linked to the one before, and how a chain (or a
//! range of one) is verified.
//!
//! # Link hash, for auditors re-implementing it
//!
//! The hash of record `n` is the lowercase hex SHA-256 of the concatenation of:
//!
//! ```text
//! str("keygate.audit.v1")   domain label, fixed
//! str(prev_hash)            hash of record n-1 as stored (lowercase hex); GENESIS for seq 1
//! int(seq)
//! str(id)
//! int(at)                   unix seconds
//! str(actor)
//! str(action)
//! str(subject)
//! str(outcome)              "success" | "refused" | "failure", as stored
//! opt(reason)
//! str(details)              the details JSON text exactly as stored (not re-serialised)
//!
//! str(s)       = u64_be(byte length of UTF-8 s) || UTF-8 bytes of s
//! int(n)       = n as a signed 64-bit big-endian integer (8 bytes)
//! opt(None)    = 0x00
//! opt(Some(s)) = 0x01 || str(s)
//! ```
//!
//! Every variable-length field carries its length, so no two different records encode
//! to the same bytes. [`GENESIS`], the `prev_hash` of the first record, is the hex of
//! 32 zero bytes.
//!
//! # Verification
//!
//! Records are checked in the order given. For each record, in this order:
//! 1. its `seq` must be the next expected one: a smaller (or repeated) seq is
//!    [`BreakKind::Reordered`]; a larger one is [`BreakKind::Gap`] at the first missing
//!    seq, unless the missing record is the very next one given, which is
//!    [`BreakKind::Reordered`] at that seq (two neighbours swapped);
//! 2. its own fields must hash to its stored `hash`, else [`BreakKind::HashMismatch`]
//!    (a field was edited);
//! 3. its stored `prev_hash` must equal the previous record's `hash` (or the anchor),
//!    else [`BreakKind::PrevMismatch`] (a record was edited and re-hashed, or records
//!    were moved).
//!
//! Deleting the last records leaves a valid-looking chain; comparing with the stored
//! head (`audit_head`: last seq and hash, updated in the same transaction as every
//! append) catches it as a [`BreakKind::Gap`] at the first missing seq. A head that does
//! not match the last record is [`BreakKind::HeadMismatch`]; a record past the head is
//! [`BreakKind::BeyondHead`] (storage looks for one after the walk). Someone able to rewrite
//! both the records and the head can only be caught by comparing with a head exported
//! earlier (signed exports carry it as their anchor).

use std::fmt;

use ring::digest;
use serde::{Deserialize, Serialize};

use super::event::AuditRecord;

/// `prev_hash` of the first record: hex of 32 zero bytes.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN_LABEL: &str = "keygate.audit.v1";

/// The fields covered by the link hash, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInput<'a> {
    pub prev_hash: &'a str,
    pub seq: i64,
    pub id: &'a str,
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub details_json: &'a str,
}

impl<'a> LinkInput<'a> {
    /// The link input of a stored record (using its stored `prev_hash`).
    pub fn of(record: &'a AuditRecord) -> Self {
        LinkInput {
            prev_hash: &record.prev_hash,
            seq: record.seq,
            id: &record.id,
            at: record.at,
            actor: &record.actor,
            action: &record.action,
            subject: &record.subject,
            outcome: &record.outcome_text,
            reason: record.reason.as_deref(),
            details_json: &record.details_json,
        }
    }
}

/// The link hash of one record: lowercase hex SHA-256 over the encoding in the module
/// documentation.
pub fn link_hash(input: &LinkInput<'_>) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let put_str = |ctx: &mut digest::Context, s: &str| {
        ctx.update(&(s.len() as u64).to_be_bytes());
        ctx.update(s.as_bytes());
    };
    put_str(&mut ctx, DOMAIN_LABEL);
    put_str(&mut ctx, input.prev_hash);
    ctx.update(&input.seq.to_be_bytes());
    put_str(&mut ctx, input.id);
    ctx.update(&input.at.to_be_bytes());
    put_str(&mut ctx, input.actor);
    put_str(&mut ctx, input.action);
    put_str(&mut ctx, input.subject);
    put_str(&mut ctx, input.outcome);
    match input.reason {
        None => ctx.update(&[0u8]),
        Some(reason) => {
            ctx.update(&[1u8]);
            put_str(&mut ctx, reason);
        }
    }
    put_str(&mut ctx, input.details_json);
    hex::encode(ctx.finish().as_ref())
}

/// Where a verification starts: the hash the first record must point back to, and its
/// seq. [`ChainAnchor::genesis`] for a whole chain; the previous record's hash and seq
/// for a range (e.g. an export that starts mid-chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainAnchor {
    pub prev_hash: String,
    pub first_seq: i64,
}

impl ChainAnchor {
    pub fn genesis() -> Self {
        ChainAnchor {
            prev_hash: GENESIS.to_owned(),
            first_seq: 1,
        }
    }

    /// The anchor of the range that starts right after `head`.
    pub fn after(head: &ChainHead) -> Self {
        ChainAnchor {
            prev_hash: head.hash.clone(),
            first_seq: head.seq.saturating_add(1),
        }
    }
}

/// The last seq and hash of a chain (`audit_head` in storage; seq 0 and [`GENESIS`]
/// when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

impl ChainHead {
    pub fn genesis() -> Self {
        ChainHead {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// A chain (or range) that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedChain {
    /// Number of records checked.
    pub count: u64,
    /// Seq of the last record (the anchor's seq minus one when there were none).
    pub head_seq: i64,
    /// Hash of the last record (the anchor's hash when there were none).
    pub head_hash: String,
}

impl VerifiedChain {
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.head_seq,
            hash: self.head_hash.clone(),
        }
    }
}

/// What kind of break was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The record's fields do not hash to its stored hash.
    HashMismatch,
    /// The record does not point back to the previous record's hash.
    PrevMismatch,
    /// A seq is missing.
    Gap,
    /// Records are out of order or repeated.
    Reordered,
    /// The stored head does not match the last record.
    HeadMismatch,
    /// A record lies past the stored head. Every append moves the head in the same
    /// transaction, so such a row was written around the chain (and would block the
    /// next append that needs its seq).
    BeyondHead,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::HashMismatch => "hash_mismatch",
            BreakKind::PrevMismatch => "prev_mismatch",
            BreakKind::Gap => "gap",
            BreakKind::Reordered => "reordered",
            BreakKind::HeadMismatch => "head_mismatch",
            BreakKind::BeyondHead => "beyond_head",
        }
    }
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first place where a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {kind}")]
pub struct ChainBreak {
    pub seq: i64,
    pub kind: BreakKind,
}

/// Checks records one at a time, so a long chain can be streamed page by page.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: String,
    count: u64,
    /// A record further ahead than expected was seen; decided by the next record.
    gap_pending: bool,
}

impl ChainVerifier {
    pub fn new(anchor: &ChainAnchor) -> Self {
        ChainVerifier {
            expected_seq: anchor.first_seq,
            prev_hash: anchor.prev_hash.clone(),
            count: 0,
            gap_pending: false,
        }
    }

    pub fn from_genesis() -> Self {
        Self::new(&ChainAnchor::genesis())
    }

    /// Checks the next record.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        let expected = self.expected_seq;
        if self.gap_pending {
            let kind = if record.seq == expected {
                BreakKind::Reordered
            } else {
                BreakKind::Gap
            };
            return Err(ChainBreak {
                seq: expected,
                kind,
            });
        }
        if record.seq < expected {
            return Err(ChainBreak {
                seq: record.seq,
                kind: BreakKind::Reordered,
            });
        }
        if record.seq > expected {
            self.gap_pending = true;
            return Ok(());
        }
        if link_hash(&LinkInput::of(record)) != record.hash {
            return Err(ChainBreak {
                seq: record.seq,
                kind: BreakKind::HashMismatch,
            });
        }
        if record.prev_hash != self.prev_hash {
            return Err(ChainBreak {
                seq: record.seq,
                kind: BreakKind::PrevMismatch,
            });
        }
        self.prev_hash.clone_from(&record.hash);
        self.expected_seq = expected.saturating_add(1);
        self.count += 1;
        Ok(())
    }

    /// Ends the verification; with `head`, also checks that the last record is the
    /// stored head (which catches deleted last records).
    pub fn finish(self, head: Option<&ChainHead>) -> Result<VerifiedChain, ChainBreak> {
        if self.gap_pending {
            return Err(ChainBreak {
                seq: self.expected_seq,
                kind: BreakKind::Gap,
            });
        }
        let last_seq = self.expected_seq - 1;
        if let Some(head) = head {
            if head.seq > last_seq {
                return Err(ChainBreak {
                    seq: self.expected_seq,
                    kind: BreakKind::Gap,
                });
            }
            if head.seq < last_seq {
                return Err(ChainBreak {
                    seq: head.seq.saturating_add(1),
                    kind: BreakKind::HeadMismatch,
                });
            }
            if head.hash != self.prev_hash {
                return Err(ChainBreak {
                    seq: head.seq,
                    kind: BreakKind::HeadMismatch,
                });
            }
        }
        Ok(VerifiedChain {
            count: self.count,
            head_seq: last_seq,
            head_hash: self.prev_hash,
        })
    }
}

/// Verifies a whole chain from genesis, records in seq order.
pub fn verify<I>(records: I) -> Result<VerifiedChain, ChainBreak>
where
    I: IntoIterator<Item = AuditRecord>,
{
    verify_range(&ChainAnchor::genesis(), records)
}

/// Verifies a whole chain from genesis and checks it ends at the stored `head`.
pub fn verify_with_head<I>(records: I, head: &ChainHead) -> Result<VerifiedChain, ChainBreak>
where
    I: IntoIterator<Item = AuditRecord>,
{
    let mut verifier = ChainVerifier::from_genesis();
    for record in records {
        verifier.push(&record)?;
    }
    verifier.finish(Some(head))
}

/// Verifies a range that starts at `anchor` (e.g. an export starting mid-chain).
pub fn verify_range<I>(anchor: &ChainAnchor, records: I) -> Result<VerifiedChain, ChainBreak>
where
    I: IntoIterator<Item = AuditRecord>,
{
    let mut verifier = ChainVerifier::new(anchor);
    for record in records {
        verifier.push(&record)?;
    }
    verifier.finish(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut record = AuditRecord {
                    seq,
                    id: format!("id-{seq}"),
                    at: 1_700_000_000 + seq,
                    actor: "admin".into(),
                    action: "user.created".into(),
                    subject: format!("user-{seq}"),
                    outcome_text: "success".into(),
                    reason: (seq % 2 == 0).then(|| "because".to_owned()),
                    details_json: format!("{{\"n\":{seq}}}"),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                record.hash = link_hash(&LinkInput::of(&record));
                prev.clone_from(&record.hash);
                record
            })
            .collect()
    }

    fn brk(seq: i64, kind: BreakKind) -> Result<VerifiedChain, ChainBreak> {
        Err(ChainBreak { seq, kind })
    }

    #[test]
    fn genesis_is_32_zero_bytes() {
        assert_eq!(hex::decode(GENESIS).unwrap(), vec![0u8; 32]);
    }

    #[test]
    fn valid_chain_verifies() {
        let records = chain(5);
        let head = ChainHead {
            seq: 5,
            hash: records[4].hash.clone(),
        };
        let ok = verify_with_head(records.clone(), &head).unwrap();
        assert_eq!(ok.count, 5);
        assert_eq!(ok.head(), head);
        assert_eq!(verify(Vec::new()).unwrap().head(), ChainHead::genesis());
    }

    #[test]
    fn encoding_is_unambiguous() {
        let base = &chain(1)[0];
        let mut a = base.clone();
        a.actor = "ab".into();
        a.action = "c".into();
        let mut b = base.clone();
        b.actor = "a".into();
        b.action = "bc".into();
        assert_ne!(link_hash(&LinkInput::of(&a)), link_hash(&LinkInput::of(&b)));
        let mut none = base.clone();
        none.reason = None;
        let mut empty = base.clone();
        empty.reason = Some(String::new());
        assert_ne!(
            link_hash(&LinkInput::of(&none)),
            link_hash(&LinkInput::of(&empty))
        );
    }

    #[test]
    fn edited_field_is_a_hash_mismatch() {
        let mut records = chain(5);
        records[2].subject = "someone-else".into();
        assert_eq!(verify(records), brk(3, BreakKind::HashMismatch));
    }

    #[test]
    fn rehashed_edit_is_a_prev_mismatch_on_the_next() {
        let mut records = chain(5);
        records[2].subject = "someone-else".into();
        records[2].hash = link_hash(&LinkInput::of(&records[2]));
        assert_eq!(verify(records), brk(4, BreakKind::PrevMismatch));
    }

    #[test]
    fn deleted_middle_is_a_gap() {
        let mut records = chain(5);
        records.remove(2);
        assert_eq!(verify(records), brk(3, BreakKind::Gap));
    }

    #[test]
    fn swapped_neighbours_are_reordered() {
        let mut records = chain(5);
        records.swap(1, 2);
        assert_eq!(verify(records), brk(2, BreakKind::Reordered));
        let mut records = chain(5);
        records.swap(3, 4);
        assert_eq!(verify(records), brk(4, BreakKind::Reordered));
        let mut records = chain(5);
        let dup = records[1].clone();
        records.insert(2, dup);
        assert_eq!(verify(records), brk(2, BreakKind::Reordered));
    }

    #[test]
    fn deleted_last_is_caught_by_the_head() {
        let records = chain(5);
        let head = ChainHead {
            seq: 5,
            hash: records[4].hash.clone(),
        };
        let truncated: Vec<_> = records[..4].to_vec();
        assert!(verify(truncated.clone()).is_ok());
        assert_eq!(verify_with_head(truncated, &head), brk(5, BreakKind::Gap));
        let wrong_head = ChainHead {
            seq: 5,
            hash: GENESIS.to_owned(),
        };
        assert_eq!(
            verify_with_head(records, &wrong_head),
            brk(5, BreakKind::HeadMismatch)
        );
    }

    #[test]
    fn range_from_an_anchor() {
        let records = chain(6);
        let anchor = ChainAnchor::after(&ChainHead {
            seq: 3,
            hash: records[2].hash.clone(),
        });
        let ok = verify_range(&anchor, records[3..].to_vec()).unwrap();
        assert_eq!((ok.count, ok.head_seq), (3, 6));
        let wrong = ChainAnchor {
            prev_hash: GENESIS.to_owned(),
            first_seq: 4,
        };
        assert_eq!(
            verify_range(&wrong, records[3..].to_vec()),
            brk(4, BreakKind::PrevMismatch)
        );
    }
}
