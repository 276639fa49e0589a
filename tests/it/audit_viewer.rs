//! The audit viewer: filters and paging over the admin page and the JSON API, bad
//! filters refused with a clear code, non-admins kept out, details escaped.

use std::collections::BTreeSet;

use keygate::audit::{NewAuditEvent, Outcome};
use serde_json::json;

use crate::enrolment_http::{bootstrap_admin, enrol_with, physical_key, token_of, trusted_ca};
use crate::support::app::{csrf_of, Client, TestApp};
use crate::support::authenticator::{SoftAuthenticator, YUBIKEY_5_NFC};

/// 2025-03-01T00:00:00Z: seeded events sit on 2025-03-01 .. 2025-03-03, long before the
/// events the test app writes itself (now).
const T0: i64 = 1_740_787_200;
const SEEDED: i64 = 36;

/// Seeds `SEEDED` events, two hours apart from T0: actors alternate `cli`/`system`,
/// actions cycle through enrolment.accepted, enrolment.refused, key.revoked; subjects
/// cycle through three members.
async fn seed(app: &TestApp) {
    app.state
        .storage
        .run(|s| {
            for i in 0..SEEDED {
                let (action, outcome) = match i % 3 {
                    0 => ("enrolment.accepted", Outcome::Success),
                    1 => ("enrolment.refused", Outcome::Refused),
                    _ => ("key.revoked", Outcome::Success),
                };
                let actor = if i % 2 == 0 { "cli" } else { "system" };
                let mut e = NewAuditEvent::new(actor, action, format!("user:m{}", i % 3), outcome)
                    .with_details(json!({ "i": i, "key": { "model": "YubiKey 5 NFC" } }));
                if outcome == Outcome::Refused {
                    e = e.with_reason("untrusted_root");
                }
                s.append_audit(&e, T0 + i * 7200)?;
            }
            Ok(())
        })
        .await
        .expect("seed audit events");
}

async fn api(client: &mut Client, query: &str) -> serde_json::Value {
    let reply = client.get(&format!("/api/admin/audit?{query}")).await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    reply.json()
}

fn seqs(page: &serde_json::Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect()
}

/// Every page of `query` (limit `limit`), following `next_cursor`.
async fn all_pages(client: &mut Client, query: &str, limit: u32) -> Vec<Vec<i64>> {
    let mut pages = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let mut q = format!("{query}&limit={limit}");
        if let Some(c) = cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let page = api(client, &q).await;
        pages.push(seqs(&page));
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages.len() < 100, "paging ends");
    }
    pages
}

