//! The two-admin rules hold only if admins cannot be conjured (issue 29): granting the admin
//! role needs a fresh key touch; once two admins exist an admin invitation works only after
//! a second admin approved it; the operator invites admins only while fewer than two exist;
//! and an admin never counts as the second to the one who made them admin, nor to a
//! request opened before they were admin. Over HTTP, on the backend the environment picks.

use serde_json::json;

use crate::enrolment_http::{
    app_trusting, audit_events, begin, finish_body, options_for, physical_key, token_of, trusted_ca,
};
use crate::recovery_http::{
    approve, enrol_two_keys, first_admin, invite_with_two_keys, last_event, open_request,
    operator_invites_admin, path_of, snapshot, Person,
};
use crate::support::app::{Reply, TestApp};
use crate::support::authenticator::YUBIKEY_5_NFC;

/// `admin` asks for an invitation of `email` with `role` (a fresh touch first if `fresh`).
async fn invite(app: &TestApp, admin: &mut Person, email: &str, role: &str, fresh: bool) -> Reply {
    let csrf = if fresh {
        admin.touch(app, 0, "/admin/invitations").await
    } else {
        crate::support::app::csrf_of(&admin.client.get("/admin/invitations").await.body)
    };
    admin
        .client
        .post_json(
            "/api/admin/invitations",
            Some(&csrf),
            &json!({ "email": email, "display_name": email, "role": role }),
        )
        .await
}

/// `admin` approves invitation `id` through the API, with a fresh touch.
async fn approve_invitation(app: &TestApp, admin: &mut Person, id: &str) -> Reply {
    let csrf = admin.touch(app, 0, "/admin/invitations").await;
    admin
        .client
        .post_json(
            &format!("/api/admin/invitations/{id}/approve"),
            Some(&csrf),
            &json!({}),
        )
        .await
}

/// Opens the enrolment link at `path`: refused with 409 `invitation_awaiting_approval`
/// (the page, and the API's begin for the same token), audited.
async fn awaits_approval(app: &TestApp, path: &str) {
    let mut client = app.client();
    let page = client.get(path).await;
    assert_eq!(page.status, 409, "{}", page.body);
    assert!(page.body.contains("second admin"), "{}", page.body);
    let csrf = crate::support::app::csrf_of(&client.get("/").await.body);
    let r = client
        .post_json(
            "/api/enrol/begin",
            Some(&csrf),
            &json!({ "token": token_of(path) }),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["error"], "invitation_awaiting_approval");
    assert_eq!(
        refused(&last_event(app).await),
        ("invitation.refused", Some("invitation_awaiting_approval"))
    );
}

fn refused(last: &keygate::audit::AuditRecord) -> (&str, Option<&str>) {
    (last.action.as_str(), last.reason.as_deref())
}

async fn member(admin: &mut Person, id: &str) -> serde_json::Value {
    let r = admin.client.get(&format!("/api/admin/members/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["member"].clone()
}

async fn invitation(admin: &mut Person, id: &str) -> serde_json::Value {
    let list = admin.client.get("/api/admin/invitations").await.json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .cloned()
        .expect("the invitation is listed")
}

/// The attack of issue 29: the only admin invites an admin account of her own, enrols its
/// keys, opens a recovery request and approves it as that account. Refused.
#[actix_web::test]
async fn an_admin_of_ones_own_making_cannot_approve_ones_recovery_request() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let mut ada = first_admin(&app, &ca).await;
    let mut mallory =
        invite_with_two_keys(&app, &ca, &mut ada, "mallory@example.com", "admin", 30).await;
    let bob = invite_with_two_keys(&app, &ca, &mut ada, "bob@example.com", "member", 40).await;
    app.clock.advance(1);

    // Mallory's record says who made her admin, and when.
    let m = member(&mut ada, &mallory.id).await;
    assert_eq!(m["role"], "admin");
    assert_eq!(m["admin_granted_by"], format!("user:{}", ada.id));
    assert!(m["admin_since"].as_i64().is_some(), "{m}");
    let granted = audit_events(&app)
        .await
        .into_iter()
        .find(|e| e.action == "admin.granted" && e.subject == format!("user:{}", mallory.id))
        .expect("admin.granted for Mallory");
    assert!(
        granted
            .details_json
            .contains(&format!("\"granted_by\":\"user:{}\"", ada.id)),
        "{}",
        granted.details_json
    );

    let request = open_request(&app, &mut ada, &bob.id, "lost both").await;
    let before = snapshot(&app, &bob.id).await;
    let r = approve(&app, &mut mallory, &request, true).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("made you admin"),
        "{}",
        r.body
    );
    let last = last_event(&app).await;
    assert_eq!(
        refused(&last),
        ("recovery.refused", Some("made_admin_by_requester"))
    );
    assert!(
        last.details_json.contains(&request),
        "{}",
        last.details_json
    );
    assert_eq!(snapshot(&app, &bob.id).await, before, "nothing changed");
    app.stop().await;
}

