//! The device authorization grant (RFC 8628) over HTTP, with the software authenticator
//! on the member's side: the whole flow and every polling answer, slow_down, denial,
//! expiry, single use, a touch made for one request refused for another (audited), the
//! user-code entry limit and discovery.

use base64::Engine;
use serde_json::Value;

use crate::enrolment_http::audit_events;
use crate::signin_http::assertion_body;
use crate::support::app::{csrf_of, Client, Reply};
use crate::support::oidc::*;

pub const DEVICE_CLIENT: &str = "device-cli";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub const DEVICE_CLIENTS: &str = r#"
[[oidc.clients]]
client_id = "device-cli"
name = "Deploy CLI"
redirect_uris = ["http://127.0.0.1/unused"]
scopes = ["openid", "profile", "email", "offline_access", "keygate:device"]
public = true
"#;

pub async fn device_provider() -> Provider {
    provider_with_config(DEVICE_CLIENTS).await
}

async fn post_public(p: &Provider, path: &str, fields: &[(&str, &str)]) -> Reply {
    let mut fields = fields.to_vec();
    fields.push(("client_id", DEVICE_CLIENT));
    p.app
        .client()
        .post_with(
            path,
            &[],
            "application/x-www-form-urlencoded",
            form(&fields),
        )
        .await
}

