//! Enrolment end to end over HTTP: bootstrap admin, invitations, primary and backup keys,
//! and every refusal — each a clear 4xx with a reason code, an audit event, nothing else
//! written. Runs on the backend the environment selects.

use serde_json::json;

use crate::support::app::{csrf_of, Client, Reply, TestApp};
use crate::support::authenticator::{
    b64url, Format, LeafOptions, RegisterOptions, SoftAuthenticator, TestCa, YUBIKEY_5CI_FIPS,
    YUBIKEY_5_NFC,
};

/// A test CA written to a file and trusted by the app through `attestation.extra_roots`.
pub struct TrustedCa {
    pub ca: TestCa,
    _file: tempfile::NamedTempFile,
    pub toml: String,
}

pub fn trusted_ca() -> TrustedCa {
    let ca = TestCa::new("Enrolment Test");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), ca.root_pem()).expect("write root");
    let toml = format!(
        "[attestation]\nextra_roots = [\"{}\"]\n",
        file.path().display()
    );
    TrustedCa {
        ca,
        _file: file,
        toml,
    }
}

pub async fn app_trusting(ca: &TrustedCa) -> TestApp {
    TestApp::builder().with_toml(&ca.toml).start().await
}

pub fn b64d(s: &str) -> Vec<u8> {
    keygate::service::tokens::from_b64url(s).expect("base64url")
}

/// Opens an enrolment page (the bootstrap or invitation link path, or `/me/keys/new`),
/// runs begin, and returns the CSRF token and the creation options.
pub async fn begin(client: &mut Client, page: &str, body: serde_json::Value) -> (String, Reply) {
    let page = client.get(page).await;
    assert_eq!(page.status, 200, "enrol page: {}", page.body);
    let csrf = csrf_of(&page.body);
    let options = client
        .post_json("/api/enrol/begin", Some(&csrf), &body)
        .await;
    (csrf, options)
}

pub fn finish_body(
    reg: &crate::support::authenticator::Registration,
    nickname: &str,
) -> serde_json::Value {
    let id = b64url(&reg.credential.id);
    json!({
        "nickname": nickname,
        "credential": {
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(&reg.client_data_json),
                "attestationObject": b64url(&reg.attestation_object),
                "transports": ["usb"],
            },
        },
    })
}

pub fn options_for(app: &TestApp, options: &Reply) -> RegisterOptions {
    assert_eq!(options.status, 200, "begin: {}", options.body);
    let o = options.json();
    assert_eq!(o["attestation"], "direct");
    assert_eq!(o["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(o["rp"]["id"], "localhost");
    RegisterOptions {
        rp_id: "localhost".into(),
        origin: app.origin().to_string(),
        challenge: b64d(o["challenge"].as_str().expect("challenge")),
        ..RegisterOptions::default()
    }
}

/// Runs a whole enrolment with `auth` on `page`, tweaking the authenticator's options.
pub async fn enrol_with(
    app: &TestApp,
    client: &mut Client,
    page: &str,
    begin_body: serde_json::Value,
    auth: &SoftAuthenticator,
    tweak: impl FnOnce(&mut RegisterOptions),
) -> Reply {
    let (csrf, options) = begin(client, page, begin_body).await;
    let mut opts = options_for(app, &options);
    tweak(&mut opts);
    let reg = auth.register(&opts);
    client
        .post_json(
            "/api/enrol/finish",
            Some(&csrf),
            &finish_body(&reg, "Primary"),
        )
        .await
}

pub async fn bootstrap_admin(
    app: &TestApp,
    client: &mut Client,
    auth: &SoftAuthenticator,
) -> Reply {
    enrol_with(
        app,
        client,
        &app.bootstrap_path(),
        json!({ "token": token_of(&app.bootstrap_path()), "email": "admin@example.com", "display_name": "Ada Admin" }),
        auth,
        |_| {},
    )
    .await
}

/// Another physical key of model `aaguid`: its own attestation certificate (`serial`).
pub fn physical_key(ca: &TestCa, aaguid: [u8; 16], serial: u8) -> SoftAuthenticator {
    SoftAuthenticator::with_leaf(
        ca,
        aaguid,
        &LeafOptions {
            aaguid: Some(aaguid),
            serial,
            ..LeafOptions::default()
        },
    )
}

pub fn token_of(path: &str) -> String {
    path.rsplit('/').next().expect("token").to_string()
}

pub async fn audit_events(app: &TestApp) -> Vec<keygate::audit::AuditRecord> {
    app.state
        .storage
        .run(|s| s.audit_range(0, i64::MAX, 10_000))
        .await
        .expect("audit")
}

pub async fn credential_count(app: &TestApp) -> usize {
    app.state
        .storage
        .run(|s| s.list_credentials())
        .await
        .expect("credentials")
        .len()
}

/// The last audit event is a refusal with `code`; nothing else was written.
pub async fn assert_refused(
    app: &TestApp,
    reply: &Reply,
    status: u16,
    code: &str,
    keys_before: usize,
) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.json()["error"], code, "{}", reply.body);
    let events = audit_events(app).await;
    let last = events.last().expect("an audit event");
    assert_eq!(last.action, "enrolment.refused");
    assert_eq!(last.reason.as_deref(), Some(code));
    assert_eq!(credential_count(app).await, keys_before, "nothing written");
}

