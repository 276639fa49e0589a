//! The report model and the one verdict rule.
//!
//! A member is compliant when all of these hold (SPEC C2, C7):
//! - the account is active;
//! - at least `policy.min_keys` active keys with trusted attestation (keys sharing an
//!   attestation certificate count once, as at enrolment);
//! - a phishing-resistant sign-in (an attested key, user verified) within the period.
//!
//! [`build`] turns plain records into a [`Report`] and its [`EvidenceBundle`]; [`verdict`]
//! is the rule, used by `build` and again by the offline verifier on the report's own facts.
//! Field order of every struct is the report's field order: the canonical JSON is these
//! structs serialised compactly, so keep it stable and bump [`REPORT_FORMAT`] on change.

use serde::{Deserialize, Serialize};

use super::evidence::{entry_digest, EvidenceBundle, EvidenceEntry, EVIDENCE_FORMAT};
use super::{rfc3339, sha256_hex, ComplianceError};
use crate::attestation::{is_compliant, ComplianceKey, Policy};

/// The report format this code writes and reads.
pub const REPORT_FORMAT: &str = "keygate.compliance/1";

/// Stable reason codes of a member who is not compliant.
pub mod reasons {
    /// Fewer active attested keys than the policy's `min_keys`.
    pub const TOO_FEW_KEYS: &str = "too_few_keys";
    /// No phishing-resistant sign-in within the period.
    pub const NO_RECENT_SIGNIN: &str = "no_recent_phishing_resistant_signin";
    /// The account is disabled.
    pub const MEMBER_DISABLED: &str = "member_disabled";
}

/// The whole report. Times are RFC 3339 UTC strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: String,
    /// Random; the evidence bundle carries the same ID.
    pub report_id: String,
    /// The gateway's public URL (also the OIDC issuer).
    pub issuer: String,
    /// The WebAuthn RP ID and origin the keys were enrolled for (evidence re-verification
    /// checks them).
    pub rp_id: String,
    pub origin: String,
    pub organisation: String,
    pub scope: Scope,
    pub generated_at: String,
    /// keygate's version that made the report.
    pub gateway_version: String,
    pub period: Period,
    pub policy: PolicyInForce,
    pub summary: Summary,
    pub members: Vec<MemberEntry>,
}

/// What the report covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// `organisation` (every member) or `workspace`.
    pub kind: String,
    /// The workspace(s) in scope; for the organisation, every workspace it has.
    pub workspaces: Vec<WorkspaceRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceRef {
    pub id: String,
    pub name: String,
    /// The vendor's ID for it (`workspace_id` in assertions).
    pub external_id: String,
}

/// The period the sign-in rule and the session counts look at: `[from, to]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub from: String,
    pub to: String,
    pub days: u32,
}

/// The policy in force when the report was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInForce {
    /// The policy format version.
    pub version: u32,
    /// SHA-256 (hex) of `rules` as canonical JSON: changes when any rule changes.
    pub sha256: String,
    /// Active attested keys a member needs.
    pub min_keys: u32,
    /// A phishing-resistant sign-in is needed within this many days (the period).
    pub signin_within_days: u32,
    /// The enrolment rules as configured.
    pub rules: Policy,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub members: u64,
    pub compliant: u64,
    pub not_compliant: u64,
    pub active_keys: u64,
    pub revoked_keys: u64,
}

/// Why a member is not compliant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// One of [`reasons`].
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    /// `active` or `disabled`.
    pub status: String,
    pub compliant: bool,
    /// Empty when compliant.
    pub reasons: Vec<Reason>,
    /// Distinct active keys with trusted attestation.
    pub attested_keys: u32,
    pub last_phishing_resistant_signin: Option<String>,
    /// Sessions started within the period (any kind of sign-in).
    pub sessions_in_period: u64,
    pub keys: Vec<KeyEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub id: String,
    /// The WebAuthn credential ID, base64url.
    pub credential_id: String,
    pub nickname: String,
    pub aaguid: String,
    pub model: Option<String>,
    pub fips: bool,
    pub firmware: Option<String>,
    /// `packed`, `fido-u2f`, `none`.
    pub attestation_format: String,
    /// `basic`, `self` or `none`.
    pub attestation_kind: String,
    /// The trust anchor the chain reached at enrolment (name and SHA-256 of its DER).
    pub trust_anchor: Option<String>,
    pub trust_anchor_sha256: Option<String>,
    /// SHA-256 (hex) of the attestation (leaf) certificate.
    pub chain_sha256: Option<String>,
    /// Trusted attestation and user verification at enrolment.
    pub phishing_resistant: bool,
    pub enrolled_at: String,
    pub enrolled_by: String,
    /// `active` or `revoked`.
    pub status: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    /// SHA-256 (hex) of this key's evidence entry ([`entry_digest`]).
    pub evidence_sha256: String,
}

