//! The compliance attestation export (SPEC C7): reads members, keys, sessions and
//! workspaces from storage, builds the report with `crate::compliance`, renders it, signs
//! the JWS with the gateway's ES256 key (the OIDC provider's key set, so its `kid` is in
//! the published JWKS) and audits the export (`compliance.exported`: format, scope,
//! member count; never the contents).

use std::fmt;
use std::str::FromStr;

use crate::audit::{NewAuditEvent, Outcome};
use crate::compliance::{
    self, EvidenceBundle, KeyRecord, MemberRecord, Report, ReportInput, Scope, SignIn, WorkspaceRef,
};
use crate::error::{Error, Result};
use crate::oidc::keys::{Algorithm, Jwks, SigningKey};
use crate::service::{tokens, Actor};
use crate::state::AppState;
use crate::storage::{Credential, UserStatus};

/// The default period (and sign-in window), in days.
pub const DEFAULT_PERIOD_DAYS: u32 = 30;
/// The longest period accepted, in days.
pub const MAX_PERIOD_DAYS: u32 = 3_660;

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Compact JWS (ES256) over the canonical JSON.
    Jws,
    /// The canonical JSON, unsigned.
    Json,
    /// One row per member and key.
    Csv,
    /// A printable page.
    Html,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jws => "jws",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Html => "html",
        }
    }

    /// The media type to serve it with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jws => "application/jose",
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Format> {
        match s {
            "jws" => Ok(Format::Jws),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "html" => Ok(Format::Html),
            other => Err(Error::bad_request(
                "unknown_format",
                format!(
                    "unknown export format {:?}; use jws, json, csv or html",
                    other.chars().take(32).collect::<String>()
                ),
            )),
        }
    }
}

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// A workspace (its ID or its external ID), or `None` for the whole organisation.
    pub workspace: Option<String>,
    pub format: Format,
    /// The period and sign-in window, in days (1..=[`MAX_PERIOD_DAYS`]).
    pub period_days: u32,
    /// Whether the evidence bundle goes out with it (audited).
    pub evidence: bool,
}

/// A rendered export, with the evidence bundle that goes with it.
pub struct Export {
    pub report: Report,
    /// The rendered report in the requested format.
    pub body: Vec<u8>,
    /// The evidence bundle (JSON).
    pub evidence: Vec<u8>,
    /// The signing key, for the JWS.
    pub kid: Option<String>,
}

/// The key that signs what keygate exports (compliance reports, audit export anchors): the
/// active ES256 key, published in the JWKS.
pub(crate) async fn export_signing_key(state: &AppState) -> Result<std::sync::Arc<SigningKey>> {
    let keys = state.oidc.keys.get(state).await;
    keys.set.active(Algorithm::Es256).cloned().ok_or_else(|| {
        Error::Internal("no active ES256 signing key; run `keygate keys rotate`".into())
    })
}

fn internal(e: compliance::ComplianceError) -> Error {
    Error::Internal(e.to_string())
}

fn key_record(c: &Credential) -> Result<KeyRecord> {
    let chain: Vec<String> = serde_json::from_str(&c.chain_json).map_err(|_| {
        Error::Internal(format!(
            "key {}: the stored chain is not a JSON array",
            c.id
        ))
    })?;
    let chain = chain
        .iter()
        .map(|b| tokens::from_b64url(b))
        .collect::<Option<Vec<Vec<u8>>>>()
        .ok_or_else(|| {
            Error::Internal(format!("key {}: the stored chain is not base64url", c.id))
        })?;
    Ok(KeyRecord {
        id: c.id.clone(),
        credential_id: c.credential_id.clone(),
        nickname: c.nickname.clone(),
        aaguid: c.aaguid.clone(),
        model: c.model.clone(),
        fips: c.fips,
        firmware: c.firmware.clone(),
        fmt: c.fmt.clone(),
        attestation_kind: c.attestation_kind.clone(),
        trust_anchor: c.trust_anchor.clone(),
        trust_anchor_sha256: c.trust_anchor_sha256.clone(),
        leaf_sha256: c.leaf_sha256.clone(),
        chain,
        attestation_object: c.attestation_object.clone(),
        client_data_json: c.client_data_json.clone(),
        phishing_resistant: c.phishing_resistant,
        enrolled_at: c.enrolled_at,
        enrolled_by: c.enrolled_by.clone(),
        revoked_at: c.revoked_at,
        last_used_at: c.last_used_at,
    })
}

fn workspace_ref(w: &crate::storage::Workspace) -> WorkspaceRef {
    WorkspaceRef {
        id: w.id.clone(),
        name: w.name.clone(),
        external_id: w.external_id.clone(),
    }
}

