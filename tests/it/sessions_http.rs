//! Sessions: the member's list, sign-out per session and everywhere, an admin ending a
//! member's sessions, and a revoked key ending the sessions it signed in.

use serde_json::json;

use crate::enrolment_http::{app_trusting, audit_events, trusted_ca};
use crate::signin_http::{admin_with_key, sign_in};
use crate::support::app::csrf_of;
use crate::support::authenticator::SoftAuthenticator;

#[actix_web::test]
async fn list_end_one_and_end_everywhere() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    let (mut laptop, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (mut phone, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Three sessions: the enrolment's, the laptop's and the phone's.
    let list = phone.get("/api/me/sessions").await.json();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    assert!(list[0].get("token_hash").is_none(), "digests are not shown");
    let page = phone.get("/me").await;
    assert!(page.body.contains("(this browser)"));
    let csrf = csrf_of(&page.body);

    // The phone ends the laptop's session.
    let laptop_id = laptop.get("/me").await.body;
    let laptop_session = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .find(|id| {
            laptop_id.contains(&format!("data-session=\"{id}\""))
                && laptop_id.contains("(this browser)")
                && {
                    let i = laptop_id.find(&format!("data-session=\"{id}\"")).unwrap();
                    laptop_id[i..]
                        .split("</tr>")
                        .next()
                        .unwrap()
                        .contains("(this browser)")
                }
        })
        .expect("the laptop's session id");
    let ended = phone
        .post_form(
            &format!("/me/sessions/{laptop_session}/end"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(ended.status, 303);
    assert_eq!(
        laptop.get("/api/me").await.status,
        401,
        "the laptop is signed out"
    );
    assert_eq!(phone.get("/api/me").await.status, 200);
    assert_eq!(
        phone
            .get("/api/me/sessions")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Sign out everywhere.
    let all = phone
        .post_form("/me/sessions/all/end", &[("csrf", &csrf)])
        .await;
    assert_eq!(all.status, 303);
    assert_eq!(phone.get("/api/me").await.status, 401);
    let now = app.state.now();
    let live = app
        .state
        .storage
        .run(move |s| s.live_sessions(&user_id, now))
        .await
        .unwrap();
    assert!(live.is_empty(), "no live session left: {live:?}");
    let events = audit_events(&app).await;
    assert!(
        events
            .iter()
            .filter(|e| e.action == "session.ended")
            .count()
            >= 2
    );
    app.stop().await;
}

#[actix_web::test]
async fn admin_ends_a_members_sessions_and_revoked_keys_end_theirs() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    let (mut admin, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200);
    let (mut other, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200);
    let csrf = csrf_of(&admin.get("/me").await.body);

    // The admin ends every session of a member (here: their own account, from the API).
    let ended = admin
        .post_json(
            &format!("/api/admin/members/{user_id}/sessions/end"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(ended.json()["ended"], 3);
    assert_eq!(other.get("/api/me").await.status, 401);
    assert_eq!(admin.get("/api/me").await.status, 401);

    // Sign in again; revoking the key ends the sessions it signed in.
    let (mut again, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200);
    let csrf = csrf_of(&again.get("/me").await.body);
    let key_id = app
        .state
        .storage
        .run(|s| s.list_credentials())
        .await
        .unwrap()[0]
        .id
        .clone();
    let revoked = again
        .post_json(
            &format!("/api/admin/keys/{key_id}/revoke"),
            Some(&csrf),
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    assert_eq!(
        again.get("/api/me").await.status,
        401,
        "the key's sessions ended with it"
    );
    app.stop().await;
}
