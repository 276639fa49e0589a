//! The device authorization grant (RFC 8628) across three replicas on one PostgreSQL
//! database and one Redis (SPEC §5): the code requested on one, approved with a key touch
//! on another, polled on a third; the polling interval, the single use and a denial are
//! seen the same on every replica, and the audit chain they all wrote verifies. Needs the
//! shared backends, so it runs in the PostgreSQL + Redis pass of the suite.

use openidconnect::Nonce;
use serde_json::Value;

use crate::device_flow::{begin, device_provider, finish, open_page, DEVICE_CLIENT};
use crate::enrolment_http::audit_events;
use crate::signin_http::sign_in;
use crate::support::app::{Reply, TestApp};
use crate::support::oidc::{claims_of, form, relying_party, RpIdToken};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A form POST as the public device client to `app`.
async fn post_device(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Reply {
    let mut fields = fields.to_vec();
    fields.push(("client_id", DEVICE_CLIENT));
    app.client()
        .post_with(
            path,
            &[],
            "application/x-www-form-urlencoded",
            form(&fields),
        )
        .await
}

async fn request_code(app: &TestApp) -> (String, String) {
    let r = post_device(
        app,
        "/oauth2/device_authorization",
        &[("scope", "openid profile")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let code = r.json();
    assert_eq!(code["verification_uri"], format!("{}/device", app.base));
    (
        code["user_code"].as_str().unwrap().to_string(),
        code["device_code"].as_str().unwrap().to_string(),
    )
}

async fn poll(app: &TestApp, device_code: &str) -> Reply {
    post_device(
        app,
        "/oauth2/token",
        &[("grant_type", GRANT), ("device_code", device_code)],
    )
    .await
}

fn error_of(r: &Reply) -> String {
    assert_eq!(r.status, 400, "{}", r.body);
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

/// Every replica's clock moves together, as the hosts behind one load balancer would.
fn advance(apps: [&TestApp; 3], secs: i64) {
    for app in apps {
        app.clock.advance(secs);
    }
}

#[actix_web::test]
async fn device_login_request_approval_and_polling_on_three_replicas() {
    if std::env::var("KEYGATE_TEST_REDIS_URL").is_err() {
        // The embedded pass has nothing to share; any other CI run without Redis is wrong.
        assert!(
            !crate::support::db::in_ci() || std::env::var("KEYGATE_TEST_EMBEDDED").is_ok(),
            "CI=true but KEYGATE_TEST_REDIS_URL is not set: the replica test must run"
        );
        crate::support::skip::in_other_pass(
            "replicas need a shared store; this test runs in the PostgreSQL + Redis pass",
        );
        return;
    }
    let mut p = device_provider().await;
    let b = TestApp::builder()
        .with_toml(&p.toml)
        .replica_of(&p.app)
        .start()
        .await;
    let c = TestApp::builder()
        .with_toml(&p.toml)
        .replica_of(&p.app)
        .start()
        .await;
    assert_ne!(p.app.address, b.address);
    assert_ne!(b.address, c.address);

    // The device asks A for a code and polls C: pending; at once again on A: too fast,
    // because the polling state is shared (the interval is now 10 s).
    let (user_code, device_code) = request_code(&p.app).await;
    assert_eq!(
        error_of(&poll(&c, &device_code).await),
        "authorization_pending"
    );
    assert_eq!(error_of(&poll(&p.app, &device_code).await), "slow_down");
    advance([&p.app, &b, &c], 11);
    assert_eq!(
        error_of(&poll(&c, &device_code).await),
        "authorization_pending"
    );

    // The member signs in on B and approves there with a touch bound to this request.
    let (mut browser, signed) = sign_in(&b, &mut p.cred, &p.user_id, None, |_| {}).await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let (page, csrf) = open_page(&mut browser, &user_code).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Deploy CLI"), "{}", page.body);
    let options = begin(&mut browser, &csrf, &user_code).await;
    let done = finish(&mut p, &mut browser, &csrf, &options, &user_code).await;
    assert_eq!(done.status, 200, "{}", done.body);

    // The tokens on C; the ID token checked by a relying party against B's JWKS.
    advance([&p.app, &b, &c], 11);
    let r = poll(&c, &device_code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens = r.json();
    let id_token = tokens["id_token"].as_str().unwrap();
    let claims = claims_of(id_token);
    assert_eq!(claims["sub"], p.user_id.as_str());
    assert_eq!(claims["aud"], DEVICE_CLIENT);
    assert_eq!(claims["acr"], "phrh");
    assert_eq!(claims["iss"], p.app.base.as_str());
    let verifier = relying_party(&b, DEVICE_CLIENT, "unused").await;
    let id: RpIdToken = id_token.parse().unwrap();
    let verified = id
        .claims(&verifier, |n: Option<&Nonce>| {
            n.is_none()
                .then_some(())
                .ok_or_else(|| "no nonce in a device grant".to_string())
        })
        .expect("the relying party accepts the ID token");
    assert_eq!(verified.subject().as_str(), p.user_id);
    // The access token works at userinfo on A.
    let access = tokens["access_token"].as_str().unwrap();
    let me = p
        .app
        .client()
        .get_with(
            "/oauth2/userinfo",
            &[("Authorization", format!("Bearer {access}"))],
        )
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["sub"], p.user_id.as_str());

    // Single use across replicas: the same code again, on A and on B, is refused.
    advance([&p.app, &b, &c], 11);
    assert_eq!(error_of(&poll(&p.app, &device_code).await), "invalid_grant");
    assert_eq!(error_of(&poll(&b, &device_code).await), "invalid_grant");

    // A second code, requested on C and denied on A, is access_denied on B.
    let (user_code, device_code) = request_code(&c).await;
    assert_eq!(
        error_of(&poll(&b, &device_code).await),
        "authorization_pending"
    );
    browser.switch_to(&p.app);
    let (page, csrf) = open_page(&mut browser, &user_code).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let denied = browser
        .post_form(
            "/device/deny",
            &[("csrf", &csrf), ("user_code", &user_code)],
        )
        .await;
    assert_eq!(denied.status, 200, "{}", denied.body);
    advance([&p.app, &b, &c], 6);
    assert_eq!(error_of(&poll(&b, &device_code).await), "access_denied");
    // Final everywhere: C no longer offers the approval.
    browser.switch_to(&c);
    let again = browser
        .post_json(
            "/api/device/approve/begin",
            Some(&csrf),
            &serde_json::json!({ "user_code": user_code }),
        )
        .await;
    assert_eq!(again.status, 400, "{}", again.body);

    // One audit chain, written by all three, verifies and holds each step once.
    let chain = p
        .app
        .state
        .storage
        .run(|s| s.verify_audit_chain())
        .await
        .expect("audit chain read");
    assert!(chain.is_ok(), "the audit chain breaks: {chain:?}");
    let events = audit_events(&p.app).await;
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!(count("device.requested"), 2);
    assert_eq!(count("device.approved"), 1);
    assert_eq!(count("device.denied"), 1);
    let issued: Vec<_> = events
        .iter()
        .filter(|e| e.action == "oidc.token_issued" && e.details_json.contains(GRANT))
        .collect();
    assert_eq!(issued.len(), 1);
    let details: Value = serde_json::from_str(&issued[0].details_json).unwrap();
    assert_eq!(details["client_id"], DEVICE_CLIENT);

    c.stop().await;
    b.stop().await;
    p.app.stop().await;
}
