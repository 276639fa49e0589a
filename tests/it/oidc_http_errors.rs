//! Refusals of the authorization and token endpoints over HTTP: what must never redirect,
//! what goes back to the client, and the token endpoint's standard error bodies.

use crate::enrolment_http::audit_events;
use crate::support::app::{Client, Reply, TestApp};
use crate::support::oidc::*;

/// An error sent back to the client's redirect URI (with `state` `s1` and `iss`).
async fn redirect_error(app: &TestApp, browser: &mut Client, path: String) -> String {
    let r = browser.get(&path).await;
    assert_eq!(r.status, 303, "{path}: {}", r.body);
    let loc = location(app, &r);
    assert!(loc.as_str().starts_with(REDIRECT), "{loc}");
    assert_eq!(param(&loc, "state").as_deref(), Some("s1"));
    assert_eq!(param(&loc, "iss").as_deref(), Some(app.base.as_str()));
    assert!(param(&loc, "code").is_none());
    param(&loc, "error").unwrap()
}

/// A token endpoint refusal: its status and `error`, checked to be `no-store`.
fn token_error(r: &Reply) -> (u16, String) {
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    (
        r.status,
        r.json()["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[actix_web::test]
async fn authorization_requests_that_must_not_redirect_and_those_that_do() {
    let mut p = provider().await;
    let mut browser = p.browser().await;
    let ch = Pkce::new().challenge;

    // Unregistered redirect URI or unknown client: an error page, never a redirect.
    for path in [
        authorize_path(CLIENT_ID, "https://evil.example/cb", "openid", &ch, &[]),
        authorize_path("nobody", REDIRECT, "openid", &ch, &[]),
        "/oauth2/authorize?response_type=code".to_string(),
    ] {
        let r = browser.get(&path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.header("location").is_none(), "{path}");
        assert!(r.body.contains("invalid_request"), "{}", r.body);
    }

    // After the redirect URI is trusted, errors go back to the client with state and iss.
    let no_pkce = authorize_path(CLIENT_ID, REDIRECT, "openid", &ch, &[("state", "s1")])
        .replace(&format!("&code_challenge={ch}"), "");
    assert_eq!(
        redirect_error(&p.app, &mut browser, no_pkce).await,
        "invalid_request"
    );
    let plain = authorize_path(CLIENT_ID, REDIRECT, "openid", &ch, &[("state", "s1")])
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    assert_eq!(
        redirect_error(&p.app, &mut browser, plain).await,
        "invalid_request"
    );
    let token = authorize_path(CLIENT_ID, REDIRECT, "openid", &ch, &[("state", "s1")])
        .replace("response_type=code", "response_type=token");
    assert_eq!(
        redirect_error(&p.app, &mut browser, token).await,
        "unsupported_response_type"
    );
    let scope = authorize_path(CLIENT_ID, REDIRECT, "openid admin", &ch, &[("state", "s1")]);
    assert_eq!(
        redirect_error(&p.app, &mut browser, scope).await,
        "invalid_scope"
    );
    let public_scope = authorize_path(CLIENT_ID, REDIRECT, "email", &ch, &[("state", "s1")]);
    assert_eq!(
        redirect_error(&p.app, &mut browser, public_scope).await,
        "invalid_scope",
        "openid is required"
    );
    // A `state` whose escapes decode to no UTF-8: shown, not sent back repaired.
    let undecodable = authorize_path(CLIENT_ID, REDIRECT, "openid", &ch, &[]) + "&state=s%FF1";
    let r = browser.get(&undecodable).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.header("location").is_none());
    // Every refusal that named the registered client is audited against it (the
    // unregistered redirect URI first, then the five redirected ones, then the
    // undecodable one); the unknown client and the request naming none are not.
    let refused: Vec<(String, Option<String>)> = audit_events(&p.app)
        .await
        .into_iter()
        .filter(|e| e.action == "oidc.request_refused")
        .map(|e| {
            assert_eq!(e.subject, format!("oidc_client:{CLIENT_ID}"));
            (e.actor, e.reason)
        })
        .collect();
    assert_eq!(refused.len(), 7, "{refused:?}");
    assert!(refused.iter().all(|(actor, _)| actor.starts_with("user:")));
    let reasons: Vec<&str> = refused.iter().filter_map(|(_, r)| r.as_deref()).collect();
    assert_eq!(
        reasons,
        [
            "invalid_request",
            "invalid_request",
            "invalid_request",
            "unsupported_response_type",
            "invalid_scope",
            "invalid_scope",
            "invalid_request"
        ]
    );
    p.app.stop().await;
}

#[actix_web::test]
async fn token_endpoint_refusals() {
    let mut p = provider().await;
    let mut browser = p.browser().await;
    let exchange = |code: &str, redirect: &str, verifier: &str| {
        vec![
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".to_string(), code.to_string()),
            ("redirect_uri".to_string(), redirect.to_string()),
            ("code_verifier".to_string(), verifier.to_string()),
        ]
    };
    let post = |fields: Vec<(String, String)>, client: &'static str| {
        let p = &p;
        async move {
            let f: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            p.post("/oauth2/token", client, &f).await
        }
    };

    // Wrong redirect URI, wrong verifier, no verifier: invalid_grant (each spends its code).
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, "openid").await;
    let r = post(
        exchange(&code, "https://rp.example/other", &pkce.verifier),
        CLIENT_ID,
    )
    .await;
    assert_eq!(token_error(&r), (400, "invalid_grant".into()));
    let (code, _) = p.code(&mut browser, CLIENT_ID, "openid").await;
    let r = post(exchange(&code, REDIRECT, &Pkce::new().verifier), CLIENT_ID).await;
    assert_eq!(token_error(&r), (400, "invalid_grant".into()));
    let (code, _) = p.code(&mut browser, CLIENT_ID, "openid").await;
    let mut fields = exchange(&code, REDIRECT, "");
    fields.pop();
    assert_eq!(
        token_error(&post(fields, CLIENT_ID).await),
        (400, "invalid_grant".into())
    );
    let refused = audit_events(&p.app)
        .await
        .into_iter()
        .filter(|e| e.action == "oidc.refused")
        .count();
    assert_eq!(refused, 3, "each refused exchange is audited");

    // A code is bound to its client.
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, "openid").await;
    let r = post(exchange(&code, REDIRECT, &pkce.verifier), OTHER_ID).await;
    assert_eq!(token_error(&r), (400, "invalid_grant".into()));

    // Client authentication: wrong secret, unknown client → 401 with a Basic challenge.
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, "openid").await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &pkce.verifier),
    ]);
    let ctype = "application/x-www-form-urlencoded";
    for auth in [
        p.basic(CLIENT_ID, "wrong-secret"),
        p.basic("nobody", &p.secret),
    ] {
        let r = p
            .app
            .client()
            .post_with(
                "/oauth2/token",
                &[("Authorization", auth)],
                ctype,
                body.clone(),
            )
            .await;
        assert_eq!(token_error(&r), (401, "invalid_client".into()));
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    }
    // No credentials at all for a confidential client.
    let mut with_id = exchange(&code, REDIRECT, &pkce.verifier);
    with_id.push(("client_id".into(), CLIENT_ID.into()));
    let f: Vec<(&str, &str)> = with_id
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = p
        .app
        .client()
        .post_with("/oauth2/token", &[], ctype, form(&f))
        .await;
    assert_eq!(token_error(&r), (401, "invalid_client".into()));
    // The wrong secret and the missing one named a registered client: audited, with the
    // method; the unknown client is not (anonymous callers cannot fill the audit log).
    let refused: Vec<serde_json::Value> = audit_events(&p.app)
        .await
        .into_iter()
        .filter(|e| e.action == "oidc.client_auth_refused")
        .map(|e| {
            assert_eq!(e.subject, format!("oidc_client:{CLIENT_ID}"));
            serde_json::from_str(&e.details_json).unwrap()
        })
        .collect();
    let methods: Vec<&str> = refused
        .iter()
        .map(|d| d["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["client_secret_basic", "none"], "{refused:?}");
    // The code was not spent by failed client authentication… it is still usable.
    let r = post(exchange(&code, REDIRECT, &pkce.verifier), CLIENT_ID).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Unsupported grant types and malformed forms.
    let r = post(vec![("grant_type".into(), "password".into())], CLIENT_ID).await;
    assert_eq!(token_error(&r), (400, "unsupported_grant_type".into()));
    // Client credentials only for clients registered with a client-only scope.
    let r = post(
        vec![("grant_type".into(), "client_credentials".into())],
        CLIENT_ID,
    )
    .await;
    assert_eq!(token_error(&r), (400, "unauthorized_client".into()));
    let r = p
        .app
        .client()
        .post_with(
            "/oauth2/token",
            &[("Authorization", p.basic(CLIENT_ID, &p.secret))],
            "application/json",
            br#"{"grant_type":"authorization_code"}"#.to_vec(),
        )
        .await;
    assert_eq!(token_error(&r), (400, "invalid_request".into()));
    let post_raw = |raw: Vec<u8>| {
        let p = &p;
        async move {
            let auth = [("Authorization", p.basic(CLIENT_ID, &p.secret))];
            p.app
                .client()
                .post_with("/oauth2/token", &auth, ctype, raw)
                .await
        }
    };
    for raw in [
        b"grant_type=authorization_code&grant_type=refresh_token&code=x".to_vec(),
        b"grant_type=authorization_code&code=%FF%FE".to_vec(),
        vec![0xff, 0xfe, b'=', 0x00],
        b"grant_type=authorization_code".to_vec(),
    ] {
        let r = post_raw(raw.clone()).await;
        assert!(
            r.status == 400 || r.status == 401,
            "{}: {} {}",
            String::from_utf8_lossy(&raw),
            r.status,
            r.body
        );
        assert!(r.json()["error"].is_string());
    }
    // One parameter whose escapes decode to no UTF-8 spoils the request: refused before
    // the code is looked at, so the code still works.
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, "openid").await;
    let mut raw = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &pkce.verifier),
    ]);
    raw.extend_from_slice(b"&note=%FF");
    let r = post_raw(raw).await;
    assert_eq!(
        token_error(&r),
        (400, "invalid_request".into()),
        "{}",
        r.body
    );
    assert!(r.body.contains("not UTF-8"), "{}", r.body);
    p.exchange(CLIENT_ID, &code, &pkce).await;

    // The public client: PKCE only, no secret; a secret it does not have is refused.
    let (code, pkce) = p
        .code(&mut browser, PUBLIC_ID, "openid offline_access")
        .await;
    let tokens = p.exchange(PUBLIC_ID, &code, &pkce).await;
    assert!(tokens["refresh_token"].is_string());
    let r = p
        .refresh(PUBLIC_ID, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(
        vec![
            ("grant_type".into(), "refresh_token".into()),
            ("refresh_token".into(), "kgr_x".into()),
        ],
        PUBLIC_ID,
    )
    .await;
    assert_eq!(token_error(&r), (400, "invalid_grant".into()));
    let r = p
        .app
        .client()
        .post_with(
            "/oauth2/token",
            &[("Authorization", p.basic(PUBLIC_ID, "made-up"))],
            ctype,
            form(&[("grant_type", "refresh_token"), ("refresh_token", "kgr_x")]),
        )
        .await;
    assert_eq!(token_error(&r), (401, "invalid_client".into()));
    p.app.stop().await;
}

