//! Recovery without a help desk (SPEC C2), end to end over HTTP: a member who lost one key
//! signs in with the backup and enrols a replacement; a member who lost every key is
//! recovered only when two different admins agree, each with a fresh key touch, through a
//! one-time link that adds the key to the same member. Every refusal changes nothing.

use keygate::state::Clock;
use serde_json::json;

use crate::enrolment_http::{
    app_trusting, audit_events, begin, finish_body, options_for, physical_key, token_of,
    trusted_ca, TrustedCa,
};
use crate::signin_http::{admin_with_key, sign_in};
use crate::support::app::{csrf_of, Client, Reply, TestApp};
use crate::support::authenticator::{
    SoftAuthenticator, SoftCredential, YUBIKEY_5CI_FIPS, YUBIKEY_5_NFC,
};
use crate::support::meddled::{MeddledStore, Meddling};

/// A signed-in person: their browser, their key(s) and their id.
pub(crate) struct Person {
    pub client: Client,
    pub keys: Vec<SoftCredential>,
    pub id: String,
}

impl Person {
    /// Signs in again with key `k` (a fresh touch) and returns the CSRF token of `page`.
    pub async fn touch(&mut self, app: &TestApp, k: usize, page: &str) -> String {
        let (client, r) = sign_in(app, &mut self.keys[k], &self.id, None, |_| {}).await;
        assert_eq!(r.status, 200, "sign-in: {}", r.body);
        self.client = client;
        let page = self.client.get(page).await;
        assert_eq!(page.status, 200, "{}", page.body);
        csrf_of(&page.body)
    }
}

/// Enrols through `path` (an invitation or recovery link, or `/me/keys/new`) with `auth`.
pub(crate) async fn enrol(
    app: &TestApp,
    client: &mut Client,
    path: &str,
    body: serde_json::Value,
    auth: &SoftAuthenticator,
) -> (Reply, SoftCredential) {
    let (csrf, options) = begin(client, path, body).await;
    let reg = auth.register(&options_for(app, &options));
    let done = client
        .post_json("/api/enrol/finish", Some(&csrf), &finish_body(&reg, "Key"))
        .await;
    (done, reg.credential)
}

pub(crate) fn path_of(app: &TestApp, link: &str) -> String {
    link.trim_start_matches(app.origin()).to_string()
}

/// Ada invites `email` with `role`; they enrol a first key and a backup.
pub(crate) async fn invite_with_two_keys(
    app: &TestApp,
    ca: &TrustedCa,
    ada: &mut Person,
    email: &str,
    role: &str,
    serial: u8,
) -> Person {
    let csrf = ada.touch(app, 0, "/admin/invitations").await;
    let inv = ada
        .client
        .post_json(
            "/api/admin/invitations",
            Some(&csrf),
            &json!({ "email": email, "display_name": email, "role": role }),
        )
        .await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    let path = path_of(app, inv.json()["link"].as_str().unwrap());
    enrol_two_keys(app, ca, &path, serial).await
}

/// The operator invites `email` as an admin (`keygate invite --role admin`, while fewer
/// than two admins exist); they enrol a first key and a backup.
pub(crate) async fn operator_invites_admin(
    app: &TestApp,
    ca: &TrustedCa,
    email: &str,
    serial: u8,
) -> Person {
    let issued = keygate::service::invitations::create(
        &app.state,
        &keygate::service::Actor::cli(),
        email,
        email,
        "admin",
    )
    .await
    .expect("the operator's admin invitation");
    enrol_two_keys(app, ca, &path_of(app, &issued.link), serial).await
}

