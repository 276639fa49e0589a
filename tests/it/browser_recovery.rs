//! Recovery without a help desk, in headless Chromium through the real pages: an admin
//! opens a recovery request for a member who lost every key, cannot approve it
//! themselves (no Approve button for them), a second admin approves it with their own
//! key touch and gets the one-time link, and the member enrols a new key through it into
//! the same account. Reusing the link is refused on the page.
//!
//! Each person's key is a virtual credential exported after enrolment and loaded into a
//! fresh virtual authenticator when that person acts, so exactly one key answers.

use serde_json::{json, Value};

use crate::browser_enrolment::{blocking, extra_model_toml, refused_in_browser, Page, EMAIL, NAME};
use crate::support::app::TestApp;
use crate::support::browser::Browser;

impl Page {
    /// Exports the one credential the authenticator holds.
    fn credential_of(&mut self, authenticator: &str) -> Value {
        match self.b.virtual_credentials(authenticator) {
            Ok(list) if list.len() == 1 => list[0].clone(),
            Ok(list) => self.fail(&format!("expected one credential, got {list:?}")),
            Err(e) => self.fail(&e),
        }
    }

    /// Plugs in a fresh authenticator holding `credential` (instead of `current`).
    fn hold(&mut self, current: &str, credential: &Value) -> String {
        let id = self.fresh_authenticator(Some(current));
        self.call(
            "WebAuthn.addCredential",
            json!({ "authenticatorId": id, "credential": credential }),
        );
        id
    }

    fn sign_out(&mut self) {
        self.click("header nav form button");
        self.wait("location.pathname === '/' && document.querySelector('#signin-form') !== null");
    }

    fn sign_in(&mut self) {
        self.goto_start();
        self.click("#signin-button");
        self.wait("location.pathname === '/me' && document.querySelector('#keys') !== null");
    }

    fn goto_start(&mut self) {
        let here = self.eval("location.origin");
        let origin = here.as_str().unwrap_or_default().to_string();
        self.goto(&format!("{origin}/"));
        self.wait("document.querySelector('#signin-form') !== null");
    }
}

