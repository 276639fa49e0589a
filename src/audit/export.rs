//! JSON-lines exports of a range of the chain, and their verification without keygate's
//! database.
//!
//! # Format (`keygate.audit.export.v2`)
//!
//! Line 1 is the anchor, an [`ExportHeader`]:
//!
//! ```text
//! {"type":"anchor","format":"keygate.audit.export.v2","from_seq":F,"to_seq":T,"count":T-F+1,
//!  "prev_hash":<hash of seq F-1, GENESIS when F = 1>,"last_hash":<hash of seq T>,
//!  "head":{"seq","hash"} (the chain's head when the export was made),"exported_at":<RFC 3339>,
//!  "signature":<compact JWS, ES256, typ keygate-audit-anchor+json, over the anchor without it>}
//! ```
//!
//! (`keygate.audit.export.v1`, from earlier versions, is the same without `signature`.)
//!
//! Then one line per event, seq `F` to `T` in order, each an [`AuditRecord`] exactly as
//! stored and hashed: `outcome` is the stored text and `details` the stored JSON *text* (a
//! JSON string), so [`crate::audit::link_hash`] of the line's fields is its `hash`.
//!
//! # What verification proves
//!
//! [`verify_export`] starts at `prev_hash` and checks, line by line, that seqs run from `F`
//! without gaps or repeats, that each line's fields hash to its `hash` and that it points
//! back to the line before; then that the file ends exactly at `to_seq` with `last_hash`.
//! So an edited, removed, reordered or duplicated line, or a truncated file, is named by its
//! line number. The anchor's signature ([`ExportHeader::signed_part`], checked against the
//! gateway's JWKS by [`crate::service::audit_log::verify_export_file`]) ties the range and
//! its end hashes to keygate's signing key, so a file rewritten from scratch, anchor and
//! all, no longer verifies; the chain also records every export as an `audit.exported`
//! event carrying its `from_seq`, `to_seq` and `last_hash`.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::chain::{BreakKind, ChainAnchor, ChainHead, ChainVerifier};
use super::event::AuditRecord;

/// The `format` of this version of the export.
pub const EXPORT_FORMAT: &str = "keygate.audit.export.v2";
/// The earlier format, read still: the same without the anchor's signature.
pub const EXPORT_FORMAT_V1: &str = "keygate.audit.export.v1";
/// The `type` of the header line.
pub const ANCHOR_TYPE: &str = "anchor";

/// The first line of an export: where the range hangs on the chain and where it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// Always `anchor`.
    #[serde(rename = "type")]
    pub kind: String,
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// Hash of the event before the range ([`crate::audit::GENESIS`] when it starts at 1).
    pub prev_hash: String,
    pub from_seq: i64,
    /// Last seq in the range (`from_seq - 1` for an empty range).
    pub to_seq: i64,
    /// Number of event lines: `to_seq - from_seq + 1`.
    pub count: i64,
    /// Hash of the event at `to_seq` (`prev_hash` for an empty range): a truncated file
    /// cannot end on it.
    pub last_hash: String,
    /// The chain's head when the export was made.
    pub head: ChainHead,
    /// When the export was made (RFC 3339, UTC).
    pub exported_at: String,
    /// A compact JWS over [`ExportHeader::signed_part`] (absent in v1 files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl ExportHeader {
    pub fn new(
        prev_hash: String,
        from_seq: i64,
        to_seq: i64,
        last_hash: String,
        head: ChainHead,
        exported_at: String,
    ) -> Self {
        ExportHeader {
            kind: ANCHOR_TYPE.to_owned(),
            format: EXPORT_FORMAT.to_owned(),
            prev_hash,
            from_seq,
            to_seq,
            count: to_seq - from_seq + 1,
            last_hash,
            head,
            exported_at,
            signature: None,
        }
    }

    /// What the signature covers: the anchor without its signature, as JSON.
    pub fn signed_part(&self) -> Vec<u8> {
        let unsigned = ExportHeader {
            signature: None,
            ..self.clone()
        };
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }

    /// The header as one line (with its newline).
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    fn check(&self) -> Result<(), String> {
        if self.kind != ANCHOR_TYPE {
            return Err(format!(
                "the first line is not an anchor (type {:?})",
                self.kind
            ));
        }
        match (self.format.as_str(), &self.signature) {
            (EXPORT_FORMAT, Some(_)) | (EXPORT_FORMAT_V1, None) => {}
            (EXPORT_FORMAT, None) => {
                return Err(format!("a {EXPORT_FORMAT} anchor must be signed"))
            }
            (EXPORT_FORMAT_V1, Some(_)) => {
                return Err(format!("a {EXPORT_FORMAT_V1} anchor has no signature"))
            }
            _ => {
                return Err(format!(
                    "unknown export format {:?} (expected {EXPORT_FORMAT})",
                    self.format
                ))
            }
        }
        for (name, hash) in [
            ("prev_hash", &self.prev_hash),
            ("last_hash", &self.last_hash),
            ("head.hash", &self.head.hash),
        ] {
            if !is_hash(hash) {
                return Err(format!("{name} is not a lowercase hex SHA-256"));
            }
        }
        if self.from_seq < 1 || self.to_seq < self.from_seq - 1 {
            return Err(format!(
                "the range {}..{} is not a range of the chain",
                self.from_seq, self.to_seq
            ));
        }
        if self.count != self.to_seq - self.from_seq + 1 {
            return Err(format!(
                "count {} does not match the range {}..{}",
                self.count, self.from_seq, self.to_seq
            ));
        }
        if self.count == 0 && self.last_hash != self.prev_hash {
            return Err("an empty range must end on its prev_hash".into());
        }
        if self.head.seq < self.to_seq {
            return Err(format!(
                "the head (seq {}) is before the end of the range (seq {})",
                self.head.seq, self.to_seq
            ));
        }
        Ok(())
    }
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One event line, as stored (used to read lines strictly: an unknown field is an error).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    seq: i64,
    id: String,
    at: i64,
    actor: String,
    action: String,
    subject: String,
    outcome: String,
    reason: Option<String>,
    details: String,
    prev_hash: String,
    hash: String,
}