/// Whoever holds the link at `path` enrols a first key and a backup.
pub(crate) async fn enrol_two_keys(
    app: &TestApp,
    ca: &TrustedCa,
    path: &str,
    serial: u8,
) -> Person {
    let mut client = app.client();
    let (done, first) = enrol(
        app,
        &mut client,
        path,
        json!({ "token": token_of(path) }),
        &physical_key(&ca.ca, YUBIKEY_5_NFC, serial),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let id = done.json()["user_id"].as_str().unwrap().to_string();
    let (done, backup) = enrol(
        app,
        &mut client,
        "/me/keys/new",
        json!({}),
        &physical_key(&ca.ca, YUBIKEY_5CI_FIPS, serial + 1),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let me = client.get("/api/me").await.json();
    assert_eq!(me["member"]["compliant"], true, "{me}");
    Person {
        client,
        keys: vec![first, backup],
        id,
    }
}

/// Ada, the bootstrap admin, with her key.
pub(crate) async fn first_admin(app: &TestApp, ca: &TrustedCa) -> Person {
    let (cred, id) = admin_with_key(app, &physical_key(&ca.ca, YUBIKEY_5_NFC, 1)).await;
    Person {
        client: app.client(),
        keys: vec![cred],
        id,
    }
}

/// Two admins (Ada, the bootstrap admin, and Grace, whom the operator invited, so
/// neither made the other admin) and Bob, a member; each with two keys. A second later:
/// both admins held the role before any request the test opens.
async fn world(app: &TestApp, ca: &TrustedCa) -> (Person, Person, Person) {
    let mut ada = first_admin(app, ca).await;
    let grace = operator_invites_admin(app, ca, "grace@example.com", 10).await;
    let bob = invite_with_two_keys(app, ca, &mut ada, "bob@example.com", "member", 20).await;
    app.clock.advance(1);
    (ada, grace, bob)
}

/// What a refusal must leave alone: members, keys, invitations, recovery requests.
pub(crate) async fn snapshot(app: &TestApp, bob: &str) -> String {
    let bob = bob.to_string();
    let (users, creds, invs, reqs) = app
        .state
        .storage
        .run(move |s| {
            Ok((
                s.list_users()?.len(),
                s.list_credentials()?
                    .into_iter()
                    .map(|c| (c.id, c.revoked_at))
                    .collect::<Vec<_>>(),
                s.list_invitations(keygate::storage::InvitationFilter::All, 0)?
                    .into_iter()
                    .map(|i| (i.id, i.used_at, i.revoked_at))
                    .collect::<Vec<_>>(),
                s.recovery_requests_for_user(&bob)?,
            ))
        })
        .await
        .unwrap();
    format!("{users} {creds:?} {invs:?} {reqs:?}")
}

pub(crate) async fn last_event(app: &TestApp) -> keygate::audit::AuditRecord {
    audit_events(app).await.pop().expect("an audit event")
}

async fn actions(app: &TestApp) -> Vec<String> {
    audit_events(app)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect()
}

pub(crate) async fn open_request(
    app: &TestApp,
    admin: &mut Person,
    member: &str,
    reason: &str,
) -> String {
    let csrf = admin
        .touch(app, 0, &format!("/admin/members/{member}"))
        .await;
    let r = admin
        .client
        .post_json(
            &format!("/api/admin/members/{member}/recovery"),
            Some(&csrf),
            &json!({ "reason": reason }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["status"], "pending");
    r.json()["id"].as_str().unwrap().to_string()
}

pub(crate) async fn approve(
    app: &TestApp,
    admin: &mut Person,
    request: &str,
    fresh: bool,
) -> Reply {
    let csrf = if fresh {
        admin.touch(app, 0, "/admin/invitations").await
    } else {
        csrf_of(&admin.client.get("/admin/invitations").await.body)
    };
    admin
        .client
        .post_json(
            &format!("/api/admin/recovery/{request}/approve"),
            Some(&csrf),
            &json!({}),
        )
        .await
}

#[actix_web::test]
async fn lost_one_key_sign_in_with_the_backup_and_enrol_a_replacement() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (_ada, _grace, mut bob) = world(&app, &ca).await;

    // Bob lost his first key: he signs in with the backup and revokes the lost one.
    let csrf = bob.touch(&app, 1, "/me").await;
    let raw = bob.keys[0].id.clone();
    let lost = app
        .state
        .storage
        .run(move |s| s.credential_by_credential_id(&raw))
        .await
        .unwrap()
        .expect("the lost key")
        .id;
    let r = bob
        .client
        .post_form(&format!("/me/keys/{lost}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let me = bob.client.get("/api/me").await.json();
    assert_eq!(me["member"]["compliant"], false, "{me}");

    // A replacement key, enrolled with the backup's fresh touch: compliant again.
    let (done, _) = enrol(
        &app,
        &mut bob.client,
        "/me/keys/new",
        json!({}),
        &physical_key(&ca.ca, YUBIKEY_5_NFC, 30),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["new_member"], false);
    assert_eq!(done.json()["user_id"], bob.id.as_str());
    let me = bob.client.get("/api/me").await.json();
    assert_eq!(me["member"]["compliant"], true, "{me}");
    assert_eq!(me["member"]["active_keys"], 2, "{me}");

    // The lost key no longer signs in.
    let (_, r) = sign_in(&app, &mut bob.keys[0], &bob.id, None, |_| {}).await;
    assert_eq!(r.status, 403, "{}", r.body);
    app.stop().await;
}

#[actix_web::test]
async fn two_admins_recover_a_member_who_lost_every_key() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut ada, mut grace, mut bob) = world(&app, &ca).await;
    let users_before = app
        .state
        .storage
        .run(|s| s.list_users())
        .await
        .unwrap()
        .len();

    // Ada opens a request on Bob's page (the form); it revokes nothing yet.
    let csrf = ada
        .touch(&app, 0, &format!("/admin/members/{}", bob.id))
        .await;
    let r = ada
        .client
        .post_form(
            &format!("/admin/members/{}/recovery", bob.id),
            &[("csrf", &csrf), ("reason", "lost both keys on a trip")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = ada.client.get(&format!("/admin/members/{}", bob.id)).await;
    assert!(
        page.body.contains("lost both keys on a trip"),
        "{}",
        page.body
    );
    let list = ada
        .client
        .get(&format!("/api/admin/members/{}/recovery", bob.id))
        .await
        .json();
    let request = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["status"], "pending");
    let last = last_event(&app).await;
    assert_eq!(last.action, "recovery.requested");
    let me = bob.client.get("/api/me").await.json();
    assert_eq!(me["member"]["active_keys"], 2, "nothing revoked yet");

    // Ada cannot approve her own request; Bob (a member) cannot approve at all.
    let before = snapshot(&app, &bob.id).await;
    let r = approve(&app, &mut ada, &request, true).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let last = last_event(&app).await;
    assert_eq!(last.action, "recovery.refused");
    assert_eq!(last.reason.as_deref(), Some("own_request"));
    let csrf = bob.touch(&app, 0, "/me").await;
    let r = bob
        .client
        .post_json(
            &format!("/api/admin/recovery/{request}/approve"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        snapshot(&app, &bob.id).await,
        before,
        "refusals change nothing"
    );

    // Grace approves with a fresh touch: the link is shown once, Bob's keys are revoked
    // and his sessions end.
    let r = approve(&app, &mut grace, &request, true).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let issued = r.json();
    assert_eq!(issued["request"]["status"], "approved");
    assert_eq!(issued["request"]["approved_by"], grace.id.as_str());
    assert_eq!(issued["revoked_keys"], 2);
    let link = path_of(&app, issued["link"].as_str().unwrap());
    assert_eq!(
        bob.client.get("/api/me").await.status,
        401,
        "sessions ended"
    );
    let acts = actions(&app).await;
    for a in ["recovery.approved", "recovery.link_issued", "key.revoked"] {
        assert!(acts.iter().any(|x| x == a), "{a} in {acts:?}");
    }
    for k in 0..2 {
        let (_, r) = sign_in(&app, &mut bob.keys[k], &bob.id, None, |_| {}).await;
        assert_eq!(r.status, 403, "old keys stay revoked: {}", r.body);
    }

    // Nobody approves twice.
    let before = snapshot(&app, &bob.id).await;
    let r = approve(&app, &mut grace, &request, true).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["error"], "recovery_already_approved");
    assert_eq!(
        last_event(&app).await.reason.as_deref(),
        Some("already_approved")
    );
    assert_eq!(snapshot(&app, &bob.id).await, before);

    // Someone trying to make a new member out of the link is refused.
    let mut mallory = app.client();
    let (_, options) = begin(
        &mut mallory,
        &link,
        json!({ "token": token_of(&link), "email": "mallory@example.com", "display_name": "M" }),
    )
    .await;
    assert_eq!(options.status, 400, "{}", options.body);
    assert_eq!(options.json()["error"], "unexpected_field");
    assert_eq!(snapshot(&app, &bob.id).await, before);

    // Bob enrols a new key through the link: the same member, not a new one.
    let mut browser = app.client();
    let (done, new_key) = enrol(
        &app,
        &mut browser,
        &link,
        json!({ "token": token_of(&link) }),
        &physical_key(&ca.ca, YUBIKEY_5_NFC, 40),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let done = done.json();
    assert_eq!(done["user_id"], bob.id.as_str());
    assert_eq!(done["new_member"], false);
    assert_eq!(done["recovered"], true);
    let users = app
        .state
        .storage
        .run(|s| s.list_users())
        .await
        .unwrap()
        .len();
    assert_eq!(users, users_before, "no new member");
    let last = last_event(&app).await;
    assert_eq!(last.action, "recovery.completed");
    let list = ada
        .client
        .get(&format!("/api/admin/members/{}/recovery", bob.id))
        .await
        .json();
    assert_eq!(list[0]["status"], "completed");

    // The enrolling browser is signed in as Bob; he signs in with the new key too; his
    // old keys stay revoked.
    let me = browser.get("/api/me").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["member"]["id"], bob.id.as_str());
    bob.keys.push(new_key);
    bob.touch(&app, 2, "/me").await;
    let me = bob.client.get("/api/me").await.json();
    assert_eq!(me["member"]["id"], bob.id.as_str());
    assert_eq!(me["member"]["email"], "bob@example.com");
    assert_eq!(me["member"]["active_keys"], 1, "{me}");
    assert_eq!(me["keys"].as_array().unwrap().len(), 3, "{me}");

    // The link works once.
    let before = snapshot(&app, &bob.id).await;
    let reuse = app.client().get(&link).await;
    assert_eq!(reuse.status, 410);
    assert!(reuse.body.contains("invitation_used"), "{}", reuse.body);
    assert_eq!(snapshot(&app, &bob.id).await, before);

    let verdict = keygate::service::audit_log::verify(&app.state)
        .await
        .expect("chain verifies");
    assert!(verdict.contains("OK"), "{verdict}");
    app.stop().await;
}

#[actix_web::test]
async fn recovery_refusals_change_nothing() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut ada, mut grace, bob) = world(&app, &ca).await;

    // A reason is required; nobody opens their own recovery.
    let csrf = ada.touch(&app, 0, "/admin/invitations").await;
    let before = snapshot(&app, &bob.id).await;
    let r = ada
        .client
        .post_json(
            &format!("/api/admin/members/{}/recovery", bob.id),
            Some(&csrf),
            &json!({ "reason": "   " }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "reason_required");
    let r = ada
        .client
        .post_json(
            &format!("/api/admin/members/{}/recovery", bob.id),
            Some(&csrf),
            &json!({ "reason": "x".repeat(501) }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_reason");
    let r = ada
        .client
        .post_raw(
            &format!("/api/admin/members/{}/recovery", bob.id),
            Some(&csrf),
            b"{\"reason\": ".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = ada
        .client
        .post_json(
            "/api/admin/recovery/no-such-request/approve",
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = ada
        .client
        .post_json(
            &format!("/api/admin/members/{}/recovery", ada.id),
            Some(&csrf),
            &json!({ "reason": "me" }),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let last = last_event(&app).await;
    assert_eq!(
        (last.action.as_str(), last.reason.as_deref()),
        ("recovery.refused", Some("own_recovery"))
    );
    assert_eq!(last.subject, format!("user:{}", ada.id));
    assert!(
        last.details_json.contains("\"request\":null"),
        "{}",
        last.details_json
    );
    assert_eq!(snapshot(&app, &bob.id).await, before);

    // A stale session: reauthentication required, for opening and for approving.
    let request = open_request(&app, &mut ada, &bob.id, "lost both").await;
    let csrf = csrf_of(&grace.client.get("/admin/invitations").await.body);
    app.clock.advance(301);
    let before = snapshot(&app, &bob.id).await;
    let r = approve(&app, &mut grace, &request, false).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "reauthentication_required");
    let r = grace
        .client
        .post_json(
            &format!("/api/admin/members/{}/recovery", bob.id),
            Some(&csrf),
            &json!({ "reason": "again" }),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(snapshot(&app, &bob.id).await, before);

    // The member being recovered cannot approve their own recovery, even as an admin.
    let for_grace = open_request(&app, &mut ada, &grace.id, "lost both").await;
    let before = snapshot(&app, &grace.id).await;
    let r = approve(&app, &mut grace, &for_grace, true).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        last_event(&app).await.reason.as_deref(),
        Some("own_recovery")
    );
    assert_eq!(snapshot(&app, &grace.id).await, before);

    // An expired request cannot be approved.
    app.clock.advance(24 * 3600 + 1);
    let before = snapshot(&app, &bob.id).await;
    let r = approve(&app, &mut grace, &request, true).await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(r.json()["error"], "recovery_expired");
    let last = last_event(&app).await;
    assert_eq!(last.action, "recovery.refused");
    assert_eq!(last.reason.as_deref(), Some("expired"));
    assert_eq!(snapshot(&app, &bob.id).await, before);
    ada.touch(&app, 0, "/admin/invitations").await;
    let list = ada
        .client
        .get(&format!("/api/admin/members/{}/recovery", bob.id))
        .await
        .json();
    assert_eq!(list[0]["status"], "expired", "{list}");

    // An expired recovery link: refused, Bob keeps no new key.
    // (This time Grace approves on the member's page: the link is on the page she gets.)
    let request = open_request(&app, &mut ada, &bob.id, "lost both, again").await;
    let page = ada.client.get(&format!("/admin/members/{}", bob.id)).await;
    assert!(!page
        .body
        .contains(&format!("/admin/recovery/{request}/approve")));
    let csrf = grace
        .touch(&app, 0, &format!("/admin/members/{}", bob.id))
        .await;
    let page = grace
        .client
        .get(&format!("/admin/members/{}", bob.id))
        .await;
    assert!(page
        .body
        .contains(&format!("/admin/recovery/{request}/approve")));
    let r = grace
        .client
        .post_form(
            &format!("/admin/recovery/{request}/approve"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let marker = "<code id=\"recovery-link\">";
    let start = r.body.find(marker).expect("the link on the page") + marker.len();
    let end = start + r.body[start..].find('<').unwrap();
    let link = path_of(&app, &r.body[start..end]);
    // Bob opens the page in time but comes back to it too late.
    let mut late = app.client();
    let page = late.get(&link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    app.clock.advance(3601);
    let before = snapshot(&app, &bob.id).await;
    let page = app.client().get(&link).await;
    assert_eq!(page.status, 410);
    assert!(page.body.contains("invitation_expired"), "{}", page.body);
    let r = late
        .post_json(
            "/api/enrol/begin",
            Some(&csrf),
            &json!({ "token": token_of(&link) }),
        )
        .await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(r.json()["error"], "invitation_expired");
    assert_eq!(snapshot(&app, &bob.id).await, before);

    // A newer approval leaves one live link: the earlier one no longer works.
    let first = open_request(&app, &mut ada, &bob.id, "lost both, third time").await;
    let r = approve(&app, &mut grace, &first, true).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let old_link = path_of(&app, r.json()["link"].as_str().unwrap());
    let page = app.client().get(&old_link).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Recover your account"), "{}", page.body);
    let second = open_request(&app, &mut ada, &bob.id, "lost both, fourth time").await;
    let r = approve(&app, &mut grace, &second, true).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(app.client().get(&old_link).await.status, 410);
    let new_link = path_of(&app, r.json()["link"].as_str().unwrap());
    assert_eq!(app.client().get(&new_link).await.status, 200);
    app.stop().await;
}

#[actix_web::test]
async fn approval_is_a_single_conditional_update() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (ada, grace, bob) = world(&app, &ca).await;
    let now = app.state.now();
    let req = keygate::storage::RecoveryRequest {
        id: "r1".into(),
        user_id: bob.id.clone(),
        requested_by: ada.id.clone(),
        reason: "lost both".into(),
        created_at: now,
        expires_at: now + 60,
        approved_by: None,
        approved_at: None,
        invitation_id: None,
        completed_at: None,
        status: "pending".into(),
    };
    let inv = keygate::storage::NewInvitation {
        id: "i1".into(),
        token_hash: "00".repeat(32),
        kind: keygate::storage::InvitationKind::Recovery,
        email: "bob@example.com".into(),
        display_name: String::new(),
        role: keygate::storage::Role::Member,
        created_by: None,
        created_at: now,
        expires_at: now + 60,
    };
    let (a, g, b) = (ada.id.clone(), grace.id.clone(), bob.id.clone());
    let outcomes = app
        .state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                tx.insert_invitation(&inv)?;
                tx.insert_recovery_request(&req)?;
                Ok(vec![
                    tx.approve_recovery_request("r1", &a, "i1", now)?,
                    tx.approve_recovery_request("r1", &b, "i1", now)?,
                    tx.approve_recovery_request("r1", &g, "i1", now + 60)?,
                    tx.approve_recovery_request("r1", &g, "i1", now)?,
                    tx.approve_recovery_request("r1", &g, "i1", now)?,
                    tx.complete_recovery_request("r1", now)?,
                    tx.complete_recovery_request("r1", now)?,
                ])
            })
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [false, false, false, true, false, true, false],
        "requester, target, expired, second admin, twice, completed once"
    );
    app.stop().await;
}

/// The two recovery lifetimes are settings: the request and the link expire when the
/// configuration says, and a request past its lifetime can no longer be approved.
#[actix_web::test]
async fn recovery_lifetimes_follow_the_settings() {
    let ca = trusted_ca();
    let app = TestApp::builder()
        .with_toml(&ca.toml)
        .with("enrolment.recovery_request_ttl_secs", "7200")
        .with("enrolment.recovery_link_ttl_secs", "900")
        // The admins' sessions outlive the clock moved past the request's lifetime.
        .with("session.idle_ttl_secs", "86400")
        .start()
        .await;
    let (mut ada, mut grace, bob) = world(&app, &ca).await;
    let request = open_request(&app, &mut ada, &bob.id, "lifetimes").await;
    let list = ada
        .client
        .get(&format!("/api/admin/members/{}/recovery", bob.id))
        .await
        .json();
    assert_eq!(
        list[0]["expires_at"].as_i64().unwrap() - list[0]["created_at"].as_i64().unwrap(),
        7200
    );
    let approved_at = app.clock.now().unix_timestamp();
    let r = approve(&app, &mut grace, &request, true).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let link_expiry = r.json()["expires_at"].as_i64().unwrap() - approved_at;
    assert!((900..=902).contains(&link_expiry), "{link_expiry}");

    // A second request, left past its two hours: 410, nothing issued.
    let late = open_request(&app, &mut ada, &bob.id, "too late").await;
    app.clock.advance(7201);
    let r = approve(&app, &mut grace, &late, true).await;
    assert_eq!(r.status, 410, "{}", r.body);
    app.stop().await;
}

#[actix_web::test]
async fn an_approval_while_the_shared_store_fails_changes_nothing_and_a_retry_completes_it() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut ada, mut grace, mut bob) = world(&app, &ca).await;
    let request = open_request(&app, &mut ada, &bob.id, "lost both").await;
    grace.touch(&app, 0, "/admin/invitations").await;
    let token = grace.client.cookies["kg_session"].clone();
    let approver = keygate::service::session::load(&app.state, &token)
        .await
        .unwrap()
        .expect("Grace's session");
    let actor = keygate::service::Actor::user(&grace.id, None);
    assert_eq!(bob.client.get("/api/me").await.status, 200);

    // The shared store fails: the member's sessions cannot be ended, so nothing is
    // approved, revoked or issued, and Bob stays signed in.
    let mut failing = app.state.clone();
    failing.ephemeral = std::sync::Arc::new(MeddledStore {
        inner: app.state.ephemeral.clone(),
        meddling: Meddling::FailWrites,
    });
    let before = snapshot(&app, &bob.id).await;
    let failed = keygate::service::recovery::approve(&failing, &approver, &actor, &request).await;
    assert_eq!(failed.err().map(|e| e.code()), Some("unavailable"));
    assert_eq!(snapshot(&app, &bob.id).await, before);
    assert_eq!(bob.client.get("/api/me").await.status, 200);

    // The store answers again: the same request is approved, Bob's keys and session end.
    let issued = keygate::service::recovery::approve(&app.state, &approver, &actor, &request)
        .await
        .expect("the approval");
    assert_eq!(issued.revoked_keys, 2);
    assert!(issued.link.contains("/enrol/"), "{}", issued.link);
    assert_eq!(bob.client.get("/api/me").await.status, 401);
    app.stop().await;
}

#[actix_web::test]
async fn an_admin_disables_a_member_who_is_signed_out_and_refused_until_enabled() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut ada, _grace, mut bob) = world(&app, &ca).await;
    assert_eq!(bob.client.get("/api/me").await.status, 200);
    let csrf = ada.touch(&app, 0, "/admin/invitations").await;
    let api = |change: &str| format!("/api/admin/members/{}/{change}", bob.id);

    // Nobody disables themselves; a member cannot disable anyone.
    let own = ada
        .client
        .post_json(
            &format!("/api/admin/members/{}/disable", ada.id),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(own.status, 403, "{}", own.body);
    let last = last_event(&app).await;
    assert_eq!(
        (last.action.as_str(), last.reason.as_deref()),
        ("member.refused", Some("own_account"))
    );
    let bob_csrf = csrf_of(&bob.client.get("/me").await.body);
    let by_member = bob
        .client
        .post_json(&api("disable"), Some(&bob_csrf), &json!({}))
        .await;
    assert_eq!(by_member.status, 403, "{}", by_member.body);
    assert_eq!(
        ada.client
            .post_json("/api/admin/members/nobody/disable", Some(&csrf), &json!({}))
            .await
            .status,
        404
    );
    let other = ada
        .client
        .post_json(&api("suspend"), Some(&csrf), &json!({}))
        .await;
    assert_eq!(other.status, 404, "{}", other.body);

    // Disabled: Bob's session ends, his keys no longer sign him in, the export and the
    // dashboard say why.
    let r = ada
        .client
        .post_json(&api("disable"), Some(&csrf), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let detail = r.json();
    assert_eq!(detail["member"]["status"], "disabled");
    assert_eq!(detail["member"]["compliant"], false);
    assert_eq!(
        detail["keys"].as_array().unwrap().len(),
        2,
        "keys stay on record"
    );
    let last = last_event(&app).await;
    assert_eq!(last.action, "member.disabled");
    assert_eq!(last.subject, format!("user:{}", bob.id));
    assert_eq!(bob.client.get("/api/me").await.status, 401);
    // Disabling again changes nothing and records nothing.
    let events = audit_events(&app).await.len();
    let again = ada
        .client
        .post_json(&api("disable"), Some(&csrf), &json!({}))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(audit_events(&app).await.len(), events);
    let (_, r) = sign_in(&app, &mut bob.keys[0], &bob.id, None, |_| {}).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let page = ada.client.get(&format!("/admin/members/{}", bob.id)).await;
    assert!(page.body.contains("id=\"enable-member\""), "{}", page.body);

    // Enabled again from the member page (a form): Bob signs in.
    let r = ada
        .client
        .post_form(
            &format!("/admin/members/{}/enable", bob.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(last_event(&app).await.action, "member.enabled");
    let (_, r) = sign_in(&app, &mut bob.keys[0], &bob.id, None, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let page = ada.client.get(&format!("/admin/members/{}", bob.id)).await;
    assert!(page.body.contains("id=\"disable-member\""), "{}", page.body);
    let mine = ada.client.get(&format!("/admin/members/{}", ada.id)).await;
    assert!(
        !mine.body.contains("disable-member"),
        "no button for oneself"
    );
    app.stop().await;
}
