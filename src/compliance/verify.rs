//! Offline verification of a signed report (`keygate verify-export`), without the
//! database and without trusting keygate:
//!
//! 1. the JWS signature against the given JWKS (strictly: alg, kid, typ);
//! 2. the report's integrity: its format, canonical form, the policy digest, the period,
//!    the summary counts, and every member's verdict recomputed from the report's own
//!    facts with the one rule ([`super::report::verdict`]);
//! 3. with the evidence bundle: every key's evidence digest against the report, and its
//!    attestation re-verified from the raw bytes (statement signature, chain to the
//!    built-in Yubico roots or the given roots, at the enrolment time), cross-checked
//!    with what the report says (credential ID, AAGUID, model, FIPS, firmware, trust
//!    anchor, chain fingerprint).
//!
//! A bad signature or unreadable input is an error; every other finding is a problem
//! named in the [`Verification`], per member where it belongs.

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::path::Path;

use super::evidence::{entry_digest, EvidenceBundle, EvidenceEntry};
use super::jws::verify_jws;
use super::report::{compliance_keys, policy_sha256, verdict, KeyEntry, Report, REPORT_FORMAT};
use super::{parse_rfc3339, render, ComplianceError};
use crate::attestation::{TrustResult, Verifier};
use crate::webauthn::{verify_registration, RegistrationInput, UncheckedClientData};

/// The largest file `verify-export` reads.
pub const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Reads one input file (`what` names it in errors), refusing files over
/// [`MAX_INPUT_BYTES`].
pub fn read_input(path: &Path, what: &str) -> Result<Vec<u8>, ComplianceError> {
    let file = std::fs::File::open(path).map_err(|e| {
        ComplianceError::Input(format!("cannot read the {what} {}: {e}", path.display()))
    })?;
    let mut out = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ComplianceError::Input(format!("cannot read the {what} {}: {e}", path.display()))
        })?;
    if out.len() as u64 > MAX_INPUT_BYTES {
        return Err(ComplianceError::Input(format!(
            "the {what} {} is larger than {MAX_INPUT_BYTES} bytes",
            path.display()
        )));
    }
    Ok(out)
}

/// Yubico's built-in roots, intermediates and AAGUID catalogue, plus every PEM
/// certificate in `roots` (a directory of `.pem`/`.crt` files, or one file) as an extra
/// trust anchor.
pub fn verifier_with_roots(roots: Option<&Path>) -> Result<Verifier, ComplianceError> {
    let mut verifier = Verifier::builtin();
    let Some(roots) = roots else {
        return Ok(verifier);
    };
    let files: Vec<std::path::PathBuf> = if roots.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(roots)
            .map_err(|e| ComplianceError::Input(format!("cannot read {}: {e}", roots.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| x.eq_ignore_ascii_case("pem") || x.eq_ignore_ascii_case("crt"))
            })
            .collect();
        files.sort();
        files
    } else {
        vec![roots.to_path_buf()]
    };
    if files.is_empty() {
        return Err(ComplianceError::Input(format!(
            "no .pem or .crt files in {}",
            roots.display()
        )));
    }
    for f in files {
        let pem = read_input(&f, "root certificate")?;
        let pem = String::from_utf8(pem)
            .map_err(|_| ComplianceError::Input(format!("{} is not a PEM file", f.display())))?;
        verifier
            .trust
            .add_anchor_pem(&pem)
            .map_err(|e| ComplianceError::Input(format!("{}: {e}", f.display())))?;
    }
    Ok(verifier)
}

/// What verification found for one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberVerdict {
    pub email: String,
    /// The report's verdict (checked against its facts).
    pub compliant: bool,
    /// Reason codes when not compliant.
    pub reasons: Vec<String>,
    /// Keys whose attestation was re-verified from the evidence.
    pub keys_verified: usize,
    pub keys: usize,
    /// Each failed check, naming the key.
    pub problems: Vec<String>,
}

/// The outcome of [`verify_export`].
#[derive(Clone, Debug)]
pub struct Verification {
    /// The key that signed the report.
    pub kid: String,
    pub report: Report,
    /// Whether an evidence bundle was checked.
    pub evidence_checked: bool,
    /// Problems that belong to no single member.
    pub problems: Vec<String>,
    pub members: Vec<MemberVerdict>,
}