impl From<EventLine> for AuditRecord {
    fn from(l: EventLine) -> Self {
        AuditRecord {
            seq: l.seq,
            id: l.id,
            at: l.at,
            actor: l.actor,
            action: l.action,
            subject: l.subject,
            outcome_text: l.outcome,
            reason: l.reason,
            details_json: l.details,
            prev_hash: l.prev_hash,
            hash: l.hash,
        }
    }
}

/// One event as an export line (with its newline).
pub fn event_line(record: &AuditRecord) -> String {
    let mut line = serde_json::to_string(record).unwrap_or_default();
    line.push('\n');
    line
}

/// An export file that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedExport {
    pub header: ExportHeader,
    /// Event lines checked.
    pub count: u64,
}

/// Why an export does not verify: the first bad line (1 = the header) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ExportBreak {
    pub line: u64,
    pub message: String,
}

fn broken(line: u64, message: impl Into<String>) -> ExportBreak {
    ExportBreak {
        line,
        message: message.into(),
    }
}

/// Verifies an export read line by line (any size: nothing but the current line is kept).
pub fn verify_export<R: BufRead>(mut reader: R) -> Result<VerifiedExport, ExportBreak> {
    let mut buf = String::new();
    let mut line_no: u64 = 0;
    let mut next_line = |buf: &mut String, line_no: &mut u64| -> Result<bool, ExportBreak> {
        buf.clear();
        *line_no += 1;
        match reader.read_line(buf) {
            Ok(0) => Ok(false),
            Ok(_) => {
                if buf.ends_with('\n') {
                    buf.pop();
                    if buf.ends_with('\r') {
                        buf.pop();
                    }
                }
                Ok(true)
            }
            Err(e) => Err(broken(*line_no, format!("cannot be read: {e}"))),
        }
    };

    if !next_line(&mut buf, &mut line_no)? {
        return Err(broken(1, "the file is empty: no anchor line"));
    }
    let header: ExportHeader =
        serde_json::from_str(&buf).map_err(|e| broken(1, format!("not an export anchor: {e}")))?;
    header.check().map_err(|m| broken(1, m))?;

    let mut verifier = ChainVerifier::new(&ChainAnchor {
        prev_hash: header.prev_hash.clone(),
        first_seq: header.from_seq,
    });
    let mut expected = header.from_seq;
    let mut last_hash = header.prev_hash.clone();
    let mut count: u64 = 0;
    while next_line(&mut buf, &mut line_no)? {
        if buf.trim().is_empty() {
            return Err(broken(line_no, "an empty line"));
        }
        let record: AuditRecord = serde_json::from_str::<EventLine>(&buf)
            .map_err(|e| broken(line_no, format!("not an audit event: {e}")))?
            .into();
        if expected > header.to_seq {
            return Err(broken(
                line_no,
                format!(
                    "seq {} is past the end of the range (to_seq {}): a line was added or repeated",
                    record.seq, header.to_seq
                ),
            ));
        }
        if record.seq != expected {
            let what = if record.seq < expected {
                "an earlier line is repeated or out of order"
            } else {
                "a line is missing or out of order"
            };
            return Err(broken(
                line_no,
                format!("expected seq {expected}, found seq {}: {what}", record.seq),
            ));
        }
        if let Err(b) = verifier.push(&record) {
            let message = match b.kind {
                BreakKind::HashMismatch => format!(
                    "seq {}: its fields do not match its hash (the line was edited)",
                    record.seq
                ),
                BreakKind::PrevMismatch => format!(
                    "seq {}: prev_hash does not link to the line before (lines were edited, replaced or moved)",
                    record.seq
                ),
                other => format!("seq {}: {other}", record.seq),
            };
            return Err(broken(line_no, message));
        }
        last_hash = record.hash;
        expected += 1;
        count += 1;
    }
    if expected <= header.to_seq {
        return Err(broken(
            line_no,
            format!(
                "the file ends before seq {expected}; the anchor says the range runs to seq {}: the file is truncated",
                header.to_seq
            ),
        ));
    }
    if last_hash != header.last_hash {
        return Err(broken(
            line_no.saturating_sub(1).max(1),
            "the last event's hash is not the anchor's last_hash",
        ));
    }
    verifier
        .finish(None)
        .map_err(|b| broken(line_no, b.to_string()))?;
    Ok(VerifiedExport { header, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{link_hash, LinkInput, GENESIS};

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord {
                    seq,
                    id: format!("id-{seq}"),
                    at: 1_700_000_000 + seq,
                    actor: "cli".into(),
                    action: "invitation.created".into(),
                    subject: format!("invitation:{seq}"),
                    outcome_text: "success".into(),
                    reason: None,
                    details_json: format!("{{\"n\":{seq}, \"spaced\" : true}}"),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                r.hash = link_hash(&LinkInput::of(&r));
                prev.clone_from(&r.hash);
                r
            })
            .collect()
    }

    fn export(records: &[AuditRecord], from: i64, to: i64) -> Vec<String> {
        let prev = if from == 1 {
            GENESIS.to_owned()
        } else {
            records[(from - 2) as usize].hash.clone()
        };
        let last = if to < from {
            prev.clone()
        } else {
            records[(to - 1) as usize].hash.clone()
        };
        let head = ChainHead {
            seq: records.len() as i64,
            hash: records
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or(GENESIS.into()),
        };
        let mut header =
            ExportHeader::new(prev, from, to, last, head, "2026-01-01T00:00:00Z".into());
        // The chain check needs a signature present, not valid (that is checked against
        // the JWKS, in the service).
        header.signature = Some("h.p.s".into());
        let mut lines = vec![header.to_line()];
        for r in records.iter().filter(|r| r.seq >= from && r.seq <= to) {
            lines.push(event_line(r));
        }
        lines
    }

    fn check(lines: &[String]) -> Result<VerifiedExport, ExportBreak> {
        verify_export(lines.concat().as_bytes())
    }

    #[test]
    fn a_range_verifies_on_its_own() {
        let records = chain(6);
        let ok = check(&export(&records, 3, 5)).unwrap();
        assert_eq!(ok.count, 3);
        assert_eq!(check(&export(&records, 1, 6)).unwrap().count, 6);
        assert_eq!(check(&export(&records, 4, 3)).unwrap().count, 0);
    }

    #[test]
    fn details_keep_their_stored_bytes() {
        let records = chain(1);
        let line = event_line(&records[0]);
        assert!(
            line.contains(r#""details":"{\"n\":1, \"spaced\" : true}""#),
            "{line}"
        );
    }

    #[test]
    fn tampering_names_the_line() {
        let records = chain(6);
        let good = export(&records, 2, 5);

        let mut edited = good.clone();
        edited[2] = edited[2].replace("invitation:3", "invitation:9");
        assert_eq!(check(&edited).unwrap_err().line, 3);

        let mut removed = good.clone();
        removed.remove(2);
        let err = check(&removed).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.message.contains("missing"), "{err}");

        let mut swapped = good.clone();
        swapped.swap(2, 3);
        assert_eq!(check(&swapped).unwrap_err().line, 3);

        let mut duplicated = good.clone();
        duplicated.insert(3, good[2].clone());
        let err = check(&duplicated).unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.message.contains("repeated"), "{err}");

        let mut appended = good.clone();
        appended.push(good[4].clone());
        assert_eq!(check(&appended).unwrap_err().line, 6);

        let truncated = good[..4].to_vec();
        let err = check(&truncated).unwrap_err();
        assert_eq!(err.line, 5, "{err}");
        assert!(err.message.contains("truncated"), "{err}");

        let mut cut = good.clone();
        let last = cut.pop().unwrap();
        cut.push(last[..last.len() / 2].to_string());
        assert_eq!(check(&cut).unwrap_err().line, 5);

        let mut anchor = good.clone();
        anchor[0] = anchor[0].replace("\"from_seq\":2", "\"from_seq\":1");
        assert_eq!(check(&anchor).unwrap_err().line, 1);

        let mut extra_field = good.clone();
        extra_field[1] = extra_field[1].replacen('{', "{\"note\":\"x\",", 1);
        assert_eq!(check(&extra_field).unwrap_err().line, 2);

        assert_eq!(check(&[]).unwrap_err().line, 1);
    }

    #[test]
    fn a_rewritten_last_hash_is_caught() {
        let records = chain(4);
        let mut lines = export(&records, 1, 4);
        lines[0] = lines[0].replace(&records[3].hash, &records[2].hash);
        let err = check(&lines).unwrap_err();
        assert!(err.message.contains("last_hash"), "{err}");
    }
}
