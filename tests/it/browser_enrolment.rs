//! Enrolment in a real headless Chromium (Debian `chromium`) with a WebAuthn virtual
//! authenticator over the DevTools protocol, driving keygate's own pages and script
//! (SPEC §3 C1, §8):
//!
//! 1. keygate trusting only Yubico's roots: the bootstrap admin types their details,
//!    clicks "Enrol security key", and the page shows the refusal naming the rule
//!    `untrusted_root`; the refusal is audited and nothing is stored. The page's POST
//!    of the attestation is intercepted on its way (DevTools `Fetch`) to get
//!    Chromium's attestation certificate.
//! 2. keygate trusting that certificate (`attestation.extra_roots`): the same browser
//!    enrols the bootstrap admin, lands on `/me` ("Not compliant yet", 1 of 2 keys),
//!    adds a backup key from a second virtual authenticator and is then compliant.
//!    The stored evidence names the pinned certificate as the trust anchor.
//!
//! Chromium re-issues its attestation certificate on every registration (same name
//! and key, new notAfter and signature; see `support::browser`), so step 2 relies on
//! trust anchors being a name and a key (RFC 5280 §6.1), not pinned DER bytes.
//!
//! Both steps add Chromium's AAGUID as an extra model, so the catalogue rule is not
//! what refuses the key in step 1.
//!
//! The browser is driven on a blocking thread (`spawn_blocking`): the DevTools calls
//! block, and the test's runtime must stay free for the server (its Redis connection
//! is driven there when `KEYGATE_TEST_REDIS_URL` is set).

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::app::TestApp;
use crate::support::browser::{
    self, Browser, VirtualAuthenticator, CHROMIUM_ATTESTATION_KEY_SHA256, CHROMIUM_VIRTUAL_AAGUID,
};

/// The model name the test config gives Chromium's virtual authenticator.
pub(crate) const MODEL: &str = "Chromium virtual authenticator";
/// Bound on every wait for the page.
pub(crate) const WAIT: Duration = Duration::from_secs(20);
pub(crate) const EMAIL: &str = "admin@example.com";
pub(crate) const NAME: &str = "Ada Admin";

/// Chromium's virtual authenticator as a model keygate knows. Its attestation certificate
/// carries no AAGUID extension (no certified device does without), so the policy must let
/// the authenticator data name the model under this configured root
/// (`require_aaguid_extension = false`; Yubico's roots never allow that).
pub(crate) fn extra_model_toml() -> String {
    format!(
        "[[attestation.extra_models]]\naaguid = \"{CHROMIUM_VIRTUAL_AAGUID}\"\nmodel = \"{MODEL}\"\nfips = false\n\n[policy]\nrequire_aaguid_extension = false\n"
    )
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body.trim()).expect("PEM body")
}

