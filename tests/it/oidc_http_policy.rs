//! What the authorization endpoint decides for a session: `prompt=login` and `max_age`
//! force a fresh key touch, `prompt=none` never shows a page, requested `acr` values are
//! honoured or refused with `unmet_authentication_requirements`, a client bound to a
//! workspace only signs in its members, and a disabled client gets nothing.

use serde_json::json;

use crate::enrolment_http::audit_events;
use crate::support::app::{csrf_of, Client};
use crate::support::oidc::*;

/// Exchanges the code in a final redirect and returns the ID token's claims.
async fn id_claims(
    p: &Provider,
    client_id: &str,
    back: &crate::support::app::Reply,
    pkce: &Pkce,
) -> serde_json::Value {
    assert_eq!(back.status, 303, "{}", back.body);
    let loc = location(&p.app, back);
    let code = param(&loc, "code").unwrap_or_else(|| panic!("no code: {loc}"));
    let tokens = p.exchange(client_id, &code, pkce).await;
    claims_of(tokens["id_token"].as_str().unwrap())
}

async fn request(
    browser: &mut Client,
    client_id: &str,
    extra: &[(&str, &str)],
) -> (crate::support::app::Reply, Pkce) {
    let pkce = Pkce::new();
    let path = authorize_path(
        client_id,
        redirect_for(client_id),
        "openid",
        &pkce.challenge,
        extra,
    );
    (browser.get(&path).await, pkce)
}

#[actix_web::test]
async fn prompt_login_and_max_age_ask_for_a_fresh_touch() {
    let mut p = provider().await;
    let mut browser = p.browser().await;
    let signed_in_at = p.app.state.now();

    // A live session: a code at once.
    let (r, pkce) = request(&mut browser, CLIENT_ID, &[]).await;
    let claims = id_claims(&p, CLIENT_ID, &r, &pkce).await;
    assert!((claims["auth_time"].as_i64().unwrap() - signed_in_at).abs() <= 1);

    // prompt=login: the sign-in page first, whatever the session; then a newer auth_time.
    p.app.clock.advance(30);
    let (detour, pkce) = request(&mut browser, CLIENT_ID, &[("prompt", "login")]).await;
    assert_eq!(
        param(&location(&p.app, &detour), "why").as_deref(),
        Some("prompt_login")
    );
    let back = continue_after_touch(&mut p, &mut browser, &detour).await;
    let claims = id_claims(&p, CLIENT_ID, &back, &pkce).await;
    let touched = claims["auth_time"].as_i64().unwrap();
    assert!(touched >= signed_in_at + 30, "{touched} vs {signed_in_at}");

    // max_age: older than asked → a touch; young enough → a code at once.
    p.app.clock.advance(120);
    let (r, pkce) = request(&mut browser, CLIENT_ID, &[("max_age", "3600")]).await;
    assert_eq!(
        id_claims(&p, CLIENT_ID, &r, &pkce).await["auth_time"],
        touched
    );
    let (detour, pkce) = request(&mut browser, CLIENT_ID, &[("max_age", "60")]).await;
    assert_eq!(
        param(&location(&p.app, &detour), "why").as_deref(),
        Some("max_age")
    );
    let back = continue_after_touch(&mut p, &mut browser, &detour).await;
    let claims = id_claims(&p, CLIENT_ID, &back, &pkce).await;
    assert!(claims["auth_time"].as_i64().unwrap() >= touched + 120);

    // prompt=none without a session: login_required, sent back to the client.
    let mut stranger = p.app.client();
    let (r, _) = request(
        &mut stranger,
        CLIENT_ID,
        &[("prompt", "none"), ("state", "q")],
    )
    .await;
    let loc = location(&p.app, &r);
    assert!(loc.as_str().starts_with(REDIRECT));
    assert_eq!(param(&loc, "error").as_deref(), Some("login_required"));
    assert_eq!(param(&loc, "state").as_deref(), Some("q"));
    // A malformed max_age is the client's error, not a page.
    let (r, _) = request(&mut browser, CLIENT_ID, &[("max_age", "-1")]).await;
    assert_eq!(
        param(&location(&p.app, &r), "error").as_deref(),
        Some("invalid_request")
    );
    p.app.stop().await;
}