/// Builds the report and its evidence bundle for a workspace (its ID or external ID) or,
/// with `None`, for every member of the organisation. Read in one transaction, so the
/// report is one consistent snapshot.
pub async fn report(
    state: &AppState,
    workspace: Option<&str>,
    period_days: u32,
) -> Result<(Report, EvidenceBundle)> {
    if period_days == 0 || period_days > MAX_PERIOD_DAYS {
        return Err(Error::bad_request(
            "invalid_period",
            format!("the period must be 1 to {MAX_PERIOD_DAYS} days"),
        ));
    }
    let wanted = workspace.map(str::to_owned);
    let (scope, users, creds, sessions) = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let (scope, members) = match &wanted {
                    Some(w) => {
                        let found = match tx.workspace(w)? {
                            Some(found) => Some(found),
                            None => tx
                                .list_workspaces()?
                                .into_iter()
                                .find(|x| x.external_id == *w),
                        };
                        let Some(found) = found else {
                            return Ok(None);
                        };
                        let ids = tx.workspace_member_ids(&found.id)?;
                        (
                            Scope {
                                kind: "workspace".into(),
                                workspaces: vec![workspace_ref(&found)],
                            },
                            Some(ids),
                        )
                    }
                    None => (
                        Scope {
                            kind: "organisation".into(),
                            workspaces: tx.list_workspaces()?.iter().map(workspace_ref).collect(),
                        },
                        None,
                    ),
                };
                let users: Vec<_> = tx
                    .list_users()?
                    .into_iter()
                    .map(|u| u.user)
                    .filter(|u| members.as_ref().is_none_or(|ids| ids.contains(&u.id)))
                    .collect();
                let creds = tx.list_credentials()?;
                let mut sessions = Vec::with_capacity(users.len());
                for u in &users {
                    sessions.push(tx.sessions_since(&u.id, 0)?);
                }
                Ok(Some((scope, users, creds, sessions)))
            })
        })
        .await?
        .ok_or_else(|| {
            Error::bad_request(
                "unknown_workspace",
                format!(
                    "there is no workspace with ID {:?}",
                    workspace
                        .unwrap_or_default()
                        .chars()
                        .take(64)
                        .collect::<String>()
                ),
            )
        })?;

    let mut members = Vec::with_capacity(users.len());
    for (u, sessions) in users.iter().zip(sessions) {
        let keys = creds
            .iter()
            .filter(|c| c.user_id == u.id)
            .map(key_record)
            .collect::<Result<Vec<_>>>()?;
        members.push(MemberRecord {
            id: u.id.clone(),
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            role: u.role.as_str().into(),
            active: u.status == UserStatus::Active,
            keys,
            sign_ins: sessions
                .into_iter()
                .map(|s| SignIn {
                    at: s.created_at,
                    key_id: s.key_id,
                    user_verified: s.user_verified,
                })
                .collect(),
        });
    }
    let input = ReportInput {
        report_id: tokens::new_id(),
        issuer: state
            .config
            .server
            .public_url
            .trim_end_matches('/')
            .to_owned(),
        rp_id: state.rp_id.to_string(),
        origin: state.origin.to_string(),
        organisation: state.config.organisation.name.clone(),
        scope,
        generated_at: state.now(),
        period_days,
        policy: state.policy().clone(),
    };
    compliance::build(&input, &members).map_err(internal)
}

/// The public JWKS (every key the gateway holds, public parts only): what a vendor needs
/// to verify a signed report.
pub async fn jwks(state: &AppState) -> Result<Jwks> {
    Ok(state.oidc.keys.get(state).await.set.jwks())
}

/// A vendor's pull over the API (`GET /api/compliance/report`), for a client whose token
/// carried `keygate:compliance`: counted against the client's per-minute limit
/// (`rate_limit.compliance_reports_per_minute`, in the shared store), confined
/// to the client's workspace when it is bound to one (another workspace is
/// [`Error::Forbidden`]; none asked means its own), and audited as `compliance.exported`
/// with the client as the actor.
pub async fn export_for_client(
    state: &AppState,
    client: &crate::storage::OidcClient,
    ip: Option<String>,
    mut req: ExportRequest,
) -> Result<Export> {
    crate::service::limits::check_at(
        state,
        "compliance-api",
        &client.client_id,
        state.config.rate_limit.compliance_reports_per_minute,
    )
    .await?;
    if let Some(bound) = &client.workspace_id {
        match req.workspace.as_deref() {
            None => req.workspace = Some(bound.clone()),
            Some(w) if w == bound => {}
            Some(w) => {
                let (id, wanted) = (bound.clone(), w.to_owned());
                let same = state
                    .storage
                    .run(move |s| s.workspace(&id))
                    .await?
                    .is_some_and(|found| found.external_id == wanted);
                if !same {
                    let event = NewAuditEvent {
                        actor: format!("oidc_client:{}", client.client_id),
                        action: "compliance.exported".into(),
                        subject: format!("workspace:{bound}"),
                        outcome: Outcome::Refused,
                        reason: Some("other_workspace".into()),
                        details: serde_json::json!({
                            "format": req.format.as_str(),
                            "asked": w.chars().take(64).collect::<String>(),
                            "ip": ip,
                        }),
                    };
                    let now = state.now();
                    state
                        .storage
                        .run(move |s| s.append_audit(&event, now))
                        .await?;
                    return Err(Error::Forbidden(
                        "this client may only read its own workspace's report",
                    ));
                }
                req.workspace = Some(bound.clone());
            }
        }
    }
    let actor = Actor {
        id: format!("oidc_client:{}", client.client_id),
        ip,
    };
    let done = export(state, &actor, &req).await?;
    state
        .ephemeral
        .set_ex(
            &evidence_key(&client.client_id, &done.report.report_id),
            &done.evidence,
            std::time::Duration::from_secs(EVIDENCE_KEPT_SECS),
        )
        .await?;
    Ok(done)
}