/// A JavaScript string literal.
pub(crate) fn js(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// Runs browser work off the runtime thread; a panic there is re-raised here.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match actix_web::rt::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The browser, the step under way, and failure reports with what the page showed.
pub(crate) struct Page {
    pub(crate) b: Browser,
    pub(crate) step: String,
}

impl Page {
    pub(crate) fn step(&mut self, step: &str) {
        self.step = step.to_owned();
    }

    /// Panics with the step, URL, console, Chromium's log and a screenshot's path.
    pub(crate) fn fail(&mut self, what: &str) -> ! {
        let slug: String = self
            .step
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = std::env::temp_dir().join(format!("keygate-browser-enrolment-{slug}.png"));
        let shot = match self.b.screenshot_png() {
            Ok(png) => match std::fs::write(&path, png) {
                Ok(()) => path.display().to_string(),
                Err(e) => format!("not saved: {e}"),
            },
            Err(e) => format!("not taken: {e}"),
        };
        let url = self.b.url().unwrap_or_else(|e| format!("? ({e})"));
        panic!(
            "step \"{}\": {what}\nurl: {url}\nscreenshot: {shot}\nconsole:\n{}\nchromium log:\n{}",
            self.step,
            self.b.console().join("\n"),
            self.b.log_tail()
        );
    }

    pub(crate) fn ensure(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let what = what();
            self.fail(&what);
        }
    }

    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        match self.b.call(method, params) {
            Ok(v) => v,
            Err(e) => self.fail(&e),
        }
    }

    pub(crate) fn eval(&mut self, script: &str) -> Value {
        match self.b.eval(script) {
            Ok(v) => v,
            Err(e) => self.fail(&e),
        }
    }

    pub(crate) fn wait(&mut self, predicate: &str) -> Value {
        match self.b.wait_for(predicate, WAIT) {
            Ok(v) => v,
            Err(e) => self.fail(&e),
        }
    }

    pub(crate) fn goto(&mut self, url: &str) {
        if let Err(e) = self.b.goto(url) {
            self.fail(&e);
        }
    }

    /// Removes the virtual authenticator `old` (if any) and plugs in a new one.
    pub(crate) fn fresh_authenticator(&mut self, old: Option<&str>) -> String {
        if let Some(id) = old {
            if let Err(e) = self.b.remove_virtual_authenticator(id) {
                self.fail(&e);
            }
        }
        match self
            .b
            .add_virtual_authenticator(VirtualAuthenticator::default())
        {
            Ok(id) => id,
            Err(e) => self.fail(&e),
        }
    }

    /// Focuses a field and types into it (DevTools `Input.insertText`, as a keyboard would).
    pub(crate) fn type_into(&mut self, selector: &str, text: &str) {
        let focused = self.eval(&format!(
            "(() => {{ const el = document.querySelector({sel}); if (!el) return false; \
             el.focus(); el.value = ''; return document.activeElement === el; }})()",
            sel = js(selector)
        ));
        self.ensure(focused == json!(true), || format!("no field {selector}"));
        self.call("Input.insertText", json!({ "text": text }));
        let value = self.eval(&format!("document.querySelector({}).value", js(selector)));
        self.ensure(value == json!(text), || {
            format!("{selector} holds {value} after typing {text:?}")
        });
    }

    /// A real mouse click in the middle of the element (trusted events, so the form's
    /// own validation and submit handler run as for a person).
    pub(crate) fn click(&mut self, selector: &str) {
        let at = self.eval(&format!(
            "(() => {{ const el = document.querySelector({sel}); if (!el) return null; \
             el.scrollIntoView({{ block: 'center' }}); const r = el.getBoundingClientRect(); \
             return {{ x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width, h: r.height }}; }})()",
            sel = js(selector)
        ));
        let ok = at["w"].as_f64().unwrap_or(0.0) > 0.0 && at["h"].as_f64().unwrap_or(0.0) > 0.0;
        self.ensure(ok, || format!("{selector} is missing or not visible: {at}"));
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": at["x"], "y": at["y"], "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Waits for the enrolment form, fills it and clicks "Enrol security key".
    pub(crate) fn enrol(&mut self, fields: &[(&str, &str)]) {
        self.wait("document.querySelector('#enrol-form #enrol-button') !== null");
        for (name, value) in fields {
            self.type_into(&format!("#enrol-form [name=\"{name}\"]"), value);
        }
        self.click("#enrol-button");
    }

    /// Waits for `/me` with `keys` rows; returns (compliance text, rows of cell texts).
    pub(crate) fn me_page(&mut self, keys: usize) -> (String, Vec<Vec<String>>) {
        let got = self.wait(&format!(
            "location.pathname === '/me' && document.readyState === 'complete' \
             && document.getElementById('compliance') !== null \
             && document.querySelectorAll('#keys tbody tr').length === {keys} && {{ \
               compliance: document.getElementById('compliance').textContent.replace(/\\s+/g, ' ').trim(), \
               rows: [...document.querySelectorAll('#keys tbody tr')].map(tr => \
                 [...tr.cells].map(td => td.textContent.replace(/\\s+/g, ' ').trim())) }}"
        ));
        let compliance = got["compliance"].as_str().unwrap_or_default().to_owned();
        let rows = serde_json::from_value(got["rows"].clone()).unwrap_or_default();
        (compliance, rows)
    }
}

/// What the refusal box shows: one entry per `<li data-rule>`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ShownRefusal {
    rule: String,
    message: String,
    text: String,
}