/// A member as storage knows them, handed in by the service.
#[derive(Clone, Debug)]
pub struct MemberRecord {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub active: bool,
    pub keys: Vec<KeyRecord>,
    pub sign_ins: Vec<SignIn>,
}

/// A key as stored, with its raw evidence.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub id: String,
    pub credential_id: Vec<u8>,
    pub nickname: String,
    pub aaguid: String,
    pub model: Option<String>,
    pub fips: bool,
    pub firmware: Option<String>,
    pub fmt: String,
    pub attestation_kind: String,
    pub trust_anchor: Option<String>,
    pub trust_anchor_sha256: Option<String>,
    pub leaf_sha256: Option<String>,
    /// The x5c chain as received, DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    pub attestation_object: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub phishing_resistant: bool,
    pub enrolled_at: i64,
    pub enrolled_by: String,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// A session start: when, with which key, and whether the user was verified.
#[derive(Clone, Debug)]
pub struct SignIn {
    pub at: i64,
    /// `None` for a session an enrolment created (not a sign-in).
    pub key_id: Option<String>,
    pub user_verified: bool,
}

/// Everything [`build`] needs besides the members.
#[derive(Clone, Debug)]
pub struct ReportInput {
    pub report_id: String,
    pub issuer: String,
    pub rp_id: String,
    pub origin: String,
    pub organisation: String,
    pub scope: Scope,
    /// Unix seconds.
    pub generated_at: i64,
    /// The period (and sign-in window) in days, at least 1.
    pub period_days: u32,
    pub policy: Policy,
}

/// Applies the rule. `attested` are the member's active keys with their trust and leaf
/// digest; `last_signin` the last phishing-resistant sign-in; `period_from` the start of
/// the period. Returns the verdict, the reasons and the distinct attested keys counted.
pub fn verdict(
    policy: &Policy,
    active: bool,
    attested: &[ComplianceKey],
    last_signin: Option<i64>,
    period_from: i64,
    period_days: u32,
) -> (bool, Vec<Reason>, u32) {
    let mut out = Vec::new();
    if !active {
        out.push(Reason {
            code: reasons::MEMBER_DISABLED.into(),
            message: "the account is disabled".into(),
        });
    }
    let keys = is_compliant(policy, attested);
    if !keys.compliant {
        out.push(Reason {
            code: reasons::TOO_FEW_KEYS.into(),
            message: keys.reasons.join("; "),
        });
    }
    if last_signin.is_none_or(|t| t < period_from) {
        out.push(Reason {
            code: reasons::NO_RECENT_SIGNIN.into(),
            message: format!(
                "no phishing-resistant sign-in (attested key, user verified) in the last {period_days} day(s)"
            ),
        });
    }
    (out.is_empty(), out, keys.attested_keys)
}

fn leaf(hex_digest: Option<&str>) -> Option<[u8; 32]> {
    hex_digest
        .and_then(|h| hex::decode(h).ok())
        .and_then(|v| v.try_into().ok())
}

/// One active key's compliance facts: whether its attestation was trusted, and its
/// attestation certificate's SHA-256 in hex (keys sharing one count once).
pub fn compliance_key(trusted_attestation: bool, leaf_sha256_hex: Option<&str>) -> ComplianceKey {
    ComplianceKey {
        trusted_attestation,
        leaf_sha256: leaf(leaf_sha256_hex),
    }
}

/// The compliance facts of a report's key entries (active ones only).
pub(crate) fn compliance_keys(keys: &[KeyEntry]) -> Vec<ComplianceKey> {
    keys.iter()
        .filter(|k| k.status == "active")
        .map(|k| compliance_key(k.phishing_resistant, k.chain_sha256.as_deref()))
        .collect()
}

/// The last phishing-resistant sign-in among `sign_ins` (`(at, user verified, key id)`): a
/// session a key signed in, with user verification, where that key had trusted
/// attestation (`attested`; revoked since or not: it was attested when used).
pub fn last_phishing_resistant_signin<'a>(
    sign_ins: impl IntoIterator<Item = (i64, bool, Option<&'a str>)>,
    attested: impl Fn(&str) -> bool,
) -> Option<i64> {
    sign_ins
        .into_iter()
        .filter(|(_, uv, key)| *uv && key.is_some_and(&attested))
        .map(|(at, _, _)| at)
        .max()
}

/// The policy's canonical JSON digest.
pub fn policy_sha256(policy: &Policy) -> Result<String, ComplianceError> {
    let json = serde_json::to_vec(policy).map_err(|e| ComplianceError::Render(e.to_string()))?;
    Ok(sha256_hex(&json))
}

