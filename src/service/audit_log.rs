//! The audit chain as people use it: verification, the filtered viewer, and JSON-lines
//! exports of a range that verify on their own.

use serde::Serialize;

use crate::audit::{event_line, AuditRecord, ChainHead, ExportHeader, NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::service::Actor;
use crate::state::AppState;
use crate::storage::AuditQuery;

/// Whether the chain's ends agree (the head is the last record, nothing lies past it): a
/// cheap check for start-up and `/readyz`. `Some` names the break, logged as an error.
pub async fn ends_agree(state: &AppState) -> Result<Option<crate::audit::ChainBreak>> {
    let broken = state.storage.run(|s| s.audit_ends_agree()).await?;
    if let Some(b) = &broken {
        tracing::error!(
            audit.seq = b.seq,
            audit.break_kind = %b.kind,
            "the audit chain's stored head and its table disagree; run `keygate audit verify`"
        );
    }
    Ok(broken)
}

/// Verifies every event's link and the chain head; a readable verdict or the first break.
pub async fn verify(state: &AppState) -> Result<String> {
    verify_in(&state.storage).await
}

/// [`verify`] with nothing but the database: a chain whose head is blocked (see
/// [`crate::audit::BreakKind::BeyondHead`]) must still be verifiable, so this writes nothing
/// and needs no assembled app.
pub async fn verify_in(storage: &crate::storage::Storage) -> Result<String> {
    let outcome = storage.run(|s| s.verify_audit_chain()).await?;
    match outcome {
        Ok(v) => Ok(format!(
            "audit chain OK: {} events, head {}",
            v.count, v.head_hash
        )),
        Err(b) => Err(Error::Internal(format!("audit chain broken: {b}"))),
    }
}

/// Verifies a JSON-lines export on its own (no database): a readable verdict, or the
/// first broken line.
pub fn verify_export_file(path: &std::path::Path, jwks: Option<&[u8]>) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::bad_request(
            "unreadable_export",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let v = crate::audit::verify_export(std::io::BufReader::new(file))
        .map_err(|b| Error::bad_request("broken_export", format!("audit export broken at {b}")))?;
    let signed = match (&v.header.signature, jwks) {
        (Some(token), Some(jwks)) => {
            let bad = |why: String| {
                Error::bad_request(
                    "broken_export",
                    format!("audit export broken at line 1: the anchor's signature {why}"),
                )
            };
            let verified = crate::compliance::jws::verify_typed(
                token,
                jwks,
                crate::compliance::jws::ANCHOR_TYP,
            )
            .map_err(|e| bad(format!("does not verify: {e}")))?;
            if verified.payload != v.header.signed_part() {
                return Err(bad("is over another anchor: the anchor was changed".into()));
            }
            format!("anchor signed by key {}", verified.kid)
        }
        (Some(_), None) => "anchor signature not checked (give --jwks)".to_owned(),
        (None, Some(_)) => {
            return Err(Error::bad_request(
                "unsigned_export",
                "the anchor is not signed (a v1 export): its origin cannot be checked",
            ))
        }
        (None, None) => "anchor not signed (a v1 export)".to_owned(),
    };
    Ok(format!(
        "audit export OK: {} events, seq {}..{}, last hash {}; {signed}",
        v.count, v.header.from_seq, v.header.to_seq, v.header.last_hash
    ))
}

// ---- the viewer ----

/// Events per page unless `limit` says otherwise, and the most a page may hold.
pub const PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 200;
/// The longest filter value accepted.
const MAX_FILTER_LEN: usize = 200;

/// The viewer's filters as typed (query-string names), kept to refill the form and to
/// build the "older" link. Empty means "no filter".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditFilters {
    /// A date (`2026-11-25`, from its start) or an RFC 3339 time.
    pub from: String,
    /// A date (up to the end of that day) or an RFC 3339 time (up to and including it).
    pub to: String,
    /// `user:<id>`, `cli`, `system`, … or a member's e-mail.
    pub actor: String,
    /// The subject: a member's e-mail or id (`user:<id>`), or any subject (`invitation:<id>`).
    pub member: String,
    /// An action (`enrolment.refused`) or a prefix ending in `.` or `*` (`enrolment.`).
    pub event: String,
    /// `success`, `refused` or `failure`.
    pub outcome: String,
    /// Page size (1..=200, default 50).
    pub limit: String,
    /// Seq of the last event already shown: the page holds older events.
    pub cursor: String,
}

