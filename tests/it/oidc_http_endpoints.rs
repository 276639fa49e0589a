//! Userinfo, introspection (RFC 7662), revocation (RFC 7009), RP-initiated logout, admin
//! clients over the API, and `keygate keys rotate` keeping earlier tokens valid while the
//! JWKS carries both keys.

use std::process::Command;

use openidconnect::Nonce;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::enrolment_http::audit_events;
use crate::support::app::{csrf_of, Reply};
use crate::support::oidc::*;

async fn introspect(p: &Provider, client_id: &str, token: &str) -> Reply {
    p.post("/oauth2/introspect", client_id, &[("token", token)])
        .await
}

#[actix_web::test]
async fn userinfo_answers_by_scope_and_refuses_bad_tokens() {
    let mut p = provider().await;
    let tokens = p.tokens().await;
    let at = tokens["access_token"].as_str().unwrap();
    let r = p.userinfo(at).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let info = r.json();
    assert_eq!(info["sub"], p.user_id.as_str());
    assert_eq!(info["name"], "Ada");
    assert_eq!(info["email"], "admin@example.com");
    assert_eq!(info["email_verified"], true);
    assert_eq!(info["workspace_id"], WORKSPACE_EXTERNAL);
    assert_eq!(info["key_model"], "YubiKey 5 NFC");
    assert_eq!(info["key_fips"], false);
    // POST with the bearer header too.
    let r = p
        .app
        .client()
        .post_with(
            "/oauth2/userinfo",
            &[("Authorization", format!("Bearer {at}"))],
            "application/x-www-form-urlencoded",
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Only `openid`: only the subject (and the client's workspace).
    let mut browser = p.browser().await;
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, "openid").await;
    let narrow = p.exchange(CLIENT_ID, &code, &pkce).await;
    let info = p
        .userinfo(narrow["access_token"].as_str().unwrap())
        .await
        .json();
    let keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["sub", "workspace_id"]);

    // No token, a malformed one, an ID token, a forged one: 401 with a Bearer challenge.
    let mut forged = at.to_string();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let id_token = tokens["id_token"].as_str().unwrap();
    for bad in [
        None,
        Some("not-a-jwt"),
        Some(id_token),
        Some(forged.as_str()),
    ] {
        let headers: Vec<(&str, String)> = bad
            .map(|t| vec![("Authorization", format!("Bearer {t}"))])
            .unwrap_or_default();
        let r = p.app.client().get_with("/oauth2/userinfo", &headers).await;
        assert_eq!(r.status, 401, "{bad:?}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_token");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    p.app.stop().await;
}

#[actix_web::test]
async fn introspection_and_revocation() {
    let mut p = provider().await;
    let tokens = p.tokens().await;
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();

    let r = introspect(&p, CLIENT_ID, at).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let info = r.json();
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], CLIENT_ID);
    assert_eq!(info["sub"], p.user_id.as_str());
    assert_eq!(info["scope"], ALL_SCOPES);
    assert_eq!(info["acr"], "phrh");
    let info = introspect(&p, CLIENT_ID, rt).await.json();
    assert_eq!(
        (info["active"].clone(), info["token_type"].clone()),
        (json!(true), json!("refresh_token"))
    );
    // Another client learns nothing; garbage is inactive; a public client may not ask.
    assert_eq!(
        introspect(&p, OTHER_ID, at).await.json(),
        json!({"active": false})
    );
    assert_eq!(
        introspect(&p, CLIENT_ID, "garbage").await.json(),
        json!({"active": false})
    );
    let r = introspect(&p, PUBLIC_ID, at).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    let r = p.post("/oauth2/introspect", CLIENT_ID, &[]).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_request"))
    );

    // Revoking the access token: inactive at once; the refresh token still works.
    let r = p.post("/oauth2/revoke", CLIENT_ID, &[("token", at)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(introspect(&p, CLIENT_ID, at).await.json()["active"], false);
    assert_eq!(p.userinfo(at).await.status, 401);
    let r = p.refresh(CLIENT_ID, rt).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let next = r.json();

    // Unknown tokens and other clients' tokens: 200, nothing happens.
    let rt2 = next["refresh_token"].as_str().unwrap();
    for (client, token) in [
        (CLIENT_ID, "kgr_unknown"),
        (OTHER_ID, rt2),
        (CLIENT_ID, "x"),
    ] {
        let r = p.post("/oauth2/revoke", client, &[("token", token)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(introspect(&p, CLIENT_ID, rt2).await.json()["active"], true);
    // Revoking the refresh token revokes the grant: its access tokens too.
    let r = p
        .post(
            "/oauth2/revoke",
            CLIENT_ID,
            &[("token", rt2), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(introspect(&p, CLIENT_ID, rt2).await.json()["active"], false);
    assert_eq!(
        p.userinfo(next["access_token"].as_str().unwrap())
            .await
            .status,
        401
    );
    assert_eq!(
        p.refresh(CLIENT_ID, rt2).await.json()["error"],
        "invalid_grant"
    );
    // The revocation is audited, then the revoked token's use.
    let events = audit_events(&p.app).await;
    let actions: Vec<&str> = events
        .iter()
        .rev()
        .take(2)
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, ["oidc.refused", "oidc.revoked"]);
    assert!(events.last().unwrap().details_json.contains("revoked"));
    // Wrong credentials are refused, and audited against the client they named.
    let r = p
        .post_as("/oauth2/revoke", (CLIENT_ID, "nope"), &[("token", rt2)])
        .await;
    assert_eq!(r.status, 401);
    let last = audit_events(&p.app).await.pop().unwrap();
    assert_eq!(last.action, "oidc.client_auth_refused");
    p.app.stop().await;
}

#[actix_web::test]
async fn rp_initiated_logout() {
    let mut p = provider().await;
    // With an id_token_hint for the signed-in member: signed out at once, sent back.
    let mut browser = p.browser().await;
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, "openid").await;
    let tokens = p.exchange(CLIENT_ID, &code, &pkce).await;
    let hint = tokens["id_token"].as_str().unwrap();
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("id_token_hint", hint)
        .append_pair("post_logout_redirect_uri", POST_LOGOUT)
        .append_pair("state", "bye-1");
    let r = browser.get(&format!("/oauth2/logout?{}", q.finish())).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        r.header("location").unwrap(),
        format!("{POST_LOGOUT}?state=bye-1")
    );
    assert_eq!(
        browser.get("/api/me").await.status,
        401,
        "the session ended"
    );
    let last = audit_events(&p.app).await.pop().unwrap();
    assert_eq!(last.action, "oidc.logout");

    // Without a hint: the member confirms (CSRF-checked form), then is sent back.
    let mut browser = p.browser().await;
    let path = format!(
        "/oauth2/logout?client_id={CLIENT_ID}&post_logout_redirect_uri={}",
        urlencode(POST_LOGOUT)
    );
    let page = browser.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("logout-form"));
    assert_eq!(
        browser.get("/api/me").await.status,
        200,
        "not signed out yet"
    );
    let csrf = csrf_of(&page.body);
    let forged = browser
        .post_form(
            "/oauth2/logout",
            &[("csrf", "wrong"), ("client_id", CLIENT_ID)],
        )
        .await;
    assert_eq!(forged.status, 403);
    let last = audit_events(&p.app).await.pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.reason.as_deref()),
        ("csrf.refused", Some("csrf"))
    );
    assert!(last.actor.starts_with("user:"), "{}", last.actor);
    // A `state` whose escapes decode to no UTF-8 is not sent back repaired: an error page,
    // and the session stays.
    let r = browser
        .get(&format!(
            "/oauth2/logout?client_id={CLIENT_ID}&post_logout_redirect_uri={}&state=s%FF",
            urlencode(POST_LOGOUT)
        ))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.header("location").is_none());
    assert!(r.body.contains("not UTF-8"), "{}", r.body);
    assert_eq!(browser.get("/api/me").await.status, 200);
    let r = browser
        .post_form(
            "/oauth2/logout",
            &[
                ("csrf", &csrf),
                ("client_id", CLIENT_ID),
                ("post_logout_redirect_uri", POST_LOGOUT),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location").unwrap(), POST_LOGOUT);
    assert_eq!(browser.get("/api/me").await.status, 401);

    // An unregistered post-logout URI, or a hint that is not ours: an error page, no redirect.
    for path in [
        format!(
            "/oauth2/logout?client_id={CLIENT_ID}&post_logout_redirect_uri={}",
            urlencode("https://evil.example/")
        ),
        format!(
            "/oauth2/logout?post_logout_redirect_uri={}",
            urlencode(POST_LOGOUT)
        ),
        "/oauth2/logout?id_token_hint=eyJhbGciOiJub25lIn0.e30.".to_string(),
    ] {
        let r = p.app.client().get(&path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.header("location").is_none());
    }
    // No session: nothing to end, the signed-out page.
    let r = p.app.client().get("/oauth2/logout").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("signed-out"));
    p.app.stop().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[actix_web::test]
async fn admins_create_clients_over_the_api_and_the_secret_is_shown_once() {
    let mut p = provider().await;
    let mut admin = p.browser().await;
    let page = admin.get("/admin/clients").await;
    let csrf = csrf_of(&page.body);
    let r = admin
        .post_json(
            "/api/admin/clients",
            Some(&csrf),
            &json!({
                "name": "Portal with RSA",
                "redirect_uris": ["https://rsa.example/cb"],
                "scopes": ["openid", "email"],
                "id_token_alg": "RS256",
                "workspace_id": "acme",
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    let client_id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert!(created.get("secret_sha256").is_none());
    let listed = admin.get("/api/admin/clients").await;
    assert!(listed.body.contains(&client_id) && !listed.body.contains(&secret));
    // Bad metadata is a 400 naming the problem.
    let r = admin
        .post_json(
            "/api/admin/clients",
            Some(&csrf),
            &json!({ "name": "x", "redirect_uris": ["http://evil.example/cb"] }),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_client_metadata"))
    );

    // The page's form does the same, showing the secret once.
    let r = admin
        .post_form(
            "/admin/clients",
            &[
                ("csrf", &csrf),
                ("name", "Native app"),
                (
                    "redirect_uris",
                    "com.example.app:/cb\nhttp://127.0.0.1:9/cb",
                ),
                ("scopes", "openid offline_access"),
                ("public", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("new-client-id") && !r.body.contains("new-client-secret"));
    let r = admin
        .post_form(
            "/admin/clients",
            &[
                ("csrf", &csrf),
                ("name", "Web app"),
                ("redirect_uris", "https://web.example/cb"),
            ],
        )
        .await;
    assert!(r.body.contains("new-client-secret"), "{}", r.body);
    let r = admin
        .post_form(
            "/admin/clients",
            &[
                ("csrf", &csrf),
                ("name", "Bad"),
                ("redirect_uris", "ftp://x/cb"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // The new client signs in with RS256 ID tokens that the relying party verifies.
    let pkce = Pkce::new();
    let path = authorize_path(
        &client_id,
        "https://rsa.example/cb",
        "openid email",
        &pkce.challenge,
        &[("nonce", "n-rsa")],
    );
    let r = admin.get(&path).await;
    let code = param(&location(&p.app, &r), "code").unwrap();
    let r = exchange(
        &p,
        (&client_id, &secret),
        &code,
        "https://rsa.example/cb",
        &pkce.verifier,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id_token = r.json()["id_token"].as_str().unwrap().to_string();
    assert_eq!(header_of(&id_token)["alg"], "RS256");
    let verifier = relying_party(&p.app, &client_id, &secret).await;
    let id: RpIdToken = id_token.parse().unwrap();
    let claims = id
        .claims(&verifier, &Nonce::new("n-rsa".into()))
        .expect("verifies");
    assert_eq!(
        claims.additional_claims().workspace_id.as_deref(),
        Some(WORKSPACE_EXTERNAL)
    );
    p.app.stop().await;
}

/// An admin changes a client made over the API (its redirect URIs at once; taking a scope
/// away revokes what it holds) and gives it a new secret (the old one stops working); a
/// client the config file declares is changed there, not here.
#[actix_web::test]
async fn admins_change_a_client_and_rotate_its_secret() {
    let mut p = provider().await;
    let mut admin = p.browser().await;
    let csrf = csrf_of(&admin.get("/admin/clients").await.body);
    let r = admin
        .post_json(
            "/api/admin/clients",
            Some(&csrf),
            &json!({
                "name": "Editable",
                "redirect_uris": ["https://edit.example/cb"],
                "scopes": ["openid", "email"],
                "workspace_id": "acme",
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let client_id = r.json()["client_id"].as_str().unwrap().to_string();
    let secret = r.json()["client_secret"].as_str().unwrap().to_string();
    let api = format!("/api/admin/clients/{client_id}");
    // Tokens issued before any change.
    let (reply, pkce) = code_at(&mut admin, &client_id, "https://edit.example/cb").await;
    let code = param(&location(&p.app, &reply), "code").unwrap();
    let r = exchange(
        &p,
        (&client_id, &secret),
        &code,
        "https://edit.example/cb",
        &pkce.verifier,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.json()["access_token"].as_str().unwrap().to_string();

    // A new name and redirect URI: the old URI is refused at once, the token stays good.
    let change = json!({
        "name": "Edited",
        "redirect_uris": ["https://edit.example/new-cb"],
        "scopes": ["openid", "email"],
        "workspace_id": "acme",
    });
    assert_eq!(admin.put_json(&api, None, &change).await.status, 403);
    let r = admin.put_json(&api, Some(&csrf), &change).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["name"].clone(), r.json()["redirect_uris"].clone()),
        (json!("Edited"), json!(["https://edit.example/new-cb"]))
    );
    let (reply, _) = code_at(&mut admin, &client_id, "https://edit.example/cb").await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let (reply, _) = code_at(&mut admin, &client_id, "https://edit.example/new-cb").await;
    assert!(param(&location(&p.app, &reply), "code").is_some());
    let info = introspect_as(&p, &client_id, &secret, &access).await.json();
    assert_eq!(info["active"], true, "{info}");

    // Taking a scope away revokes the grants the client holds.
    let narrower = json!({
        "name": "Edited",
        "redirect_uris": ["https://edit.example/new-cb"],
        "scopes": ["openid"],
        "workspace_id": "acme",
    });
    let r = admin.put_json(&api, Some(&csrf), &narrower).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let info = introspect_as(&p, &client_id, &secret, &access).await.json();
    assert_eq!(info["active"], false, "{info}");
    let updates: Vec<(String, Value)> = audit_events(&p.app)
        .await
        .into_iter()
        .filter(|e| e.action == "oidc.client_updated")
        .map(|e| (e.subject, serde_json::from_str(&e.details_json).unwrap()))
        .collect();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].0, format!("oidc_client:{client_id}"));
    assert_eq!(updates[0].1["changed"], json!(["name", "redirect_uris"]));
    assert_eq!(updates[0].1["grants_revoked"], 0);
    assert_eq!(updates[1].1["changed"], json!(["scopes"]));
    assert!(updates[1].1["grants_revoked"].as_u64().unwrap() >= 1);

    // Bad changes are refused and change nothing.
    let before = admin.get("/api/admin/clients").await.json();
    for (body, status, error) in [
        (
            json!({ "name": "x", "redirect_uris": ["http://evil.example/cb"] }),
            400,
            "invalid_client_metadata",
        ),
        (
            json!({ "name": "x", "redirect_uris": ["https://edit.example/cb"], "workspace_id": "nope" }),
            400,
            "unknown_workspace",
        ),
        (
            json!({ "name": "x", "redirect_uris": ["https://edit.example/cb"], "jwks": { "keys": [] } }),
            400,
            "invalid_client_metadata",
        ),
        (
            json!({ "name": "x", "redirect_uris": ["https://edit.example/cb"], "public": true }),
            400,
            "bad_request",
        ),
    ] {
        let r = admin.put_json(&api, Some(&csrf), &body).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        if error != "bad_request" {
            assert_eq!(r.json()["error"], error, "{body}");
        }
    }
    let r = admin
        .put_json("/api/admin/clients/kg-unknown", Some(&csrf), &narrower)
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = admin
        .put_json(
            &format!("/api/admin/clients/{CLIENT_ID}"),
            Some(&csrf),
            &narrower,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (409, json!("declared_in_config"))
    );
    assert_eq!(admin.get("/api/admin/clients").await.json(), before);

    // A new secret: shown once, the old one refused from now on.
    let rotate = format!("{api}/secret");
    assert_eq!(admin.post_json(&rotate, None, &json!({})).await.status, 403);
    let r = admin.post_json(&rotate, Some(&csrf), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new_secret = r.json()["client_secret"].as_str().unwrap().to_string();
    assert!(new_secret.starts_with("kgs_") && new_secret != secret);
    assert_eq!(
        introspect_as(&p, &client_id, &secret, &access).await.status,
        401
    );
    let r = introspect_as(&p, &client_id, &new_secret, &access).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = admin.get("/api/admin/clients").await;
    assert!(!listed.body.contains(&new_secret));
    assert!(audit_events(&p.app)
        .await
        .iter()
        .any(|e| e.action == "oidc.client_secret_rotated"
            && e.subject == format!("oidc_client:{client_id}")
            && !e.details_json.contains(&new_secret)));
    let r = admin
        .post_json(
            &format!("/api/admin/clients/{CLIENT_ID}/secret"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let public = admin
        .post_json(
            "/api/admin/clients",
            Some(&csrf),
            &json!({ "name": "No secret", "redirect_uris": ["https://pub.example/cb"], "public": true }),
        )
        .await
        .json();
    let public_id = public["client_id"].as_str().unwrap();
    let r = admin
        .post_json(
            &format!("/api/admin/clients/{public_id}/secret"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_request"))
    );
    p.app.stop().await;
}

/// The same on the admin pages: a client's page shows its settings in a form that saves
/// them, and a button that issues a new secret shown once.
#[actix_web::test]
async fn admins_change_a_client_on_its_page() {
    let mut p = provider().await;
    let mut admin = p.browser().await;
    let csrf = csrf_of(&admin.get("/admin/clients").await.body);
    let created = admin
        .post_json(
            "/api/admin/clients",
            Some(&csrf),
            &json!({ "name": "Paged", "redirect_uris": ["https://paged.example/cb"] }),
        )
        .await
        .json();
    let client_id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    let path = format!("/admin/clients/{client_id}");
    assert!(admin
        .get("/admin/clients")
        .await
        .body
        .contains(&format!("href=\"{path}\"")));
    let page = admin.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("id=\"client-edit\"") && page.body.contains("https://paged.example/cb")
    );
    assert!(!page.body.contains(&secret));

    let fields = |redirect: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "Paged again".to_string()),
            ("redirect_uris", redirect.to_string()),
            ("scopes", "openid profile email".to_string()),
        ]
    };
    let saved_fields = fields("https://paged.example/new-cb");
    let saved: Vec<(&str, &str)> = saved_fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = admin.post_form(&path, &saved).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("id=\"client-notice\""), "{}", r.body);
    let listed = admin.get("/api/admin/clients").await.json();
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == client_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (row["name"].clone(), row["redirect_uris"].clone()),
        (
            json!("Paged again"),
            json!(["https://paged.example/new-cb"])
        )
    );
    let bad_fields = fields("ftp://paged.example/cb");
    let bad: Vec<(&str, &str)> = bad_fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = admin.post_form(&path, &bad).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("id=\"client-problem\""), "{}", r.body);
    let mut forged = saved.clone();
    forged[0] = ("csrf", "forged");
    assert_eq!(admin.post_form(&path, &forged).await.status, 403);

    let r = admin
        .post_form(&format!("{path}/secret"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let shown = r
        .body
        .split("id=\"new-client-secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new secret is shown")
        .to_string();
    assert!(shown.starts_with("kgs_"));
    assert_eq!(
        introspect_as(&p, &client_id, &secret, "x").await.status,
        401
    );
    assert_eq!(introspect_as(&p, &client_id, &shown, "x").await.status, 200);
    assert!(!admin.get(&path).await.body.contains(&shown));

    // A keyed client's page carries its JWKS; new keys sent there replace the old ones.
    use crate::oidc_private_key_jwt::client_key;
    use keygate::oidc::keys::Algorithm;
    let (old_key, new_key) = (client_key(Algorithm::Es256), client_key(Algorithm::Es256));
    let keyed = admin
        .post_json(
            "/api/admin/clients",
            Some(&csrf),
            &json!({
                "name": "Keyed",
                "redirect_uris": ["https://keyed.example/cb"],
                "jwks": { "keys": [old_key.public_jwk()] },
            }),
        )
        .await
        .json();
    let keyed_path = format!("/admin/clients/{}", keyed["client_id"].as_str().unwrap());
    let page = admin.get(&keyed_path).await;
    assert!(page.body.contains("name=\"jwks\"") && !page.body.contains("client-secret"));
    let new_jwks = json!({ "keys": [new_key.public_jwk()] }).to_string();
    let r = admin
        .post_form(
            &keyed_path,
            &[
                ("csrf", &csrf),
                ("name", "Keyed"),
                ("redirect_uris", "https://keyed.example/cb"),
                ("jwks", &new_jwks),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = admin.get("/api/admin/clients").await.json();
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == keyed["client_id"])
        .unwrap()
        .clone();
    assert_eq!(row["jwks"].to_string(), new_jwks);

    // A config client's page shows no form; an unknown client is a 404 page.
    let page = admin.get(&format!("/admin/clients/{CLIENT_ID}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("declared in the config file") && !page.body.contains("client-edit")
    );
    assert_eq!(admin.get("/admin/clients/kg-nothing").await.status, 404);
    p.app.stop().await;
}

/// The authorization-code exchange for a confidential client (`client_secret_basic`).
async fn exchange(
    p: &Provider,
    client: (&str, &str),
    code: &str,
    redirect: &str,
    verifier: &str,
) -> Reply {
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", verifier),
    ];
    p.post_as("/oauth2/token", client, &fields).await
}

/// `client_id` introspects `token`, authenticating with `secret`.
async fn introspect_as(p: &Provider, client_id: &str, secret: &str, token: &str) -> Reply {
    p.post_as(
        "/oauth2/introspect",
        (client_id, secret),
        &[("token", token)],
    )
    .await
}

/// Asks for a code for `client_id` at `redirect` (scopes `openid email`).
/// A code issued before a change that narrows its client (a scope or the redirect URI
/// taken away, an `acr` requirement added, another workspace) is refused at the exchange,
/// as the change revokes the grants issued before it; a harmless change keeps it good.
#[actix_web::test]
async fn codes_issued_before_a_narrowing_client_change_are_refused() {
    let mut p = provider().await;
    let mut admin = p.browser().await;
    let csrf = csrf_of(&admin.get("/admin/clients").await.body);
    let cb = "https://narrow.example/cb";
    let registration = |scopes: &[&str], uris: &[&str], acr: &[&str], workspace: &str| {
        json!({
            "name": "Narrowed",
            "redirect_uris": uris,
            "scopes": scopes,
            "required_acr": acr,
            "workspace_id": workspace,
        })
    };
    let wide = registration(
        &["openid", "email"],
        &[cb, "https://narrow.example/2"],
        &[],
        "acme",
    );
    let r = admin
        .post_json("/api/admin/clients", Some(&csrf), &wide)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let client_id = r.json()["client_id"].as_str().unwrap().to_string();
    let secret = r.json()["client_secret"].as_str().unwrap().to_string();
    let api = format!("/api/admin/clients/{client_id}");

    let changes = [
        (
            "a harmless change",
            json!({ "name": "Renamed", "redirect_uris": [cb, "https://narrow.example/2"], "scopes": ["openid", "email"], "workspace_id": "acme" }),
            200,
        ),
        (
            "a scope taken away",
            registration(&["openid"], &[cb], &[], "acme"),
            400,
        ),
        (
            "the redirect URI taken away",
            registration(
                &["openid", "email"],
                &["https://narrow.example/2"],
                &[],
                "acme",
            ),
            400,
        ),
        (
            "an acr requirement added",
            registration(&["openid", "email"], &[cb], &["phrh"], "acme"),
            400,
        ),
        (
            "another workspace",
            registration(&["openid", "email"], &[cb], &[], "other"),
            400,
        ),
    ];
    for (what, change, status) in changes {
        // Each case starts from the wide registration, with a code issued under it.
        let r = admin.put_json(&api, Some(&csrf), &wide).await;
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        let (reply, pkce) = code_at(&mut admin, &client_id, cb).await;
        let code = param(&location(&p.app, &reply), "code")
            .unwrap_or_else(|| panic!("{what}: no code: {}", reply.body));
        let r = admin.put_json(&api, Some(&csrf), &change).await;
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        let r = exchange(&p, (&client_id, &secret), &code, cb, &pkce.verifier).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        if status == 400 {
            assert_eq!(r.json()["error"], "invalid_grant", "{what}");
        }
    }
    let refused = audit_events(&p.app)
        .await
        .into_iter()
        .filter(|e| e.action == "oidc.refused" && e.details_json.contains("registration changed"))
        .count();
    assert_eq!(refused, 4);
    p.app.stop().await;
}

async fn code_at(
    browser: &mut crate::support::app::Client,
    client_id: &str,
    redirect: &str,
) -> (Reply, Pkce) {
    let pkce = Pkce::new();
    let path = authorize_path(client_id, redirect, "openid email", &pkce.challenge, &[]);
    (browser.get(&path).await, pkce)
}

#[actix_web::test]
async fn keys_rotate_keeps_earlier_tokens_valid_during_the_overlap() {
    let mut p = provider().await;
    let before = p.tokens().await;
    let old_kid = header_of(before["id_token"].as_str().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_string();

    // `keygate keys rotate` on the same database, as an operator would run it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keygate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_url = \"{}\"\n\n[database]\nurl = \"{}\"\n",
            p.app.base,
            p.app.state.config.database.url.expose_secret()
        ),
    )
    .unwrap();
    let rotate = |overlap: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
        for (k, _) in std::env::vars() {
            if k.starts_with("KEYGATE") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["keys", "rotate", "--overlap-secs", overlap, "--config"])
            .arg(&config)
            .output()
            .expect("run keygate")
    };
    let short = rotate("30");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least"));
    let done = rotate("900");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let last = audit_events(&p.app).await.pop().unwrap();
    assert_eq!(last.action, "keys.rotated");

    // The running server notices within oidc.key_reload_secs.
    p.app.clock.advance(31);
    let jwks: Value = p.app.client().get("/oauth2/jwks").await.json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert!(kids.contains(&old_kid.as_str()));

    // New tokens are signed with the new key; the earlier ones still verify.
    let after = p.tokens().await;
    let new_kid = header_of(after["id_token"].as_str().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_kid, old_kid);
    assert!(kids.contains(&new_kid.as_str()));
    assert_eq!(
        p.userinfo(before["access_token"].as_str().unwrap())
            .await
            .status,
        200
    );
    assert_eq!(
        p.userinfo(after["access_token"].as_str().unwrap())
            .await
            .status,
        200
    );
    let verifier = relying_party(&p.app, CLIENT_ID, &p.secret).await;
    for t in [&before, &after] {
        let id: RpIdToken = t["id_token"].as_str().unwrap().parse().unwrap();
        id.claims(&verifier, &Nonce::new("n-1".into()))
            .expect("both ID tokens verify against the published JWKS");
    }
    p.app.stop().await;
}

/// Replicas: keys rotated by one replica are used by another as soon as it meets a token
/// signed with a key it has not loaded yet (no waiting for `oidc.key_reload_secs`).
#[actix_web::test]
async fn a_replica_loads_keys_another_replica_rotated_on_an_unknown_kid() {
    if std::env::var("KEYGATE_TEST_REDIS_URL").is_err() {
        eprintln!(
            "note: replicas need a shared store; this test runs in the PostgreSQL + Redis pass"
        );
        return;
    }
    let mut p = provider().await;
    let b = crate::support::app::TestApp::builder()
        .with_toml(&p.toml)
        .replica_of(&p.app)
        .start()
        .await;
    keygate::service::oidc::keys::rotate(&b.state, &keygate::service::Actor::cli(), None)
        .await
        .expect("rotate on replica b");

    // The browser signs in and authorizes on a; the code is exchanged on b.
    let mut browser = p.browser().await;
    let (code, pkce) = p.code(&mut browser, CLIENT_ID, "openid").await;
    let r = b
        .client()
        .post_with(
            "/oauth2/token",
            &[("Authorization", p.basic(CLIENT_ID, &p.secret))],
            "application/x-www-form-urlencoded",
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pkce.verifier),
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r.json()["access_token"].as_str().unwrap().to_string();
    let kid = header_of(&at)["kid"].as_str().unwrap().to_string();
    let jwks_a: Value = p.app.client().get("/oauth2/jwks").await.json();
    assert!(
        !jwks_a.to_string().contains(&kid),
        "replica a has not reloaded yet"
    );
    // Replica a meets the new kid at userinfo, reloads, and accepts the token.
    assert_eq!(p.userinfo(&at).await.status, 200);
    let jwks_a: Value = p.app.client().get("/oauth2/jwks").await.json();
    assert!(jwks_a.to_string().contains(&kid));
    b.stop().await;
    p.app.stop().await;
}
