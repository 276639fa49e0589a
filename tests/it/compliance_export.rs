//! The compliance report (SPEC C7) from a seeded organisation enrolled over the real HTTP
//! flow: verdicts with reasons, scope, the sign-in window, and the JSON, CSV and HTML
//! renderings (CSV formula injection, HTML escaping), each export audited.

use serde_json::json;

use keygate::service::compliance::{self, ExportRequest, Format};
use keygate::service::Actor;

use crate::enrolment_http::{
    app_trusting, audit_events, begin, enrol_with, finish_body, options_for, physical_key,
    token_of, trusted_ca, TrustedCa,
};
use crate::signin_http::sign_in;
use crate::support::app::{csrf_of, Client, TestApp};
use crate::support::authenticator::{
    Registration, SoftAuthenticator, YUBIKEY_5CI_FIPS, YUBIKEY_5_NFC,
};

/// A display name a spreadsheet would run as a formula.
pub const FORMULA_NAME: &str = "=HYPERLINK(\"http://evil.example\",\"x\")";
/// A display name that is markup.
pub const MARKUP_NAME: &str = "<b>Bob</b> & co";

/// An organisation enrolled over HTTP: Ada (admin) with two keys and a sign-in, Bob with
/// one key and a sign-in, in workspace `vendor` (external ID `ws-vendor-1`).
pub struct Seeded {
    pub app: TestApp,
    pub ca: TrustedCa,
    pub ada_id: String,
    pub bob_id: String,
    /// Ada's signed-in browser (an admin).
    pub ada: Client,
    /// Bob's signed-in browser (a member).
    pub bob: Client,
}