impl AuditFilters {
    /// Reads the filters from `key=value` pairs (a query string). Unknown or repeated
    /// keys are refused with `unknown_filter`; empty values mean no filter.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<AuditFilters>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut f = AuditFilters::default();
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref().trim());
            let slot = match key {
                "from" => &mut f.from,
                "to" => &mut f.to,
                "actor" => &mut f.actor,
                "member" => &mut f.member,
                "event" => &mut f.event,
                "outcome" => &mut f.outcome,
                "limit" => &mut f.limit,
                "cursor" => &mut f.cursor,
                other => {
                    return Err(Error::bad_request(
                        "unknown_filter",
                        format!(
                            "unknown filter {:?}; use from, to, actor, member, event, outcome, limit, cursor",
                            truncate(other, 40)
                        ),
                    ))
                }
            };
            if !slot.is_empty() && !value.is_empty() {
                return Err(Error::bad_request(
                    "unknown_filter",
                    format!("the filter {key} is given twice"),
                ));
            }
            if value.len() > MAX_FILTER_LEN || value.chars().any(char::is_control) {
                return Err(Error::bad_request(
                    "invalid_filter",
                    format!("the filter {key} is too long or holds control characters"),
                ));
            }
            if !value.is_empty() {
                *slot = value.to_string();
            }
        }
        Ok(f)
    }

    /// The query string of these filters (without the cursor), e.g. to page on.
    pub fn query_string(&self, cursor: Option<i64>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("from", &self.from),
            ("to", &self.to),
            ("actor", &self.actor),
            ("member", &self.member),
            ("event", &self.event),
            ("outcome", &self.outcome),
            ("limit", &self.limit),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", &c.to_string());
        }
        q.finish()
    }

    /// Whether any filter (not paging) is set.
    pub fn is_filtered(&self) -> bool {
        [
            &self.from,
            &self.to,
            &self.actor,
            &self.member,
            &self.event,
            &self.outcome,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `from`/`to` as unix seconds: a date (`2026-11-25`) or an RFC 3339 time. A date in `to`
/// means up to the end of that day. Returns the bound the storage query uses: inclusive
/// for `from`, exclusive for `to`.
fn parse_time(name: &str, value: &str, end: bool) -> Result<i64> {
    let bad = || {
        Error::bad_request(
            "invalid_time",
            format!(
                "{name} must be a date (2026-11-25) or an RFC 3339 time (2026-11-25T14:30:00Z)"
            ),
        )
    };
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(value, date_fmt) {
        let start = date.midnight().assume_utc().unix_timestamp();
        return Ok(if end { start + 86_400 } else { start });
    }
    let t = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad())?
        .unix_timestamp();
    Ok(if end { t.saturating_add(1) } else { t })
}

/// An action, or a prefix when it ends in `.` or `*`.
fn parse_event(value: &str) -> Result<(Option<String>, Option<String>)> {
    let (name, prefix) = match value.strip_suffix('*') {
        Some(p) => (p, true),
        None => (value, value.ends_with('.')),
    };
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if !ok {
        return Err(Error::bad_request(
            "invalid_event",
            "event must be an action such as enrolment.refused, or a prefix such as enrolment. (lowercase letters, digits, . _ -)",
        ));
    }
    Ok(if prefix {
        (None, Some(name.to_string()))
    } else {
        (Some(name.to_string()), None)
    })
}

fn parse_positive(code: &'static str, name: &str, value: &str, max: i64) -> Result<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            Error::bad_request(
                code,
                format!("{name} must be a whole number from 1 to {max}"),
            )
        })
}

/// A member's e-mail becomes `user:<id>` (an unknown e-mail is `unknown_member`).
async fn resolve_email(state: &AppState, name: &str, email: &str) -> Result<String> {
    let e = email.to_string();
    match state.storage.run(move |s| s.user_by_email(&e)).await? {
        Some(user) => Ok(format!("user:{}", user.id)),
        None => Err(Error::bad_request(
            "unknown_member",
            format!("{name}: no member has the e-mail {}", truncate(email, 80)),
        )),
    }
}

