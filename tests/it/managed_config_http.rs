//! The managed configuration that pins Codex to a workspace (SPEC C6): admins download
//! `requirements.toml` from the workspace page and the admin API, `keygate export
//! managed-config` prints it; members, visitors and unknown workspaces get nothing, and
//! every export is audited.

use secrecy::ExposeSecret;

use crate::compliance_export::seeded;
use crate::enrolment_http::audit_events;
use crate::support::bin::{keygate, run};

const PATH: &str = "/admin/workspaces/vendor/managed-config/codex";
const API_PATH: &str = "/api/admin/workspaces/vendor/managed-config/codex";

/// Parses the file and checks that it pins ChatGPT sign-in to `ws-vendor-1`.
fn assert_pins_vendor(body: &str) {
    let t: toml::Table = body
        .parse()
        .unwrap_or_else(|e| panic!("not TOML ({e}): {body}"));
    assert_eq!(t["forced_login_method"].as_str(), Some("chatgpt"), "{body}");
    assert_eq!(
        t["forced_chatgpt_workspace_id"].as_str(),
        Some("ws-vendor-1"),
        "{body}"
    );
    assert!(body.contains("keygate"), "{body}");
}

fn exports(events: &[keygate::audit::AuditRecord]) -> Vec<&keygate::audit::AuditRecord> {
    events
        .iter()
        .filter(|e| e.action == "workspace.managed_config_exported")
        .collect()
}

#[actix_web::test]
async fn admins_download_it_members_and_unknown_workspaces_get_nothing() {
    let mut s = seeded().await;

    let page = s.ada.get("/admin/workspaces/vendor").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(PATH), "a download link on the page");

    let file = s.ada.get(PATH).await;
    assert_eq!(file.status, 200, "{}", file.body);
    assert_eq!(
        file.header("content-type").as_deref(),
        Some("application/toml")
    );
    assert_eq!(
        file.header("content-disposition").as_deref(),
        Some("attachment; filename=\"requirements.toml\"")
    );
    assert_pins_vendor(&file.body);

    let api = s.ada.get(API_PATH).await;
    assert_eq!(api.status, 200, "{}", api.body);
    let json = api.json();
    assert_eq!(json["workspace"], "vendor");
    assert_eq!(json["external_id"], "ws-vendor-1");
    assert_eq!(json["filename"], "requirements.toml");
    assert_eq!(json["media_type"], "application/toml");
    assert_pins_vendor(json["content"].as_str().expect("content"));

    // The vendor's ID finds the workspace too.
    let by_vendor_id = s
        .ada
        .get("/admin/workspaces/ws-vendor-1/managed-config/codex")
        .await;
    assert_eq!(by_vendor_id.status, 200);

    let events = audit_events(&s.app).await;
    let done = exports(&events);
    assert_eq!(done.len(), 3, "each download is audited");
    let last = done.last().unwrap();
    assert_eq!(last.actor, format!("user:{}", s.ada_id));
    assert_eq!(last.subject, "workspace:vendor");
    assert_eq!(last.outcome_text, "success");
    let details: serde_json::Value = serde_json::from_str(&last.details_json).unwrap();
    assert_eq!(details["tool"], "codex");
    assert_eq!(details["file"], "requirements.toml");
    assert_eq!(details["external_id"], "ws-vendor-1");

    // Unknown workspaces: 404 on the page and the API, nothing audited.
    let missing = s
        .ada
        .get("/admin/workspaces/nope/managed-config/codex")
        .await;
    assert_eq!(missing.status, 404);
    let missing = s
        .ada
        .get("/api/admin/workspaces/nope/managed-config/codex")
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");

    // Members and visitors get no file.
    for path in [PATH, API_PATH] {
        let member = s.bob.get(path).await;
        assert_eq!(member.status, 403, "{path}: {}", member.body);
        assert!(!member.body.contains("forced_chatgpt_workspace_id"));
        let visitor = s.app.client().get(path).await;
        assert_ne!(visitor.status, 200, "{path}");
        assert!(!visitor.body.contains("forced_chatgpt_workspace_id"));
    }
    assert_eq!(
        exports(&audit_events(&s.app).await).len(),
        3,
        "refusals export nothing"
    );
    s.app.stop().await;
}

#[actix_web::test]
async fn the_cli_prints_it_and_names_an_unknown_workspace() {
    let s = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let db = s.app.state.config.database.url.expose_secret().to_string();
    let config = dir.path().join("keygate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_url = \"{}\"\n\n[database]\nurl = \"{db}\"\n\n[organisation]\nname = \"CLI Org\"\n",
            s.app.base
        ),
    )
    .unwrap();

    let (ok, out, err) = run(keygate()
        .args([
            "export",
            "managed-config",
            "--workspace",
            "vendor",
            "--config",
        ])
        .arg(&config));
    assert!(ok, "{err}");
    assert_pins_vendor(&out);
    assert!(err.contains("requirements.toml"), "{err}");

    let file = dir.path().join("requirements.toml");
    let (ok, out, err) = run(keygate()
        .args([
            "export",
            "managed-config",
            "--workspace",
            "ws-vendor-1",
            "--out",
        ])
        .arg(&file)
        .arg("--config")
        .arg(&config));
    assert!(ok, "{err}");
    assert!(out.is_empty(), "{out}");
    assert_pins_vendor(&std::fs::read_to_string(&file).unwrap());

    let (ok, out, err) = run(keygate()
        .args([
            "export",
            "managed-config",
            "--workspace",
            "nope",
            "--config",
        ])
        .arg(&config));
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("no workspace with ID \"nope\""), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let events = audit_events(&s.app).await;
    let done = exports(&events);
    assert_eq!(done.len(), 2, "two exports, the unknown one not audited");
    assert!(done.iter().all(|e| e.actor == "cli"));
    s.app.stop().await;
}