async fn request_code(p: &Provider, scope: &str) -> Value {
    let r = post_public(p, "/oauth2/device_authorization", &[("scope", scope)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    r.json()
}

async fn poll(p: &Provider, device_code: &str) -> Reply {
    post_public(
        p,
        "/oauth2/token",
        &[("grant_type", GRANT), ("device_code", device_code)],
    )
    .await
}

fn error_of(r: &Reply) -> String {
    assert_eq!(r.status, 400, "{}", r.body);
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

/// The approval page for `user_code` in a signed-in browser: its CSRF token.
pub(crate) async fn open_page(browser: &mut Client, user_code: &str) -> (Reply, String) {
    let page = browser.get(&format!("/device?user_code={user_code}")).await;
    let csrf = csrf_of(&page.body);
    (page, csrf)
}

/// The approval touch's options for `user_code`.
pub(crate) async fn begin(browser: &mut Client, csrf: &str, user_code: &str) -> Value {
    let r = browser
        .post_json(
            "/api/device/approve/begin",
            Some(csrf),
            &serde_json::json!({ "user_code": user_code }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

pub(crate) async fn finish(
    p: &mut Provider,
    browser: &mut Client,
    csrf: &str,
    options: &Value,
    user_code: &str,
) -> Reply {
    let mut body = assertion_body(&mut p.cred, &p.app, options, &p.user_id, |_| {});
    body["user_code"] = Value::String(user_code.into());
    browser
        .post_json("/api/device/approve/finish", Some(csrf), &body)
        .await
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[actix_web::test]
async fn a_member_approves_with_a_bound_touch_and_the_device_gets_its_tokens_once() {
    let mut p = device_provider().await;
    let doc = p
        .app
        .client()
        .get("/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(
        doc["device_authorization_endpoint"],
        format!("{}/oauth2/device_authorization", p.app.base)
    );
    assert!(doc["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&Value::String(GRANT.into())));
    assert!(!doc["scopes_supported"]
        .to_string()
        .contains("keygate:device"));

    let code = request_code(&p, "openid profile offline_access").await;
    let user_code = code["user_code"].as_str().unwrap().to_string();
    let device_code = code["device_code"].as_str().unwrap().to_string();
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert!(user_code
        .chars()
        .filter(|c| *c != '-')
        .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)));
    assert_eq!(code["verification_uri"], format!("{}/device", p.app.base));
    assert_eq!(
        code["verification_uri_complete"],
        format!("{}/device?user_code={user_code}", p.app.base)
    );
    assert_eq!(code["expires_in"], 600);
    assert_eq!(code["interval"], 5);

    // Pending, then too fast: slow_down, the interval now 10 s.
    assert_eq!(
        error_of(&poll(&p, &device_code).await),
        "authorization_pending"
    );
    p.app.clock.advance(5);
    assert_eq!(
        error_of(&poll(&p, &device_code).await),
        "authorization_pending"
    );
    p.app.clock.advance(2);
    assert_eq!(error_of(&poll(&p, &device_code).await), "slow_down");
    p.app.clock.advance(7);
    assert_eq!(error_of(&poll(&p, &device_code).await), "slow_down");
    p.app.clock.advance(15);
    assert_eq!(
        error_of(&poll(&p, &device_code).await),
        "authorization_pending"
    );

    // Not signed in: /device sends the browser to sign in, then back to the code.
    let mut anonymous = p.app.client();
    let typed = user_code.to_lowercase().replace('-', "%20");
    let detour = anonymous.get(&format!("/device?user_code={typed}")).await;
    assert_eq!(detour.status, 303);
    let to = detour.header("location").unwrap();
    assert!(
        to.starts_with("/?continue=") && to.ends_with("&via=device"),
        "{to}"
    );
    let signin = anonymous.get(&to).await;
    assert!(
        signin.body.contains("/device/continue?id="),
        "{}",
        signin.body
    );
    let id = to
        .trim_start_matches("/?continue=")
        .trim_end_matches("&via=device");
    let back = anonymous.get(&format!("/device/continue?id={id}")).await;
    assert_eq!(
        back.header("location").unwrap(),
        format!("/device?user_code={user_code}")
    );

    let mut browser = p.browser().await;
    let (page, csrf) = open_page(&mut browser, &user_code.to_lowercase().replace('-', "")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for shown in [
        &user_code,
        "Deploy CLI",
        "offline_access",
        "127.0.0.1",
        "600 seconds",
    ] {
        assert!(page.body.contains(shown), "{shown} missing: {}", page.body);
    }
    let options = begin(&mut browser, &csrf, &user_code).await;
    assert_eq!(options["userVerification"], "required");
    let done = finish(&mut p, &mut browser, &csrf, &options, &user_code).await;
    assert_eq!(done.status, 200, "{}", done.body);

    // A poll too soon after the last is still slow_down; then the tokens, once.
    p.app.clock.advance(15);
    let r = poll(&p, &device_code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens = r.json();
    assert!(tokens["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("kgr_"));
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], p.user_id.as_str());
    assert_eq!(id["aud"], DEVICE_CLIENT);
    assert_eq!(id["acr"], "phrh");
    let amr: Vec<&str> = id["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(amr.contains(&"hwk") && amr.contains(&"pin"), "{amr:?}");
    assert_eq!(id["auth_time"].as_i64().unwrap(), p.app.state.now() - 15);
    let access = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["acr"], "phrh");

    // Single use: the same code again is refused.
    p.app.clock.advance(15);
    assert_eq!(error_of(&poll(&p, &device_code).await), "invalid_grant");
    // The refresh token works like the code flow's.
    let refreshed = post_public(
        &p,
        "/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);

    let events = audit_events(&p.app).await;
    let approved = events
        .iter()
        .find(|e| e.action == "device.approved")
        .expect("device.approved");
    let details: Value = serde_json::from_str(&approved.details_json).unwrap();
    assert_eq!(details["attested"], true);
    assert_eq!(details["client_id"], DEVICE_CLIENT);
    assert_eq!(details["approval_digest"].as_str().unwrap().len(), 64);
    assert!(details["credential_id"].is_string() && details["aaguid"].is_string());
    assert!(events.iter().any(|e| e.action == "device.requested"));
    assert!(events
        .iter()
        .any(|e| e.action == "oidc.token_issued" && e.details_json.contains(GRANT)));
}

#[actix_web::test]
async fn a_touch_made_for_one_request_cannot_approve_another() {
    let mut p = device_provider().await;
    let a = request_code(&p, "openid").await;
    let b = request_code(&p, "openid").await;
    let (ua, ub) = (
        a["user_code"].as_str().unwrap(),
        b["user_code"].as_str().unwrap(),
    );
    let mut browser = p.browser().await;
    let (_, csrf) = open_page(&mut browser, ua).await;
    let options_a = begin(&mut browser, &csrf, ua).await;
    let refused = finish(&mut p, &mut browser, &csrf, &options_a, ub).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.json()["error"], "approval_mismatch");
    let events = audit_events(&p.app).await;
    let e = events
        .iter()
        .find(|e| e.action == "device.refused" && e.reason.as_deref() == Some("approval_mismatch"))
        .expect("the refusal is audited");
    assert_eq!(e.subject, format!("user:{}", p.user_id));
    // Neither request was approved.
    for c in [&a, &b] {
        let r = poll(&p, c["device_code"].as_str().unwrap()).await;
        assert_eq!(error_of(&r), "authorization_pending");
    }
    // The right touch for B still works.
    let options_b = begin(&mut browser, &csrf, ub).await;
    let ok = finish(&mut p, &mut browser, &csrf, &options_b, ub).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[actix_web::test]
async fn deny_is_one_click_and_final() {
    let mut p = device_provider().await;
    let code = request_code(&p, "openid").await;
    let (uc, dc) = (
        code["user_code"].as_str().unwrap(),
        code["device_code"].as_str().unwrap(),
    );
    let mut browser = p.browser().await;
    let (_, csrf) = open_page(&mut browser, uc).await;
    // Without the CSRF token: refused, nothing decided.
    let forged = browser
        .post_form("/device/deny", &[("user_code", uc)])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(error_of(&poll(&p, dc).await), "authorization_pending");
    let denied = browser
        .post_form("/device/deny", &[("csrf", &csrf), ("user_code", uc)])
        .await;
    assert_eq!(denied.status, 200, "{}", denied.body);
    p.app.clock.advance(5);
    assert_eq!(error_of(&poll(&p, dc).await), "access_denied");
    // Final: the code can no longer be approved.
    let again = browser
        .post_json(
            "/api/device/approve/begin",
            Some(&csrf),
            &serde_json::json!({ "user_code": uc }),
        )
        .await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(audit_events(&p.app)
        .await
        .iter()
        .any(|e| e.action == "device.denied"));
}

#[actix_web::test]
async fn an_expired_code_answers_expired_token() {
    let mut p = device_provider().await;
    let code = request_code(&p, "openid").await;
    let (uc, dc) = (
        code["user_code"].as_str().unwrap(),
        code["device_code"].as_str().unwrap(),
    );
    p.app.clock.advance(601);
    assert_eq!(error_of(&poll(&p, dc).await), "expired_token");
    let mut browser = p.browser().await;
    let (page, _) = open_page(&mut browser, uc).await;
    assert_eq!(page.status, 400, "{}", page.body);
    // Unknown device codes and other clients' are invalid_grant.
    assert_eq!(error_of(&poll(&p, "kgd_nothing").await), "invalid_grant");
}

#[actix_web::test]
async fn clients_need_the_grant_and_known_scopes() {
    let p = device_provider().await;
    let r = p
        .post(
            "/oauth2/device_authorization",
            PUBLIC_ID,
            &[("scope", "openid")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "unauthorized_client");
    let r = post_public(
        &p,
        "/oauth2/device_authorization",
        &[("scope", "openid keygate:device")],
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_scope", "{}", r.body);
    let r = post_public(
        &p,
        "/oauth2/device_authorization",
        &[("scope", "openid keygate:compliance")],
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_scope", "{}", r.body);
}

#[actix_web::test]
async fn wrong_user_codes_are_limited_per_address_and_audited() {
    let mut p = device_provider().await;
    p.app.at_start_of_minute();
    let mut browser = p.browser().await;
    for _ in 0..10 {
        let r = browser.get("/device?user_code=BCDF-GHJK").await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
    let limited = browser.get("/device?user_code=BCDF-GHJK").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    // Even a right code is refused past the limit this minute.
    let code = request_code(&p, "openid").await;
    let r = browser
        .get(&format!(
            "/device?user_code={}",
            code["user_code"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status, 429);
    let refused = audit_events(&p.app)
        .await
        .into_iter()
        .filter(|e| e.action == "device.refused")
        .count();
    assert!(refused >= 10, "{refused}");
}
