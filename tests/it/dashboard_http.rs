//! The compliance dashboard: share of compliant members, keys by model and FIPS, and the
//! non-compliant members with their reasons and a link to fix.

use serde_json::json;

use crate::enrolment_http::{
    app_trusting, bootstrap_admin, enrol_with, physical_key, token_of, trusted_ca,
};
use crate::support::app::csrf_of;
use crate::support::authenticator::{SoftAuthenticator, YUBIKEY_5CI_FIPS, YUBIKEY_5_NFC};

#[actix_web::test]
async fn dashboard_shows_compliance_and_keys() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let mut admin = app.client();
    let done = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    // The admin's backup key: compliant.
    let backup = physical_key(&ca.ca, YUBIKEY_5CI_FIPS, 41);
    let added = enrol_with(&app, &mut admin, "/me/keys/new", json!({}), &backup, |_| {}).await;
    assert_eq!(added.status, 200, "{}", added.body);
    // A member with one key: not compliant.
    let csrf = csrf_of(&admin.get("/admin/invitations").await.body);
    let inv = admin
        .post_json(
            "/api/admin/invitations",
            Some(&csrf),
            &json!({ "email": "carol@example.com", "display_name": "Carol" }),
        )
        .await
        .json();
    let path = inv["link"]
        .as_str()
        .unwrap()
        .trim_start_matches(app.origin())
        .to_string();
    let mut carol = app.client();
    let done = enrol_with(
        &app,
        &mut carol,
        &path,
        json!({ "token": token_of(&path) }),
        &physical_key(&ca.ca, YUBIKEY_5_NFC, 42),
        |_| {},
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);

    let d = admin.get("/api/admin/dashboard").await.json();
    assert_eq!(d["members"], 2);
    assert_eq!(d["compliant"], 1);
    assert_eq!(d["compliant_percent"], 50);
    assert_eq!(d["active_keys"], 3);
    assert_eq!(d["fips_keys"], 1);
    assert_eq!(d["keys_by_model"][0]["label"], "YubiKey 5 NFC");
    assert_eq!(d["keys_by_model"][0]["count"], 2);
    assert_eq!(d["keys_by_model"][0]["width"], 100);
    assert_eq!(d["non_compliant"][0]["email"], "carol@example.com");
    assert!(d["non_compliant"][0]["reasons"][0].as_str().unwrap().len() > 5);

    let page = admin.get("/admin").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("50%"));
    assert!(page.body.contains("carol@example.com"));
    assert!(page.body.contains("YubiKey 5Ci FIPS (1)"));
    assert_eq!(
        carol.get("/admin").await.status,
        403,
        "members do not see the dashboard"
    );
    app.stop().await;
}
