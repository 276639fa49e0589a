//! Audit log: hash-chained, append-only events (SPEC §3 C8).
//!
//! This module is pure logic: it defines the event shapes, the link hash that chains
//! each event to the one before, and the verification of a chain or of a range of it.
//! It imports neither diesel nor actix-web; `storage` persists the records and calls
//! [`link_hash`] inside the same transaction as the caller's other writes.

mod chain;
mod event;
mod export;

pub use chain::{
    link_hash, verify, verify_range, verify_with_head, BreakKind, ChainAnchor, ChainBreak,
    ChainHead, ChainVerifier, LinkInput, VerifiedChain, GENESIS,
};
pub use event::{AuditRecord, NewAuditEvent, Outcome, ParseOutcomeError};
pub use export::{
    event_line, verify_export, ExportBreak, ExportHeader, VerifiedExport, ANCHOR_TYPE,
    EXPORT_FORMAT,
};
