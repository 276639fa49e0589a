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
