//! Vendors pulling the compliance attestation over the API (SPEC C7): the client
//! credentials grant for confidential clients registered with `keygate:compliance`, and
//! `GET /api/compliance/report` with the bearer token: signed report verifiable with the
//! published JWKS, the client's workspace only, per-client rate limit, audited.

use serde_json::Value;

use crate::enrolment_http::audit_events;
use crate::support::app::Reply;
use crate::support::oidc::*;

/// Confidential, bound to the admin's workspace.
const ACME_PULL: &str = "compliance-acme";
/// Confidential, not bound to a workspace (the organisation).
const ORG_PULL: &str = "compliance-org";
/// Public: may never use client credentials.
const PUBLIC_PULL: &str = "compliance-cli";

const CLIENTS: &str = r#"
[[oidc.clients]]
client_id = "compliance-acme"
name = "Acme compliance pull"
redirect_uris = ["https://acme-vendor.example/cb"]
scopes = ["keygate:compliance"]
workspace = "acme"
secret_file = "SECRET_FILE"

[[oidc.clients]]
client_id = "compliance-org"
name = "Organisation compliance pull"
redirect_uris = ["https://org-vendor.example/cb"]
scopes = ["openid", "keygate:compliance"]
secret_file = "SECRET_FILE"

[[oidc.clients]]
client_id = "compliance-cli"
name = "Public compliance tool"
redirect_uris = ["http://127.0.0.1:7778/callback"]
scopes = ["keygate:compliance"]
public = true
"#;

async fn vendor_provider() -> Provider {
    provider_with_config(CLIENTS).await
}

/// A client credentials token request with Basic authentication.
async fn client_token(p: &Provider, client_id: &str, secret: &str, scope: Option<&str>) -> Reply {
    let mut fields = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        fields.push(("scope", s));
    }
    p.post_as("/oauth2/token", (client_id, secret), &fields)
        .await
}

async fn access_token(p: &Provider, client_id: &str) -> String {
    let r = client_token(p, client_id, &p.secret, Some("keygate:compliance")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

async fn pull(p: &Provider, token: Option<&str>, query: &str) -> Reply {
    let headers: Vec<(&str, String)> = token
        .map(|t| vec![("Authorization", format!("Bearer {t}"))])
        .unwrap_or_default();
    p.app
        .client()
        .get_with(&format!("/api/compliance/report?{query}"), &headers)
        .await
}

async fn pull_evidence(p: &Provider, token: &str, query: &str) -> Reply {
    p.app
        .client()
        .get_with(
            &format!("/api/compliance/evidence?{query}"),
            &[("Authorization", format!("Bearer {token}"))],
        )
        .await
}

fn assert_bearer_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.json()["error"], code, "{}", r.body);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(&format!("error=\"{code}\"")),
        "{challenge}"
    );
}

