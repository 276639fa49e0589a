//! `GET /metrics` (SPEC C12): the Prometheus text format, counted by route pattern, and
//! only for the peers `server.metrics_allow` names, asking directly.

use crate::support::app::TestApp;

/// The sample of `metric` with exactly `labels`, as a number.
fn sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    let head = format!("{metric}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|v| v.parse().ok())
}

#[actix_web::test]
async fn metrics_count_requests_by_route_for_allowed_direct_peers() {
    let app = TestApp::builder().start().await;
    let mut client = app.client();
    for _ in 0..3 {
        assert_eq!(client.get("/oauth2/jwks").await.status, 200);
    }
    assert_eq!(client.get("/enrol/not-a-token").await.status, 410);
    let m = client.get("/metrics").await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        m.header("content-type")
    );
    let text = &m.body;
    let jwks = r#"method="GET",route="/oauth2/jwks""#;
    assert_eq!(
        sample(
            text,
            "keygate_http_requests_total",
            &format!(r#"{jwks},code="200""#)
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(text, "keygate_http_request_duration_seconds_count", jwks),
        Some(3.0)
    );
    // The route's pattern, never the token in the path.
    assert_eq!(
        sample(
            text,
            "keygate_http_requests_total",
            r#"method="GET",route="/enrol/{token}",code="410""#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("not-a-token"));

    // Through a proxy (even one on an allowed address): as if there were nothing here.
    for header in ["X-Forwarded-For", "Forwarded"] {
        let r = client
            .get_with("/metrics", &[(header, "for=198.51.100.7".into())])
            .await;
        assert_eq!(r.status, 404, "{header}");
        assert!(!r.body.contains("keygate_"));
    }
    app.stop().await;

    // Nobody allowed: 404 to loopback too.
    let app = TestApp::builder()
        .with_toml("[server]\nmetrics_allow = []")
        .start()
        .await;
    assert_eq!(app.client().get("/metrics").await.status, 404);
    app.stop().await;
}

/// The samples of `metric` whose labels start with `prefix`: (the rest of the labels, value).
fn samples(text: &str, metric: &str, prefix: &str) -> Vec<(String, f64)> {
    let head = format!("{metric}{{{prefix}");
    text.lines()
        .filter_map(|l| l.strip_prefix(&head))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once("} ")?;
            Some((labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Ceremony outcomes by reason, group-commit batches and waits, the store's round trips
/// and build info.
#[actix_web::test]
async fn metrics_count_ceremony_outcomes_batches_and_store_round_trips() {
    use crate::enrolment_http::{app_trusting, trusted_ca};
    use crate::signin_http::{admin_with_key, sign_in};
    use crate::support::authenticator::SoftAuthenticator;

    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    let (_, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A refused sign-in: the touch answers a challenge of its own making.
    let (_, r) = sign_in(&app, &mut cred, &user_id, None, |o| {
        o.challenge = vec![1; 32]
    })
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let mut client = app.client();
    let token = client
        .post_with(
            "/oauth2/token",
            &[],
            "application/x-www-form-urlencoded",
            b"grant_type=bogus".to_vec(),
        )
        .await;
    assert_eq!(token.status, 401, "{}", token.body);
    let saml = client.get("/saml/sso").await;
    assert!((400..500).contains(&saml.status), "{}", saml.status);

    let text = client.get("/metrics").await.body;
    let outcome = |ceremony: &str, step: &str, outcome: &str| {
        samples(
            &text,
            "keygate_ceremony_outcomes_total",
            &format!(r#"ceremony="{ceremony}",step="{step}",outcome="{outcome}","#),
        )
    };
    let ok = |c, s| outcome(c, s, "success") == vec![(r#"reason="ok""#.to_string(), 1.0)];
    assert!(
        ok("enrolment", "begin") && ok("enrolment", "finish"),
        "{text}"
    );
    assert!(outcome("signin", "begin", "success")[0].1 >= 2.0, "{text}");
    assert!(ok("signin", "finish"), "{text}");
    let refused = outcome("signin", "finish", "refused");
    assert_eq!(refused.len(), 1, "{text}");
    assert!(!refused[0].0.contains("unspecified"), "{refused:?}");
    assert_eq!(
        outcome("oidc_token", "token", "refused"),
        vec![(r#"reason="invalid_client""#.to_string(), 1.0)],
        "{text}"
    );
    let saml = outcome("saml", "sso", "refused");
    assert!(
        saml.len() == 1 && !saml[0].0.contains("unspecified"),
        "{text}"
    );

    // Process-wide series (shared by the tests in this process): present, and counting.
    let count = |metric: &str, labels: &str| sample(&text, metric, labels).unwrap_or(-1.0);
    assert!(
        count("keygate_group_commit_batch_size_count", "") >= 1.0,
        "{text}"
    );
    assert!(
        count("keygate_group_commit_wait_seconds_count", "") >= 1.0,
        "{text}"
    );
    assert!(
        count("keygate_group_commit_seconds_count", "") >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "keygate_group_commit_batch_size_bucket",
            r#"le="+Inf""#
        )
        .is_some(),
        "{text}"
    );
    let gets = count("keygate_store_command_seconds_count", r#"command="get""#);
    if crate::support::db::ephemeral_name() == "redis" {
        assert!(gets >= 1.0, "{text}");
    } else {
        assert!(gets >= 0.0, "{text}");
    }
    assert!(text.contains("keygate_store_retries_total "), "{text}");
    assert_eq!(
        sample(
            &text,
            "keygate_build_info",
            &format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))
        ),
        Some(1.0)
    );

    // The Grafana dashboard queries only series this exposes.
    let dashboard = include_str!("../../charts/keygate/dashboards/keygate.json");
    let dashboard: serde_json::Value = serde_json::from_str(dashboard).expect("dashboard JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 10);
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("keygate_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(b)))
                .unwrap_or(&name);
            assert!(
                typed.contains(&base),
                "the dashboard asks for {name}, not exposed"
            );
        }
    }
    app.stop().await;
}

/// A refusal the IdP sends back to the SP inside a SAML Response (an HTTP 200 page that
/// posts it) counts as refused, by its status, never as a success.
#[actix_web::test]
async fn metrics_count_saml_statuses_sent_to_the_sp_as_refusals() {
    use crate::support::saml::{decoded, idp, posted, pysaml2_available, start, OTHER_SP, SP};
    use serde_json::json;

    if !pysaml2_available() {
        return;
    }
    let mut idp = idp().await;
    let mut browser = idp.p.browser().await;
    // No passwords in keygate: NoAuthnContext.
    let mut args = idp.sp_args(SP);
    args["binding"] = json!("redirect");
    args["contexts"] = json!(["urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"]);
    let (_, reply) = start(&idp, &mut browser, &args).await;
    assert!(decoded(&posted(&reply).1).contains("status:NoAuthnContext"));
    // Not a member of the other SP's workspace: RequestDenied.
    let mut args = idp.sp_args(OTHER_SP);
    args["binding"] = json!("post");
    let (_, reply) = start(&idp, &mut browser, &args).await;
    assert!(decoded(&posted(&reply).1).contains("status:RequestDenied"));
    // Signed in: Success.
    let mut args = idp.sp_args(SP);
    args["binding"] = json!("redirect");
    let (_, reply) = start(&idp, &mut browser, &args).await;
    assert!(decoded(&posted(&reply).1).contains("status:Success"));

    let text = idp.p.app.client().get("/metrics").await.body;
    let mut sso = samples(
        &text,
        "keygate_ceremony_outcomes_total",
        r#"ceremony="saml",step="sso","#,
    );
    sso.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        sso,
        vec![
            (
                r#"outcome="refused",reason="no_authn_context""#.to_string(),
                1.0
            ),
            (
                r#"outcome="refused",reason="request_denied""#.to_string(),
                1.0
            ),
            (r#"outcome="success",reason="ok""#.to_string(), 1.0),
        ],
        "{text}"
    );
    idp.p.app.stop().await;
}
