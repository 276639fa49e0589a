//! The OpenID Connect provider over HTTP, end to end with the software authenticator: the
//! code flow with PKCE, the ID token checked by the `openidconnect` crate as an
//! independent relying party against our discovery document and JWKS, refresh rotation
//! and reuse detection (codes and refresh tokens). Endpoint refusals are in
//! `oidc_http_errors`, policy (prompt, max_age, acr, workspaces) in `oidc_http_policy`,
//! userinfo/introspection/revocation/logout/rotation in `oidc_http_endpoints`.

use base64::Engine;
use openidconnect::Nonce;

use crate::enrolment_http::audit_events;
use crate::support::meddled::{MeddledStore, Meddling};
use crate::support::oidc::*;

#[actix_web::test]
async fn code_flow_with_pkce_verified_by_an_independent_relying_party() {
    let mut p = provider().await;
    let app_base = p.app.base.clone();

    // No session: the request waits while the browser signs in, then comes back.
    let mut browser = p.app.client();
    let pkce = Pkce::new();
    let path = authorize_path(
        CLIENT_ID,
        REDIRECT,
        ALL_SCOPES,
        &pkce.challenge,
        &[("state", "af0ifjsldkj"), ("nonce", "n-0S6_WzA2Mj")],
    );
    let detour = browser.get(&path).await;
    let back = continue_after_touch(&mut p, &mut browser, &detour).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let loc = location(&p.app, &back);
    assert!(loc.as_str().starts_with(REDIRECT), "{loc}");
    assert_eq!(param(&loc, "state").as_deref(), Some("af0ifjsldkj"));
    assert_eq!(param(&loc, "iss").as_deref(), Some(app_base.as_str()));
    let code = param(&loc, "code").unwrap();
    assert!(code.starts_with("kgc_"));
    // The pending request was single-use.
    let id = param(&location(&p.app, &detour), "continue").unwrap();
    let again = browser
        .get(&format!("/oauth2/authorize/continue?id={id}"))
        .await;
    assert_eq!(again.status, 400);
    assert!(again.header("location").is_none());

    let r = p
        .post(
            "/oauth2/token",
            CLIENT_ID,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let tokens = r.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 600);
    assert_eq!(tokens["scope"], ALL_SCOPES);
    assert!(tokens["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("kgr_"));

    // The independent relying party verifies the ID token against discovery + JWKS.
    let verifier = relying_party(&p.app, CLIENT_ID, &p.secret).await;
    let id: RpIdToken = tokens["id_token"].as_str().unwrap().parse().unwrap();
    let claims = id
        .claims(&verifier, &Nonce::new("n-0S6_WzA2Mj".into()))
        .expect("the relying party accepts the ID token");
    assert_eq!(claims.subject().as_str(), p.user_id);
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "phrh");
    let amr: Vec<&str> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str())
        .collect();
    for m in ["hwk", "pop", "mfa"] {
        assert!(amr.contains(&m), "{amr:?}");
    }
    assert!(amr.contains(&"pin") || amr.contains(&"user"), "{amr:?}");
    let auth_time = claims.auth_time().expect("auth_time").timestamp();
    let now = p.app.state.now();
    assert!(
        auth_time <= now && now - auth_time < 120,
        "{auth_time} vs {now}"
    );
    assert_eq!(claims.email().unwrap().as_str(), "admin@example.com");
    let extra = claims.additional_claims();
    assert_eq!(extra.workspace_id.as_deref(), Some(WORKSPACE_EXTERNAL));
    assert_eq!(extra.key_model.as_deref(), Some("YubiKey 5 NFC"));
    assert!(extra.key_aaguid.is_some() && extra.sid.is_some());
    // The wrong nonce, or another client, is refused by the relying party.
    assert!(id.claims(&verifier, &Nonce::new("other".into())).is_err());
    let other = relying_party(&p.app, OTHER_ID, &p.secret).await;
    assert!(id
        .claims(&other, &Nonce::new("n-0S6_WzA2Mj".into()))
        .is_err());

    // Audited, without any token value.
    let events = audit_events(&p.app).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"oidc.code_issued"), "{actions:?}");
    assert!(actions.contains(&"oidc.token_issued"), "{actions:?}");
    let everything = serde_json::to_string(
        &events
            .iter()
            .map(|e| e.details_json.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for secret in [
        code.as_str(),
        tokens["access_token"].as_str().unwrap(),
        tokens["refresh_token"].as_str().unwrap(),
        tokens["id_token"].as_str().unwrap(),
    ] {
        assert!(
            !everything.contains(secret),
            "a token value reached the audit log"
        );
    }
    p.app.stop().await;
}

/// A refresh the shared store fails (the new access token's entry cannot be stored) spends
/// nothing: the client's retry with the same refresh token is served, not taken for a
/// reuse that would revoke the family.
#[actix_web::test]
async fn a_refresh_the_shared_store_fails_can_be_retried() {
    let mut p = provider().await;
    let first = p.tokens().await;
    let rt1 = first["refresh_token"].as_str().unwrap();
    let mut failing = p.app.state.clone();
    failing.ephemeral = std::sync::Arc::new(MeddledStore {
        inner: p.app.state.ephemeral.clone(),
        meddling: Meddling::FailSets,
    });
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{}", p.secret));
    let body = form(&[("grant_type", "refresh_token"), ("refresh_token", rt1)]);
    let failed = keygate::service::oidc::token::token(
        &failing,
        &body,
        Some(&format!("Basic {basic}")),
        None,
    )
    .await;
    assert!(failed.is_err(), "the shared store failed the refresh");

    let r = p.refresh(CLIENT_ID, rt1).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = r.json();
    let at = second["access_token"].as_str().unwrap();
    assert_eq!(p.userinfo(at).await.status, 200);
    let events = audit_events(&p.app).await;
    assert!(
        events.iter().all(|e| e.action != "oidc.reuse_detected"),
        "{events:?}"
    );
    p.app.stop().await;
}

#[actix_web::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_family() {
    let mut p = provider().await;
    let first = p.tokens().await;
    let rt1 = first["refresh_token"].as_str().unwrap();

    let r = p.refresh(CLIENT_ID, rt1).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = r.json();
    let rt2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2, "the refresh token rotates");
    let verifier = relying_party(&p.app, CLIENT_ID, &p.secret).await;
    let id: RpIdToken = second["id_token"].as_str().unwrap().parse().unwrap();
    let claims = id
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .expect("a refreshed ID token verifies");
    assert!(claims.nonce().is_none(), "no nonce on refresh");
    assert_eq!(
        p.userinfo(second["access_token"].as_str().unwrap())
            .await
            .status,
        200
    );

    // Another client cannot use it, and that does not spend it; the attempt is audited.
    let r = p.refresh(PUBLIC_ID, rt2).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let misused = audit_events(&p.app)
        .await
        .into_iter()
        .rev()
        .find(|e| e.action == "oidc.refused")
        .expect("the misuse audited");
    let details: serde_json::Value = serde_json::from_str(&misused.details_json).unwrap();
    assert_eq!(details["presented_by"], PUBLIC_ID, "{details}");
    assert_eq!(details["client_id"], CLIENT_ID, "{details}");

    // The spent token again: the whole family is revoked.
    let r = p.refresh(CLIENT_ID, rt1).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
    let reuse = audit_events(&p.app)
        .await
        .into_iter()
        .rev()
        .find(|e| e.action == "oidc.reuse_detected")
        .expect("reuse audited");
    assert_eq!(reuse.reason.as_deref(), Some("refresh_token_reuse"));
    let r = p.refresh(CLIENT_ID, rt2).await;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "the newest token is revoked too"
    );
    for at in [&first["access_token"], &second["access_token"]] {
        let r = p.userinfo(at.as_str().unwrap()).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    p.app.stop().await;
}