/// Builds the report and its evidence bundle. Members are sorted by e-mail, keys by
/// enrolment time then ID, so the same data always gives the same report.
pub fn build(
    input: &ReportInput,
    members: &[MemberRecord],
) -> Result<(Report, EvidenceBundle), ComplianceError> {
    if input.period_days == 0 {
        return Err(ComplianceError::Record(
            "the period must be at least one day".into(),
        ));
    }
    let period_from = input
        .generated_at
        .saturating_sub(i64::from(input.period_days) * 86_400);
    let mut members: Vec<&MemberRecord> = members.iter().collect();
    members.sort_by(|a, b| (&a.email, &a.id).cmp(&(&b.email, &b.id)));

    let mut entries = Vec::new();
    let mut out = Vec::with_capacity(members.len());
    let mut summary = Summary {
        members: 0,
        compliant: 0,
        not_compliant: 0,
        active_keys: 0,
        revoked_keys: 0,
    };
    for m in members {
        let mut keys: Vec<&KeyRecord> = m.keys.iter().collect();
        keys.sort_by(|a, b| (a.enrolled_at, &a.id).cmp(&(b.enrolled_at, &b.id)));
        let mut key_entries = Vec::with_capacity(keys.len());
        for k in keys {
            let evidence = EvidenceEntry::new(&m.id, k);
            let digest = entry_digest(&k.attestation_object, &k.client_data_json, &k.chain);
            entries.push(evidence);
            if k.revoked_at.is_some() {
                summary.revoked_keys += 1;
            } else {
                summary.active_keys += 1;
            }
            key_entries.push(KeyEntry {
                id: k.id.clone(),
                credential_id: super::b64url(&k.credential_id),
                nickname: k.nickname.clone(),
                aaguid: k.aaguid.clone(),
                model: k.model.clone(),
                fips: k.fips,
                firmware: k.firmware.clone(),
                attestation_format: k.fmt.clone(),
                attestation_kind: k.attestation_kind.clone(),
                trust_anchor: k.trust_anchor.clone(),
                trust_anchor_sha256: k.trust_anchor_sha256.clone(),
                chain_sha256: k.leaf_sha256.clone(),
                phishing_resistant: k.phishing_resistant,
                enrolled_at: rfc3339(k.enrolled_at),
                enrolled_by: k.enrolled_by.clone(),
                status: if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                }
                .into(),
                revoked_at: k.revoked_at.map(rfc3339),
                last_used_at: k.last_used_at.map(rfc3339),
                evidence_sha256: hex::encode(digest),
            });
        }
        let last_signin = last_phishing_resistant_signin(
            m.sign_ins
                .iter()
                .map(|s| (s.at, s.user_verified, s.key_id.as_deref())),
            |id| m.keys.iter().any(|k| k.id == id && k.phishing_resistant),
        );
        let sessions_in_period = m
            .sign_ins
            .iter()
            .filter(|s| s.at >= period_from && s.at <= input.generated_at)
            .count() as u64;
        let (compliant, why, attested_keys) = verdict(
            &input.policy,
            m.active,
            &compliance_keys(&key_entries),
            last_signin,
            period_from,
            input.period_days,
        );
        summary.members += 1;
        if compliant {
            summary.compliant += 1;
        } else {
            summary.not_compliant += 1;
        }
        out.push(MemberEntry {
            id: m.id.clone(),
            email: m.email.clone(),
            display_name: m.display_name.clone(),
            role: m.role.clone(),
            status: if m.active { "active" } else { "disabled" }.into(),
            compliant,
            reasons: why,
            attested_keys,
            last_phishing_resistant_signin: last_signin.map(rfc3339),
            sessions_in_period,
            keys: key_entries,
        });
    }

    let report = Report {
        format: REPORT_FORMAT.into(),
        report_id: input.report_id.clone(),
        issuer: input.issuer.clone(),
        rp_id: input.rp_id.clone(),
        origin: input.origin.clone(),
        organisation: input.organisation.clone(),
        scope: input.scope.clone(),
        generated_at: rfc3339(input.generated_at),
        gateway_version: env!("CARGO_PKG_VERSION").into(),
        period: Period {
            from: rfc3339(period_from),
            to: rfc3339(input.generated_at),
            days: input.period_days,
        },
        policy: PolicyInForce {
            version: input.policy.version,
            sha256: policy_sha256(&input.policy)?,
            min_keys: input.policy.min_keys,
            signin_within_days: input.period_days,
            rules: input.policy.clone(),
        },
        summary,
        members: out,
    };
    let bundle = EvidenceBundle {
        format: EVIDENCE_FORMAT.into(),
        report_id: input.report_id.clone(),
        rp_id: input.rp_id.clone(),
        origin: input.origin.clone(),
        entries,
    };
    Ok((report, bundle))
}
