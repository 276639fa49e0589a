//! Alerts on every new session: the signed webhook (one POST per session, the signature a
//! receiver can check, retries then `alert.failed`, a hanging receiver that never slows the
//! sign-in, the in-flight bound), the e-mail to the member (through a tiny SMTP sink), and
//! nothing at all when off.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keygate::audit::AuditRecord;
use serde_json::Value;

use crate::enrolment_http::{audit_events, trusted_ca, TrustedCa};
use crate::signin_http::{admin_with_key, sign_in};
use crate::support::app::{TestApp, TestAppBuilder};
use crate::support::authenticator::SoftAuthenticator;

const SECRET: &str = "test-webhook-secret-0123456789";

/// One request as the receiver read it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// 307 to this port on 127.0.0.1 (a redirect the sender must not follow).
    RedirectTo(u16),
    /// Read the request, then hold the connection open without a word until released.
    Hang,
}

/// A tiny HTTP/1.1 receiver on 127.0.0.1 that records every request.
pub struct Receiver {
    pub url: String,
    seen: Arc<Mutex<Vec<Received>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Receiver {
    pub fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a receiver");
        let url = format!(
            "http://127.0.0.1:{}/hooks/keygate",
            listener.local_addr().unwrap().port()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (seen2, held2) = (seen.clone(), held.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                seen2.lock().unwrap().push(request);
                match answer {
                    Answer::Status(code) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                    Answer::RedirectTo(port) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 307 X\r\nLocation: http://127.0.0.1:{port}/hooks/keygate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                    Answer::Hang => held2.lock().unwrap().push(stream),
                }
            }
        });
        Receiver { url, seen, held }
    }

    pub fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    pub fn holding(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    /// Closes the held connections without an answer.
    pub fn release(&self) {
        self.held.lock().unwrap().clear();
    }

    /// Waits (bounded) until `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..400 {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the receiver got {} requests, not {n}", self.seen().len());
    }
}

fn read_request(stream: &TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// The test receivers listen on loopback, which webhooks may reach only when allowed.
pub const LOOPBACK_ALLOWED: &str = "[outbound]\nallow_private_ranges = [\"127.0.0.1/32\"]";

fn with_webhook(ca: &TrustedCa, receiver: &Receiver) -> TestAppBuilder {
    TestApp::builder()
        .with_toml(&ca.toml)
        .with_toml(LOOPBACK_ALLOWED)
        .with("alerts.webhook_url", &receiver.url)
        .with("alerts.webhook_secret", SECRET)
}

/// Waits (bounded) until at least `n` audit events have `action`.
async fn audited(app: &TestApp, action: &str, n: usize) -> Vec<AuditRecord> {
    for _ in 0..400 {
        let found: Vec<AuditRecord> = audit_events(app)
            .await
            .into_iter()
            .filter(|e| e.action == action)
            .collect();
        if found.len() >= n {
            return found;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} `{action}` audit events");
}

async fn count_audited(app: &TestApp, action: &str) -> usize {
    audit_events(app)
        .await
        .iter()
        .filter(|e| e.action == action)
        .count()
}

/// Checks `X-Keygate-Signature: t=…,v1=…` as a receiver would, with an independent HMAC.
pub fn verify_signature(request: &Received, secret: &[u8]) -> i64 {
    let header = request
        .header("X-Keygate-Signature")
        .expect("a signature header");
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.to_string()),
            Some(("v1", v)) => v1 = Some(hex::decode(v).expect("hex signature")),
            _ => panic!("unexpected part in {header}"),
        }
    }
    let (t, v1) = (t.expect("t="), v1.expect("v1="));
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&request.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, &signed, &v1).expect("the signature verifies");
    // A body changed in transit does not verify.
    let mut tampered = signed.clone();
    tampered.push(b' ');
    assert!(ring::hmac::verify(&key, &tampered, &v1).is_err());
    t.parse().expect("t is unix seconds")
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[actix_web::test]
async fn one_signed_post_per_new_session() {
    let ca = trusted_ca();
    let receiver = Receiver::start(Answer::Status(204));
    let app = with_webhook(&ca, &receiver).start().await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    // Enrolling the first key signs the admin in: that session is alerted too.
    receiver.wait_for(1).await;
    let (_browser, reply) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = receiver.wait_for(2).await;

    let now = app.state.now();
    let uid = user_id.clone();
    let sessions = app
        .state
        .storage
        .run(move |s| s.live_sessions(&uid, now))
        .await
        .unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(seen.len(), sessions.len(), "one POST per new session");
    let key = app
        .state
        .storage
        .run(|s| s.list_credentials())
        .await
        .unwrap()
        .pop()
        .unwrap();

    let mut alerted: Vec<String> = Vec::new();
    for request in &seen {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hooks/keygate");
        assert_eq!(request.header("Content-Type"), Some("application/json"));
        assert_eq!(request.header("X-Keygate-Event"), Some("session.created"));
        let t = verify_signature(request, SECRET.as_bytes());
        assert!((t - app.state.now()).abs() < 300, "t is the send time");

        let body = request.json();
        assert_eq!(body["event"], "session.created");
        assert_eq!(body["id"].as_str().unwrap().len(), 32, "{body}");
        assert_eq!(body["organisation"], "Test Org");
        assert_eq!(body["member"]["id"], user_id.as_str());
        assert_eq!(body["member"]["email"], "admin@example.com");
        assert_eq!(body["session"]["user_verified"], true);
        assert_eq!(body["session"]["ip"], "127.0.0.1");
        let record = sessions
            .iter()
            .find(|s| body["session"]["id"] == s.id.as_str())
            .expect("a session of this member");
        assert_eq!(
            body["session"]["user_agent"],
            serde_json::json!(record.user_agent)
        );
        assert_eq!(body["time"], rfc3339(record.created_at));
        assert_eq!(body["key"]["id"], key.id.as_str());
        assert_eq!(body["key"]["aaguid"], key.aaguid.as_str());
        assert_eq!(body["key"]["model"], serde_json::json!(key.model));
        alerted.push(body["session"]["id"].as_str().unwrap().to_string());
    }
    let mut expected: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
    alerted.sort();
    expected.sort();
    assert_eq!(alerted, expected, "each session alerted once");
    assert_ne!(seen[0].json()["id"], seen[1].json()["id"]);
    assert_eq!(count_audited(&app, "alert.failed").await, 0);
    app.stop().await;
}

