//! Workspaces: declared in config (kept in step at start-up, members joined when they
//! enrol) and managed by admins over the pages and the API, every change audited.

use serde_json::json;

use crate::enrolment_http::{audit_events, bootstrap_admin, trusted_ca};
use crate::support::app::{csrf_of, TestApp};
use crate::support::authenticator::SoftAuthenticator;

const DECLARED: &str = r#"
[[workspaces]]
id = "vendor-a"
name = "Vendor A"
external_id = "ws-AAA-123"
members = ["Admin@Example.com"]
"#;

#[actix_web::test]
async fn declared_workspaces_and_admin_management() {
    let ca = trusted_ca();
    let app = TestApp::builder()
        .with_toml(&ca.toml)
        .with_toml(DECLARED)
        .start()
        .await;
    let mut admin = app.client();
    let done = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let admin_id = done.json()["user_id"].as_str().unwrap().to_string();

    // The declared workspace exists and the admin joined it on enrolment.
    let list = admin.get("/api/admin/workspaces").await.json();
    assert_eq!(list[0]["id"], "vendor-a");
    assert_eq!(list[0]["source"], "config");
    assert_eq!(list[0]["external_id"], "ws-AAA-123");
    assert_eq!(list[0]["members"][0]["user_id"], admin_id.as_str());

    // An admin creates another workspace and manages its members.
    let page = admin.get("/admin/workspaces").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("ws-AAA-123"));
    let csrf = csrf_of(&page.body);
    let created = admin
        .post_json(
            "/api/admin/workspaces",
            Some(&csrf),
            &json!({ "name": "Vendor B", "external_id": "org-B" }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let dup = admin
        .post_json(
            "/api/admin/workspaces",
            Some(&csrf),
            &json!({ "name": "Again", "external_id": "org-B" }),
        )
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.json()["error"], "workspace_exists");
    let empty = admin
        .post_json(
            "/api/admin/workspaces",
            Some(&csrf),
            &json!({ "name": " ", "external_id": "x" }),
        )
        .await;
    assert_eq!(empty.status, 400);

    let unknown = admin
        .post_json(
            &format!("/api/admin/workspaces/{id}/members"),
            Some(&csrf),
            &json!({ "email": "nobody@example.com" }),
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["error"], "unknown_member");
    let added = admin
        .post_form(
            &format!("/admin/workspaces/{id}/members"),
            &[("csrf", &csrf), ("email", "admin@example.com")],
        )
        .await;
    assert_eq!(added.status, 303);
    let forged = admin
        .post_form(
            &format!("/admin/workspaces/{id}/members"),
            &[("csrf", "nope"), ("email", "admin@example.com")],
        )
        .await;
    assert_eq!(forged.status, 403);
    let detail = admin.get(&format!("/admin/workspaces/{id}")).await;
    assert!(detail.body.contains("admin@example.com"));
    let removed = admin
        .post_json(
            &format!("/api/admin/workspaces/{id}/members/{admin_id}/remove"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(removed.status, 204);
    let again = admin
        .post_json(
            &format!("/api/admin/workspaces/{id}/members/{admin_id}/remove"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 404);

    let actions: Vec<String> = audit_events(&app)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "workspace.created",
        "workspace.member_added",
        "workspace.member_removed",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    app.stop().await;
}

#[test]
fn bad_workspace_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.toml");
    std::fs::write(
        &path,
        "[[workspaces]]\nid = \"has space\"\nname = \"x\"\nexternal_id = \"y\"\n",
    )
    .unwrap();
    let err = keygate::Config::load(Some(&path), vec![]).unwrap_err();
    assert!(err.to_string().contains("workspaces"), "{err}");
    std::fs::write(
        &path,
        "[[workspaces]]\nid = \"a\"\nname = \"x\"\nexternal_id = \"y\"\nowner = \"z\"\n",
    )
    .unwrap();
    let err = keygate::Config::load(Some(&path), vec![]).unwrap_err();
    assert!(
        err.to_string().contains("owner"),
        "unknown keys are named: {err}"
    );
}