impl Verification {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.members.iter().all(|m| m.problems.is_empty())
    }

    /// Every problem, member problems prefixed with the member.
    pub fn all_problems(&self) -> Vec<String> {
        let mut out = self.problems.clone();
        for m in &self.members {
            out.extend(m.problems.iter().map(|p| format!("{}: {p}", m.email)));
        }
        out
    }

    /// A readable account: the signature, the report, one line per member, the verdict.
    pub fn text(&self) -> String {
        let r = &self.report;
        let mut out = format!(
            "signature: OK (ES256, key {})\nreport: {} · {} · generated {} by keygate {} · {} member(s), {} compliant\n",
            self.kid,
            r.organisation,
            scope_text(r),
            r.generated_at,
            r.gateway_version,
            r.summary.members,
            r.summary.compliant,
        );
        if self.evidence_checked {
            let keys: usize = self.members.iter().map(|m| m.keys).sum();
            let verified: usize = self.members.iter().map(|m| m.keys_verified).sum();
            out.push_str(&format!(
                "evidence: {verified} of {keys} key attestation(s) re-verified\n"
            ));
        } else {
            out.push_str("evidence: not checked (no --evidence given)\n");
        }
        for p in &self.problems {
            out.push_str(&format!("FAIL  report: {p}\n"));
        }
        for m in &self.members {
            let verdict = if m.compliant {
                "compliant".to_owned()
            } else {
                format!("not compliant ({})", m.reasons.join(", "))
            };
            if m.problems.is_empty() {
                let evidence = if self.evidence_checked {
                    format!("; {} of {} key(s) verified", m.keys_verified, m.keys)
                } else {
                    String::new()
                };
                out.push_str(&format!("OK    {}: {verdict}{evidence}\n", m.email));
            } else {
                for p in &m.problems {
                    out.push_str(&format!("FAIL  {}: {p}\n", m.email));
                }
            }
        }
        let n = self.all_problems().len();
        if n == 0 {
            out.push_str("verdict: VERIFIED\n");
        } else {
            out.push_str(&format!("verdict: FAILED ({n} problem(s))\n"));
        }
        out
    }
}

fn scope_text(r: &Report) -> String {
    let names: Vec<String> = r
        .scope
        .workspaces
        .iter()
        .map(|w| format!("{} ({})", w.name, w.external_id))
        .collect();
    if r.scope.kind == "workspace" {
        format!("workspace {}", names.join(", "))
    } else {
        "whole organisation".to_owned()
    }
}

