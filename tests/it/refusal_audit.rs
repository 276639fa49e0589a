//! Every refusal at enrolment and sign-in leaves an audit event, including those that
//! prove nothing about any account (no live challenge, an unknown key, a rate limit), and
//! a flood of those fills the chain no faster than `rate_limit.refusal_events_per_minute`
//! per kind and address; the step-up rule holds at a ceremony's finish, not only its start.

use keygate::audit::AuditRecord;
use serde_json::json;

use crate::enrolment_http::{
    app_trusting, audit_events, begin, credential_count, finish_body, options_for, physical_key,
    token_of, trusted_ca,
};
use crate::signin_http::{admin_with_key, assertion_body, sign_in, start};
use crate::support::app::{csrf_of, Reply, TestApp};
use crate::support::authenticator::{b64url, RegisterOptions, SoftAuthenticator, YUBIKEY_5CI_FIPS};

fn details(event: &AuditRecord) -> serde_json::Value {
    serde_json::from_str(&event.details_json).expect("details JSON")
}

/// The reply is the refusal `status`/`code`, and the last audit event records it as
/// `action` with `code` as its reason; returns that event.
async fn refused_and_audited(
    app: &TestApp,
    reply: &Reply,
    status: u16,
    code: &str,
    action: &str,
) -> AuditRecord {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.json()["error"], code, "{}", reply.body);
    let last = audit_events(app).await.pop().expect("an audit event");
    assert_eq!(last.action, action, "{last:?}");
    assert_eq!(last.reason.as_deref(), Some(code), "{last:?}");
    assert_eq!(last.outcome_text, "refused");
    last
}