#[actix_web::test]
async fn the_token_endpoint_is_rate_limited_per_address() {
    let p = provider_with(&[("oidc.token_requests_per_minute", "3")]).await;
    p.app.at_start_of_minute();
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "kgr_unknown"),
    ];
    for _ in 0..3 {
        let r = p.post("/oauth2/token", CLIENT_ID, &fields).await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
    let r = p.post("/oauth2/token", CLIENT_ID, &fields).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(r.json()["error_description"].is_string(), "{}", r.body);
    assert_retry_after_the_minute(&p.app, &r);
    p.app.stop().await;
}

/// A code exchange counts against the same limit with its code's take, in one step: every
/// refusal before the take counts too (a malformed request, a wrong secret, an unknown
/// code), and an exchange past the limit leaves its code to be exchanged once the minute
/// has passed.
#[actix_web::test]
async fn code_exchanges_count_against_the_token_limit_and_a_refused_one_keeps_its_code() {
    let mut p = provider_with(&[("oidc.token_requests_per_minute", "3")]).await;
    // At second 50 of a minute: the next minute starts well within the code's lifetime.
    let now = p.app.state.now();
    p.app
        .clock
        .advance((50 - now.rem_euclid(60)).rem_euclid(60));
    let mut browser = p.browser().await;
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, "openid").await;
    let redirect = redirect_for(CLIENT_ID);
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", pkce.verifier.as_str()),
    ];

    let no_code = [
        ("grant_type", "authorization_code"),
        ("redirect_uri", redirect),
    ];
    let r = p.post("/oauth2/token", CLIENT_ID, &no_code).await;
    assert_eq!(token_error(&r), (400, "invalid_request".into()));
    let r = p
        .post_as("/oauth2/token", (CLIENT_ID, "not-the-secret"), &exchange)
        .await;
    assert_eq!(token_error(&r), (401, "invalid_client".into()));
    let mut unknown = exchange;
    unknown[1].1 = "kgc_unknown";
    let r = p.post("/oauth2/token", CLIENT_ID, &unknown).await;
    assert_eq!(token_error(&r), (400, "invalid_grant".into()));

    let r = p.post("/oauth2/token", CLIENT_ID, &exchange).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");

    p.app.clock.advance(11);
    let tokens = p.exchange(CLIENT_ID, &code, &pkce).await;
    assert!(tokens["id_token"].is_string(), "{tokens}");
    p.app.stop().await;
}