/// Verifies a signed report (compact JWS text) against a JWKS, and optionally its
/// evidence bundle with `verifier`'s trust anchors and catalogue.
pub fn verify_export(
    token: &str,
    jwks: &[u8],
    evidence: Option<&[u8]>,
    verifier: &Verifier,
) -> Result<Verification, ComplianceError> {
    let signed = verify_jws(token, jwks)?;
    let report: Report = serde_json::from_slice(&signed.payload).map_err(|e| {
        ComplianceError::Report(format!(
            "the signed payload is not a report this verifier understands ({e})"
        ))
    })?;
    if report.format != REPORT_FORMAT {
        return Err(ComplianceError::Report(format!(
            "format {:?} is not supported (expected {REPORT_FORMAT:?})",
            report.format
        )));
    }
    let mut v = Verification {
        kid: signed.kid,
        problems: integrity(&report, &signed.payload),
        members: Vec::new(),
        evidence_checked: evidence.is_some(),
        report,
    };
    let bundle = evidence.map(EvidenceBundle::parse).transpose()?;
    let mut entries: BTreeMap<&str, &EvidenceEntry> = BTreeMap::new();
    if let Some(b) = &bundle {
        if b.report_id != v.report.report_id {
            v.problems.push(format!(
                "the evidence bundle belongs to report {}, not {}",
                b.report_id, v.report.report_id
            ));
        }
        if b.rp_id != v.report.rp_id || b.origin != v.report.origin {
            v.problems
                .push("the evidence bundle names another RP ID or origin".into());
        }
        for e in &b.entries {
            if entries.insert(e.key_id.as_str(), e).is_some() {
                v.problems
                    .push(format!("the evidence bundle holds key {} twice", e.key_id));
            }
        }
        let in_report: HashSet<&str> = v
            .report
            .members
            .iter()
            .flat_map(|m| m.keys.iter().map(|k| k.id.as_str()))
            .collect();
        for id in entries.keys() {
            if !in_report.contains(id) {
                v.problems.push(format!(
                    "the evidence bundle holds key {id}, which the report does not list"
                ));
            }
        }
    }

    let period_from = parse_rfc3339(&v.report.period.from).unwrap_or(i64::MAX);
    let mut members = Vec::with_capacity(v.report.members.len());
    for m in &v.report.members {
        let mut problems = Vec::new();
        let last = match &m.last_phishing_resistant_signin {
            Some(t) => match parse_rfc3339(t) {
                Some(t) => Some(t),
                None => {
                    problems.push(format!("last sign-in time {t:?} is not RFC 3339"));
                    None
                }
            },
            None => None,
        };
        let (compliant, reasons, attested) = verdict(
            &v.report.policy.rules,
            m.status == "active",
            &compliance_keys(&m.keys),
            last,
            period_from,
            v.report.period.days,
        );
        let codes: Vec<String> = reasons.iter().map(|r| r.code.clone()).collect();
        let stated: Vec<String> = m.reasons.iter().map(|r| r.code.clone()).collect();
        if compliant != m.compliant || codes != stated {
            problems.push(format!(
                "the verdict does not follow from the report's facts (stated {}, the policy gives {})",
                if m.compliant { "compliant" } else { "not compliant" },
                if compliant { "compliant" } else { "not compliant" },
            ));
        }
        if attested != m.attested_keys {
            problems.push(format!(
                "attested_keys is {}, the keys listed give {attested}",
                m.attested_keys
            ));
        }
        if !matches!(m.status.as_str(), "active" | "disabled") {
            problems.push(format!("unknown member status {:?}", m.status));
        }
        let mut keys_verified = 0;
        for k in &m.keys {
            if !matches!(k.status.as_str(), "active" | "revoked")
                || (k.status == "revoked") != k.revoked_at.is_some()
            {
                problems.push(format!("key {}: inconsistent status", k.id));
            }
            if bundle.is_none() {
                continue;
            }
            match entries.get(k.id.as_str()) {
                None => problems.push(format!("key {}: no evidence entry in the bundle", k.id)),
                Some(e) if e.member_id != m.id => problems.push(format!(
                    "key {}: the evidence entry belongs to another member",
                    k.id
                )),
                Some(e) => match check_key(&v.report, k, e, verifier) {
                    Ok(()) => keys_verified += 1,
                    Err(p) => problems.push(format!("key {}: {p}", k.id)),
                },
            }
        }
        members.push(MemberVerdict {
            email: m.email.clone(),
            compliant: m.compliant,
            reasons: stated,
            keys_verified,
            keys: m.keys.len(),
            problems,
        });
    }
    v.members = members;
    Ok(v)
}

/// Report-level integrity checks.
fn integrity(r: &Report, payload: &[u8]) -> Vec<String> {
    let mut p = Vec::new();
    match render::to_json(r) {
        Ok(canonical) if canonical == payload => {}
        _ => p.push("the signed payload is not the report's canonical JSON".into()),
    }
    match policy_sha256(&r.policy.rules) {
        Ok(d) if d == r.policy.sha256 => {}
        _ => p.push("the policy digest does not match the policy rules".into()),
    }
    if r.policy.min_keys != r.policy.rules.min_keys || r.policy.version != r.policy.rules.version {
        p.push("the policy summary does not match the policy rules".into());
    }
    if r.policy.signin_within_days != r.period.days {
        p.push("the sign-in window is not the report period".into());
    }
    match (
        parse_rfc3339(&r.period.from),
        parse_rfc3339(&r.period.to),
        parse_rfc3339(&r.generated_at),
    ) {
        (Some(from), Some(to), Some(at))
            if to == at && to.saturating_sub(from) == i64::from(r.period.days) * 86_400 => {}
        _ => {
            p.push("the period does not end at the generation time or has the wrong length".into())
        }
    }
    let n = r.members.len() as u64;
    let compliant = r.members.iter().filter(|m| m.compliant).count() as u64;
    let keys = r.members.iter().flat_map(|m| &m.keys);
    let active = keys.clone().filter(|k| k.status == "active").count() as u64;
    let revoked = keys.clone().filter(|k| k.status == "revoked").count() as u64;
    let s = &r.summary;
    if s.members != n
        || s.compliant != compliant
        || s.not_compliant != n - compliant
        || s.active_keys != active
        || s.revoked_keys != revoked
    {
        p.push("the summary counts do not match the members listed".into());
    }
    let mut ids = HashSet::new();
    for k in keys {
        if !ids.insert(k.id.as_str()) {
            p.push(format!("key {} is listed twice", k.id));
        }
        if k.evidence_sha256.len() != 64 || hex::decode(&k.evidence_sha256).is_err() {
            p.push(format!("key {}: evidence_sha256 is not a SHA-256", k.id));
        }
    }
    p
}