#[actix_web::test]
async fn a_failing_receiver_is_retried_then_audited() {
    let ca = trusted_ca();
    let receiver = Receiver::start(Answer::Status(500));
    let app = with_webhook(&ca, &receiver)
        .with("alerts.attempts", "3")
        .with("alerts.backoff_ms", "20")
        .start()
        .await;
    let (_cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;

    let failed = audited(&app, "alert.failed", 1).await;
    assert_eq!(receiver.seen().len(), 3, "three attempts, no more");
    let seen = receiver.seen();
    assert!(
        seen.iter().all(|r| r.body == seen[0].body),
        "every attempt carries the same alert"
    );
    for r in &seen {
        verify_signature(r, SECRET.as_bytes());
    }
    let event = &failed[0];
    assert_eq!(failed.len(), 1);
    assert_eq!(event.actor, "system");
    assert_eq!(event.subject, format!("user:{user_id}"));
    assert_eq!(event.outcome_text, "failure");
    let reason = event.reason.as_deref().unwrap();
    assert!(reason.contains("HTTP 500"), "{reason}");
    let details: Value = serde_json::from_str(&event.details_json).unwrap();
    assert_eq!(details["channel"], "webhook");
    assert_eq!(details["host"], "127.0.0.1");
    assert_eq!(details["attempts"], 3);
    assert_eq!(
        details["alert_id"],
        seen[0].json()["id"],
        "the event names the alert"
    );
    // Neither the key, the URL's path nor the body reach the audit chain.
    let recorded = format!("{reason} {}", event.details_json);
    for hidden in [SECRET, "/hooks/keygate", "admin@example.com"] {
        assert!(!recorded.contains(hidden), "{hidden} in {recorded}");
    }
    // The chain stays whole.
    app.state
        .storage
        .run(|s| s.verify_audit_chain())
        .await
        .unwrap()
        .expect("audit chain verifies");
    app.stop().await;
}

#[actix_web::test]
async fn a_hanging_receiver_never_slows_a_sign_in() {
    let ca = trusted_ca();
    let receiver = Receiver::start(Answer::Hang);
    let app = with_webhook(&ca, &receiver)
        .with("alerts.attempts", "1")
        .with("alerts.timeout_ms", "60000")
        .with("alerts.max_in_flight", "1")
        .start()
        .await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    // The enrolment's alert reaches the receiver, which keeps it waiting.
    receiver.wait_for(1).await;
    assert_eq!(receiver.holding(), 1);

    // A sign-in finishes (within a bound far below the 60 s attempt limit) while that
    // delivery is still hanging.
    let (_browser, reply) = actix_rt::time::timeout(
        Duration::from_secs(20),
        sign_in(&app, &mut cred, &user_id, None, |_| {}),
    )
    .await
    .expect("the sign-in returns while the receiver hangs");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(receiver.holding(), 1, "the receiver still has not answered");

    // With one delivery allowed in flight, this session's alert is dropped and audited at
    // once rather than queued behind the dead receiver.
    let dropped = audited(&app, "alert.failed", 1).await;
    assert!(
        dropped[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("too many alerts in flight"),
        "{:?}",
        dropped[0].reason
    );
    assert_eq!(receiver.seen().len(), 1);

    // The receiver hangs up without an answer: the first delivery fails and is audited.
    receiver.release();
    let failed = audited(&app, "alert.failed", 2).await;
    let details: Value = serde_json::from_str(&failed[1].details_json).unwrap();
    assert_eq!(details["attempts"], 1);
    assert_eq!(details["channel"], "webhook");
    app.stop().await;
}

#[actix_web::test]
async fn nothing_is_sent_when_alerts_are_off() {
    let ca = trusted_ca();
    let receiver = Receiver::start(Answer::Status(200));
    // Tuning alone does not turn alerts on.
    let quiet = TestApp::builder()
        .with_toml(&ca.toml)
        .with("organisation.name", "Quiet Org")
        .with("alerts.attempts", "5")
        .start()
        .await;
    assert!(!quiet.state.alerts.enabled());
    let (mut cred, user_id) = admin_with_key(&quiet, &SoftAuthenticator::new(&ca.ca)).await;
    let (_browser, reply) = sign_in(&quiet, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // A second gateway with the webhook on, signing in after the quiet one: once its
    // alert is in, the receiver has heard from it alone.
    let loud = with_webhook(&ca, &receiver).start().await;
    admin_with_key(&loud, &SoftAuthenticator::new(&ca.ca)).await;
    let seen = receiver.wait_for(1).await;
    assert!(
        seen.iter().all(|r| r.json()["organisation"] == "Test Org"),
        "only the gateway with alerts on sent any"
    );
    assert_eq!(count_audited(&quiet, "alert.failed").await, 0);
    quiet.stop().await;
    loud.stop().await;
}

/// One message as the SMTP sink took it.
#[derive(Clone, Debug)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A tiny SMTP server on 127.0.0.1: accepts every message, or refuses every recipient
/// with a permanent 550; records messages and counts connections.
struct SmtpSink {
    url: String,
    mail: Arc<Mutex<Vec<Mail>>>,
    connections: Arc<AtomicUsize>,
}

impl SmtpSink {
    fn start(refuse: bool) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an SMTP sink");
        let url = format!("smtp://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let mail = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (mail2, connections2) = (mail.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                connections2.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                if let Some(m) = smtp_session(stream, refuse) {
                    mail2.lock().unwrap().push(m);
                }
            }
        });
        SmtpSink {
            url,
            mail,
            connections,
        }
    }

    async fn wait_for(&self, n: usize) -> Vec<Mail> {
        for _ in 0..400 {
            let mail = self.mail.lock().unwrap().clone();
            if mail.len() >= n {
                return mail;
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the SMTP sink did not get {n} messages");
    }
}

fn smtp_session(stream: TcpStream, refuse: bool) -> Option<Mail> {
    let mut out = stream.try_clone().ok()?;
    let mut reader = BufReader::new(stream);
    let mut reply = |line: &str| out.write_all(format!("{line}\r\n").as_bytes()).ok();
    reply("220 sink ESMTP")?;
    let (mut from, mut to, mut data) = (String::new(), Vec::new(), None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            break;
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            reply("250 sink")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_string();
            reply("250 OK")?;
        } else if upper.starts_with("RCPT TO:") {
            if refuse {
                reply("550 5.1.1 no such mailbox")?;
            } else {
                to.push(line[8..].trim().to_string());
                reply("250 OK")?;
            }
        } else if upper.starts_with("DATA") {
            reply("354 go ahead")?;
            let mut body = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).ok()? == 0 || l == ".\r\n" {
                    break;
                }
                body.push_str(&l);
            }
            data = Some(body);
            reply("250 OK queued")?;
        } else if upper.starts_with("QUIT") {
            reply("221 bye")?;
            break;
        } else {
            reply("250 OK")?;
        }
    }
    data.map(|data| Mail { from, to, data })
}