#[actix_web::test]
async fn audit_viewer_filters_and_pages_over_api_and_page() {
    let ca = trusted_ca();
    let app = TestApp::builder().with_toml(&ca.toml).start().await;
    let mut admin = app.client();
    let done = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let admin_id = done.json()["user_id"].as_str().unwrap().to_string();
    seed(&app).await;

    // The seeded days only, newest first, paged 5 at a time without gaps or repeats.
    let day = "from=2025-03-01&to=2025-03-03";
    let pages = all_pages(&mut admin, day, 5).await;
    assert_eq!(pages.len(), 8, "{pages:?}");
    assert!(pages[..7].iter().all(|p| p.len() == 5));
    let flat: Vec<i64> = pages.concat();
    assert_eq!(flat.len(), SEEDED as usize);
    assert!(
        flat.windows(2).all(|w| w[0] > w[1]),
        "newest first: {flat:?}"
    );
    assert_eq!(flat.iter().collect::<BTreeSet<_>>().len(), flat.len());

    // One day; RFC 3339 bounds are inclusive at `to`.
    let first_day = api(&mut admin, "from=2025-03-01&to=2025-03-01").await;
    assert_eq!(seqs(&first_day).len(), 12);
    let hours = api(
        &mut admin,
        "from=2025-03-01T02:00:00Z&to=2025-03-01T06:00:00%2B00:00",
    )
    .await;
    let times: Vec<i64> = hours["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_i64().unwrap())
        .collect();
    assert_eq!(times, vec![T0 + 6 * 3600, T0 + 4 * 3600, T0 + 2 * 3600]);
    let e = &hours["events"][0];
    assert_eq!(e["time"], "2025-03-01T06:00:00Z");
    assert_eq!(e["details"]["key"]["model"], "YubiKey 5 NFC");
    assert_eq!(e["action"], "enrolment.accepted");

    // Exact action, prefix, outcome, actor, member: each combined with the day filter.
    let refused = api(
        &mut admin,
        &format!("{day}&event=enrolment.refused&limit=200"),
    )
    .await;
    assert_eq!(seqs(&refused).len(), 12);
    assert!(refused["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["action"] == "enrolment.refused" && e["reason"] == "untrusted_root"));
    let enrolments = api(&mut admin, &format!("{day}&event=enrolment.&limit=200")).await;
    assert_eq!(seqs(&enrolments).len(), 24);
    let star = api(&mut admin, &format!("{day}&event=enrol*&limit=200")).await;
    assert_eq!(seqs(&star), seqs(&enrolments));
    let outcome = api(&mut admin, &format!("{day}&outcome=refused&limit=200")).await;
    assert_eq!(seqs(&outcome), seqs(&refused));
    let by_cli = api(&mut admin, &format!("{day}&actor=cli&limit=200")).await;
    assert_eq!(seqs(&by_cli).len(), 18);
    assert!(by_cli["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "cli"));
    let m1 = api(&mut admin, &format!("{day}&member=user:m1&limit=200")).await;
    assert_eq!(seqs(&m1).len(), 12);
    let m1_bare = api(&mut admin, &format!("{day}&member=m1&limit=200")).await;
    assert_eq!(seqs(&m1_bare), seqs(&m1));
    let combined = api(
        &mut admin,
        &format!("{day}&member=m1&outcome=refused&actor=system&limit=200"),
    )
    .await;
    // i % 3 == 1 (m1, refused) and i odd (system): i = 1, 7, 13, …, 31.
    assert_eq!(seqs(&combined).len(), 6);

    // The admin's own events, found by e-mail (actor and member).
    let mine = api(&mut admin, "member=admin@example.com").await;
    let actions: Vec<&str> = mine["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"enrolment.accepted"), "{actions:?}");
    assert!(mine["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["subject"] == format!("user:{admin_id}")));
    let none = api(&mut admin, "actor=admin@example.com&event=key.revoked").await;
    assert_eq!(seqs(&none), Vec::<i64>::new());
    assert!(none["next_cursor"].is_null());

    // The page: filters in the query string, rows, the "older" link that pages on.
    let page = admin
        .get(&format!("/admin/audit?{day}&event=enrolment.&limit=10"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"audit-filters\""));
    assert!(
        page.body.contains("value=\"enrolment.\""),
        "filters refilled"
    );
    assert_eq!(page.body.matches("<tr id=\"event-").count(), 10);
    assert!(page.body.contains("untrusted_root"));
    assert!(page.body.contains("key.model"), "compact details");
    assert!(
        page.body.contains("href=\"/admin/audit\">Audit log</a>"),
        "nav link"
    );
    let older = link_of(&page.body, "older");
    assert!(older.contains("event=enrolment."), "{older}");
    assert!(older.contains("cursor="), "{older}");
    let next = admin.get(&older).await;
    assert_eq!(next.status, 200);
    assert_eq!(next.body.matches("<tr id=\"event-").count(), 10, "{older}");
    assert!(next.body.contains("id=\"newest\""));
    let last = admin.get(&link_of(&next.body, "older")).await;
    assert_eq!(last.body.matches("<tr id=\"event-").count(), 4);
    assert!(!last.body.contains("id=\"older\""), "last page");
    app.stop().await;
}

/// The `href` of the link with `id`, HTML entities undone.
fn link_of(html: &str, id: &str) -> String {
    let marker = "href=\"";
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} link in {html}"));
    let start = html[..at].rfind(&marker).expect("href") + marker.len();
    let end = start + html[start..].find('"').expect("end of href");
    html[start..end]
        .replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&#x3d;", "=")
        .replace("&#61;", "=")
}

#[actix_web::test]
async fn audit_viewer_escapes_details_and_refuses_bad_filters_and_non_admins() {
    let ca = trusted_ca();
    let app = TestApp::builder().with_toml(&ca.toml).start().await;
    let mut admin = app.client();
    let done = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_eq!(done.status, 200, "{}", done.body);

    // Hostile text in every field the page shows is escaped, never markup.
    let event = NewAuditEvent::new(
        "<b>actor</b>",
        "signin.refused",
        "user:<img src=x onerror=alert(1)>",
        Outcome::Refused,
    )
    .with_reason("<script>alert('r')</script>")
    .with_details(json!({ "ua": "</td><script>alert(1)</script>", "n": { "<i>": "\"q\"" } }));
    let now = app.state.now();
    app.state
        .storage
        .run(move |s| s.append_audit(&event, now))
        .await
        .unwrap();
    let page = admin.get("/admin/audit?event=signin.refused").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(!page.body.contains("<img src=x"), "{}", page.body);
    assert!(!page.body.contains("<b>actor"), "{}", page.body);
    let shown = page.body.replace("&#60;", "&lt;").replace("&#62;", "&gt;");
    assert!(
        shown.contains("&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the details are shown, escaped: {}",
        page.body
    );
    let listed = admin
        .get("/api/admin/audit?event=signin.refused")
        .await
        .json();
    assert_eq!(
        listed["events"][0]["details"]["ua"],
        "</td><script>alert(1)</script>"
    );

    // Bad filters: 400 with a code on the API and on the page.
    for (query, code) in [
        ("from=yesterday", "invalid_time"),
        ("to=2025-02-30", "invalid_time"),
        ("from=2025-03-02&to=2025-03-01", "invalid_time_range"),
        ("outcome=maybe", "invalid_outcome"),
        ("event=Enrolment.Refused", "invalid_event"),
        ("event=a%25b", "invalid_event"),
        ("limit=0", "invalid_limit"),
        ("limit=201", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
        ("cursor=-1", "invalid_cursor"),
        ("cursor=99999999999999999999", "invalid_cursor"),
        ("colour=red", "unknown_filter"),
        ("actor=cli&actor=system", "unknown_filter"),
        ("member=nobody@example.com", "unknown_member"),
        ("actor=a%00b", "invalid_filter"),
        ("actor=a%FFb", "malformed_query"),
    ] {
        let reply = admin.get(&format!("/api/admin/audit?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert_eq!(reply.json()["error"], code, "{query}: {}", reply.body);
        let page = admin.get(&format!("/admin/audit?{query}")).await;
        assert_eq!(page.status, 400, "{query}");
        assert!(page.body.contains(code), "{query}: {}", page.body);
        assert!(page.body.contains("id=\"audit-filters\""), "the form stays");
    }
    // An empty form submission is no filter at all.
    let empty = admin
        .get("/admin/audit?from=&to=&actor=&member=&event=&outcome=")
        .await;
    assert_eq!(empty.status, 200);

    // Strangers and members are kept out.
    let mut stranger = app.client();
    assert_eq!(stranger.get("/api/admin/audit").await.status, 401);
    assert_eq!(stranger.get("/api/admin/audit/export").await.status, 401);
    let page = stranger.get("/admin/audit").await;
    assert_eq!(page.status, 303);
    let csrf = csrf_of(&admin.get("/admin/invitations").await.body);
    let inv = admin
        .post_json(
            "/api/admin/invitations",
            Some(&csrf),
            &json!({ "email": "mia@example.com", "display_name": "Mia", "role": "member" }),
        )
        .await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    let path = inv.json()["link"]
        .as_str()
        .unwrap()
        .trim_start_matches(app.origin())
        .to_string();
    let mut mia = app.client();
    let enrolled = enrol_with(
        &app,
        &mut mia,
        &path,
        json!({ "token": token_of(&path) }),
        &physical_key(&ca.ca, YUBIKEY_5_NFC, 31),
        |_| {},
    )
    .await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.body);
    assert_eq!(mia.get("/api/admin/audit").await.status, 403);
    assert_eq!(mia.get("/api/admin/audit/export").await.status, 403);
    assert_eq!(
        mia.get("/admin/audit?actor=secret-filter").await.status,
        403
    );
    // Each refusal is audited on the member, with what was asked (the path, not the query).
    let storage = app.state.storage.clone();
    let forbidden: Vec<_> = storage
        .run(|s| s.audit_range(0, i64::MAX, 10_000))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "admin.forbidden")
        .collect();
    let asked: Vec<String> = forbidden
        .iter()
        .map(|e| {
            assert!(e.actor.starts_with("user:"), "{e:?}");
            assert_eq!(e.actor, e.subject);
            let d: serde_json::Value = serde_json::from_str(&e.details_json).unwrap();
            d["request"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        asked,
        [
            "GET /api/admin/audit",
            "GET /api/admin/audit/export",
            "GET /admin/audit"
        ]
    );
    let nav = mia.get("/me").await;
    assert!(
        !nav.body.contains("/admin/audit"),
        "no admin link for members"
    );
    app.stop().await;
}

/// A row written past the chain's head: `/readyz` says so, the viewer marks the row, and
/// `keygate audit verify`'s check finds it (see `audit::audit_row_past_the_head_is_found`).
#[actix_web::test]
async fn a_row_past_the_head_is_marked_and_makes_the_replica_unready() {
    let ca = trusted_ca();
    let app = TestApp::builder().with_toml(&ca.toml).start().await;
    let mut admin = app.client();
    let done = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["audit_chain"], true);
    let head = app.state.storage.audit_head().unwrap().seq;
    let sql = crate::audit::forged_row(head + 1);
    app.state.storage.debug_execute(&sql).unwrap();

    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["audit_chain"], false);
    assert_eq!(ready.json()["database"], true);

    let page = api(&mut admin, "limit=5").await;
    assert_eq!(page["head_seq"], head);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events[0]["seq"], head + 1);
    assert_eq!(events[0]["beyond_head"], true);
    assert!(events[1..].iter().all(|e| e["beyond_head"] == false));
    let html = admin.get("/admin/audit").await;
    assert_eq!(html.status, 200);
    assert!(
        html.body
            .contains(&format!("id=\"event-{}\" class=\"beyond-head\"", head + 1)),
        "{}",
        html.body
    );
    assert!(html.body.contains("not in the chain"));
    app.stop().await;
}