#[actix_web::test]
async fn compliance_api_client_credentials_pull_signed_report() {
    let p = vendor_provider().await;

    let discovery = p
        .app
        .client()
        .get("/.well-known/openid-configuration")
        .await
        .json();
    let has = |field: &str, v: &str| {
        discovery[field]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_str() == Some(v))
    };
    assert!(has("scopes_supported", "keygate:compliance"), "{discovery}");
    assert!(
        has("grant_types_supported", "client_credentials"),
        "{discovery}"
    );

    // The token: short-lived, for the client itself, no refresh token, no ID token.
    let r = client_token(&p, ACME_PULL, &p.secret, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "keygate:compliance");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((1..=300).contains(&expires_in), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body.get("id_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    let claims = claims_of(&token);
    assert_eq!(claims["sub"], ACME_PULL);
    assert_eq!(claims["client_id"], ACME_PULL);
    assert_eq!(claims["scope"], "keygate:compliance");
    assert_eq!(header_of(&token)["typ"], "at+jwt");

    // client_secret_post works too.
    let r = p
        .app
        .client()
        .post_with(
            "/oauth2/token",
            &[],
            "application/x-www-form-urlencoded",
            form(&[
                ("grant_type", "client_credentials"),
                ("client_id", ORG_PULL),
                ("client_secret", &p.secret),
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The signed report verifies against the published JWKS.
    let r = pull(&p, Some(&token), "format=jws").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/jose")
    );
    let jwks = p.app.client().get("/oauth2/jwks").await;
    assert_eq!(jwks.status, 200);
    let verified =
        keygate::compliance::verify_jws(&r.body, jwks.body.as_bytes()).expect("the JWS verifies");
    let report: Value = serde_json::from_slice(&verified.payload).expect("report JSON");
    assert_eq!(report["scope"]["kind"], "workspace", "{report}");
    assert_eq!(report["scope"]["workspaces"][0]["id"], "acme", "{report}");
    assert_eq!(report["members"].as_array().unwrap().len(), 1, "{report}");
    let report_id = report["report_id"].as_str().unwrap().to_string();

    // The evidence bundle of that report, for this client only, and only reports it pulled.
    let r = pull_evidence(&p, &token, &format!("report={report_id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let bundle = r.json();
    assert!(bundle.is_object(), "{bundle}");
    let org = access_token(&p, ORG_PULL).await;
    let r = pull_evidence(&p, &org, &format!("report={report_id}")).await;
    assert_eq!(r.status, 404, "{}", r.body);
    for bad in ["report=unknown", "report=..%2F", "x=1", ""] {
        let r = pull_evidence(&p, &token, bad).await;
        assert!([400, 404].contains(&r.status), "{bad}: {}", r.body);
    }

    // JSON, and the workspace named by its external ID.
    let r = pull(&p, Some(&token), "format=json&workspace=ws-acme-42").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/json"));
    assert_eq!(r.json()["scope"]["workspaces"][0]["id"], "acme");

    // Audited: the token issued and each export, with the client as the actor; never a
    // token value.
    let events = audit_events(&p.app).await;
    let issued: Vec<_> = events
        .iter()
        .filter(|e| {
            e.action == "oidc.token_issued" && e.actor == format!("oidc_client:{ACME_PULL}")
        })
        .collect();
    assert_eq!(issued.len(), 1);
    let d: Value = serde_json::from_str(&issued[0].details_json).unwrap();
    assert_eq!(d["grant_type"], "client_credentials");
    assert_eq!(d["client_id"], ACME_PULL);
    let exports: Vec<_> = events
        .iter()
        .filter(|e| e.action == "compliance.exported")
        .collect();
    assert_eq!(exports.len(), 3);
    assert!(exports
        .iter()
        .all(|e| e.actor == format!("oidc_client:{ACME_PULL}")));
    assert_eq!(exports[0].subject, "workspace:acme");
    assert_eq!(exports[1].subject, format!("report:{report_id}"));
    assert_eq!(exports[2].subject, "workspace:acme");
    let first: Value = serde_json::from_str(&exports[0].details_json).unwrap();
    assert_eq!(first["format"], "jws");
    assert_eq!(first["report_id"], report_id.as_str());
    for e in &events {
        assert!(!e.details_json.contains(&token), "{}", e.action);
    }
}

#[actix_web::test]
async fn compliance_api_refuses_bad_clients_tokens_and_workspaces() {
    let mut p = vendor_provider().await;

    // Token endpoint: public client, wrong secret, client without the scope, scope not
    // allowed for the client.
    let r = p
        .app
        .client()
        .post_with(
            "/oauth2/token",
            &[],
            "application/x-www-form-urlencoded",
            form(&[
                ("grant_type", "client_credentials"),
                ("client_id", PUBLIC_PULL),
                ("scope", "keygate:compliance"),
            ]),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "unauthorized_client");
    let r = client_token(&p, ACME_PULL, "wrong-secret", None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_client");
    let r = client_token(&p, CLIENT_ID, &p.secret, Some("keygate:compliance")).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "unauthorized_client");
    for scope in ["openid", "keygate:compliance openid", "profile"] {
        let r = client_token(&p, ORG_PULL, &p.secret, Some(scope)).await;
        assert_eq!(r.status, 400, "{scope}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_scope", "{scope}");
    }

    // A user may never be asked for the client-only scope.
    let mut browser = p.browser().await;
    let pkce = Pkce::new();
    let r = browser
        .get(&authorize_path(
            ORG_PULL,
            "https://org-vendor.example/cb",
            "openid keygate:compliance",
            &pkce.challenge,
            &[("state", "st-1")],
        ))
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let loc = location(&p.app, &r);
    assert_eq!(
        param(&loc, "error").as_deref(),
        Some("invalid_scope"),
        "{loc}"
    );

    // Resource: no token, garbage, a user's access token (no keygate:compliance).
    assert_bearer_error(&pull(&p, None, "format=jws").await, 401, "invalid_token");
    assert_bearer_error(
        &pull(&p, Some("not.a.token"), "format=jws").await,
        401,
        "invalid_token",
    );
    let user = p.tokens().await;
    let user_at = user["access_token"].as_str().unwrap();
    assert_bearer_error(
        &pull(&p, Some(user_at), "format=jws").await,
        403,
        "insufficient_scope",
    );

    // A client token is not a user's: userinfo refuses it.
    let token = access_token(&p, ACME_PULL).await;
    let r = p.userinfo(&token).await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Bound to acme: another workspace is forbidden, by ID or external ID.
    for other in ["other", "ws-other-7", "nope"] {
        let r = pull(&p, Some(&token), &format!("format=jws&workspace={other}")).await;
        assert_eq!(r.status, 403, "{other}: {}", r.body);
    }
    // Formats other than jws and json, and unknown parameters.
    let r = pull(&p, Some(&token), "format=csv").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = pull(&p, Some(&token), "format=jws&x=1").await;
    assert_eq!(r.status, 400, "{}", r.body);

    // An organisation-wide client may read any workspace, or the organisation.
    let org = access_token(&p, ORG_PULL).await;
    let r = pull(&p, Some(&org), "format=json&workspace=other").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"]["workspaces"][0]["id"], "other");
    let r = pull(&p, Some(&org), "format=json").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"]["kind"], "organisation");

    // Nothing was exported but those two; the other-workspace attempts are audited refused.
    let events = audit_events(&p.app).await;
    let exports: Vec<_> = events
        .iter()
        .filter(|e| e.action == "compliance.exported")
        .collect();
    let ok = exports
        .iter()
        .filter(|e| e.outcome() == Some(keygate::audit::Outcome::Success))
        .count();
    assert_eq!(ok, 2);
    let refused: Vec<_> = exports
        .iter()
        .filter(|e| e.outcome() == Some(keygate::audit::Outcome::Refused))
        .collect();
    assert_eq!(refused.len(), 3);
    assert!(refused
        .iter()
        .all(|e| e.actor == format!("oidc_client:{ACME_PULL}")
            && e.reason.as_deref() == Some("other_workspace")));

    // The client may introspect and revoke its own token; then it is refused.
    let r = p
        .post("/oauth2/introspect", ACME_PULL, &[("token", &token)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["active"], true, "{}", r.body);
    assert_eq!(r.json()["client_id"], ACME_PULL);
    // Active, but it names no user: userinfo says exactly that (RFC 6750 invalid_token).
    let info = p
        .app
        .client()
        .get_with(
            "/oauth2/userinfo",
            &[("Authorization", format!("Bearer {token}"))],
        )
        .await;
    assert_bearer_error(&info, 401, "invalid_token");
    let why = info.json()["error_description"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        why.contains("client credentials") && why.contains("no user") && !why.contains("revoked"),
        "{why}"
    );
    let r = p
        .post("/oauth2/introspect", ORG_PULL, &[("token", &token)])
        .await;
    assert_eq!(r.json()["active"], false, "{}", r.body);
    let r = p
        .post("/oauth2/revoke", ACME_PULL, &[("token", &token)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_bearer_error(
        &pull(&p, Some(&token), "format=jws").await,
        401,
        "invalid_token",
    );
}

#[actix_web::test]
async fn compliance_api_rate_limited_per_client() {
    let p = provider_with_settings_and_config(
        &[("rate_limit.compliance_reports_per_minute", "3")],
        CLIENTS,
    )
    .await;
    p.app.at_start_of_minute();
    let token = access_token(&p, ACME_PULL).await;
    let limit = 3;
    let mut statuses = Vec::new();
    for _ in 0..=limit {
        statuses.push(pull(&p, Some(&token), "format=json").await.status);
    }
    assert!(
        statuses[..limit as usize].iter().all(|s| *s == 200),
        "{statuses:?}"
    );
    assert_eq!(statuses[limit as usize], 429, "{statuses:?}");
    let refused = pull(&p, Some(&token), "format=json").await;
    assert_eq!(refused.status, 429);
    assert!(refused.header("retry-after").is_some(), "{}", refused.body);
    // Another client has its own budget.
    let org = access_token(&p, ORG_PULL).await;
    assert_eq!(pull(&p, Some(&org), "format=json").await.status, 200);
}

#[actix_web::test]
async fn compliance_api_admin_created_client_pulls_its_workspace() {
    let mut p = vendor_provider().await;
    let mut admin = p.browser().await;
    let csrf = crate::support::app::csrf_of(&admin.get("/admin/clients").await.body);
    let r = admin
        .post_json(
            "/api/admin/clients",
            Some(&csrf),
            &serde_json::json!({
                "name": "Vendor compliance pull",
                "redirect_uris": ["https://pull.example/cb"],
                "scopes": ["keygate:compliance"],
                "workspace_id": "other",
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    let client_id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    let r = client_token(&p, &client_id, &secret, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    let r = pull(&p, Some(&token), "format=json").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"]["workspaces"][0]["id"], "other");
    let r = pull(&p, Some(&token), "format=json&workspace=acme").await;
    assert_eq!(r.status, 403, "{}", r.body);

    // Disabling the client ends its tokens at once.
    let r = admin
        .post_json(
            &format!("/api/admin/clients/{client_id}/disable"),
            Some(&csrf),
            &serde_json::json!({}),
        )
        .await;
    assert!([200, 204].contains(&r.status), "{}", r.body);
    assert_bearer_error(
        &pull(&p, Some(&token), "format=json").await,
        401,
        "invalid_token",
    );
}