/// Issue 29, item 3: a key-adding ceremony begun within the step-up window but finished
/// after it closed (the challenge still live) is refused and audited; revoking a key with
/// the stale session is too; a fresh touch lets a new ceremony through.
#[actix_web::test]
async fn adding_a_key_finished_after_the_step_up_window_is_refused_and_audited() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    let (mut client, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // 200 s after the touch (window 300 s): the ceremony starts.
    app.clock.advance(200);
    let (csrf, options) = begin(&mut client, "/me/keys/new", json!({})).await;
    let backup = physical_key(&ca.ca, YUBIKEY_5CI_FIPS, 9);
    let reg = backup.register(&options_for(&app, &options));

    // 350 s after the touch, 150 s into the challenge's 300 s: the finish is refused.
    app.clock.advance(150);
    let late = client
        .post_json(
            "/api/enrol/finish",
            Some(&csrf),
            &finish_body(&reg, "Backup"),
        )
        .await;
    let event = refused_and_audited(
        &app,
        &late,
        401,
        "reauthentication_required",
        "enrolment.refused",
    )
    .await;
    assert_eq!(event.subject, format!("user:{user_id}"));
    assert_eq!(event.actor, format!("user:{user_id}"));
    let d = details(&event);
    assert_eq!(d["step"], "finish");
    assert_eq!(d["touched_secs_ago"], 350);
    assert_eq!(credential_count(&app).await, 1, "no key was added");

    // A sensitive write with the same stale session: refused and audited.
    let key_id = app.first_key_id().await;
    let revoke = client
        .post_json(
            &format!("/api/admin/keys/{key_id}/revoke"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    let event = refused_and_audited(
        &app,
        &revoke,
        401,
        "reauthentication_required",
        "step_up.refused",
    )
    .await;
    assert_eq!(details(&event)["request"], "key.revoke");
    assert_eq!(event.actor, format!("user:{user_id}"));

    // The challenge was used up; after a fresh touch a new ceremony adds the key.
    let reauth = client.get("/?reauth=1").await;
    let csrf = csrf_of(&reauth.body);
    let options = client
        .post_json("/api/signin/begin", Some(&csrf), &json!({}))
        .await
        .json();
    let body = assertion_body(&mut cred, &app, &options, &user_id, |_| {});
    let done = client
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let (csrf, options) = begin(&mut client, "/me/keys/new", json!({})).await;
    let reg = backup.register(&options_for(&app, &options));
    let added = client
        .post_json(
            "/api/enrol/finish",
            Some(&csrf),
            &finish_body(&reg, "Backup"),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(credential_count(&app).await, 2);
    keygate::service::audit_log::verify(&app.state)
        .await
        .expect("chain verifies");
    app.stop().await;
}

/// Issue 29, item 7: sign-in refusals that prove nothing about any account (an unknown
/// key, a used or expired challenge, no challenge at all) and an enrolment finish with no
/// challenge are each audited, on the caller, with the address.
#[actix_web::test]
async fn refusals_before_any_account_is_proven_are_audited() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;

    // A key this gateway never enrolled.
    let mut stranger_cred = SoftAuthenticator::new(&ca.ca)
        .register(&RegisterOptions {
            rp_id: "localhost".into(),
            origin: app.origin().to_string(),
            challenge: vec![7; 32],
            ..RegisterOptions::default()
        })
        .credential;
    let mut client = app.client();
    let (csrf, options) = start(&mut client, None).await;
    let body = assertion_body(&mut stranger_cred, &app, &options, &user_id, |_| {});
    let r = client
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    let event = refused_and_audited(&app, &r, 400, "unknown_credential", "signin.refused").await;
    assert_eq!(event.actor, "anonymous");
    let d = details(&event);
    assert_eq!(d["credential_id"], b64url(&stranger_cred.id));
    assert_eq!(d["step"], "finish");
    assert_eq!(d["ip"], "127.0.0.1");

    // A used challenge: a malformed answer uses it up (audited), the real one then finds
    // none (audited).
    let mut client = app.client();
    let (csrf, options) = start(&mut client, None).await;
    let r = client
        .post_raw("/api/signin/finish", Some(&csrf), b"[1,2".to_vec())
        .await;
    refused_and_audited(&app, &r, 400, "malformed_json", "signin.refused").await;
    let body = assertion_body(&mut cred, &app, &options, &user_id, |_| {});
    let r = client
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    refused_and_audited(&app, &r, 410, "challenge_expired", "signin.refused").await;

    // A begin whose body the framework cannot read at all: refused before the ceremony's
    // code runs, audited all the same.
    let mut client = app.client();
    let page = client.get("/").await;
    let csrf = crate::support::app::csrf_of(&page.body);
    for (path, action) in [
        ("/api/signin/begin", "signin.refused"),
        ("/api/enrol/begin", "enrolment.refused"),
    ] {
        let r = client
            .post_raw(path, Some(&csrf), b"{\"email\":".to_vec())
            .await;
        let event = refused_and_audited(&app, &r, 400, "malformed_json", action).await;
        assert_eq!(details(&event)["request"], format!("POST {path}"));
    }

    // An expired challenge.
    let mut client = app.client();
    let (csrf, options) = start(&mut client, None).await;
    let body = assertion_body(&mut cred, &app, &options, &user_id, |_| {});
    app.clock.advance(301);
    let r = client
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    refused_and_audited(&app, &r, 410, "challenge_expired", "signin.refused").await;

    // An enrolment finish from a browser that never began one.
    let mut client = app.client();
    let (csrf, _) = start(&mut client, None).await;
    let r = client
        .post_json("/api/enrol/finish", Some(&csrf), &json!({}))
        .await;
    let event = refused_and_audited(&app, &r, 410, "challenge_expired", "enrolment.refused").await;
    assert_eq!(details(&event)["step"], "finish");
    assert_eq!(credential_count(&app).await, 1, "nothing written");
    keygate::service::audit_log::verify(&app.state)
        .await
        .expect("chain verifies");
    app.stop().await;
}

/// A ceremony refused for the rate limit is audited too, at sign-in and at enrolment.
#[actix_web::test]
async fn rate_limited_ceremonies_are_audited() {
    let app = TestApp::builder()
        .with("rate_limit.ceremonies_per_minute", "2")
        .start()
        .await;
    app.at_start_of_minute();
    let mut client = app.client();
    let csrf = csrf_of(&client.get("/").await.body);
    for _ in 0..2 {
        let r = client
            .post_json("/api/signin/begin", Some(&csrf), &json!({}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = client
        .post_json("/api/signin/begin", Some(&csrf), &json!({}))
        .await;
    let event = refused_and_audited(&app, &r, 429, "rate_limited", "signin.refused").await;
    assert_eq!(details(&event)["step"], "begin");

    let page = app.bootstrap_path();
    let body = json!({ "token": token_of(&page), "email": "admin@example.com" });
    let mut client = app.client();
    let csrf = csrf_of(&client.get(&page).await.body);
    for _ in 0..2 {
        let r = client
            .post_json("/api/enrol/begin", Some(&csrf), &body)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = client
        .post_json("/api/enrol/begin", Some(&csrf), &body)
        .await;
    let event = refused_and_audited(&app, &r, 429, "rate_limited", "enrolment.refused").await;
    assert_eq!(details(&event)["step"], "begin");
    app.stop().await;
}

/// A flood of refusals anyone can cause: at most `refusal_events_per_minute` events of a
/// kind from one address in a minute, then one `audit.throttled`, then nothing; another
/// address has its own allowance, and the next minute records again.
#[actix_web::test]
async fn a_flood_of_refusals_is_recorded_up_to_the_limit_then_summarised() {
    let app = TestApp::builder()
        .with_toml("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]")
        .with("rate_limit.refusal_events_per_minute", "3")
        .start()
        .await;
    app.at_start_of_minute();
    let page = app.bootstrap_path();
    let mut client = app.client();
    let (csrf, options) = begin(
        &mut client,
        &page,
        json!({ "token": token_of(&page), "email": "admin@example.com" }),
    )
    .await;
    assert_eq!(options.status, 200, "{}", options.body);
    let before = audit_events(&app).await.len();
    // The first finish uses the challenge up (a live ceremony: recorded as always).
    let r = client
        .post_raw("/api/enrol/finish", Some(&csrf), b"{}".to_vec())
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    for _ in 0..7 {
        let r = client
            .post_raw("/api/enrol/finish", Some(&csrf), b"{}".to_vec())
            .await;
        assert_eq!(r.status, 410, "each is refused all the same: {}", r.body);
    }
    let mine = |events: &[AuditRecord]| -> (Vec<AuditRecord>, Vec<AuditRecord>) {
        let new = &events[before..];
        (
            new.iter()
                .filter(|e| e.action == "enrolment.refused")
                .cloned()
                .collect(),
            new.iter()
                .filter(|e| {
                    e.action == "audit.throttled"
                        && e.reason.as_deref() == Some("enrolment.refused")
                })
                .cloned()
                .collect(),
        )
    };
    let (refused, throttled) = mine(&audit_events(&app).await);
    // The malformed one, and three of the seven that found no challenge.
    assert_eq!(refused.len(), 1 + 3, "{refused:?}");
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    let summary = details(&throttled[0]);
    assert_eq!(throttled[0].reason.as_deref(), Some("enrolment.refused"));
    assert_eq!(summary["limit"], 3);
    assert_eq!(summary["ip"], "127.0.0.1");
    assert_eq!(summary["until"], summary["minute"].as_i64().unwrap() + 60);

    // Another address (behind the trusted proxy) has its own allowance.
    let r = client
        .post_with(
            "/api/enrol/finish",
            &[
                ("X-Forwarded-For", "198.51.100.7".into()),
                ("X-CSRF-Token", csrf.clone()),
            ],
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, 410, "{}", r.body);
    let last = audit_events(&app).await.pop().unwrap();
    assert_eq!(last.action, "enrolment.refused");
    assert_eq!(details(&last)["ip"], "198.51.100.7");

    // Failed CSRF checks share the mechanism (kind `csrf.refused`).
    for _ in 0..5 {
        let r = client
            .post_raw("/api/enrol/finish", None, b"{}".to_vec())
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    let events = audit_events(&app).await;
    let csrf_events = events[before..]
        .iter()
        .filter(|e| e.action == "csrf.refused")
        .count();
    let summaries = events[before..]
        .iter()
        .filter(|e| e.action == "audit.throttled")
        .count();
    assert_eq!((csrf_events, summaries), (3, 2));

    // The next minute records again, and writes no second summary until the limit.
    app.clock.advance(60);
    let r = client
        .post_raw("/api/enrol/finish", Some(&csrf), b"{}".to_vec())
        .await;
    assert_eq!(r.status, 410);
    let (refused, throttled) = mine(&audit_events(&app).await);
    assert_eq!(refused.len(), 1 + 3 + 1 + 1);
    assert_eq!(throttled.len(), 1);
    keygate::service::audit_log::verify(&app.state)
        .await
        .expect("chain verifies");
    app.stop().await;
}
