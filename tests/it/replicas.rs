//! Scale-out: three keygate processes on different loopback ports share PostgreSQL and
//! Redis, and one flow's steps alternate between them (SPEC §5): enrolment, sign-in, and an
//! OpenID Connect code flow (authorize, token, userinfo on three different replicas). Needs the shared backends:
//! on the embedded default (in-process store) there is nothing to share, so it runs in the
//! PostgreSQL + Redis pass of the suite (mandatory in CI).

use serde_json::json;

use crate::enrolment_http::{b64d, finish_body, options_for, token_of, trusted_ca};
use crate::signin_http::assertion_body;
use crate::support::app::{csrf_of, Client, Reply, TestApp};
use crate::support::authenticator::SoftAuthenticator;
use crate::support::oidc::{authorize_path, form, Pkce};

const REDIRECT: &str = "http://127.0.0.1:7777/callback";
const CLIENT: &str = r#"
[[oidc.clients]]
client_id = "cli-app"
name = "Command-line tool"
redirect_uris = ["http://127.0.0.1:7777/callback"]
scopes = ["openid"]
public = true
"#;

/// The public client's code exchange at whichever replica `rp` talks to.
async fn exchange(rp: &mut Client, code: &str, pkce: &Pkce) -> Reply {
    rp.post_with(
        "/oauth2/token",
        &[],
        "application/x-www-form-urlencoded",
        form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "cli-app"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ]),
    )
    .await
}

#[actix_web::test]
async fn any_replica_serves_any_step() {
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
    let ca = trusted_ca();
    let toml = format!("{}{CLIENT}", ca.toml);
    let a = TestApp::builder().with_toml(&toml).start().await;
    let b = TestApp::builder()
        .with_toml(&toml)
        .replica_of(&a)
        .start()
        .await;
    let c = TestApp::builder()
        .with_toml(&toml)
        .replica_of(&a)
        .start()
        .await;
    assert!(b.bootstrap_link.is_none() && c.bootstrap_link.is_none());
    assert_ne!(a.address, b.address);
    assert_ne!(b.address, c.address);

    // Enrolment: the page from A, begin on B, finish on C.
    let path = a.bootstrap_path();
    let mut browser = a.client();
    let page = browser.get(&path).await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.body);
    browser.switch_to(&b);
    let options = browser
        .post_json(
            "/api/enrol/begin",
            Some(&csrf),
            &json!({ "token": token_of(&path), "email": "admin@example.com" }),
        )
        .await;
    let auth = SoftAuthenticator::new(&ca.ca);
    let reg = auth.register(&options_for(&a, &options));
    browser.switch_to(&c);
    let done = browser
        .post_json(
            "/api/enrol/finish",
            Some(&csrf),
            &finish_body(&reg, "Primary"),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let user_id = done.json()["user_id"].as_str().unwrap().to_string();
    // The signed-in session works on every replica.
    for app in [&a, &b, &c] {
        browser.switch_to(app);
        assert_eq!(browser.get("/api/me").await.status, 200);
    }

    // Sign-in: start page on C, begin on A, finish on B; the session then used on C.
    let mut cred = reg.credential;
    let mut other = c.client();
    let page = other.get("/").await;
    let csrf = csrf_of(&page.body);
    other.switch_to(&a);
    let options = other
        .post_json("/api/signin/begin", Some(&csrf), &json!({}))
        .await
        .json();
    assert!(b64d(options["challenge"].as_str().unwrap()).len() >= 16);
    let body = assertion_body(&mut cred, &a, &options, &user_id, |_| {});
    other.switch_to(&b);
    let signed = other
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    other.switch_to(&c);
    assert_eq!(other.get("/api/me").await.status, 200);

    // OpenID Connect: authorize on A, the code exchanged on B, userinfo on C.
    let pkce = Pkce::new();
    other.switch_to(&a);
    let authorized = other
        .get(&authorize_path(
            "cli-app",
            REDIRECT,
            "openid",
            &pkce.challenge,
            &[("state", "s-1"), ("nonce", "n-1")],
        ))
        .await;
    assert_eq!(authorized.status, 303, "{}", authorized.body);
    let location = url::Url::parse(&authorized.header("location").unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let mut rp = b.client();
    let tokens = exchange(&mut rp, &code, &pkce).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let access = tokens.json()["access_token"].as_str().unwrap().to_string();
    rp.switch_to(&c);
    let me = rp
        .get_with(
            "/oauth2/userinfo",
            &[("Authorization", format!("Bearer {access}"))],
        )
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["sub"], user_id.as_str());
    // The code was single-use on every replica.
    rp.switch_to(&a);
    let again = exchange(&mut rp, &code, &pkce).await;
    assert_eq!(again.status, 400, "{}", again.body);

    // A client disabled on one replica: refused there at once, and on the others once
    // the row they read a moment ago is older than a second (docs/decisions.md).
    let unknown_code = Pkce::new();
    let client_of = |r: &Reply| {
        (
            r.status,
            r.json()["error"].as_str().unwrap_or("").to_string(),
        )
    };
    for app in [&a, &b] {
        rp.switch_to(app);
        let r = exchange(&mut rp, "kgc_unknown", &unknown_code).await;
        assert_eq!(
            client_of(&r),
            (400, "invalid_grant".into()),
            "the client is read"
        );
    }
    browser.switch_to(&a);
    let page = browser.get("/admin/clients").await;
    assert_eq!(page.status, 200);
    let disabled = browser
        .post_json(
            "/api/admin/clients/cli-app/disable",
            Some(&csrf_of(&page.body)),
            &json!({}),
        )
        .await;
    assert_eq!(disabled.status, 204, "{}", disabled.body);
    rp.switch_to(&a);
    let r = exchange(&mut rp, "kgc_unknown", &unknown_code).await;
    assert_eq!(client_of(&r), (401, "invalid_client".into()));
    let since = std::time::Instant::now();
    for app in [&b, &c] {
        rp.switch_to(app);
        let mut refused = false;
        for _ in 0..40 {
            let r = exchange(&mut rp, "kgc_unknown", &unknown_code).await;
            if client_of(&r) == (401, "invalid_client".into()) {
                refused = true;
                break;
            }
            assert_eq!(client_of(&r), (400, "invalid_grant".into()));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            refused,
            "a replica still serves a client disabled elsewhere"
        );
    }
    assert!(
        since.elapsed() < std::time::Duration::from_millis(2500),
        "seen within about a second: {:?}",
        since.elapsed()
    );

    // A challenge is single-use across replicas: replaying the finish on A fails.
    other.switch_to(&a);
    let replay = other
        .post_json("/api/signin/finish", Some(&csrf), &body)
        .await;
    assert_ne!(replay.status, 200, "{}", replay.body);

    // Ending the session on one replica ends it everywhere.
    let page = other.get("/me").await;
    let csrf = csrf_of(&page.body);
    other.switch_to(&b);
    assert_eq!(
        other
            .post_form("/me/sessions/all/end", &[("csrf", &csrf)])
            .await
            .status,
        303
    );
    for app in [&a, &b, &c] {
        other.switch_to(app);
        assert_eq!(other.get("/api/me").await.status, 401);
    }
    c.stop().await;
    b.stop().await;
    a.stop().await;
}
