//! Key sign-in over HTTP: discoverable and username-first, and its refusals (counter
//! regression, revoked key, missing UV, replay, wrong origin, unknown key), each audited.

use serde_json::json;

use crate::enrolment_http::{
    app_trusting, audit_events, b64d, begin, finish_body, options_for, trusted_ca,
};
use crate::support::app::{csrf_of, Client, Reply, TestApp};
use crate::support::authenticator::{b64url, AssertOptions, SoftAuthenticator, SoftCredential};

/// Enrols the bootstrap admin and returns the credential the software key holds.
pub async fn admin_with_key(app: &TestApp, auth: &SoftAuthenticator) -> (SoftCredential, String) {
    let mut client = app.client();
    let path = app.bootstrap_path();
    let token = path.rsplit('/').next().unwrap().to_string();
    let (csrf, options) = begin(
        &mut client,
        &path,
        json!({ "token": token, "email": "admin@example.com", "display_name": "Ada" }),
    )
    .await;
    let reg = auth.register(&options_for(app, &options));
    let done = client
        .post_json(
            "/api/enrol/finish",
            Some(&csrf),
            &finish_body(&reg, "Primary"),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let user_id = done.json()["user_id"].as_str().unwrap().to_string();
    (reg.credential, user_id)
}

/// Opens the start page, begins a sign-in (optionally username-first).
pub async fn start(client: &mut Client, email: Option<&str>) -> (String, serde_json::Value) {
    let page = client.get("/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    let body = match email {
        Some(e) => json!({ "email": e }),
        None => json!({}),
    };
    let options = client
        .post_json("/api/signin/begin", Some(&csrf), &body)
        .await;
    assert_eq!(options.status, 200, "{}", options.body);
    (csrf, options.json())
}

pub fn assertion_body(
    cred: &mut SoftCredential,
    app: &TestApp,
    options: &serde_json::Value,
    user_id: &str,
    tweak: impl FnOnce(&mut AssertOptions),
) -> serde_json::Value {
    let mut opts = AssertOptions {
        rp_id: "localhost".into(),
        origin: app.origin().to_string(),
        challenge: b64d(options["challenge"].as_str().unwrap()),
        ..AssertOptions::default()
    };
    tweak(&mut opts);
    let a = cred.get(&opts);
    let id = b64url(&cred.id);
    json!({ "credential": {
        "id": id, "rawId": id, "type": "public-key",
        "response": {
            "clientDataJSON": b64url(&a.client_data_json),
            "authenticatorData": b64url(&a.authenticator_data),
            "signature": b64url(&a.signature),
            "userHandle": b64url(&hex::decode(user_id).unwrap()),
        },
    }})
}

pub async fn sign_in(
    app: &TestApp,
    cred: &mut SoftCredential,
    user_id: &str,
    email: Option<&str>,
    tweak: impl FnOnce(&mut AssertOptions),
) -> (Client, Reply) {
    let mut client = app.client();
    let (csrf, options) = start(&mut client, email).await;
    let body = assertion_body(cred, app, &options, user_id, tweak);
    let reply = client
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    (client, reply)
}

async fn last_signin_refusal(app: &TestApp) -> Option<String> {
    let last = audit_events(app).await.pop()?;
    assert_eq!(last.action, "signin.refused");
    last.reason
}

#[actix_web::test]
async fn discoverable_and_username_first_sign_in() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;

    // Discoverable: no e-mail, the key names the account.
    let mut client = app.client();
    let (csrf, options) = start(&mut client, None).await;
    assert_eq!(options["rpId"], "localhost");
    assert_eq!(options["userVerification"], "required");
    assert_eq!(options["allowCredentials"], json!([]));
    let before = client.cookies.clone();
    let body = assertion_body(&mut cred, &app, &options, &user_id, |_| {});
    let done = client
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["user_id"], user_id.as_str());
    assert_ne!(client.cookies, before, "the session is rotated on sign-in");
    assert_eq!(client.get("/api/me").await.status, 200);
    assert_eq!(
        client.get("/").await.status,
        303,
        "signed in: / goes to /me"
    );
    let last = audit_events(&app).await.pop().unwrap();
    assert_eq!(last.action, "signin.success");

    // Username-first: the options list the member's keys.
    let mut client = app.client();
    let (_, options) = start(&mut client, Some("Admin@Example.com")).await;
    assert_eq!(options["allowCredentials"][0]["id"], b64url(&cred.id));
    // An unknown e-mail answers the same shape: decoy IDs as long as real ones, the same
    // on every ask (no account enumeration).
    let mut other = app.client();
    let (_, unknown) = start(&mut other, Some("nobody@example.com")).await;
    let decoys = unknown["allowCredentials"].as_array().unwrap().clone();
    assert!(!decoys.is_empty());
    let (_, again) = start(&mut app.client(), Some("nobody@example.com")).await;
    assert_eq!(again["allowCredentials"].as_array().unwrap(), &decoys);
    assert_eq!(
        b64d(decoys[0]["id"].as_str().unwrap()).len(),
        64,
        "decoys look like 64-byte credential IDs"
    );
    assert!(unknown["challenge"].is_string());

    // The counter was stored: 1 after the first sign-in.
    let keys = app
        .state
        .storage
        .run(|s| s.list_credentials())
        .await
        .unwrap();
    assert_eq!(keys[0].sign_count, 1);
    assert!(keys[0].last_used_at.is_some());
    app.stop().await;
}