/// The storage query for `filters`: one page, newest first, one event more than shown
/// (to know whether there are older ones).
pub async fn query_of(state: &AppState, f: &AuditFilters) -> Result<(AuditQuery, u32)> {
    let mut q = AuditQuery {
        newest_first: true,
        ..AuditQuery::default()
    };
    if !f.from.is_empty() {
        q.from = Some(parse_time("from", &f.from, false)?);
    }
    if !f.to.is_empty() {
        q.to = Some(parse_time("to", &f.to, true)?);
    }
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from >= to {
            return Err(Error::bad_request(
                "invalid_time_range",
                "from must be before to",
            ));
        }
    }
    if !f.actor.is_empty() {
        q.actor = Some(if f.actor.contains('@') {
            resolve_email(state, "actor", &f.actor).await?
        } else {
            f.actor.clone()
        });
    }
    if !f.member.is_empty() {
        q.subject = Some(if f.member.contains('@') {
            resolve_email(state, "member", &f.member).await?
        } else if f.member.contains(':') {
            f.member.clone()
        } else {
            format!("user:{}", f.member)
        });
    }
    if !f.event.is_empty() {
        (q.action, q.action_prefix) = parse_event(&f.event)?;
    }
    if !f.outcome.is_empty() {
        q.outcome = Some(f.outcome.parse::<Outcome>().map_err(|_| {
            Error::bad_request(
                "invalid_outcome",
                "outcome must be success, refused or failure",
            )
        })?);
    }
    if !f.cursor.is_empty() {
        q.cursor = Some(parse_positive(
            "invalid_cursor",
            "cursor",
            &f.cursor,
            i64::MAX,
        )?);
    }
    let limit = if f.limit.is_empty() {
        PAGE_SIZE
    } else {
        parse_positive("invalid_limit", "limit", &f.limit, i64::from(MAX_PAGE_SIZE))? as u32
    };
    q.limit = limit + 1;
    Ok((q, limit))
}

/// One event as the viewer shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEventView {
    pub seq: i64,
    pub id: String,
    /// Unix seconds.
    pub at: i64,
    /// RFC 3339, UTC.
    pub time: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub outcome: String,
    pub reason: Option<String>,
    /// The details as JSON (`null` if the stored text is not JSON).
    pub details: serde_json::Value,
    pub hash: String,
    /// The record lies past the chain's stored head: written around the chain, not by
    /// keygate (see [`crate::audit::BreakKind::BeyondHead`]).
    pub beyond_head: bool,
    /// The details flattened to `path: value` pairs for the page (shortened).
    #[serde(skip)]
    pub details_pairs: Vec<(String, String)>,
}

const MAX_PAIRS: usize = 12;
const MAX_VALUE_LEN: usize = 80;

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    if out.len() > MAX_PAIRS {
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((prefix.to_string(), truncate(s, MAX_VALUE_LEN))),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => out.push((
            prefix.to_string(),
            truncate(&value.to_string(), MAX_VALUE_LEN),
        )),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => out.push((
            prefix.to_string(),
            truncate(&other.to_string(), MAX_VALUE_LEN),
        )),
    }
}

impl AuditEventView {
    pub fn of(r: AuditRecord, head_seq: i64) -> Self {
        let details = r.details_value();
        let mut details_pairs = Vec::new();
        flatten("", &details, &mut details_pairs);
        if details_pairs.len() > MAX_PAIRS {
            details_pairs.truncate(MAX_PAIRS);
            details_pairs.push(("…".into(), "more in the JSON API".into()));
        }
        AuditEventView {
            seq: r.seq,
            id: r.id,
            at: r.at,
            time: rfc3339(r.at),
            actor: r.actor,
            action: r.action,
            subject: r.subject,
            outcome: r.outcome_text,
            reason: r.reason,
            details,
            hash: r.hash,
            beyond_head: r.seq > head_seq,
            details_pairs,
        }
    }
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// One page of the viewer.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub events: Vec<AuditEventView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<i64>,
    /// The chain's stored head; events past it are marked `beyond_head`.
    pub head_seq: i64,
}

