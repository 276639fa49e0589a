//! Streaming the audit chain to a SIEM: every new event POSTed in seq order as JSON the
//! receiver can re-hash, signed when a key is set; a failing receiver gets bounded retries,
//! one `siem.failed` per outage, and never holds up the action that wrote the event.

use std::time::{Duration, Instant};

use keygate::audit::{link_hash, AuditRecord, LinkInput, NewAuditEvent, Outcome};
use serde_json::json;

use crate::alerts_http::{verify_signature, Answer, Receiver, LOOPBACK_ALLOWED};
use crate::enrolment_http::{audit_events, bootstrap_admin, trusted_ca};
use crate::support::app::TestApp;
use crate::support::authenticator::SoftAuthenticator;

const SECRET: &str = "siem-signing-secret-0123456789";

async fn append(app: &TestApp, n: usize) {
    let now = app.state.now();
    app.state
        .storage
        .run(move |s| {
            for i in 0..n {
                let e = NewAuditEvent::new(
                    "cli",
                    "invitation.created",
                    format!("invitation:{i}"),
                    Outcome::Success,
                )
                .with_details(json!({ "i": i }));
                s.append_audit(&e, now)?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

async fn count(app: &TestApp, action: &str) -> usize {
    audit_events(app)
        .await
        .iter()
        .filter(|e| e.action == action)
        .count()
}

#[actix_web::test]
async fn audit_siem_receives_every_new_event_in_order_signed() {
    let ca = trusted_ca();
    let receiver = Receiver::start(Answer::Status(200));
    let app = TestApp::builder()
        .with_toml(&ca.toml)
        .with_toml(LOOPBACK_ALLOWED)
        .with("audit.siem_webhook_url", &receiver.url)
        .with("audit.siem_webhook_secret", SECRET)
        .with("audit.siem_poll_ms", "50")
        .start()
        .await;
    // Streaming starts at the head when the server starts.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let start = app.state.storage.run(|s| s.audit_head()).await.unwrap().seq;
    let mut admin = app.client();
    let done = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    append(&app, 30).await;
    let head = app.state.storage.run(|s| s.audit_head()).await.unwrap().seq;
    let expected = (head - start) as usize;
    let seen = receiver.wait_for(expected).await;
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.seen().len(), expected, "each event once");

    let stored = audit_events(&app).await;
    for (i, request) in seen.iter().enumerate() {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("X-Keygate-Event"), Some("audit.event"));
        verify_signature(request, SECRET.as_bytes());
        let body = request.json();
        assert_eq!(body["type"], "audit.event");
        assert_eq!(body["organisation"], "Test Org");
        let event: AuditRecord = serde_json::from_value(body["event"].clone()).unwrap();
        assert_eq!(
            event.seq,
            start + 1 + i as i64,
            "in seq order, none missing"
        );
        assert_eq!(link_hash(&LinkInput::of(&event)), event.hash, "re-hashes");
        assert_eq!(event, stored[(event.seq - 1) as usize], "exactly as stored");
        assert_eq!(body["details"], event.details_value());
    }
    let actions: Vec<String> = seen
        .iter()
        .map(|r| r.json()["event"]["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        actions.contains(&"enrolment.accepted".to_string()),
        "{actions:?}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn audit_siem_failures_are_bounded_audited_once_and_never_block() {
    let ca = trusted_ca();
    let failing = Receiver::start(Answer::Status(503));
    let app = TestApp::builder()
        .with_toml(&ca.toml)
        .with_toml(LOOPBACK_ALLOWED)
        .with("audit.siem_webhook_url", &failing.url)
        .with("audit.siem_attempts", "3")
        .with("audit.siem_backoff_ms", "10")
        .with("audit.siem_poll_ms", "50")
        .start()
        .await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    append(&app, 4).await;
    // The first event is tried three times; then one try each for the rest.
    let seen = failing.wait_for(3 + 3).await;
    assert!(
        seen.iter()
            .all(|r| r.header("X-Keygate-Signature").is_none()),
        "unsigned without a key"
    );
    let first: Vec<i64> = seen[..3]
        .iter()
        .map(|r| r.json()["event"]["seq"].as_i64().unwrap())
        .collect();
    assert!(
        first.iter().all(|s| *s == first[0]),
        "retries of one event: {first:?}"
    );
    let mut failed = Vec::new();
    for _ in 0..100 {
        failed = audit_events(&app)
            .await
            .into_iter()
            .filter(|e| e.action == "siem.failed")
            .collect();
        if !failed.is_empty() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failed.len(), 1, "one siem.failed per outage");
    let f = &failed[0];
    assert_eq!(f.outcome_text, "failure");
    assert_eq!(f.details_value()["seq"], first[0]);
    assert_eq!(f.details_value()["attempts"], 3);
    assert_eq!(f.details_value()["host"], "127.0.0.1");
    assert!(f.reason.as_deref().unwrap().contains("503"), "{f:?}");
    assert!(!f.details_json.contains("/hooks/"), "no URL in the chain");
    // Later events (the siem.failed one included) get one try each: no second siem.failed.
    append(&app, 3).await;
    let head = app.state.storage.run(|s| s.audit_head()).await.unwrap().seq;
    let total = 3 + (head as usize - first[0] as usize);
    failing.wait_for(total).await;
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(failing.seen().len(), total);
    assert_eq!(count(&app, "siem.failed").await, 1);
    app.stop().await;

    // A receiver that never answers holds up nothing: enrolment answers at once.
    let hanging = Receiver::start(Answer::Hang);
    let app = TestApp::builder()
        .with_toml(&ca.toml)
        .with_toml(LOOPBACK_ALLOWED)
        .with("audit.siem_webhook_url", &hanging.url)
        .with("audit.siem_timeout_ms", "10000")
        .with("audit.siem_poll_ms", "50")
        .start()
        .await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    append(&app, 1).await;
    for _ in 0..100 {
        if hanging.holding() > 0 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hanging.holding(), 1, "the receiver holds a delivery");
    let mut admin = app.client();
    let started = Instant::now();
    let done = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "enrolment took {:?}",
        started.elapsed()
    );
    hanging.release();
    app.stop().await;
}