/// Runs one enrolment on `page` and keeps the credential the software key holds.
async fn enrol_keep(
    app: &TestApp,
    client: &mut Client,
    page: &str,
    body: serde_json::Value,
    auth: &SoftAuthenticator,
) -> (Registration, serde_json::Value) {
    let (csrf, options) = begin(client, page, body).await;
    let reg = auth.register(&options_for(app, &options));
    let done = client
        .post_json(
            "/api/enrol/finish",
            Some(&csrf),
            &finish_body(&reg, "Primary"),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    (reg, done.json())
}

pub async fn seeded() -> Seeded {
    let ca = trusted_ca();
    let toml = format!(
        "{}\n[[workspaces]]\nid = \"vendor\"\nname = \"Vendor <Program>\"\nexternal_id = \"ws-vendor-1\"\nmembers = [\"bob@example.com\"]\n",
        ca.toml
    );
    let app = TestApp::builder().with_toml(&toml).start().await;

    // Ada: bootstrap admin, primary and backup key, then a sign-in.
    let mut ada = app.client();
    let path = app.bootstrap_path();
    let (mut ada_reg, done) = enrol_keep(
        &app,
        &mut ada,
        &path,
        json!({ "token": token_of(&path), "email": "admin@example.com", "display_name": FORMULA_NAME }),
        &SoftAuthenticator::new(&ca.ca),
    )
    .await;
    let ada_id = done["user_id"].as_str().expect("user_id").to_string();
    let backup = physical_key(&ca.ca, YUBIKEY_5CI_FIPS, 9);
    let added = enrol_with(&app, &mut ada, "/me/keys/new", json!({}), &backup, |_| {}).await;
    assert_eq!(added.status, 200, "{}", added.body);
    let (_, signed) = sign_in(&app, &mut ada_reg.credential, &ada_id, None, |_| {}).await;
    assert_eq!(signed.status, 200, "{}", signed.body);

    // Bob: invited, one key, a sign-in.
    let csrf = csrf_of(&ada.get("/admin/invitations").await.body);
    let inv = ada
        .post_json(
            "/api/admin/invitations",
            Some(&csrf),
            &json!({ "email": "bob@example.com", "display_name": MARKUP_NAME, "role": "member" }),
        )
        .await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    let link = inv.json()["link"].as_str().expect("link").to_string();
    let path = link.trim_start_matches(app.origin()).to_string();
    let mut bob = app.client();
    let (mut bob_reg, done) = enrol_keep(
        &app,
        &mut bob,
        &path,
        json!({ "token": token_of(&path) }),
        &physical_key(&ca.ca, YUBIKEY_5_NFC, 20),
    )
    .await;
    let bob_id = done["user_id"].as_str().expect("user_id").to_string();
    let (_, signed) = sign_in(&app, &mut bob_reg.credential, &bob_id, None, |_| {}).await;
    assert_eq!(signed.status, 200, "{}", signed.body);

    Seeded {
        app,
        ca,
        ada_id,
        bob_id,
        ada,
        bob,
    }
}

fn details(e: &keygate::audit::AuditRecord) -> serde_json::Value {
    serde_json::from_str(&e.details_json).expect("details JSON")
}

pub fn request(format: Format, workspace: Option<&str>) -> ExportRequest {
    ExportRequest {
        workspace: workspace.map(str::to_string),
        format,
        period_days: 30,
        evidence: true,
    }
}

#[actix_web::test]
async fn compliance_report_verdicts_reasons_scope_and_window() {
    let s = seeded().await;
    let state = &s.app.state;

    let (report, bundle) = compliance::report(state, None, 30).await.expect("report");
    assert_eq!(report.format, "keygate.compliance/1");
    assert_eq!(report.organisation, "Test Org");
    assert_eq!(report.scope.kind, "organisation");
    assert_eq!(report.scope.workspaces[0].external_id, "ws-vendor-1");
    assert_eq!(report.gateway_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(report.policy.min_keys, 2);
    assert_eq!(report.period.days, 30);
    assert_eq!(report.summary.members, 2);
    assert_eq!(report.summary.compliant, 1);
    assert_eq!(report.summary.active_keys, 3);

    let ada = report
        .members
        .iter()
        .find(|m| m.id == s.ada_id)
        .expect("ada");
    assert!(ada.compliant, "{ada:?}");
    assert!(ada.reasons.is_empty());
    assert_eq!(ada.attested_keys, 2);
    assert_eq!(ada.keys.len(), 2);
    assert!(ada.last_phishing_resistant_signin.is_some());
    assert!(ada.sessions_in_period >= 1);
    // Keys enrolled in the same second are ordered by ID: compare as a set.
    let mut models: Vec<(Option<String>, bool)> =
        ada.keys.iter().map(|k| (k.model.clone(), k.fips)).collect();
    models.sort();
    assert_eq!(
        models,
        [
            (Some("YubiKey 5 NFC".to_string()), false),
            (Some("YubiKey 5Ci FIPS".to_string()), true)
        ]
    );
    for k in &ada.keys {
        assert_eq!(k.status, "active");
        assert!(k
            .trust_anchor
            .as_deref()
            .unwrap()
            .contains("Enrolment Test"));
        assert_eq!(k.chain_sha256.as_deref().map(str::len), Some(64));
        assert!(!k.enrolled_by.is_empty());
        let entry = bundle
            .entries
            .iter()
            .find(|e| e.key_id == k.id)
            .expect("an evidence entry per key");
        assert_eq!(entry.sha256, k.evidence_sha256);
        assert!(!entry.attestation_object.is_empty() && !entry.chain.is_empty());
    }

    let bob = report
        .members
        .iter()
        .find(|m| m.id == s.bob_id)
        .expect("bob");
    assert!(!bob.compliant);
    let codes: Vec<&str> = bob.reasons.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["too_few_keys"], "{bob:?}");
    assert!(
        bob.reasons[0].message.contains("requires 2"),
        "{:?}",
        bob.reasons
    );
    assert_eq!(bob.attested_keys, 1);

    // One workspace: only its members, and the workspace named (by ID or external ID).
    for id in ["vendor", "ws-vendor-1"] {
        let (ws, _) = compliance::report(state, Some(id), 30)
            .await
            .expect("report");
        assert_eq!(ws.scope.kind, "workspace");
        assert_eq!(ws.scope.workspaces.len(), 1);
        assert_eq!(ws.scope.workspaces[0].id, "vendor");
        assert_eq!(ws.members.len(), 1);
        assert_eq!(ws.members[0].email, "bob@example.com");
    }
    let unknown = compliance::report(state, Some("nope"), 30).await;
    assert_eq!(unknown.err().map(|e| e.code()), Some("unknown_workspace"));
    let bad = compliance::report(state, None, 0).await;
    assert_eq!(bad.err().map(|e| e.code()), Some("invalid_period"));

    // The sign-in window is a parameter: 31 days on, Ada's sign-in is too old for a
    // 30-day period but inside a 60-day one.
    s.app.clock.advance(31 * 86_400);
    let (later, _) = compliance::report(state, None, 30).await.expect("report");
    let ada = later.members.iter().find(|m| m.id == s.ada_id).unwrap();
    assert!(!ada.compliant);
    assert_eq!(ada.reasons[0].code, "no_recent_phishing_resistant_signin");
    assert_eq!(ada.sessions_in_period, 0);
    let (longer, _) = compliance::report(state, None, 60).await.expect("report");
    let ada = longer.members.iter().find(|m| m.id == s.ada_id).unwrap();
    assert!(ada.compliant, "{ada:?}");
    s.app.stop().await;
}

#[actix_web::test]
async fn compliance_renders_json_csv_html_safely_and_audits_each_export() {
    let s = seeded().await;
    let state = &s.app.state;
    let admin = Actor::user(&s.ada_id, None);

    // JSON: the canonical bytes, stable field order.
    let json = compliance::export(state, &admin, &request(Format::Json, None))
        .await
        .expect("json");
    let text = String::from_utf8(json.body.clone()).unwrap();
    assert!(text.starts_with("{\"format\":\"keygate.compliance/1\",\"report_id\":"));
    let parsed: keygate::compliance::Report = serde_json::from_str(&text).expect("parses back");
    assert_eq!(
        keygate::compliance::to_json(&parsed).unwrap(),
        text.trim_end().as_bytes(),
        "canonical"
    );
    assert_eq!(parsed.members.len(), 2);

    // CSV: a header and one row per member-key; the formula name is defused and quoted.
    let csv = compliance::export(state, &admin, &request(Format::Csv, None))
        .await
        .expect("csv");
    let csv = String::from_utf8(csv.body).unwrap();
    let rows: Vec<&str> = csv.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(rows.len(), 1 + 3, "{csv}");
    assert!(rows[0].starts_with("organisation,generated_at,member_id,email,display_name"));
    assert!(
        csv.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\","),
        "{csv}"
    );
    assert!(!csv.contains(",=HYPERLINK"), "{csv}");
    assert!(csv.contains("<b>Bob</b> & co"));
    assert!(csv.contains("too_few_keys") || csv.contains("requires 2"));

    // HTML: every value escaped.
    let html = compliance::export(state, &admin, &request(Format::Html, None))
        .await
        .expect("html");
    let html = String::from_utf8(html.body).unwrap();
    assert!(html.contains("Compliance attestation: Test Org"));
    assert!(
        html.contains("&#60;b&#62;Bob&#60;/b&#62; &#38; co"),
        "{html}"
    );
    assert!(!html.contains("<b>Bob</b>"));
    assert!(html.contains("Vendor &#60;Program&#62;"));
    assert!(html.contains("not compliant"));

    // Each export is audited with format, scope and counts, never the contents.
    let events: Vec<_> = audit_events(&s.app)
        .await
        .into_iter()
        .filter(|e| e.action == "compliance.exported")
        .collect();
    assert_eq!(events.len(), 3);
    let formats: Vec<String> = events
        .iter()
        .map(|e| details(e)["format"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(formats, ["json", "csv", "html"]);
    let last = events.last().unwrap();
    assert_eq!(last.actor, format!("user:{}", s.ada_id));
    assert_eq!(last.subject, "organisation");
    assert_eq!(details(last)["members"], 2);
    assert_eq!(details(last)["scope"], "organisation");
    let details = last.details_json.clone();
    assert!(
        !details.contains("example.com"),
        "no member data: {details}"
    );
    s.app.stop().await;
}

#[actix_web::test]
async fn compliance_export_of_one_workspace_is_audited_with_its_scope() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let unknown = compliance::export(
        &app.state,
        &Actor::cli(),
        &request(Format::Json, Some("missing")),
    )
    .await;
    assert_eq!(unknown.err().map(|e| e.code()), Some("unknown_workspace"));
    // An empty organisation still reports (no members), signed.
    let done = compliance::export(&app.state, &Actor::cli(), &request(Format::Jws, None))
        .await
        .expect("jws");
    assert!(done.kid.is_some());
    assert_eq!(done.report.summary.members, 0);
    let last = audit_events(&app).await.pop().unwrap();
    assert_eq!(last.action, "compliance.exported");
    assert_eq!(details(&last)["format"], "jws");
    assert_eq!(details(&last)["kid"], done.kid.unwrap().as_str());
    app.stop().await;
}

#[actix_web::test]
async fn compliance_admin_download_is_admin_only() {
    let mut s = seeded().await;
    let page = s.ada.get("/admin/members").await;
    assert!(
        page.body.contains("/admin/compliance/export?format=csv"),
        "{}",
        page.body
    );
    let csv = s
        .ada
        .get("/admin/compliance/export?format=csv&workspace=ws-vendor-1")
        .await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert_eq!(
        csv.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    let disposition = csv.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with("attachment; filename=\"keygate-compliance-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    assert_eq!(csv.body.split("\r\n").filter(|r| !r.is_empty()).count(), 2);
    let jws = s.ada.get("/admin/compliance/export").await;
    assert_eq!(jws.status, 200);
    assert_eq!(jws.body.trim().split('.').count(), 3);
    let last = audit_events(&s.app).await.pop().unwrap();
    assert_eq!(last.action, "compliance.exported");
    assert_eq!(last.actor, format!("user:{}", s.ada_id));

    assert_eq!(
        s.ada
            .get("/admin/compliance/export?format=pdf")
            .await
            .status,
        400
    );
    assert_eq!(
        s.ada
            .get("/admin/compliance/export?format=csv&format=json")
            .await
            .status,
        400
    );
    assert_eq!(
        s.ada
            .get("/admin/compliance/export?workspace=nope")
            .await
            .status,
        400
    );
    let undecodable = s.ada.get("/admin/compliance/export?workspace=ws%FF").await;
    assert_eq!(undecodable.status, 400, "{}", undecodable.body);
    assert!(
        undecodable.body.contains("malformed_query"),
        "{}",
        undecodable.body
    );
    // Members and visitors get no report.
    let member = s.bob.get("/admin/compliance/export?format=csv").await;
    assert_eq!(member.status, 403, "{}", member.body);
    assert!(!member.body.contains("admin@example.com"));
    let anonymous = s.app.client().get("/admin/compliance/export").await;
    assert_ne!(anonymous.status, 200);
    assert!(!anonymous.body.contains("admin@example.com"));
    s.app.stop().await;
}
