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

    // The dashboard and the member pages judge as the compliance export does: 31 days
    // on, the admin's keys are still enough but their last key sign-in is too old.
    let agrees = |d: &keygate::service::dashboard::Dashboard, r: &keygate::compliance::Report| {
        let mut off: Vec<&str> = d.non_compliant.iter().map(|m| m.email.as_str()).collect();
        off.sort_unstable();
        let mut report_off: Vec<&str> = r
            .members
            .iter()
            .filter(|m| !m.compliant)
            .map(|m| m.email.as_str())
            .collect();
        report_off.sort_unstable();
        assert_eq!(off, report_off);
        assert_eq!(d.compliant as u64, r.summary.compliant);
    };
    let now = keygate::service::dashboard::build(&app.state)
        .await
        .unwrap();
    let (report, _) = keygate::service::compliance::report(&app.state, None, 30)
        .await
        .unwrap();
    agrees(&now, &report);
    app.clock.advance(31 * 86_400);
    let later = keygate::service::dashboard::build(&app.state)
        .await
        .unwrap();
    assert_eq!(later.compliant, 0);
    let admin_view = later
        .non_compliant
        .iter()
        .find(|m| m.email != "carol@example.com")
        .expect("the admin is listed");
    assert_eq!(admin_view.reasons.len(), 1, "{:?}", admin_view.reasons);
    assert!(
        admin_view.reasons[0].contains("no phishing-resistant sign-in"),
        "{:?}",
        admin_view.reasons
    );
    let detail = keygate::service::members::detail(&app.state, &admin_view.id)
        .await
        .unwrap();
    assert!(!detail.member.compliant);
    let (report, _) = keygate::service::compliance::report(&app.state, None, 30)
        .await
        .unwrap();
    agrees(&later, &report);
    app.stop().await;
}