/// Re-verifies one key's evidence and cross-checks it with the report.
fn check_key(
    report: &Report,
    k: &KeyEntry,
    e: &EvidenceEntry,
    verifier: &Verifier,
) -> Result<(), String> {
    let raw = e.decode().map_err(|e| e.to_string())?;
    let digest = hex::encode(entry_digest(
        &raw.attestation_object,
        &raw.client_data_json,
        &raw.chain,
    ));
    if digest != k.evidence_sha256 {
        return Err(
            "the evidence digest does not match the report (the evidence was changed or swapped)"
                .into(),
        );
    }
    if e.sha256 != digest {
        return Err(
            "the entry's own sha256 does not match its contents (the field was edited)".into(),
        );
    }
    if super::b64url(&raw.credential_id) != k.credential_id {
        return Err("the evidence is for another credential ID".into());
    }
    let enrolled_at = parse_rfc3339(&k.enrolled_at)
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or("the enrolment time is not RFC 3339")?;
    let client_data = UncheckedClientData::parse(&raw.client_data_json)
        .map_err(|e| format!("clientDataJSON: {e}"))?;
    let verified = verify_registration(
        &RegistrationInput {
            client_data_json: &raw.client_data_json,
            attestation_object: &raw.attestation_object,
            // The challenge was single-use at enrolment; what can be checked offline is
            // that the attestation signs this clientDataJSON (with its challenge).
            expected_challenge: &client_data.challenge,
            expected_origin: &report.origin,
            rp_id: &report.rp_id,
        },
        verifier,
        enrolled_at,
    )
    .map_err(|e| format!("the attestation does not verify: {e}"))?;
    let ev = &verified.evidence;
    if verified.credential_id != raw.credential_id {
        return Err("the attestation is for another credential ID".into());
    }
    if ev.fmt != k.attestation_format {
        return Err(format!(
            "the attestation format is {}, the report says {}",
            ev.fmt, k.attestation_format
        ));
    }
    if ev.chain != raw.chain {
        return Err("the chain in the bundle is not the attestation's x5c".into());
    }
    match (&ev.trust, &k.trust_anchor_sha256) {
        (TrustResult::Trusted { anchor_sha256, .. }, Some(stated))
            if hex::encode(anchor_sha256) == *stated => {}
        (TrustResult::Trusted { anchor_name, .. }, Some(_)) => {
            return Err(format!(
                "the chain reaches {anchor_name:?}, not the trust anchor the report names ({})",
                k.trust_anchor.as_deref().unwrap_or("?")
            ))
        }
        (TrustResult::Untrusted { code, reason }, Some(_)) => {
            return Err(format!(
                "the chain does not reach a trusted root ({code}: {reason})"
            ))
        }
        (TrustResult::NotApplicable, Some(_)) => {
            return Err("the attestation has no certificate chain".into())
        }
        (_, None) => {}
    }
    if k.phishing_resistant && !(ev.is_trusted() && verified.flags.user_verified) {
        return Err(
            "the report counts the key as attested, but its evidence does not prove trusted attestation with user verification"
                .into(),
        );
    }
    if ev.leaf_sha256.map(hex::encode) != k.chain_sha256 {
        return Err("the chain fingerprint (leaf SHA-256) does not match the report".into());
    }
    if ev.aaguid.to_string() != k.aaguid {
        return Err(format!(
            "the AAGUID is {}, the report says {}",
            ev.aaguid, k.aaguid
        ));
    }
    match (&ev.device, &k.model) {
        (Some(d), Some(m)) if d.model == *m && d.fips == k.fips => {}
        (Some(d), Some(m)) => {
            return Err(format!(
                "the catalogue gives {} (FIPS {}), the report says {m} (FIPS {})",
                d.model, d.fips, k.fips
            ))
        }
        (None, Some(m)) => {
            return Err(format!(
                "the model {m:?} cannot be confirmed: AAGUID {} is not in the built-in catalogue",
                ev.aaguid
            ))
        }
        (Some(d), None) => {
            return Err(format!(
                "the catalogue gives {}, the report names no model",
                d.model
            ))
        }
        (None, None) => {}
    }
    if ev.firmware != k.firmware {
        return Err("the firmware version does not match the report".into());
    }
    Ok(())
}
