//! The compliance attestation (SPEC C7): the report model, its renderings (canonical JSON,
//! CSV, a printable HTML page, a compact JWS) and the evidence bundle, and the offline
//! verification a vendor runs without trusting keygate or its database.
//!
//! | file | what |
//! | --- | --- |
//! | `report.rs` | the report model, built from plain member/key/sign-in records, and the one verdict rule |
//! | `evidence.rs` | the evidence bundle (each key's raw attestation) and the digest the report commits to |
//! | `render.rs` | JSON (canonical), CSV (RFC 4180, formula-safe) and HTML |
//! | `jws.rs` | compact JWS (ES256) over the canonical JSON, and strict verification against a public JWKS |
//! | `verify.rs` | `verify-export`: signature, report integrity, evidence digests and attestation re-verification |
//!
//! This module knows nothing of HTTP or storage: the service in `service::compliance`
//! reads storage and hands the records in.

pub mod evidence;
pub mod jws;
pub mod render;
pub mod report;
pub mod verify;

pub use evidence::{entry_digest, EvidenceBundle, EvidenceEntry, EVIDENCE_FORMAT};
pub use jws::{sign_report, verify_jws, VerifiedJws, REPORT_TYP};
pub use render::{to_csv, to_html, to_json};
pub use report::{
    build, verdict, KeyEntry, KeyRecord, MemberEntry, MemberRecord, Period, PolicyInForce, Reason,
    Report, ReportInput, Scope, SignIn, Summary, WorkspaceRef, REPORT_FORMAT,
};
pub use verify::{read_input, verifier_with_roots, verify_export, MemberVerdict, Verification};

/// What can go wrong building, rendering or verifying a compliance export. Each message
/// names what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComplianceError {
    /// A stored record cannot be turned into the report (e.g. an unreadable chain).
    #[error("{0}")]
    Record(String),
    /// The report could not be rendered or signed.
    #[error("{0}")]
    Render(String),
    /// The signed report is not a well-formed compact JWS.
    #[error("the report is not a compact JWS: {0}")]
    MalformedJws(String),
    /// The JWKS file is not usable.
    #[error("the JWKS is not usable: {0}")]
    Jwks(String),
    /// The signature or its header failed a check.
    #[error("signature: {0}")]
    Signature(String),
    /// The signed payload is not a report this verifier understands.
    #[error("report: {0}")]
    Report(String),
    /// The evidence bundle is not usable.
    #[error("evidence bundle: {0}")]
    Evidence(String),
    /// A file could not be read, or trust roots could not be loaded.
    #[error("{0}")]
    Input(String),
}

/// Times in reports: RFC 3339, UTC, whole seconds.
pub fn rfc3339(unix: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// Parses a report time back to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// base64url without padding (WebAuthn's encoding of binary fields).
pub(crate) fn b64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// SHA-256 of `data`, hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_round_trip() {
        assert_eq!(super::rfc3339(1_764_000_000), "2025-11-24T16:00:00Z");
        assert_eq!(
            super::parse_rfc3339("2025-11-24T16:00:00Z"),
            Some(1_764_000_000)
        );
        assert_eq!(super::parse_rfc3339("yesterday"), None);
    }
}