fn with_smtp(ca: &TrustedCa, sink: &SmtpSink) -> TestAppBuilder {
    TestApp::builder()
        .with_toml(&ca.toml)
        .with("alerts.smtp_url", &sink.url)
        .with("alerts.email_from", "keygate <keygate@localhost>")
        .with("alerts.backoff_ms", "20")
}

#[actix_web::test]
async fn the_member_gets_an_email_per_new_session() {
    let ca = trusted_ca();
    let sink = SmtpSink::start(false);
    let app = with_smtp(&ca, &sink).start().await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    sink.wait_for(1).await;
    let (_browser, reply) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mail = sink.wait_for(2).await;
    assert_eq!(mail.len(), 2, "one e-mail per new session");
    for m in &mail {
        assert_eq!(m.from, "<keygate@localhost>");
        assert_eq!(m.to, vec!["<admin@example.com>".to_string()]);
        for expected in [
            "Subject: New sign-in to Test Org",
            "To: Ada <admin@example.com>",
            "a new session was started for admin@example.com",
            "YubiKey 5 NFC",
            "Address: 127.0.0.1",
            &format!("{}/me", app.base),
        ] {
            assert!(m.data.contains(expected), "{expected} not in {}", m.data);
        }
    }
    assert_eq!(count_audited(&app, "alert.failed").await, 0);
    app.stop().await;
}