#[actix_web::test]
async fn a_reused_code_revokes_the_tokens_it_gave() {
    let mut p = provider().await;
    let mut browser = p.browser().await;
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, ALL_SCOPES).await;
    let tokens = p.exchange(CLIENT_ID, &code, &pkce).await;
    let at = tokens["access_token"].as_str().unwrap();
    assert_eq!(p.userinfo(at).await.status, 200);

    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let r = p.post("/oauth2/token", CLIENT_ID, &fields).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        p.userinfo(at).await.status,
        401,
        "the access token is revoked"
    );
    let r = p
        .refresh(CLIENT_ID, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "the refresh token is revoked"
    );
    let events = audit_events(&p.app).await;
    let reuse = events
        .iter()
        .find(|e| e.action == "oidc.reuse_detected")
        .expect("audited");
    assert_eq!(reuse.reason.as_deref(), Some("code_reuse"));
    p.app.stop().await;
}

#[actix_web::test]
async fn a_code_sent_several_times_at_once_is_issued_at_most_once_and_every_replay_is_seen() {
    let mut p = provider().await;
    let mut browser = p.browser().await;
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, ALL_SCOPES).await;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let (a, b, c, d) = tokio::join!(
        p.post("/oauth2/token", CLIENT_ID, &fields),
        p.post("/oauth2/token", CLIENT_ID, &fields),
        p.post("/oauth2/token", CLIENT_ID, &fields),
        p.post("/oauth2/token", CLIENT_ID, &fields),
    );
    let replies = [a, b, c, d];
    let issued: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert!(issued.len() <= 1, "issued {} times", issued.len());
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["error"], "invalid_grant");
    }
    // The code and its used marker change places in one step: each of the three that did
    // not take the code found the marker, so each is a detected reuse, and whatever was
    // issued is revoked.
    let events = audit_events(&p.app).await;
    let reuses = events
        .iter()
        .filter(|e| e.action == "oidc.reuse_detected")
        .count();
    assert_eq!(reuses, 3);
    if let Some(r) = issued.first() {
        let at = r.json()["access_token"].as_str().unwrap().to_string();
        assert_eq!(p.userinfo(&at).await.status, 401, "revoked");
    }
    p.app.stop().await;
}
