//! The report's renderings: canonical JSON, CSV and a printable HTML page.

use askama::Template;

use super::report::{KeyEntry, MemberEntry, Report};
use super::ComplianceError;

/// The canonical JSON: the report's structs serialised compactly, fields in declaration
/// order, no insignificant whitespace. These are the bytes the JWS signs.
pub fn to_json(report: &Report) -> Result<Vec<u8>, ComplianceError> {
    serde_json::to_vec(report).map_err(|e| ComplianceError::Render(e.to_string()))
}

/// CSV header: one row per member and key (a member without keys gets one row with the
/// key columns empty).
pub const CSV_COLUMNS: [&str; 26] = [
    "organisation",
    "generated_at",
    "member_id",
    "email",
    "display_name",
    "role",
    "member_status",
    "compliant",
    "reasons",
    "attested_keys",
    "last_phishing_resistant_signin",
    "sessions_in_period",
    "key_id",
    "key_name",
    "aaguid",
    "model",
    "fips",
    "firmware",
    "attestation",
    "trust_anchor",
    "chain_sha256",
    "enrolled_at",
    "enrolled_by",
    "key_status",
    "revoked_at",
    "evidence_sha256",
];

/// One CSV cell: a value a spreadsheet would run as a formula (starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading `'`; then RFC 4180 quoting when
/// it holds a comma, a quote or a line break.
pub fn csv_cell(value: &str) -> String {
    let guarded;
    let v = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{value}");
        guarded.as_str()
    } else {
        value
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn row(out: &mut String, cells: &[&str]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&csv_cell(c));
    }
    out.push_str("\r\n");
}

fn member_row(out: &mut String, r: &Report, m: &MemberEntry, k: Option<&KeyEntry>) {
    let reasons = m
        .reasons
        .iter()
        .map(|x| x.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let attested = m.attested_keys.to_string();
    let sessions = m.sessions_in_period.to_string();
    let compliant = if m.compliant { "yes" } else { "no" };
    let mut cells: Vec<&str> = vec![
        &r.organisation,
        &r.generated_at,
        &m.id,
        &m.email,
        &m.display_name,
        &m.role,
        &m.status,
        compliant,
        &reasons,
        &attested,
        opt(&m.last_phishing_resistant_signin),
        &sessions,
    ];
    let attestation;
    match k {
        Some(k) => {
            attestation = format!("{} ({})", k.attestation_format, k.attestation_kind);
            cells.extend([
                k.id.as_str(),
                &k.nickname,
                &k.aaguid,
                opt(&k.model),
                if k.fips { "yes" } else { "no" },
                opt(&k.firmware),
                &attestation,
                opt(&k.trust_anchor),
                opt(&k.chain_sha256),
                &k.enrolled_at,
                &k.enrolled_by,
                &k.status,
                opt(&k.revoked_at),
                &k.evidence_sha256,
            ]);
        }
        None => cells.extend([""; 14]),
    }
    row(out, &cells);
}

/// The report as CSV (RFC 4180, CRLF line ends, a header row).
pub fn to_csv(report: &Report) -> String {
    let mut out = String::new();
    row(&mut out, &CSV_COLUMNS);
    for m in &report.members {
        if m.keys.is_empty() {
            member_row(&mut out, report, m, None);
        }
        for k in &m.keys {
            member_row(&mut out, report, m, Some(k));
        }
    }
    out
}

#[derive(Template)]
#[template(path = "compliance_report.html")]
struct HtmlReport<'a> {
    r: &'a Report,
    kid: Option<&'a str>,
}

/// A readable, printable page (every value escaped). `kid` names the signing key when
/// the report was also signed.
pub fn to_html(report: &Report, kid: Option<&str>) -> Result<String, ComplianceError> {
    HtmlReport { r: report, kid }
        .render()
        .map_err(|e| ComplianceError::Render(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn cells_are_quoted_and_formula_safe() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(csv_cell(""), "");
    }
}