#[actix_web::test]
async fn a_refused_email_is_audited_without_retries() {
    let ca = trusted_ca();
    let sink = SmtpSink::start(true);
    let app = with_smtp(&ca, &sink)
        .with("alerts.attempts", "3")
        .start()
        .await;
    let (_cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    let failed = audited(&app, "alert.failed", 1).await;
    let event = &failed[0];
    assert_eq!(event.subject, format!("user:{user_id}"));
    let reason = event.reason.as_deref().unwrap();
    assert!(reason.contains("550"), "{reason}");
    let details: Value = serde_json::from_str(&event.details_json).unwrap();
    assert_eq!(details["channel"], "email");
    assert_eq!(details["attempts"], 1, "a permanent refusal is not retried");
    assert_eq!(sink.connections.load(Ordering::SeqCst), 1);
    app.stop().await;
}

/// SSRF: a webhook never reaches a loopback, private or link-local address unless
/// `outbound.allow_private_ranges` holds it. A literal address is refused when the config
/// loads; a name is refused after it resolves, at every attempt, once (no retries), audited.
#[actix_web::test]
async fn webhooks_refuse_private_destinations_unless_allowed() {
    let ca = trusted_ca();
    // A literal loopback address: the config itself is refused, naming the setting.
    let mut config = keygate::config::Config::default();
    config.alerts.webhook_url = Some("http://127.0.0.1:9/hooks".to_string().into());
    config.alerts.webhook_secret = Some(SECRET.to_string().into());
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("alerts.webhook_url")
            && err.contains("loopback")
            && err.contains("allow_private_ranges"),
        "{err}"
    );
    config.audit.siem_webhook_url = Some("https://169.254.169.254/latest".to_string().into());
    config.alerts.webhook_url = None;
    config.alerts.webhook_secret = None;
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("audit.siem_webhook_url") && err.contains("link-local"),
        "{err}"
    );
    config.outbound.allow_private_ranges = vec!["169.254.169.254/32".into()];
    config.validate().expect("allowed explicitly");

    // A name that resolves to loopback: refused at connect time, nothing sent, one
    // attempt, audited with the reason.
    let receiver = Receiver::start(Answer::Status(200));
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let app = TestApp::builder()
        .with_toml(&ca.toml)
        .with("alerts.webhook_url", &by_name)
        .with("alerts.webhook_secret", SECRET)
        .with("alerts.attempts", "3")
        .with("alerts.backoff_ms", "20")
        .start()
        .await;
    let (_cred, _user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    let failed = audited(&app, "alert.failed", 1).await;
    let reason = failed[0].reason.as_deref().unwrap();
    assert!(
        reason.contains("refused destination") && reason.contains("loopback"),
        "{reason}"
    );
    let details: Value = serde_json::from_str(&failed[0].details_json).unwrap();
    assert_eq!(
        details["attempts"], 1,
        "a refused destination is not retried"
    );
    assert!(receiver.seen().is_empty(), "nothing reached the receiver");
    app.stop().await;
}

/// A receiver that answers with a redirect is not followed: the alert counts as failed and
/// the redirect's target never sees the signed body.
#[actix_web::test]
async fn webhooks_never_follow_redirects() {
    let ca = trusted_ca();
    let target = Receiver::start(Answer::Status(200));
    let port: u16 = target
        .url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let redirecting = Receiver::start(Answer::RedirectTo(port));
    let app = with_webhook(&ca, &redirecting)
        .with("alerts.attempts", "1")
        .start()
        .await;
    let (_cred, _user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    let failed = audited(&app, "alert.failed", 1).await;
    assert!(failed[0].reason.as_deref().unwrap().contains("HTTP 307"));
    assert_eq!(redirecting.seen().len(), 1);
    assert!(target.seen().is_empty(), "the redirect was not followed");
    app.stop().await;
}