/// With two admins, Ada's admin invitation waits for Grace; the admin it makes approves
/// neither Ada's nor Grace's requests, nor one opened before they were admin; Ada approves
/// Grace's.
#[actix_web::test]
async fn with_two_admins_a_new_admin_needs_a_second_admin_and_approves_neither() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let mut ada = first_admin(&app, &ca).await;
    let mut grace = operator_invites_admin(&app, &ca, "grace@example.com", 10).await;
    let bob = invite_with_two_keys(&app, &ca, &mut ada, "bob@example.com", "member", 20).await;
    app.clock.advance(1);
    let early = open_request(&app, &mut ada, &bob.id, "lost both").await;

    // Ada's admin invitation is made, and waits.
    let r = invite(&app, &mut ada, "carol@example.com", "admin", true).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["awaiting_approval"], true);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = path_of(&app, r.json()["link"].as_str().unwrap());
    let created = last_event(&app).await;
    assert_eq!(created.action, "invitation.created");
    assert!(
        created.details_json.contains("\"approval_required\":true"),
        "{}",
        created.details_json
    );
    assert_eq!(
        invitation(&mut ada, &id).await["status"],
        "awaiting_approval"
    );

    // Its link does not work yet.
    awaits_approval(&app, &path).await;

    // Ada cannot approve her own invitation; Grace needs a fresh touch.
    let r = approve_invitation(&app, &mut ada, &id).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        refused(&last_event(&app).await),
        ("invitation.refused", Some("own_invitation"))
    );
    let csrf = grace.touch(&app, 0, "/admin/invitations").await;
    app.clock.advance(301);
    let r = grace
        .client
        .post_json(
            &format!("/api/admin/invitations/{id}/approve"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "reauthentication_required");
    assert_eq!(
        invitation(&mut ada, &id).await["status"],
        "awaiting_approval"
    );

    // Grace approves: audited, once.
    let r = approve_invitation(&app, &mut grace, &id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "pending");
    assert_eq!(r.json()["approved_by"], format!("user:{}", grace.id));
    let approved = last_event(&app).await;
    assert_eq!(approved.action, "invitation.approved");
    assert_eq!(approved.actor, format!("user:{}", grace.id));
    let r = approve_invitation(&app, &mut grace, &id).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["error"], "invitation_already_approved");

    // Carol enrols, as an admin made by Ada and approved by Grace.
    let mut carol = enrol_two_keys(&app, &ca, &path, 50).await;
    let c = member(&mut ada, &carol.id).await;
    assert_eq!(c["role"], "admin");
    assert_eq!(c["admin_granted_by"], format!("user:{}", ada.id));
    assert_eq!(c["admin_approved_by"], format!("user:{}", grace.id));
    app.clock.advance(1);

    // A request opened before Carol was admin: not hers to approve.
    let before = snapshot(&app, &bob.id).await;
    let r = approve(&app, &mut carol, &early, true).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        refused(&last_event(&app).await),
        ("recovery.refused", Some("admin_after_request"))
    );
    // Grace's request: Grace approved Carol's role, so Carol is not her second admin.
    let by_grace = open_request(&app, &mut grace, &bob.id, "lost both, per Grace").await;
    let r = approve(&app, &mut carol, &by_grace, true).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        refused(&last_event(&app).await),
        ("recovery.refused", Some("made_admin_by_requester"))
    );
    let bob_id = bob.id.clone();
    let keys = app
        .state
        .storage
        .run(move |s| s.credentials_for_user(&bob_id, true))
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "no key revoked: {before}");

    // Ada is a second admin to Grace.
    let r = approve(&app, &mut ada, &by_grace, true).await;
    assert_eq!(r.status, 201, "{}", r.body);
    app.stop().await;
}