#[actix_web::test]
async fn sign_in_requests_from_applications_are_rate_limited_per_address_before_anything_is_stored()
{
    let p = provider_with(&[("rate_limit.authorization_requests_per_minute", "3")]).await;
    p.app.at_start_of_minute();
    let ch = Pkce::new().challenge;
    let path = authorize_path(CLIENT_ID, REDIRECT, "openid", &ch, &[("state", "s1")]);
    let mut browser = p.app.client();
    // Not signed in: each request waits for a key touch in the shared store.
    for _ in 0..2 {
        let r = browser.get(&path).await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert!(r.header("location").unwrap().contains("continue="));
    }
    // A malformed SAML request counts against the same budget (and is audited) ...
    let r = browser.get("/saml/sso?SAMLRequest=%%%").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let audited = audit_events(&p.app).await.len();

    // ... which is now spent, for every binding of both protocols: a 429 page, nothing
    // stored, no redirect and no audit event.
    let query = path.trim_start_matches("/oauth2/authorize?").to_string();
    let refused = [
        browser.get(&path).await,
        browser
            .post_with(
                "/oauth2/authorize",
                &[],
                "application/x-www-form-urlencoded",
                query.into_bytes(),
            )
            .await,
        browser.get("/saml/sso?SAMLRequest=%%%").await,
        browser
            .post_form("/saml/sso", &[("SAMLRequest", "not base64")])
            .await,
        browser
            .get("/saml/idp-initiated?sp=https://sp.example/")
            .await,
    ];
    for r in &refused {
        assert_eq!(r.status, 429, "{}", r.body);
        assert_retry_after_the_minute(&p.app, r);
        assert!(r.header("location").is_none());
        assert!(r.body.contains("too many attempts"), "{}", r.body);
    }
    assert_eq!(audit_events(&p.app).await.len(), audited);
    p.app.stop().await;
}

/// A 429 says when to come back (RFC 9110 §10.2.3): the seconds left in the minute its
/// limit counts in (the test clock runs, so "now" is read after the answer).
fn assert_retry_after_the_minute(
    app: &crate::support::app::TestApp,
    r: &crate::support::app::Reply,
) {
    let wait: i64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {}", r.body))
        .parse()
        .expect("delay-seconds");
    let left = 60 - app.state.now().rem_euclid(60);
    assert!(
        wait >= left && wait <= left + 2,
        "Retry-After {wait}, {left} s left in the minute"
    );
}