/// Step 1 in the browser: the refused enrolment. Returns the page's refusal entries,
/// Chromium's attestation certificate (PEM) taken from the intercepted POST and the
/// virtual authenticator used.
pub(crate) fn refused_in_browser(p: &mut Page, link: &str) -> (Vec<ShownRefusal>, String, String) {
    p.step("open the bootstrap link (untrusted)");
    p.goto(link);
    let authenticator = p.fresh_authenticator(None);
    let title = p.eval("document.querySelector('h1').textContent");
    p.ensure(
        title.as_str().is_some_and(|t| t.contains("first admin")),
        || format!("bootstrap page heading: {title}"),
    );

    p.step("enrol with an untrusted root");
    p.b.watch_events("Fetch.requestPaused");
    p.call(
        "Fetch.enable",
        json!({ "patterns": [{ "urlPattern": "*/api/enrol/finish", "requestStage": "Request" }] }),
    );
    p.enrol(&[
        ("email", EMAIL),
        ("display_name", NAME),
        ("nickname", "Primary"),
    ]);
    let paused = match p.b.wait_event("Fetch.requestPaused", WAIT) {
        Ok(v) => v,
        Err(e) => p.fail(&e),
    };
    let posted: Value = paused["request"]["postData"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let attestation_object = posted["credential"]["response"]["attestationObject"]
        .as_str()
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .unwrap_or_default();
    let pem = browser::chromium_attestation_root_pem(&attestation_object);
    p.call(
        "Fetch.continueRequest",
        json!({ "requestId": paused["requestId"] }),
    );
    p.call("Fetch.disable", json!({}));
    let pem = match pem {
        Ok(pem) => pem,
        Err(e) => p.fail(&format!("attestation in the page's POST {posted}: {e}")),
    };

    p.step("the page shows the refusal");
    let shown = p.wait(
        "(() => { const box = document.getElementById('refusal'); \
           if (!box || box.hidden || box.getBoundingClientRect().height === 0) return null; \
           return [...box.querySelectorAll('li[data-rule]')].map(li => ({ rule: li.dataset.rule, \
             message: (li.querySelector('strong') || li).textContent, text: li.textContent })); })()",
    );
    let shown: Vec<ShownRefusal> = serde_json::from_value(shown.clone())
        .unwrap_or_else(|e| p.fail(&format!("refusal entries {shown}: {e}")));
    let path = p.eval("location.pathname");
    p.ensure(
        path.as_str().is_some_and(|s| s.starts_with("/enrol/")),
        || format!("a refused key stays on the enrolment page, not {path}"),
    );
    (shown, pem, authenticator)
}

#[actix_web::test]
async fn bootstrap_admin_enrols_in_chromium_refused_until_its_root_is_trusted() {
    if crate::support::skip::unless_available(
        Browser::available(),
        crate::support::browser::CHROMIUM,
    ) {
        return;
    }

    // 1. Default trust (Yubico roots only), Chromium's AAGUID catalogued.
    let untrusting = TestApp::builder()
        .with_toml(&extra_model_toml())
        .start()
        .await;
    let link = untrusting.bootstrap_link.clone().expect("bootstrap link");
    let (page, shown, pem, refused_authenticator) = blocking(move || {
        let b = Browser::launch().unwrap_or_else(|e| panic!("launch chromium: {e}"));
        let mut page = Page {
            b,
            step: "launch".into(),
        };
        let (shown, pem, authenticator) = refused_in_browser(&mut page, &link);
        (page, shown, pem, authenticator)
    })
    .await;

    assert_eq!(
        shown.iter().map(|r| r.rule.as_str()).collect::<Vec<_>>(),
        ["untrusted_root"],
        "the only rule refusing the key: {shown:?}"
    );
    let refusal = &shown[0];
    assert!(
        refusal
            .message
            .contains("the attestation certificate does not chain to a trusted FIDO root"),
        "a human message: {refusal:?}"
    );
    assert!(
        refusal
            .text
            .contains("an administrator can add a vendor root to the trust store")
            && refusal.text.contains("(untrusted_root)"),
        "the remedy and the code: {refusal:?}"
    );

    let pinned_der = pem_to_der(&pem);
    let pinned = keygate::attestation::Certificate::from_der(&pinned_der).expect("parses");
    assert_eq!(pinned.common_name.as_deref(), Some("Batch Certificate"));
    assert!(
        !pinned.is_ca(),
        "Chromium's attestation certificate is CA:FALSE"
    );

    let events = untrusting
        .state
        .storage
        .run(|s| s.audit_range(0, i64::MAX, 10_000))
        .await
        .expect("audit");
    let refused = events.last().expect("an audit event");
    assert_eq!(refused.action, "enrolment.refused");
    assert_eq!(refused.outcome_text, "refused");
    assert_eq!(refused.reason.as_deref(), Some("untrusted_root"));
    let details: Value = serde_json::from_str(&refused.details_json).expect("details JSON");
    let evidence = &details["evidence"];
    assert_eq!(evidence["fmt"], "packed", "{details}");
    assert_eq!(evidence["aaguid"], CHROMIUM_VIRTUAL_AAGUID, "{details}");
    assert_eq!(evidence["model"], MODEL, "{details}");
    assert_eq!(evidence["trust"]["trusted"], false, "{details}");
    assert_eq!(evidence["trust"]["code"], "untrusted_root", "{details}");
    assert_eq!(
        evidence["leaf_sha256"],
        sha256_hex(&pinned_der),
        "the refused leaf is the certificate taken from the page's POST: {details}"
    );
    assert_eq!(details["refusals"][0]["rule"], "untrusted_root");
    let stored = untrusting
        .state
        .storage
        .run(|s| Ok((s.list_credentials()?, s.count_users()?)))
        .await
        .expect("storage");
    assert!(stored.0.is_empty(), "no key stored: {:?}", stored.0);
    assert_eq!(stored.1, 0, "no member created");
    untrusting.stop().await;

    // 2. The same Chromium certificate (an earlier copy) pinned as an extra root.
    let root_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(root_file.path(), &pem).expect("write root");
    let trusting = TestApp::builder()
        .with_toml(&format!(
            "[attestation]\nextra_roots = [\"{}\"]\n{}",
            root_file.path().display(),
            extra_model_toml()
        ))
        .start()
        .await;
    let link = trusting.bootstrap_link.clone().expect("bootstrap link");
    let (page, first, second) = blocking(move || {
        let mut p = page;
        p.step("open the bootstrap link (trusted)");
        p.goto(&link);
        // Another virtual authenticator: a new device, same Chromium attestation key.
        let first = p.fresh_authenticator(Some(&refused_authenticator));
        p.step("enrol the bootstrap admin");
        p.enrol(&[
            ("email", EMAIL),
            ("display_name", NAME),
            ("nickname", "Primary"),
        ]);
        let (compliance, rows) = p.me_page(1);
        p.ensure(
            compliance.contains("Not compliant yet")
                && compliance.contains("1 active attested key(s); the policy requires 2"),
            || format!("one key of two: {compliance:?}"),
        );
        let row = &rows[0];
        p.ensure(
            row.len() >= 6
                && row[0] == "Primary"
                && row[1] == MODEL
                && row[2] == "no"
                && row[3] == "yes"
                && row[5] == "active",
            || format!("the key row (name, model, FIPS, attested, enrolled, status): {row:?}"),
        );
        let nav = p.eval("document.querySelector('header nav').textContent");
        p.ensure(
            nav.as_str().is_some_and(|n| n.contains("Members")),
            || format!("the bootstrap admin sees the admin links: {nav}"),
        );

        p.step("add a backup key");
        p.click("#add-key");
        p.wait(
            "location.pathname === '/me/keys/new' && document.querySelector('#enrol-form') !== null",
        );
        let heading = p.eval("document.querySelector('h1').textContent");
        p.ensure(heading == json!("Add a security key"), || {
            format!("add-key heading: {heading}")
        });
        // Unplug the primary key and plug in another one.
        let second = p.fresh_authenticator(Some(&first));
        p.enrol(&[("nickname", "Backup")]);
        let (compliance, rows) = p.me_page(2);
        p.ensure(compliance == "Compliant: 2 attested keys", || {
            format!("compliant with two keys: {compliance:?}")
        });
        let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        p.ensure(
            names.contains(&"Primary") && names.contains(&"Backup"),
            || format!("both keys listed: {rows:?}"),
        );
        p.ensure(
            rows.iter()
                .all(|r| r[1] == MODEL && r[3] == "yes" && r[5] == "active"),
            || format!("both attested and active: {rows:?}"),
        );
        let held = match p.b.virtual_credentials(&second) {
            Ok(c) => c,
            Err(e) => p.fail(&e),
        };
        p.ensure(
            held.len() == 1 && held[0]["rpId"] == "localhost",
            || format!("the backup authenticator holds the new credential: {held:?}"),
        );

        p.step("sign out, then sign back in with a touch of the backup key");
        p.click("header nav form button");
        p.wait("location.pathname === '/' && document.querySelector('#signin-form') !== null");
        p.click("#signin-button");
        p.wait("location.pathname === '/me' && document.querySelector('#keys') !== null");
        let signed_in = p.eval("document.querySelector('#compliance').textContent");
        p.ensure(
            signed_in
                .as_str()
                .is_some_and(|t| t.contains("Compliant")),
            || format!("signed in again, on the member page: {signed_in}"),
        );
        (p, first, second)
    })
    .await;
    assert_ne!(first, second);
    drop(page);

    // The stored evidence.
    let (users, keys) = trusting
        .state
        .storage
        .run(|s| Ok((s.list_users()?, s.list_credentials()?)))
        .await
        .expect("storage");
    assert_eq!(users.len(), 1);
    let admin = &users[0].user;
    assert_eq!(admin.email, EMAIL);
    assert_eq!(admin.display_name, NAME);
    assert_eq!(admin.role.as_str(), "admin");
    assert_eq!(users[0].active_keys, 2);
    assert_eq!(keys.len(), 2);
    let pinned_sha256 = sha256_hex(&pinned_der);
    let mut leaves = Vec::new();
    for key in &keys {
        let what = format!("key {:?}", key.nickname);
        assert_eq!(key.user_id, admin.id, "{what}");
        assert_eq!(key.fmt, "packed", "{what}");
        assert_eq!(key.attestation_kind, "basic", "{what}");
        assert_eq!(key.aaguid, CHROMIUM_VIRTUAL_AAGUID, "{what}");
        assert_eq!(key.model.as_deref(), Some(MODEL), "{what}");
        assert!(!key.fips, "{what}");
        assert!(key.user_verified && !key.backup_eligible, "{what}");
        assert!(key.phishing_resistant, "{what}");
        assert_eq!(
            key.trust_anchor.as_deref(),
            Some("Batch Certificate"),
            "{what}"
        );
        assert_eq!(
            key.trust_anchor_sha256.as_deref(),
            Some(pinned_sha256.as_str()),
            "{what}: the anchor matched is the pinned copy"
        );
        assert!(key.revoked_at.is_none(), "{what}");
        let client: Value = serde_json::from_slice(&key.client_data_json).expect("clientData");
        assert_eq!(client["type"], "webauthn.create", "{what}");
        assert_eq!(client["origin"], trusting.origin(), "{what}");
        let chain: Vec<String> = serde_json::from_str(&key.chain_json).expect("chain JSON");
        assert_eq!(chain.len(), 1, "{what}: x5c is the one self-signed leaf");
        let leaf_der = URL_SAFE_NO_PAD.decode(&chain[0]).expect("base64url");
        assert_eq!(
            key.leaf_sha256.as_deref(),
            Some(sha256_hex(&leaf_der).as_str()),
            "{what}"
        );
        let leaf = keygate::attestation::Certificate::from_der(&leaf_der).expect("leaf parses");
        let keygate::attestation::cert::CertKey::P256(point) = &leaf.key else {
            panic!("{what}: the leaf key is not P-256: {:?}", leaf.key)
        };
        assert_eq!(
            sha256_hex(point),
            CHROMIUM_ATTESTATION_KEY_SHA256,
            "{what}: Chromium's fixed attestation key"
        );
        assert_eq!(leaf.subject, pinned.subject, "{what}");
        assert_eq!(
            browser::chromium_attestation_root_pem(&key.attestation_object).map(|p| pem_to_der(&p)),
            Ok(leaf_der.clone()),
            "{what}: the raw attestation object is kept as evidence"
        );
        leaves.push(leaf_der);
    }
    // Every registration re-issues the certificate, so neither leaf is the pinned DER
    // and they differ from each other. The `same_physical_key` rule compares leaf
    // SHA-256s, so it does not (and cannot) see that both come from Chromium's one
    // shared attestation key: the backup key is accepted, as two real keys of
    // different batches would be.
    assert_ne!(sha256_hex(&leaves[0]), pinned_sha256);
    assert_ne!(sha256_hex(&leaves[1]), pinned_sha256);
    assert_ne!(leaves[0], leaves[1]);

    let actions: Vec<String> = trusting
        .state
        .storage
        .run(|s| s.audit_range(0, i64::MAX, 10_000))
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.as_str() == "enrolment.accepted")
            .count(),
        2,
        "{actions:?}"
    );
    assert!(
        !actions.iter().any(|a| a == "enrolment.refused"),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a == "signin.success"),
        "the browser's sign-in is audited: {actions:?}"
    );
    let verdict = keygate::service::audit_log::verify(&trusting.state)
        .await
        .expect("audit chain verifies");
    assert!(verdict.contains("OK"), "{verdict}");
    trusting.stop().await;
}