#[actix_web::test]
async fn sign_in_refusals_are_audited() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;

    // Missing user verification.
    let (_, r) = sign_in(&app, &mut cred, &user_id, None, |o| o.user_verified = false).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "user_verification_required");
    assert_eq!(
        last_signin_refusal(&app).await.as_deref(),
        Some("user_verification_required")
    );

    // Wrong origin.
    let (_, r) = sign_in(&app, &mut cred, &user_id, None, |o| {
        o.origin = "https://evil.example".into()
    })
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "origin_mismatch");
    assert_eq!(
        last_signin_refusal(&app).await.as_deref(),
        Some("origin_mismatch")
    );

    // A good sign-in (counter 3 now), then a counter that does not go up: possible clone.
    let (_, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, r) = sign_in(&app, &mut cred, &user_id, None, |o| o.sign_count = Some(2)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "possible_cloned_key");
    assert_eq!(
        last_signin_refusal(&app).await.as_deref(),
        Some("possible_cloned_key")
    );

    // A clone answering 0 does not reset detection either.
    let (_, r) = sign_in(&app, &mut cred, &user_id, None, |o| o.sign_count = Some(0)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "possible_cloned_key");
    let stored = app
        .state
        .storage
        .run(|s| s.list_credentials())
        .await
        .unwrap()[0]
        .sign_count;
    assert_eq!(stored, 3, "the stored counter is untouched");

    // Replay: the same finish body twice; the challenge is gone the second time.
    let mut client = app.client();
    let (csrf, options) = start(&mut client, None).await;
    // (the software key's counter fell back to 2 above; move it past the stored 3)
    let body = assertion_body(&mut cred, &app, &options, &user_id, |o| {
        o.sign_count = Some(10)
    });
    assert_eq!(
        client
            .post_json("/api/signin/finish", Some(&csrf), &body)
            .await
            .status,
        200
    );
    let mut client2 = app.client();
    let (csrf2, _) = start(&mut client2, None).await;
    let replay = client2
        .post_json("/api/signin/finish", Some(&csrf2), &body)
        .await;
    assert_eq!(
        replay.status, 400,
        "a replay fails the challenge check: {}",
        replay.body
    );
    assert_eq!(replay.json()["error"], "challenge_mismatch");

    // Username-first for someone else: the key does not answer for this account.
    let (_, r) = sign_in(
        &app,
        &mut cred,
        &user_id,
        Some("nobody@example.com"),
        |_| {},
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "unknown_credential");

    // Garbage.
    let mut client = app.client();
    let (csrf, _) = start(&mut client, None).await;
    let r = client
        .post_raw("/api/signin/finish", Some(&csrf), b"[1,2".to_vec())
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "malformed_json");

    // A revoked key.
    let key_id = app.first_key_id().await;
    app.state
        .storage
        .run(move |s| s.revoke_credential(&key_id, "test", 1))
        .await
        .unwrap();
    let (_, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        last_signin_refusal(&app).await.as_deref(),
        Some("forbidden")
    );
    keygate::service::audit_log::verify(&app.state)
        .await
        .expect("chain verifies");
    app.stop().await;
}