/// One page of events matching `filters`, newest first.
pub async fn list(state: &AppState, filters: &AuditFilters) -> Result<AuditPage> {
    let (query, limit) = query_of(state, filters).await?;
    let (head, mut records) = state
        .storage
        .run(move |s| {
            s.with_conn(|tx| {
                let records = tx.list_audit(&query)?;
                // Read after the records: an append in between moves the head past them.
                Ok((tx.audit_head()?, records))
            })
        })
        .await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next_cursor = if more {
        records.last().map(|r| r.seq)
    } else {
        None
    };
    Ok(AuditPage {
        events: records
            .into_iter()
            .map(|r| AuditEventView::of(r, head.seq))
            .collect(),
        next_cursor,
        head_seq: head.seq,
    })
}

// ---- exports ----

/// Events read from storage per page while exporting.
pub const EXPORT_PAGE: i64 = 500;

/// A range to export, fixed when the export starts (see [`crate::audit::ExportHeader`]).
#[derive(Debug, Clone)]
pub struct Export {
    pub header: ExportHeader,
}

impl Export {
    /// Reads the events after `after` (up to the range's end), one storage page.
    pub async fn page(&self, state: &AppState, after: i64) -> Result<Vec<AuditRecord>> {
        let to = self.header.to_seq;
        if after >= to {
            return Ok(Vec::new());
        }
        Ok(state
            .storage
            .run(move |s| s.audit_range(after, to, EXPORT_PAGE))
            .await?)
    }

    /// The lines of a page, ready to write.
    pub fn lines(records: &[AuditRecord]) -> String {
        records.iter().map(event_line).collect()
    }

    /// Writes the whole export to `out`, page by page (nothing larger than a page is
    /// held in memory).
    pub async fn write_to<W: std::io::Write>(&self, state: &AppState, out: &mut W) -> Result<u64> {
        let io = |e: std::io::Error| Error::Internal(format!("cannot write the export: {e}"));
        out.write_all(self.header.to_line().as_bytes())
            .map_err(io)?;
        let mut after = self.header.from_seq - 1;
        let mut written = 0u64;
        loop {
            let page = self.page(state, after).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            written += page.len() as u64;
            out.write_all(Self::lines(&page).as_bytes()).map_err(io)?;
        }
        out.flush().map_err(io)?;
        if written != self.header.count as u64 {
            return Err(Error::Internal(format!(
                "the export stopped after {written} of {} events: events are missing from the chain",
                self.header.count
            )));
        }
        Ok(written)
    }
}

fn parse_seq(name: &str, value: Option<&str>) -> Result<Option<i64>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_positive("invalid_range", name, v, i64::MAX).map(Some),
    }
}