/// Granting the admin role needs a fresh touch; a link made while one admin existed needs
/// a second admin once two do; the operator invites admins only while fewer than two
/// exist; an approver must have been admin before the invitation was made.
#[actix_web::test]
async fn admin_grants_need_a_fresh_touch_and_outlive_no_phase() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let mut ada = first_admin(&app, &ca).await;

    // A stale touch: no admin invitation (audited), a member's still.
    ada.touch(&app, 0, "/admin/invitations").await;
    app.clock.advance(301);
    let r = invite(&app, &mut ada, "eve@example.com", "admin", false).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "reauthentication_required");
    assert!(audit_events(&app).await.iter().any(
        |e| e.action == "step_up.refused" && e.details_json.contains("invitation.create_admin")
    ));
    let listed = ada.client.get("/api/admin/invitations").await.json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["role"] != "admin" || i["kind"] != "invite"),
        "no admin invitation was made: {listed}"
    );
    let r = invite(&app, &mut ada, "member@example.com", "member", false).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // While Ada is the only admin her admin invitation needs no second admin.
    let r = invite(&app, &mut ada, "early@example.com", "admin", true).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["awaiting_approval"], false);
    let early = r.json()["id"].as_str().unwrap().to_string();
    let early_path = path_of(&app, r.json()["link"].as_str().unwrap());

    // Its enrolment begins while Ada is alone; the operator adds Grace meanwhile: two
    // admins. The enrolment is refused at its finish, and writes nothing.
    let mut early_client = app.client();
    let (csrf, options) = begin(
        &mut early_client,
        &early_path,
        json!({ "token": token_of(&early_path) }),
    )
    .await;
    assert_eq!(options.status, 200, "{}", options.body);
    let mut grace = operator_invites_admin(&app, &ca, "grace@example.com", 10).await;
    let reg = physical_key(&ca.ca, YUBIKEY_5_NFC, 70).register(&options_for(&app, &options));
    let done = early_client
        .post_json("/api/enrol/finish", Some(&csrf), &finish_body(&reg, "Key"))
        .await;
    assert_eq!(done.status, 409, "{}", done.body);
    assert_eq!(done.json()["error"], "invitation_awaiting_approval");
    let users = app.state.storage.run(|s| s.count_users()).await.unwrap();
    assert_eq!(users, 2, "Ada and Grace; no early admin");
    app.clock.advance(1);

    // Ada's early link now waits for a second admin, and Grace, admin only since, cannot
    // be that admin.
    awaits_approval(&app, &early_path).await;
    let r = approve_invitation(&app, &mut grace, &early).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        refused(&last_event(&app).await),
        ("invitation.refused", Some("admin_after_request"))
    );

    // The operator can no longer invite admins (audited); nor can an admin that way.
    let cli = keygate::service::Actor::cli();
    let r = keygate::service::invitations::create(&app.state, &cli, "op@example.com", "", "admin")
        .await;
    assert_eq!(r.err().map(|e| e.code()), Some("forbidden"));
    assert_eq!(
        refused(&last_event(&app).await),
        ("invitation.refused", Some("admin_approval_required"))
    );
    let as_ada = keygate::service::Actor::user(&ada.id, None);
    let r =
        keygate::service::invitations::create(&app.state, &as_ada, "x@example.com", "", "admin")
            .await;
    assert_eq!(r.err().map(|e| e.code()), Some("forbidden"));

    // A new invitation: Grace sees an Approve button (Ada does not) and approves on the page.
    let r = invite(&app, &mut ada, "dan@example.com", "admin", true).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = path_of(&app, r.json()["link"].as_str().unwrap());
    let form = format!("/admin/invitations/{id}/approve");
    assert!(!ada
        .client
        .get("/admin/invitations")
        .await
        .body
        .contains(&form));
    let csrf = grace.touch(&app, 0, "/admin/invitations").await;
    let page = grace.client.get("/admin/invitations").await;
    assert!(page.body.contains(&form), "{}", page.body);
    let r = grace.client.post_form(&form, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let dan = enrol_two_keys(&app, &ca, &path, 60).await;
    let d = member(&mut ada, &dan.id).await;
    assert_eq!(d["admin_approved_by"], format!("user:{}", grace.id));
    app.stop().await;
}