/// How long a report's evidence bundle stays available to the client that pulled it.
pub const EVIDENCE_KEPT_SECS: u64 = 600;

fn evidence_key(client_id: &str, report_id: &str) -> String {
    format!("compliance:evidence:{client_id}:{report_id}")
}

/// The evidence bundle (JSON) of a report the same client pulled over the API in the last
/// [`EVIDENCE_KEPT_SECS`] seconds (`GET /api/compliance/evidence?report=`); anything else is
/// [`Error::NotFound`]. Counted against the client's limit; audited as
/// `compliance.exported` (format `evidence`).
pub async fn evidence_for_client(
    state: &AppState,
    client: &crate::storage::OidcClient,
    ip: Option<String>,
    report_id: &str,
) -> Result<Vec<u8>> {
    crate::service::limits::check_at(
        state,
        "compliance-api",
        &client.client_id,
        state.config.rate_limit.compliance_reports_per_minute,
    )
    .await?;
    let valid = !report_id.is_empty()
        && report_id.len() <= 64
        && report_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(Error::NotFound);
    }
    let bundle = state
        .ephemeral
        .get(&evidence_key(&client.client_id, report_id))
        .await?
        .ok_or(Error::NotFound)?;
    let event = NewAuditEvent {
        actor: format!("oidc_client:{}", client.client_id),
        action: "compliance.exported".into(),
        subject: format!("report:{report_id}"),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({
            "format": "evidence",
            "report_id": report_id,
            "evidence": true,
            "ip": ip,
        }),
    };
    let now = state.now();
    state
        .storage
        .run(move |s| s.append_audit(&event, now))
        .await?;
    Ok(bundle)
}

/// Builds, renders (and for JWS signs) a report, and audits the export.
pub async fn export(state: &AppState, actor: &Actor, req: &ExportRequest) -> Result<Export> {
    let (report, bundle) = report(state, req.workspace.as_deref(), req.period_days).await?;
    let canonical = compliance::to_json(&report).map_err(internal)?;
    let mut kid = None;
    let body = match req.format {
        Format::Json => {
            let mut b = canonical;
            b.push(b'\n');
            b
        }
        Format::Csv => compliance::to_csv(&report).into_bytes(),
        Format::Html => compliance::to_html(&report, None)
            .map_err(internal)?
            .into_bytes(),
        Format::Jws => {
            let key = export_signing_key(state).await?;
            kid = Some(key.kid().to_owned());
            let mut b = compliance::sign_report(&key, &canonical)
                .map_err(internal)?
                .into_bytes();
            b.push(b'\n');
            b
        }
    };
    let evidence = bundle.to_json().map_err(internal)?;

    let subject = match report.scope.workspaces.first() {
        Some(w) if report.scope.kind == "workspace" => format!("workspace:{}", w.id),
        _ => "organisation".to_owned(),
    };
    let keys: usize = report.members.iter().map(|m| m.keys.len()).sum();
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "compliance.exported".into(),
        subject,
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({
            "format": req.format.as_str(),
            "scope": report.scope.kind,
            "workspace": report.scope.workspaces.first().filter(|_| report.scope.kind == "workspace").map(|w| &w.id),
            "members": report.members.len(),
            "evidence": req.evidence,
            "keys": keys,
            "period_days": req.period_days,
            "report_id": report.report_id,
            "kid": kid,
            "ip": actor.ip,
        }),
    };
    let now = state.now();
    state
        .storage
        .run(move |s| s.append_audit(&event, now))
        .await?;
    Ok(Export {
        report,
        body,
        evidence,
        kid,
    })
}