/// Starts an export of `from_seq..=to_seq` (default: the whole chain up to now): fixes
/// the range and its anchors, and records the export itself as `audit.exported` (with the
/// range and its `last_hash`, so a file can be checked against the chain later).
pub async fn start_export(
    state: &AppState,
    actor: &Actor,
    from_seq: Option<&str>,
    to_seq: Option<&str>,
) -> Result<Export> {
    let from = parse_seq("from_seq", from_seq)?.unwrap_or(1);
    let to = parse_seq("to_seq", to_seq)?;
    let head = state.storage.run(|s| s.audit_head()).await?;
    let to = to.unwrap_or(head.seq);
    if to > head.seq {
        return Err(Error::bad_request(
            "invalid_range",
            format!("to_seq {to} is past the last event (seq {})", head.seq),
        ));
    }
    if from > to.saturating_add(1) {
        return Err(Error::bad_request(
            "invalid_range",
            format!("from_seq {from} is after to_seq {to}"),
        ));
    }
    let (prev, last) = state
        .storage
        .run(move |s| {
            let hash_of = |s: &crate::storage::Storage, seq: i64| {
                s.audit_range(seq - 1, seq, 1)
                    .map(|r| r.into_iter().next().map(|r| r.hash))
            };
            let prev = if from == 1 {
                Some(crate::audit::GENESIS.to_string())
            } else {
                hash_of(s, from - 1)?
            };
            let last = if to < from {
                prev.clone()
            } else {
                hash_of(s, to)?
            };
            Ok((prev, last))
        })
        .await?;
    let (Some(prev), Some(last)) = (prev, last) else {
        return Err(Error::Internal(
            "the audit chain is missing events at the ends of the range".into(),
        ));
    };
    // The anchor is signed with the key that signs compliance reports (published in the
    // JWKS); none active is a failure before anything is recorded.
    let key = crate::service::compliance::export_signing_key(state).await?;
    let event = NewAuditEvent::new(
        actor.id.clone(),
        "audit.exported",
        "audit",
        Outcome::Success,
    )
    .with_details(serde_json::json!({
        "from_seq": from,
        "to_seq": to,
        "count": to - from + 1,
        "last_hash": last,
        "format": crate::audit::EXPORT_FORMAT,
        "ip": actor.ip,
    }));
    let now = state.now();
    let recorded = state
        .storage
        .run(move |s| s.append_audit(&event, now))
        .await?;
    let header = ExportHeader::new(
        prev,
        from,
        to,
        last,
        ChainHead {
            seq: recorded.seq,
            hash: recorded.hash,
        },
        rfc3339(now),
    );
    let signature = crate::compliance::jws::sign_typed(
        &key,
        crate::compliance::jws::ANCHOR_TYP,
        &header.signed_part(),
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    let header = ExportHeader {
        signature: Some(signature),
        ..header
    };
    Ok(Export { header })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_from_pairs() {
        let f = AuditFilters::from_pairs([
            ("from", "2026-01-01"),
            ("event", "enrolment."),
            ("actor", ""),
        ])
        .unwrap();
        assert_eq!(f.from, "2026-01-01");
        assert_eq!(f.event, "enrolment.");
        assert!(f.actor.is_empty());
        assert_eq!(
            f.query_string(Some(7)),
            "from=2026-01-01&event=enrolment.&cursor=7"
        );
        let err = AuditFilters::from_pairs([("colour", "red")]).unwrap_err();
        assert_eq!(err.code(), "unknown_filter");
        let err = AuditFilters::from_pairs([("to", "a"), ("to", "b")]).unwrap_err();
        assert_eq!(err.code(), "unknown_filter");
        let err = AuditFilters::from_pairs([("actor", "a\u{0}b")]).unwrap_err();
        assert_eq!(err.code(), "invalid_filter");
    }

    #[test]
    fn times_and_events() {
        assert_eq!(
            parse_time("from", "2026-01-02", false).unwrap(),
            1_767_312_000
        );
        assert_eq!(parse_time("to", "2026-01-02", true).unwrap(), 1_767_398_400);
        assert_eq!(
            parse_time("from", "2026-01-02T00:00:10+01:00", false).unwrap(),
            1_767_308_410
        );
        assert_eq!(
            parse_time("to", "2026-01-02T00:00:00Z", true).unwrap(),
            1_767_312_001
        );
        for bad in ["yesterday", "2026-13-01", "1767312000", "2026-01-02 10:00"] {
            assert_eq!(
                parse_time("from", bad, false).unwrap_err().code(),
                "invalid_time"
            );
        }
        assert_eq!(
            parse_event("enrolment.refused").unwrap(),
            (Some("enrolment.refused".into()), None)
        );
        assert_eq!(
            parse_event("enrolment.").unwrap(),
            (None, Some("enrolment.".into()))
        );
        assert_eq!(parse_event("enrol*").unwrap(), (None, Some("enrol".into())));
        for bad in ["*", "Enrolment", "a%b", "a b"] {
            assert_eq!(parse_event(bad).unwrap_err().code(), "invalid_event");
        }
    }

    #[test]
    fn details_are_flattened_and_shortened() {
        let long = "x".repeat(500);
        let mut out = Vec::new();
        flatten(
            "",
            &serde_json::json!({"ip": "10.0.0.1", "key": {"model": "YubiKey", "ids": [1, 2]}, "blob": long, "none": null}),
            &mut out,
        );
        assert!(out.contains(&("ip".into(), "10.0.0.1".into())));
        assert!(out.contains(&("key.model".into(), "YubiKey".into())));
        assert!(out.contains(&("key.ids".into(), "[1,2]".into())));
        let blob = out.iter().find(|(k, _)| k == "blob").unwrap();
        assert!(blob.1.chars().count() <= MAX_VALUE_LEN + 1);
    }
}