#[actix_web::test]
async fn adding_or_revoking_keys_needs_a_recent_touch() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    let (mut client, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let page = client.get("/me/keys/new").await;
    assert_eq!(page.status, 200, "fresh touch: the add-key page opens");
    let csrf = csrf_of(&page.body);

    // Six minutes later the session still works, but not for adding or revoking keys.
    app.clock.advance(360);
    assert_eq!(client.get("/api/me").await.status, 200);
    let stale = client.get("/me/keys/new").await;
    assert_eq!(stale.status, 303);
    assert_eq!(stale.header("location").as_deref(), Some("/?reauth=1"));
    let begin = client
        .post_json("/api/enrol/begin", Some(&csrf), &json!({}))
        .await;
    assert_eq!(begin.status, 401, "{}", begin.body);
    assert_eq!(begin.json()["error"], "reauthentication_required");
    let key_id = app.first_key_id().await;
    let revoke = client
        .post_json(
            &format!("/api/admin/keys/{key_id}/revoke"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(revoke.status, 401);

    // The sign-in page is offered to the signed-in member; a touch makes it fresh again.
    let reauth = client.get("/?reauth=1").await;
    assert_eq!(reauth.status, 200);
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
    assert_eq!(client.get("/me/keys/new").await.status, 200);
    app.stop().await;
}

/// Behind a trusted proxy the limit follows the address the proxy saw, however the
/// client writes `X-Forwarded-For`: a line of its own sent before the proxy's, or a
/// forged address left of one the proxy cannot have written, changes nothing.
#[actix_web::test]
async fn the_sign_in_limit_holds_behind_a_proxy_whatever_the_client_forwards() {
    let app = TestApp::builder()
        .with_toml("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]")
        .with("rate_limit.ceremonies_per_minute", "3")
        .start()
        .await;
    app.at_start_of_minute();
    let mut client = app.client();
    let page = client.get("/").await;
    let csrf = csrf_of(&page.body);
    let mut statuses = Vec::new();
    for n in 0..6 {
        let forged = format!("203.0.113.{n}");
        // Even attempts: the client's own line first, the proxy's (the real client)
        // after it. Odd ones: a forged address left of a hop that is no address.
        let headers: Vec<(&str, String)> = if n % 2 == 0 {
            vec![
                ("X-Forwarded-For", forged),
                ("X-Forwarded-For", "198.51.100.7".into()),
            ]
        } else {
            vec![("X-Forwarded-For", format!("{forged}, unknown"))]
        };
        let mut all = headers;
        all.push(("X-CSRF-Token", csrf.clone()));
        let r = client
            .post_with(
                "/api/signin/begin",
                &all,
                "application/json",
                b"{}".to_vec(),
            )
            .await;
        statuses.push(r.status);
    }
    // Attempts from 198.51.100.7 (0, 2, 4) and from the proxy itself (1, 3, 5) each
    // have their own three.
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200], "{statuses:?}");
    let r = client
        .post_with(
            "/api/signin/begin",
            &[
                ("X-Forwarded-For", "192.0.2.99".into()),
                ("X-Forwarded-For", "198.51.100.7".into()),
                ("X-CSRF-Token", csrf.clone()),
            ],
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    let r = client
        .post_with(
            "/api/signin/begin",
            &[("X-CSRF-Token", csrf.clone())],
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, 429, "the proxy's own address: {}", r.body);
    app.stop().await;
}

/// SPEC §7: sign-in attempts are limited per address in the shared store, `begin` and
/// `finish` both counting. A `finish` past the limit is refused and changes nothing but
/// the count: its challenge stays for the rest of its short life; a new minute lets the
/// answer and a new sign-in through.
#[actix_web::test]
async fn sign_in_is_rate_limited_per_address_and_a_refused_finish_changes_nothing() {
    let ca = trusted_ca();
    let app = TestApp::builder()
        .with_toml(&ca.toml)
        .with("rate_limit.ceremonies_per_minute", "3")
        .start()
        .await;
    app.at_start_of_minute();
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;

    // Attempts 1 (begin) and 2 (finish): signed in.
    let (_, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Attempt 3 (begin) passes; attempt 4 (finish) is refused.
    let mut client = app.client();
    let (csrf, options) = start(&mut client, None).await;
    let body = assertion_body(&mut cred, &app, &options, &user_id, |_| {});
    let r = client
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"], "rate_limited");
    let wait: u64 = r
        .header("retry-after")
        .expect("a 429 says when to come back")
        .parse()
        .expect("delay-seconds");
    assert!((1..=60).contains(&wait), "{wait}");

    // Still refused within the minute.
    let r = client
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    assert_eq!(r.status, 429, "{}", r.body);

    // A minute later the limit has passed: the answer goes through (and the browser's
    // session, with the challenge bound to it, is replaced by a signed-in one).
    app.clock.advance(61);
    let r = client
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A new sign-in goes through.
    let (_, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}

/// SPEC §7: a challenge is bound to the browser session that asked for it. A finish needs
/// that session and its CSRF token: without the token nothing is verified and the
/// challenge is used up; another browser's answer is checked against that browser's own
/// challenge; no session cookie at all is a CSRF refusal.
#[actix_web::test]
async fn a_finish_needs_the_session_that_began_and_its_csrf_token() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;

    // Browser A's answer, sent without the CSRF token: refused, and its challenge is gone.
    let mut a = app.client();
    let (csrf_a, options_a) = start(&mut a, None).await;
    let answer_a = assertion_body(&mut cred, &app, &options_a, &user_id, |_| {});
    let r = a.post_json("/api/signin/finish", None, &answer_a).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "csrf");
    let r = a
        .post_json("/api/signin/finish", Some(&csrf_a), &answer_a)
        .await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(r.json()["error"], "challenge_expired");

    // A new answer for A, sent by browser B (which began its own sign-in): B's challenge
    // is the one checked, and A's answer does not meet it.
    let (csrf_a, options_a) = start(&mut a, None).await;
    let answer_a = assertion_body(&mut cred, &app, &options_a, &user_id, |_| {});
    let mut b = app.client();
    let (csrf_b, _) = start(&mut b, None).await;
    let r = b
        .post_json("/api/signin/finish", Some(&csrf_b), &answer_a)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "challenge_mismatch");
    // A browser without any session cookie.
    let r = app
        .client()
        .post_json("/api/signin/finish", Some(&csrf_a), &answer_a)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"], "csrf");

    // A's own finish still goes through.
    let r = a
        .post_json("/api/signin/finish", Some(&csrf_a), &answer_a)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}
