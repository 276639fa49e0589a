//! Sessions: the member's list, sign-out per session and everywhere, an admin ending a
//! member's sessions, and a revoked key ending the sessions it signed in.

use std::sync::Arc;

use keygate::service::{members, session, signin, Actor};
use keygate::storage::SessionScope;
use serde_json::json;

use crate::enrolment_http::{app_trusting, audit_events, trusted_ca};
use crate::signin_http::{admin_with_key, assertion_body, sign_in, start};
use crate::support::app::csrf_of;
use crate::support::authenticator::SoftAuthenticator;
use crate::support::meddled::{Landing, MeddledStore, Meddling};

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
    let key_id = app.first_key_id().await;
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

/// Ending sessions deletes their live records before it marks them ended: when the shared
/// store fails, nothing changed (the browsers are still signed in and the sessions still
/// listed, so ending them again works), and revoking a key again ends the sessions it
/// still has.
#[actix_web::test]
async fn ending_sessions_while_the_shared_store_fails_changes_nothing_and_a_retry_ends_them() {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    let (mut browser, r) = sign_in(&app, &mut cred, &user_id, None, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let live = |scope: &'static str| {
        let (storage, uid, now) = (app.state.storage.clone(), user_id.clone(), app.state.now());
        async move {
            storage
                .run(move |s| s.live_sessions(&uid, now))
                .await
                .unwrap()
                .into_iter()
                .filter(|s| scope == "all" || s.key_id.is_some())
                .count()
        }
    };
    let before = live("all").await;
    assert!(live("key").await >= 1);
    let mut failing = app.state.clone();
    failing.ephemeral = Arc::new(MeddledStore {
        inner: app.state.ephemeral.clone(),
        meddling: Meddling::FailWrites,
    });
    let actor = Actor {
        id: format!("user:{user_id}"),
        ip: None,
    };

    assert!(session::end(&failing, &actor, &user_id, SessionScope::All)
        .await
        .is_err());
    assert_eq!(browser.get("/api/me").await.status, 200, "still signed in");
    assert_eq!(live("all").await, before, "and still listed");

    // Revoking the key: revoked, but its sessions could not be ended.
    let key_id = app.first_key_id().await;
    assert!(
        members::revoke_key(&failing, &actor, &user_id, true, &key_id)
            .await
            .is_err()
    );
    assert_eq!(browser.get("/api/me").await.status, 200);
    // Revoking it again, the store answering: its sessions end.
    members::revoke_key(&app.state, &actor, &user_id, true, &key_id)
        .await
        .unwrap();
    assert_eq!(
        browser.get("/api/me").await.status,
        401,
        "the key's session ended"
    );
    assert_eq!(live("key").await, 0);
    // Ending every session again ends the rest.
    let rest = live("all").await;
    let ended = session::end(&app.state, &actor, &user_id, SessionScope::All)
        .await
        .unwrap();
    assert_eq!(ended, rest);
    assert_eq!(live("all").await, 0);
    let events = audit_events(&app).await;
    let recorded: Vec<_> = events
        .iter()
        .filter(|e| e.action == "session.ended")
        .collect();
    assert_eq!(
        recorded.len(),
        1 + usize::from(rest > 0),
        "only the endings that happened"
    );
    app.stop().await;
}

/// Signs the admin in through `signin::finish` with a shared store that lets `then`
/// happen just before the new session lands. Returns the finish's outcome, whether the
/// session it made live still is, the member's signed-in session rows before and after,
/// and the audit's last event's action.
async fn sign_in_while(
    then: impl FnOnce(&str, String) -> Landing,
) -> (bool, bool, [usize; 2], String) {
    let ca = trusted_ca();
    let app = app_trusting(&ca).await;
    let (mut cred, user_id) = admin_with_key(&app, &SoftAuthenticator::new(&ca.ca)).await;
    let key_id = app.first_key_id().await;
    let mut browser = app.client();
    let (csrf, options) = start(&mut browser, None).await;
    let body = assertion_body(&mut cred, &app, &options, &user_id, |_| {});
    let signed_in_rows = || async {
        let (uid, now) = (user_id.clone(), app.state.now());
        let rows = app.state.storage.run(move |s| s.live_sessions(&uid, now));
        let rows = rows.await.unwrap();
        rows.iter().filter(|s| s.key_id.is_some()).count()
    };
    let before = signed_in_rows().await;
    let store = Arc::new(MeddledStore {
        inner: app.state.ephemeral.clone(),
        meddling: Meddling::BeforeLanding {
            state: Box::new(app.state.clone()),
            then: then(&user_id, key_id),
            landed: std::sync::Mutex::new(None),
        },
    });
    let mut racing = app.state.clone();
    racing.ephemeral = store.clone();
    let finished = signin::finish(
        &racing,
        signin::Browser {
            session_token: browser.cookies[&app.state.config.session_cookie_name()].clone(),
            csrf: Some(csrf),
            ip: None,
            user_agent: None,
        },
        body.to_string().as_bytes(),
    )
    .await;

    let Meddling::BeforeLanding { landed, .. } = &store.meddling else {
        unreachable!()
    };
    let landed = landed
        .lock()
        .unwrap()
        .clone()
        .expect("a session was made live");
    let live = app.state.ephemeral.get(&landed).await.unwrap().is_some();
    let after = signed_in_rows().await;
    let last = audit_events(&app).await.last().unwrap().action.clone();
    app.stop().await;
    (finished.is_ok(), live, [before, after], last)
}

/// A key revoked while a sign-in with it is under way leaves no live session behind,
/// whichever of the two lands first: the sign-in makes its session live before it
/// records it, so the revocation either lists it (and ends it) or comes first (and the
/// record is refused, the live session deleted).
#[actix_web::test]
async fn a_key_revoked_during_its_sign_in_leaves_no_live_session() {
    let (finished, live, rows, last) = sign_in_while(|user_id, key_id| Landing::Revoke {
        user_id: user_id.to_string(),
        key_id,
    })
    .await;
    assert!(!finished, "the sign-in is refused");
    assert!(!live, "its session is not live");
    assert_eq!(
        rows,
        [1, 0],
        "the enrolment's session ended, no other listed"
    );
    assert_eq!(last, "signin.refused");
}

/// A sign-in whose record the database fails to write leaves no live session behind
/// either, and no trace of a success.
#[actix_web::test]
async fn a_sign_in_the_database_fails_to_record_leaves_no_live_session() {
    let (finished, live, rows, last) = sign_in_while(|_, _| Landing::RefuseSessionRows).await;
    assert!(!finished, "the sign-in fails");
    assert!(!live, "its session is not live");
    assert_eq!(rows, [1, 1], "only the enrolment's session is listed");
    assert_ne!(last, "signin.success");
}