#[actix_web::test]
async fn two_admins_recover_a_member_in_chromium() {
    if crate::support::skip::unless_available(
        Browser::available(),
        crate::support::browser::CHROMIUM,
    ) {
        return;
    }

    // Chromium's attestation certificate, taken from a refused enrolment; then keygate
    // trusting it.
    let untrusting = TestApp::builder()
        .with_toml(&extra_model_toml())
        .start()
        .await;
    let link = untrusting.bootstrap_link.clone().expect("bootstrap link");
    let (page, pem, refused) = blocking(move || {
        let b = Browser::launch().unwrap_or_else(|e| panic!("launch chromium: {e}"));
        let mut page = Page {
            b,
            step: "launch".into(),
        };
        let (_, pem, refused) = refused_in_browser(&mut page, &link);
        (page, pem, refused)
    })
    .await;
    untrusting.stop().await;
    let root = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(root.path(), &pem).expect("write root");
    let app = TestApp::builder()
        .with_toml(&format!(
            "[attestation]\nextra_roots = [\"{}\"]\n{}",
            root.path().display(),
            extra_model_toml()
        ))
        .start()
        .await;
    let bootstrap = app.bootstrap_link.clone().expect("bootstrap link");
    let cli = keygate::service::Actor::cli();
    let grace_link = keygate::service::invitations::create(
        &app.state,
        &cli,
        "grace@example.com",
        "Grace",
        "admin",
    )
    .await
    .expect("invite Grace")
    .link;
    let bob_link =
        keygate::service::invitations::create(&app.state, &cli, "bob@example.com", "Bob", "member")
            .await
            .expect("invite Bob")
            .link;

    // Three people enrol, each with their own key.
    let (page, ada, grace, current) = blocking(move || {
        let mut p = page;
        p.step("Ada enrols (bootstrap admin)");
        p.goto(&bootstrap);
        let a = p.fresh_authenticator(Some(&refused));
        p.enrol(&[
            ("email", EMAIL),
            ("display_name", NAME),
            ("nickname", "Primary"),
        ]);
        p.wait("location.pathname === '/me' && document.querySelector('#keys') !== null");
        let ada = p.credential_of(&a);
        p.sign_out();

        p.step("Grace enrols (invited admin)");
        let g = p.fresh_authenticator(Some(&a));
        p.goto(&grace_link);
        p.enrol(&[("nickname", "Primary")]);
        p.wait("location.pathname === '/me' && document.querySelector('#keys') !== null");
        let grace = p.credential_of(&g);
        p.sign_out();

        p.step("Bob enrols (member), then loses his key");
        let b = p.fresh_authenticator(Some(&g));
        p.goto(&bob_link);
        p.enrol(&[("nickname", "Only key")]);
        p.wait("location.pathname === '/me' && document.querySelector('#keys') !== null");
        p.sign_out();
        (p, ada, grace, b)
    })
    .await;

    let bob_id = app
        .state
        .storage
        .run(|s| s.user_by_email("bob@example.com"))
        .await
        .expect("storage")
        .expect("Bob")
        .id;
    // A second approves only a request opened after they became admin; a browser is quicker.
    app.clock.advance(1);

    let (page, link) = blocking(move || {
        let mut p = page;
        p.step("Ada opens a recovery request for Bob");
        let current = p.hold(&current, &ada);
        p.sign_in();
        let origin = p.eval("location.origin").as_str().unwrap_or_default().to_string();
        p.goto(&format!("{origin}/admin/members/{bob_id}"));
        p.type_into("#recovery-form [name=\"reason\"]", "lost his only key on a trip");
        p.click("#recovery-form button");
        p.wait("document.querySelectorAll('#recoveries tbody tr').length === 1");
        p.step("Ada cannot approve her own request");
        let approve = p.eval("document.querySelectorAll('form[action^=\"/admin/recovery/\"] button').length");
        p.ensure(approve == json!(0), || format!("no Approve button for the requester: {approve}"));
        p.sign_out();

        p.step("Grace approves with her own key touch");
        let current = p.hold(&current, &grace);
        p.sign_in();
        p.goto(&format!("{origin}/admin/members/{bob_id}"));
        p.click("form[action^=\"/admin/recovery/\"] button");
        let link = p.wait("document.getElementById('recovery-link') && document.getElementById('recovery-link').textContent");
        p.sign_out();

        p.step("Bob, on a new key, enrols through the link into his account");
        p.fresh_authenticator(Some(&current));
        let link = link.as_str().unwrap_or_default().trim().to_string();
        p.goto(&link);
        p.enrol(&[("nickname", "Replacement")]);
        let (_, rows) = p.me_page(2);
        p.ensure(
            rows.iter().any(|r| r[0] == "Replacement" && r[5] == "active")
                && rows.iter().any(|r| r[0] == "Only key" && r[5] == "revoked"),
            || format!("the new key is active and the lost one revoked: {rows:?}"),
        );

        p.step("the link works once");
        p.goto(&link);
        let shown = p.eval("document.querySelector('[data-error]') && document.querySelector('[data-error]').dataset.error");
        p.ensure(shown == json!("invitation_used"), || format!("a reused link is refused: {shown}"));
        (p, link)
    })
    .await;
    drop(page);
    assert!(link.contains("/enrol/"), "{link}");

    // One account for Bob, the audit trail of both admins' actions.
    let users = app.state.storage.run(|s| s.count_users()).await.unwrap();
    assert_eq!(users, 3, "no new member was created by the recovery");
    let actions: Vec<String> = app
        .state
        .storage
        .run(|s| s.audit_range(0, i64::MAX, 10_000))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "recovery.requested",
        "recovery.approved",
        "recovery.link_issued",
        "recovery.completed",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    app.stop().await;
}