#[actix_web::test]
async fn bootstrap_admin_then_backup_key_then_invited_member() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let mut admin = app.client();

    let done = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let enrolled = done.json();
    assert_eq!(enrolled["new_member"], true);
    assert_eq!(enrolled["role"], "admin");
    assert_eq!(enrolled["model"], "YubiKey 5 NFC");
    assert_eq!(enrolled["phishing_resistant"], true);

    // Signed in, one key: not compliant yet.
    let me = admin.get("/api/me").await.json();
    assert_eq!(me["member"]["compliant"], false);
    assert_eq!(me["keys"].as_array().unwrap().len(), 1);
    let key = &me["keys"][0];
    assert!(key["trust_anchor"]
        .as_str()
        .unwrap()
        .contains("Enrolment Test"));
    let page = admin.get("/me").await;
    assert!(page.body.contains("Not compliant yet"), "{}", page.body);

    // The bootstrap link is single-use.
    let again = app.client().get(&app.bootstrap_path()).await;
    assert_eq!(again.status, 410);

    // A backup key (another physical key: its own attestation certificate).
    let backup = physical_key(&ca.ca, YUBIKEY_5CI_FIPS, 9);
    let added = enrol_with(&app, &mut admin, "/me/keys/new", json!({}), &backup, |_| {}).await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.json()["new_member"], false);
    assert_eq!(added.json()["fips"], true);
    let me = admin.get("/api/me").await.json();
    assert_eq!(me["member"]["compliant"], true, "{me}");

    // The admin invites a member over the API; the member enrols. A field the API does
    // not know is refused, never ignored (it may be a setting the caller thinks it made).
    let csrf = csrf_of(&admin.get("/admin/invitations").await.body);
    let unknown = admin
        .post_json(
            "/api/admin/invitations",
            Some(&csrf),
            &json!({ "email": "bob@example.com", "role": "member", "expires_in": 60 }),
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert_eq!(unknown.json()["error"], "malformed_json");
    assert!(unknown.body.contains("expires_in"), "{}", unknown.body);
    let inv = admin
        .post_json(
            "/api/admin/invitations",
            Some(&csrf),
            &json!({ "email": "Bob@Example.com", "display_name": "Bob", "role": "member" }),
        )
        .await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    let link = inv.json()["link"].as_str().unwrap().to_string();
    let path = link.trim_start_matches(app.origin()).to_string();
    let mut bob = app.client();
    let bob_auth = physical_key(&ca.ca, YUBIKEY_5_NFC, 20);
    let done = enrol_with(
        &app,
        &mut bob,
        &path,
        json!({ "token": token_of(&path) }),
        &bob_auth,
        |_| {},
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["role"], "member");
    let me = bob.get("/api/me").await.json();
    assert_eq!(me["member"]["email"], "bob@example.com");
    // Members cannot reach admin pages or API.
    assert_eq!(bob.get("/api/admin/members").await.status, 403);

    // The invitation works once.
    let reuse = app.client().get(&path).await;
    assert_eq!(reuse.status, 410);
    assert!(reuse.body.contains("invitation_used"));
    let last = audit_events(&app).await.pop().unwrap();
    assert_eq!(last.action, "invitation.refused");
    assert_eq!(last.reason.as_deref(), Some("invitation_used"));

    // Admin pages list both members with evidence.
    let members = admin.get("/api/admin/members").await.json();
    assert_eq!(members.as_array().unwrap().len(), 2);
    let page = admin.get("/admin/members").await;
    assert!(page.body.contains("bob@example.com"));

    // Admin revokes Bob's key; Bob's compliance reflects it; the audit chain verifies.
    let bob_id = me["member"]["id"].as_str().unwrap().to_string();
    let bob_key = me["keys"][0]["id"].as_str().unwrap().to_string();
    let revoked = admin
        .post_json(
            &format!("/api/admin/keys/{bob_key}/revoke"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    let detail = admin
        .get(&format!("/api/admin/members/{bob_id}"))
        .await
        .json();
    assert!(detail["keys"][0]["revoked_at"].is_i64());
    assert_eq!(detail["member"]["active_keys"], 0);

    let actions: Vec<String> = audit_events(&app)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    for expected in [
        "bootstrap.issued",
        "enrolment.accepted",
        "invitation.created",
        "key.revoked",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
    let verdict = keygate::service::audit_log::verify(&app.state)
        .await
        .expect("chain verifies");
    assert!(verdict.contains("OK"), "{verdict}");
    app.stop().await;
}

#[actix_web::test]
async fn refusals_are_clear_audited_and_write_nothing() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let token = token_of(&app.bootstrap_path());
    let page = app.bootstrap_path();
    let body = json!({ "token": token, "email": "admin@example.com" });
    let auth = SoftAuthenticator::new(&ca.ca);

    type Tweak = fn(&mut RegisterOptions);
    let cases: Vec<(&str, u16, &str, Tweak)> = vec![
        ("wrong origin", 400, "origin_mismatch", |o| {
            o.origin = "https://evil.example".into()
        }),
        ("wrong rp id", 400, "rp_id_mismatch", |o| {
            o.rp_id = "evil.example".into()
        }),
        ("wrong challenge", 400, "challenge_mismatch", |o| {
            o.challenge = vec![1; 32]
        }),
        ("wrong type", 400, "wrong_type", |o| {
            o.ty = "webauthn.get".into()
        }),
        (
            "no user verification",
            403,
            "user_verification_required",
            |o| o.user_verified = false,
        ),
        ("synced passkey", 403, "backup_eligible", |o| {
            o.backup_eligible = true;
            o.backup_state = true;
        }),
        ("none attestation", 403, "not_attested", |o| {
            o.format = Format::None
        }),
        ("self attestation", 403, "not_attested", |o| {
            o.format = Format::PackedSelf
        }),
    ];
    for (what, status, code, tweak) in cases {
        let mut client = app.client();
        let reply = enrol_with(&app, &mut client, &page, body.clone(), &auth, tweak).await;
        eprintln!("case: {what}");
        assert_refused(&app, &reply, status, code, 0).await;
    }

    // A key whose chain does not reach a trusted root.
    let stranger = TestCa::new("Untrusted");
    let mut client = app.client();
    let reply = enrol_with(
        &app,
        &mut client,
        &page,
        body.clone(),
        &SoftAuthenticator::new(&stranger),
        |_| {},
    )
    .await;
    assert_refused(&app, &reply, 403, "untrusted_root", 0).await;
    assert!(
        reply.json()["refusals"][0]["remedy"]
            .as_str()
            .unwrap()
            .len()
            > 10
    );

    // An expired attestation certificate.
    let expired = SoftAuthenticator::with_leaf(
        &ca.ca,
        YUBIKEY_5_NFC,
        &LeafOptions {
            expired: true,
            ..LeafOptions::default()
        },
    );
    let mut client = app.client();
    let reply = enrol_with(&app, &mut client, &page, body.clone(), &expired, |_| {}).await;
    assert_refused(&app, &reply, 403, "certificate_expired", 0).await;

    // The leaf's AAGUID extension disagrees with authenticator data.
    let mut client = app.client();
    let reply = enrol_with(&app, &mut client, &page, body.clone(), &auth, |o| {
        o.aaguid = Some(YUBIKEY_5CI_FIPS)
    })
    .await;
    assert_refused(&app, &reply, 400, "aaguid_mismatch", 0).await;

    // Garbage: JSON, base64, CBOR. Each consumes the challenge and is audited.
    for (payload, code) in [
        (b"{not json".to_vec(), "malformed_json"),
        (json!({"credential": {"id": "a", "rawId": "a", "type": "public-key", "response": {"clientDataJSON": "***", "attestationObject": "AA"}}}).to_string().into_bytes(), "malformed_base64"),
        (json!({"credential": {"id": "YQ", "rawId": "YQ", "type": "public-key", "response": {"clientDataJSON": "e30", "attestationObject": "oWNmbXQ"}}}).to_string().into_bytes(), "malformed_client_data"),
    ] {
        let mut client = app.client();
        let (csrf, options) = begin(&mut client, &page, body.clone()).await;
        assert_eq!(options.status, 200);
        let reply = client.post_raw("/api/enrol/finish", Some(&csrf), payload).await;
        assert_refused(&app, &reply, 400, code, 0).await;
    }

    // Replay: the same finish twice. The second finds no challenge (audited all the same).
    let mut client = app.client();
    let (csrf, options) = begin(&mut client, &page, body.clone()).await;
    let mut opts = options_for(&app, &options);
    opts.user_verified = false;
    let reg = auth.register(&opts);
    let first = client
        .post_json("/api/enrol/finish", Some(&csrf), &finish_body(&reg, "x"))
        .await;
    assert_eq!(first.status, 403);
    let replay = client
        .post_json("/api/enrol/finish", Some(&csrf), &finish_body(&reg, "x"))
        .await;
    assert_refused(&app, &replay, 410, "challenge_expired", 0).await;

    // A challenge is bound to the browser session that asked for it.
    let mut asker = app.client();
    let (_, options) = begin(&mut asker, &page, body.clone()).await;
    let reg = auth.register(&options_for(&app, &options));
    let mut other = app.client();
    let (other_csrf, _) = begin(&mut other, &page, body.clone()).await;
    let stolen = other
        .post_json(
            "/api/enrol/finish",
            Some(&other_csrf),
            &finish_body(&reg, "x"),
        )
        .await;
    // The other browser's own challenge is what the response is checked against.
    assert_refused(&app, &stolen, 400, "challenge_mismatch", 0).await;

    // An expired challenge.
    let mut client = app.client();
    let (csrf, options) = begin(&mut client, &page, body.clone()).await;
    let reg = auth.register(&options_for(&app, &options));
    app.clock.advance(301);
    let late = client
        .post_json("/api/enrol/finish", Some(&csrf), &finish_body(&reg, "x"))
        .await;
    assert_refused(&app, &late, 410, "challenge_expired", 0).await;

    // No CSRF token: refused before anything happens.
    let mut client = app.client();
    client.get(&page).await;
    let no_csrf = client.post_json("/api/enrol/begin", None, &body).await;
    assert_eq!(no_csrf.status, 403);
    assert_eq!(no_csrf.json()["error"], "csrf");

    // The bootstrap link expires (1 h by default; the clock moved 301 s already), also
    // for a browser that opened the page before it did.
    app.clock.advance(3600 - 301 - 60);
    let mut waiting = app.client();
    let waiting_csrf = csrf_of(&waiting.get(&page).await.body);
    app.clock.advance(120);
    let gone = app.client().get(&page).await;
    assert_eq!(gone.status, 410);
    assert!(gone.body.contains("invitation_expired"));
    let last = audit_events(&app).await.pop().unwrap();
    assert_eq!(last.action, "invitation.refused");
    assert_eq!(last.reason.as_deref(), Some("invitation_expired"));
    let begin_late = waiting
        .post_json("/api/enrol/begin", Some(&waiting_csrf), &body)
        .await;
    assert_eq!(begin_late.status, 410, "{}", begin_late.body);
    assert_eq!(begin_late.json()["error"], "invitation_expired");

    assert_eq!(credential_count(&app).await, 0);
    let users = app.state.storage.run(|s| s.count_users()).await.unwrap();
    assert_eq!(users, 0, "no member was created by any refusal");
    keygate::service::audit_log::verify(&app.state)
        .await
        .expect("chain verifies");
    app.stop().await;
}

#[actix_web::test]
async fn policy_rules_refuse_model_fips_and_same_physical_key() {
    let ca = trusted_ca();
    let app = TestApp::builder()
        .with_toml(&ca.toml)
        .with("policy.allowed_models", "[\"YubiKey 5 NFC\"]")
        .start()
        .await;
    let mut admin = app.client();
    let auth = SoftAuthenticator::new(&ca.ca);
    let done = bootstrap_admin(&app, &mut admin, &auth).await;
    assert_eq!(done.status, 200, "{}", done.body);

    // The same physical key (same attestation leaf) as a backup.
    let reply = enrol_with(&app, &mut admin, "/me/keys/new", json!({}), &auth, |_| {}).await;
    assert_refused(&app, &reply, 403, "same_physical_key", 1).await;

    // The same credential again.
    let existing_id = app
        .state
        .storage
        .run(|s| s.list_credentials())
        .await
        .unwrap()[0]
        .credential_id
        .clone();
    let other = physical_key(&ca.ca, YUBIKEY_5_NFC, 33);
    let reply = enrol_with(&app, &mut admin, "/me/keys/new", json!({}), &other, |o| {
        o.credential_id = Some(existing_id)
    })
    .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(
        reply.body.contains("duplicate_credential"),
        "{}",
        reply.body
    );

    // A model the policy does not allow.
    let fips = physical_key(&ca.ca, YUBIKEY_5CI_FIPS, 34);
    let reply = enrol_with(&app, &mut admin, "/me/keys/new", json!({}), &fips, |_| {}).await;
    assert_refused(&app, &reply, 403, "model_not_allowed", 1).await;
    app.stop().await;

    // FIPS only.
    let app = TestApp::builder()
        .with_toml(&ca.toml)
        .with("policy.fips_only", "true")
        .start()
        .await;
    let mut admin = app.client();
    let reply = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_refused(&app, &reply, 403, "fips_required", 0).await;
    let fips = physical_key(&ca.ca, YUBIKEY_5CI_FIPS, 35);
    let mut admin = app.client();
    let ok = bootstrap_admin(&app, &mut admin, &fips).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    app.stop().await;
}

#[actix_web::test]
async fn pages_carry_security_headers_and_errors_are_pages() {
    let app = TestApp::start().await;
    let mut client = app.client();
    let page = client.get(&app.bootstrap_path()).await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").expect("CSP");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!page.body.contains("<script>"), "no inline script");
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
    // A visitor gets only a double-submit CSRF cookie: no server-side session yet.
    let cookie = page.header("set-cookie").expect("CSRF cookie");
    assert!(cookie.starts_with("kg_session_csrf="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // Beginning a ceremony creates the session, with its own cookie.
    let csrf = csrf_of(&page.body);
    let token = token_of(&app.bootstrap_path());
    let body = json!({ "token": token, "email": "a@example.com" });
    let begun = client
        .post_json("/api/enrol/begin", Some(&csrf), &body)
        .await;
    assert_eq!(begun.status, 200, "{}", begun.body);
    let cookie = begun.header("set-cookie").expect("session cookie");
    assert!(cookie.starts_with("kg_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    // A CSRF header that does not match the browser's cookie starts nothing.
    let mut other = app.client();
    other.get(&app.bootstrap_path()).await;
    let forged = other
        .post_json("/api/enrol/begin", Some(&csrf), &body)
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(forged.json()["error"], "csrf");
    let refused = csrf_refusals(&app).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].actor, "anonymous");
    assert!(
        refused[0].details_json.contains("POST /api/enrol/begin"),
        "{}",
        refused[0].details_json
    );

    let missing = client.get("/enrol/not-a-token").await;
    assert_eq!(missing.status, 410);
    assert!(missing.body.contains("invitation_invalid"));
    // An invented link is audited too (within the per-address refusal limit).
    let last = audit_events(&app).await.pop().unwrap();
    assert_eq!(
        (
            last.action.as_str(),
            last.subject.as_str(),
            last.reason.as_deref()
        ),
        (
            "invitation.refused",
            "invitation:unknown",
            Some("invitation_invalid")
        )
    );
    let unknown = client.get("/api/nothing").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "not_found");
    let anon = client.get("/admin/members").await;
    assert_eq!(
        anon.status, 303,
        "anonymous admin page redirects to the start"
    );
    let anon_api = client.get("/api/admin/members").await;
    assert_eq!(anon_api.status, 401);
    // A query string its page cannot read: our error page, with the security headers.
    let bad = client.get("/?reauth=1&reauth=2").await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("malformed_query"), "{}", bad.body);
    assert!(bad.header("content-security-policy").is_some());
    assert_eq!(client.get("/readyz").await.status, 200);
    app.stop().await;
}

/// Behind https (cookies `Secure`) the cookies carry the `__Host-` prefix, so the browser
/// keeps them to this host and a sibling subdomain cannot set them; they work as before.
/// Every answer carries HSTS; on plain-http localhost (dev) neither HSTS nor the prefix.
#[actix_web::test]
async fn secure_cookies_are_host_only() {
    let plain = TestApp::builder().start().await;
    let page = plain.client().get("/").await;
    assert!(page.header("strict-transport-security").is_none());
    let cookie = page.header("set-cookie").expect("CSRF cookie");
    assert!(
        !cookie.starts_with("__Host-") && !cookie.contains("Secure"),
        "{cookie}"
    );
    plain.stop().await;

    let app = TestApp::builder()
        .with("server.public_url", "https://sso.example.com")
        .start()
        .await;
    let mut client = app.client();
    let page = client.get("/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for r in [
        &page,
        &client.get("/healthz").await,
        &client.get("/no-such-page").await,
    ] {
        assert_eq!(
            r.header("strict-transport-security").as_deref(),
            Some("max-age=31536000"),
            "{}",
            r.status
        );
    }
    let cookie = page.header("set-cookie").expect("CSRF cookie");
    assert!(cookie.starts_with("__Host-kg_session_csrf="), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
    let csrf = csrf_of(&page.body);
    let begun = client
        .post_json("/api/signin/begin", Some(&csrf), &json!({}))
        .await;
    assert_eq!(
        begun.status, 200,
        "the prefixed CSRF cookie is read: {}",
        begun.body
    );
    let cookie = begun.header("set-cookie").expect("session cookie");
    assert!(cookie.starts_with("__Host-kg_session="), "{cookie}");
    assert!(
        cookie.contains("Secure")
            && cookie.contains("Path=/")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
    // The session it set is found by that name.
    let again = client
        .post_json("/api/signin/begin", Some(&csrf), &json!({}))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(
        again.header("set-cookie").is_none(),
        "the same session, no new cookie"
    );
    app.stop().await;
}

#[actix_web::test]
async fn admin_forms_invite_and_revoke_with_csrf() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let mut admin = app.client();
    let done = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_eq!(done.status, 200, "{}", done.body);

    let page = admin.get("/admin/invitations").await;
    let csrf = csrf_of(&page.body);
    // Without the CSRF token the form is refused and nothing is created.
    let forged = admin
        .post_form(
            "/admin/invitations",
            &[
                ("csrf", "forged"),
                ("email", "eve@example.com"),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    let created = admin
        .post_form(
            "/admin/invitations",
            &[
                ("csrf", &csrf),
                ("email", "carol@example.com"),
                ("display_name", "Carol <b>"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(created.body.contains("id=\"invitation-link\""));
    assert!(!created.body.contains("Carol <b>"), "names are escaped");
    let bad = admin
        .post_form(
            "/admin/invitations",
            &[
                ("csrf", &csrf),
                ("email", "not-an-email"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(bad.status, 200);
    assert!(bad.body.contains("valid e-mail"));

    let list = admin.get("/api/admin/invitations").await.json();
    let pending: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1, "{list}");
    assert_eq!(pending[0]["email"], "carol@example.com");
    let id = pending[0]["id"].as_str().unwrap();
    let revoked = admin
        .post_form(
            &format!("/admin/invitations/{id}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.status, 303);
    let list = admin.get("/api/admin/invitations").await.json();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["status"] != "pending"));

    // Revoking one's own key from the member page.
    let me = admin.get("/api/me").await.json();
    let key_id = me["keys"][0]["id"].as_str().unwrap().to_string();
    let no_csrf = admin
        .post_form(&format!("/me/keys/{key_id}/revoke"), &[("csrf", "")])
        .await;
    assert_eq!(no_csrf.status, 403);
    // Refused and audited, naming the member and what was asked (the path, no query).
    let refused = csrf_refusals(&app).await;
    let last = refused.last().expect("a csrf.refused event");
    assert_eq!(
        last.actor,
        format!("user:{}", me["member"]["id"].as_str().unwrap())
    );
    assert_eq!(last.reason.as_deref(), Some("csrf"));
    let details: serde_json::Value = serde_json::from_str(&last.details_json).unwrap();
    assert_eq!(details["request"], format!("POST /me/keys/{key_id}/revoke"));
    let ok = admin
        .post_form(&format!("/me/keys/{key_id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(ok.status, 303);
    let keys = app
        .state
        .storage
        .run(|s| s.list_credentials())
        .await
        .unwrap();
    assert!(keys[0].revoked_at.is_some());
    // This session was signed in by that key: it ended with it.
    assert_eq!(admin.get("/api/me").await.status, 401);

    // Signing out (here of a session that already ended) clears the cookie.
    let out = admin.post_form("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert!(!admin.cookies.contains_key("kg_session"));
    app.stop().await;
}

#[actix_web::test]
async fn bootstrap_link_dies_once_any_admin_exists() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let bootstrap = app.bootstrap_path();
    // An admin created another way (an admin invitation, e.g. from `keygate invite`).
    let issued = keygate::service::invitations::create(
        &app.state,
        &keygate::service::Actor::cli(),
        "root@example.com",
        "Root",
        "admin",
    )
    .await
    .unwrap();
    let path = issued.link.trim_start_matches(app.origin()).to_string();
    let mut first = app.client();
    let done = enrol_with(
        &app,
        &mut first,
        &path,
        json!({ "token": token_of(&path) }),
        &SoftAuthenticator::new(&ca.ca),
        |_| {},
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);

    // The bootstrap link printed at start-up no longer works.
    let reply = app.client().get(&bootstrap).await;
    assert_eq!(reply.status, 410, "{}", reply.body);
    let invitations = keygate::service::invitations::list(&app.state)
        .await
        .unwrap();
    let boot = invitations.iter().find(|i| i.kind == "bootstrap").unwrap();
    assert_eq!(boot.status, "revoked");
    app.stop().await;
}

async fn csrf_refusals(app: &TestApp) -> Vec<keygate::audit::AuditRecord> {
    let mut events = audit_events(app).await;
    events.retain(|e| e.action == "csrf.refused");
    events
}