#[actix_web::test]
async fn acr_requests_are_honoured_or_refused_with_the_standard_error() {
    let mut p = provider().await;
    let mut browser = p.browser().await;
    for (asked, got) in [
        ("phr", "phr"),
        (
            "https://refeds.org/profile/mfa",
            "https://refeds.org/profile/mfa",
        ),
        ("urn:example:unknown phrh", "phrh"),
    ] {
        let (r, pkce) = request(&mut browser, CLIENT_ID, &[("acr_values", asked)]).await;
        let claims = id_claims(&p, CLIENT_ID, &r, &pkce).await;
        assert_eq!(claims["acr"], got, "asked {asked}");
    }
    // An essential acr keygate does not know: refused at once.
    let essential =
        json!({"id_token": {"acr": {"essential": true, "values": ["urn:example:gold"]}}});
    let (r, _) = request(
        &mut browser,
        CLIENT_ID,
        &[("claims", &essential.to_string())],
    )
    .await;
    let loc = location(&p.app, &r);
    assert_eq!(
        param(&loc, "error").as_deref(),
        Some("unmet_authentication_requirements")
    );
    p.app.stop().await;

    // A key keygate could not attest: an essential phrh asks for a fresh touch, and when
    // that touch still cannot meet it, the client gets unmet_authentication_requirements.
    let mut p = unattested_provider().await;
    let mut browser = p.browser().await;
    let (r, pkce) = request(&mut browser, CLIENT_ID, &[]).await;
    let claims = id_claims(&p, CLIENT_ID, &r, &pkce).await;
    assert_eq!(claims["acr"], "https://refeds.org/profile/mfa");
    let amr: Vec<String> = serde_json::from_value(claims["amr"].clone()).unwrap();
    assert!(!amr.contains(&"hwk".to_string()), "{amr:?}");
    assert!(amr.contains(&"mfa".to_string()), "{amr:?}");

    p.app.clock.advance(5);
    let essential = json!({"id_token": {"acr": {"essential": true, "values": ["phrh"]}}});
    let (detour, _) = request(
        &mut browser,
        CLIENT_ID,
        &[("claims", &essential.to_string()), ("state", "e")],
    )
    .await;
    assert_eq!(
        param(&location(&p.app, &detour), "why").as_deref(),
        Some("assurance")
    );
    let back = continue_after_touch(&mut p, &mut browser, &detour).await;
    let loc = location(&p.app, &back);
    assert!(loc.as_str().starts_with(REDIRECT), "{loc}");
    assert_eq!(
        param(&loc, "error").as_deref(),
        Some("unmet_authentication_requirements")
    );
    assert_eq!(param(&loc, "state").as_deref(), Some("e"));
    let last = audit_events(&p.app).await.pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.reason.as_deref()),
        ("oidc.refused", Some("unmet_authentication_requirements"))
    );
    p.app.stop().await;
}

#[actix_web::test]
async fn a_client_bound_to_a_workspace_signs_in_only_its_members() {
    let mut p = provider().await;
    let mut browser = p.browser().await;

    let (r, _) = request(&mut browser, OTHER_ID, &[("state", "w")]).await;
    let loc = location(&p.app, &r);
    assert!(loc.as_str().starts_with(OTHER_REDIRECT), "{loc}");
    assert_eq!(param(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&loc, "state").as_deref(), Some("w"));
    let last = audit_events(&p.app).await.pop().unwrap();
    assert_eq!(last.action, "oidc.refused");
    assert_eq!(last.reason.as_deref(), Some("access_denied"));
    assert!(last.details_json.contains(OTHER_ID));

    // Once the admin adds them to the workspace, the same client gets a code, and the
    // token names that workspace.
    let page = browser.get("/admin/workspaces/other").await;
    let csrf = csrf_of(&page.body);
    let added = browser
        .post_json(
            "/api/admin/workspaces/other/members",
            Some(&csrf),
            &json!({ "email": "admin@example.com" }),
        )
        .await;
    assert!(added.status < 300, "{}", added.body);
    let (r, pkce) = request(&mut browser, OTHER_ID, &[]).await;
    let claims = id_claims(&p, OTHER_ID, &r, &pkce).await;
    assert_eq!(claims["workspace_id"], "ws-other-7");
    p.app.stop().await;
}

#[actix_web::test]
async fn a_disabled_client_gets_nothing() {
    let mut p = provider().await;
    let tokens = p.tokens().await;
    let mut browser = p.browser().await;
    let page = browser.get("/admin/clients").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(CLIENT_ID));
    let csrf = csrf_of(&page.body);
    let r = browser
        .post_json(
            &format!("/api/admin/clients/{CLIENT_ID}/disable"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);

    let (r, _) = request(&mut browser, CLIENT_ID, &[]).await;
    assert_eq!(r.status, 400, "an error page, no redirect");
    assert!(r.header("location").is_none());
    let r = p
        .refresh(CLIENT_ID, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    let r = p.userinfo(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status, 401, "its grants are revoked");
    let last = audit_events(&p.app).await.pop().unwrap();
    assert_eq!(last.action, "oidc.client_disabled");
    p.app.stop().await;
}
