//! A small Chrome DevTools Protocol driver for tests: headless Chromium with a
//! WebAuthn virtual authenticator, driven over one websocket on 127.0.0.1.
//!
//! Every wait is bounded, and the browser process is killed (and reaped) when the
//! [`Browser`] is dropped, also when `launch` fails half-way.
//!
//! ```text
//! let mut b = Browser::launch()?;
//! b.goto(&format!("http://localhost:{port}/enrol"))?;
//! let id = b.add_virtual_authenticator(VirtualAuthenticator::default())?;
//! b.eval("document.querySelector('#enrol').click()")?;
//! b.wait_for("document.querySelector('.enrolled')", Duration::from_secs(10))?;
//! ```
//!
//! # What the virtual authenticator attests
//!
//! Measured by `browser_smoke` with Debian's Chromium 156.0.8078.108: a `ctap2` /
//! `usb` virtual authenticator (resident keys, user verification, `isUserVerified`,
//! automatic presence), `navigator.credentials.create` on `http://localhost:<port>`
//! with `attestation: "direct"`, `userVerification: "required"`,
//! `residentKey: "preferred"`, ES256. Direct attestation is passed through as is
//! (no prompt, not replaced by `none`).
//!
//! - Format `packed`; `attStmt` = `{alg: -7, sig, x5c}` with exactly **one**
//!   certificate in `x5c`. `sig` verifies with that certificate's key over
//!   `authData || SHA-256(clientDataJSON)`: basic (full) attestation, not self
//!   attestation.
//! - The certificate: X.509 v3, serial 1, ecdsa-with-SHA256, P-256 key.
//!   Subject **and issuer** `C=US, O=Chromium, OU=Authenticator Attestation,
//!   CN=Batch Certificate`. It is **self-signed**: its own key verifies its
//!   signature; no other issuer certificate exists.
//! - Validity: notBefore 2017-07-14T02:40:00Z (Unix 1500000000); notAfter is the
//!   moment of the registration plus 7300 days (e.g. 2046-11-20T19:51:43Z for a
//!   registration at 2026-11-25T19:51:43Z). So **the DER differs on every
//!   registration** (notAfter, and a fresh ECDSA signature), while the names and
//!   the key are fixed: the same key in every authenticator and every browser
//!   launch, SHA-256 of its 65-byte EC point [`CHROMIUM_ATTESTATION_KEY_SHA256`].
//!   A key that every Chromium shares is as good as public: trust it in tests only.
//! - Extensions: basicConstraints (2.5.29.19), critical, **CA:FALSE**; FIDO
//!   transports 1.3.6.1.4.1.45724.2.1.1, not critical, BIT STRING `03 02 05 20`
//!   (usb). **No** id-fido-gen-ce-aaguid extension (1.3.6.1.4.1.45724.1.1.4); no
//!   keyUsage, SKI or AKI.
//! - authData: AAGUID [`CHROMIUM_VIRTUAL_AAGUID`] `01020304-0506-0708-0102-030405060708`;
//!   flags `0x45` = UP, UV, AT; **BE and BS clear** (set them with
//!   [`VirtualAuthenticator::default_backup_eligibility`] / `default_backup_state`
//!   to get a "synced passkey"); signCount 1 after registration, 2 after the first
//!   assertion. Client side: `getTransports()` = `["usb"]`,
//!   `authenticatorAttachment` = `"cross-platform"`, `credProps.rk` = `true`.
//! - After [`Browser::set_user_verified`]`(id, false)`, a ceremony with
//!   `userVerification: "required"` fails at once with `NotAllowedError`.
//!
//! # Trusting it
//!
//! The issuer is the certificate itself, and a test can obtain it: it is `x5c[0]`
//! of the registration ([`chromium_attestation_root_pem`] returns it as PEM after
//! checking it is self-signed). Because its bytes change with every registration,
//! a validator that pins anchors by DER (or SHA-256 of the DER), like OpenSSL's
//! `verify`, only trusts the very registration it was taken from; and one that
//! insists on CA:TRUE for anything used as an issuer refuses an earlier copy.
//! What works:
//!
//! 1. Trust the exact certificate of the registration under test: intercept the
//!    page's POST of the attestation before it reaches the server
//!    (`watch_events("Fetch.requestPaused")`, `Fetch.enable` with a URL pattern,
//!    [`Browser::wait_event`], read `request.postData`), add
//!    `chromium_attestation_root_pem(attestation_object)` as a trust anchor, then
//!    `Fetch.continueRequest` (`browser_smoke` shows the interception).
//! 2. Or have the validator treat an anchor as name + key (RFC 5280 §6.1): a
//!    self-signed leaf whose subject and key equal an anchor's is that anchor.
//!    Then any one copy (e.g. from a first registration) trusts all of them.
//!
//! Either way the policy must also admit AAGUID `01020304-0506-0708-0102-030405060708`
//! (not a Yubico AAGUID, no model, not FIPS), and the missing AAGUID extension
//! is not a mismatch (WebAuthn §8.2.1 checks it only when present).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// AAGUID of Chromium's virtual authenticators.
pub const CHROMIUM_VIRTUAL_AAGUID: &str = "01020304-0506-0708-0102-030405060708";

/// SHA-256 (hex) of the EC point (subjectPublicKey) of Chromium's fixed attestation key.
pub const CHROMIUM_ATTESTATION_KEY_SHA256: &str =
    "759149bdc33ec239e0962fd297fd0c21e60c790bc9c90dc3bc04b70054bcb872";

/// Debian's Chromium launcher.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Bound on starting Chromium and attaching to a page.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Default bound on one DevTools call.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on `goto` (navigation plus `readyState == "complete"`).
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(15);
/// How often `wait_for` re-evaluates its predicate.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Console lines kept for failure messages.
const CONSOLE_KEEP: usize = 200;
/// Watched events kept for `wait_event`.
const EVENTS_KEEP: usize = 256;

/// Options for `WebAuthn.addVirtualAuthenticator`. `Default` is a CTAP2 USB
/// security key with a resident-key store and user verification that always
/// succeeds, touched automatically.
#[derive(Debug, Clone)]
pub struct VirtualAuthenticator {
    /// `"ctap2"` or `"u2f"`.
    pub protocol: String,
    /// `"ctap2_0"` or `"ctap2_1"` (CTAP2 only); `None` leaves Chromium's default.
    pub ctap2_version: Option<String>,
    /// `"usb"`, `"nfc"`, `"ble"`, `"cable"` or `"internal"`.
    pub transport: String,
    pub has_resident_key: bool,
    pub has_user_verification: bool,
    /// Whether user verification (PIN) succeeds.
    pub is_user_verified: bool,
    /// Simulate the touch without being asked.
    pub automatic_presence_simulation: bool,
    /// Backup-eligible (BE) flag for new credentials; `None` leaves Chromium's default (off).
    pub default_backup_eligibility: Option<bool>,
    /// Backup-state (BS) flag for new credentials; `None` leaves Chromium's default (off).
    pub default_backup_state: Option<bool>,
}

impl Default for VirtualAuthenticator {
    fn default() -> Self {
        VirtualAuthenticator {
            protocol: "ctap2".into(),
            ctap2_version: None,
            transport: "usb".into(),
            has_resident_key: true,
            has_user_verification: true,
            is_user_verified: true,
            automatic_presence_simulation: true,
            default_backup_eligibility: None,
            default_backup_state: None,
        }
    }
}

impl VirtualAuthenticator {
    fn to_options(&self) -> Value {
        let mut options = json!({
            "protocol": self.protocol,
            "transport": self.transport,
            "hasResidentKey": self.has_resident_key,
            "hasUserVerification": self.has_user_verification,
            "isUserVerified": self.is_user_verified,
            "automaticPresenceSimulation": self.automatic_presence_simulation,
        });
        if let Some(version) = &self.ctap2_version {
            options["ctap2Version"] = json!(version);
        }
        if let Some(be) = self.default_backup_eligibility {
            options["defaultBackupEligibility"] = json!(be);
        }
        if let Some(bs) = self.default_backup_state {
            options["defaultBackupState"] = json!(bs);
        }
        options
    }
}

/// Kills and reaps the Chromium process when dropped, so that every early
/// return of `launch` leaves nothing running.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Waits up to `grace` for a voluntary exit, then kills; always reaps.
    fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        // SIGKILL to the browser process; its zygote, renderers and crashpad
        // handlers notice and exit on their own.
        let _ = child.kill();
        let _ = child.wait();
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

/// One headless Chromium with one attached page.
pub struct Browser {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    session_id: String,
    target_id: String,
    console: Vec<String>,
    watched: Vec<String>,
    events: VecDeque<(String, Value)>,
    child: ChildGuard,
    log_path: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Browser {
    /// Whether Debian's Chromium is installed.
    pub fn available() -> bool {
        Path::new(CHROMIUM).is_file()
    }

    /// Starts Chromium on a fresh profile, connects to its DevTools websocket on
    /// 127.0.0.1 and attaches (flattened) to a new `about:blank` page.
    pub fn launch() -> Result<Browser, String> {
        if !Self::available() {
            return Err(format!(
                "{CHROMIUM} not found (install Debian's `chromium`)"
            ));
        }
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        let dir = tempfile::Builder::new()
            .prefix("keygate-chromium-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let profile = dir.path().join("profile");
        let log_path = dir.path().join("chromium.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("chromium log: {e}"))?;
        let child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--password-store=basic",
                "--window-size=1280,1024",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("spawn {CHROMIUM}: {e}"))?;
        let mut child = ChildGuard(Some(child));

        let port_file = profile.join("DevToolsActivePort");
        let ws = loop {
            if let Some(status) = child.exited() {
                return Err(format!(
                    "chromium exited early ({status}); log:\n{}",
                    log_tail(&log_path)
                ));
            }
            if let Some((port, path)) = read_port_file(&port_file) {
                match connect_ws(port, &path, deadline) {
                    Ok(ws) => break ws,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(format!(
                            "devtools connect: {e}; log:\n{}",
                            log_tail(&log_path)
                        ))
                    }
                    Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no DevToolsActivePort after {LAUNCH_TIMEOUT:?}; log:\n{}",
                    log_tail(&log_path)
                ));
            }
            sleep(Duration::from_millis(50));
        };

        let mut browser = Browser {
            ws,
            next_id: 0,
            session_id: String::new(),
            target_id: String::new(),
            console: Vec::new(),
            watched: Vec::new(),
            events: VecDeque::new(),
            child,
            log_path,
            dir: Some(dir),
        };
        let target = browser.call_browser("Target.createTarget", json!({"url": "about:blank"}))?;
        browser.target_id = str_field(&target, "targetId")?;
        let attached = browser.call_browser(
            "Target.attachToTarget",
            json!({"targetId": browser.target_id, "flatten": true}),
        )?;
        browser.session_id = str_field(&attached, "sessionId")?;
        browser.call("Page.enable", json!({}))?;
        browser.call("Runtime.enable", json!({}))?;
        Ok(browser)
    }

    /// A DevTools command on the attached page; waits (bounded) for its reply,
    /// skipping events. A protocol error is an `Err` naming the method.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.call_timeout(method, params, CALL_TIMEOUT)
    }

    /// `call` with an explicit bound.
    pub fn call_timeout(
        &mut self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let session = self.session_id.clone();
        self.send(method, params, Some(&session), timeout)
    }

    /// A DevTools command on the browser target (`Target.*`, `Browser.*`).
    pub fn call_browser(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.send(method, params, None, CALL_TIMEOUT)
    }

    /// Enables the WebAuthn domain (without UI) and adds a virtual authenticator;
    /// returns its `authenticatorId`.
    pub fn add_virtual_authenticator(
        &mut self,
        opts: VirtualAuthenticator,
    ) -> Result<String, String> {
        self.call("WebAuthn.enable", json!({"enableUI": false}))?;
        let added = self.call(
            "WebAuthn.addVirtualAuthenticator",
            json!({"options": opts.to_options()}),
        )?;
        str_field(&added, "authenticatorId")
    }

    /// Removes a virtual authenticator added by `add_virtual_authenticator`.
    pub fn remove_virtual_authenticator(&mut self, authenticator_id: &str) -> Result<(), String> {
        self.call(
            "WebAuthn.removeVirtualAuthenticator",
            json!({"authenticatorId": authenticator_id}),
        )
        .map(drop)
    }

    /// The credentials a virtual authenticator holds (`WebAuthn.getCredentials`):
    /// objects with `credentialId`, `isResidentCredential`, `rpId`, `userHandle`,
    /// `signCount`, `privateKey` (base64 PKCS#8), `backupEligibility`, `backupState`.
    pub fn virtual_credentials(&mut self, authenticator_id: &str) -> Result<Vec<Value>, String> {
        let got = self.call(
            "WebAuthn.getCredentials",
            json!({"authenticatorId": authenticator_id}),
        )?;
        match got.get("credentials") {
            Some(Value::Array(list)) => Ok(list.clone()),
            _ => Err(format!("WebAuthn.getCredentials: unexpected reply {got}")),
        }
    }

    /// Makes later user verification on this authenticator succeed or fail.
    pub fn set_user_verified(
        &mut self,
        authenticator_id: &str,
        verified: bool,
    ) -> Result<(), String> {
        self.call(
            "WebAuthn.setUserVerified",
            json!({"authenticatorId": authenticator_id, "isUserVerified": verified}),
        )
        .map(drop)
    }

    /// Navigates and waits (bounded) until the new document's `readyState` is
    /// `"complete"`. A network error (e.g. connection refused) is an `Err`.
    pub fn goto(&mut self, url: &str) -> Result<(), String> {
        let started = Instant::now();
        let nav = self.call_timeout("Page.navigate", json!({"url": url}), NAVIGATION_TIMEOUT)?;
        if let Some(err) = nav.get("errorText").and_then(Value::as_str) {
            if !err.is_empty() {
                return Err(format!("navigate to {url}: {err}"));
            }
        }
        // Page.navigate replies once the navigation has committed, so the
        // document asked about here is the new one.
        let left = NAVIGATION_TIMEOUT.saturating_sub(started.elapsed());
        self.wait_for("document.readyState === 'complete'", left)
            .map(drop)
            .map_err(|e| format!("navigate to {url}: {e}"))
    }

    /// Evaluates `js` in the page (awaiting a returned promise, with user
    /// activation) and returns its value as JSON (`undefined` becomes `null`).
    /// A thrown exception or rejected promise is an `Err` with its message.
    pub fn eval(&mut self, js: &str) -> Result<Value, String> {
        self.eval_timeout(js, CALL_TIMEOUT)
    }

    /// `eval` with an explicit bound.
    pub fn eval_timeout(&mut self, js: &str, timeout: Duration) -> Result<Value, String> {
        let reply = self.call_timeout(
            "Runtime.evaluate",
            json!({
                "expression": js,
                "awaitPromise": true,
                "returnByValue": true,
                "userGesture": true,
            }),
            timeout,
        )?;
        if let Some(details) = reply.get("exceptionDetails") {
            let text = details
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("exception");
            let description = details
                .pointer("/exception/description")
                .or_else(|| details.pointer("/exception/value"))
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default();
            return Err(format!("js: {text} {description}").trim_end().to_owned());
        }
        let result = reply.get("result").cloned().unwrap_or(Value::Null);
        if let Some(value) = result.get("value") {
            return Ok(value.clone());
        }
        if let Some(Value::String(s)) = result.get("unserializableValue") {
            return Ok(Value::String(s.clone()));
        }
        Ok(Value::Null)
    }

    /// Re-evaluates `js_predicate` (an expression, may be a promise) every 50 ms
    /// until it is truthy and returns its value; `Err` after `timeout` with the
    /// last value or exception seen.
    pub fn wait_for(&mut self, js_predicate: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        let probe = format!(
            "(async () => {{ const v = await ({js_predicate}\n); return {{ ok: !!v, v: v === undefined ? null : v }}; }})()"
        );
        let mut last = String::from("never evaluated");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "timed out after {timeout:?} waiting for `{js_predicate}` (last: {last})"
                ));
            }
            match self.eval_timeout(&probe, left.min(CALL_TIMEOUT)) {
                Ok(v) if v.get("ok") == Some(&Value::Bool(true)) => {
                    return Ok(v.get("v").cloned().unwrap_or(Value::Null))
                }
                Ok(v) => last = v.get("v").cloned().unwrap_or(Value::Null).to_string(),
                // A navigation in progress destroys the execution context;
                // keep polling and report the last error if it never settles.
                Err(e) => last = e,
            }
            sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    /// The URL of the page's current navigation entry.
    pub fn url(&mut self) -> Result<String, String> {
        let history = self.call("Page.getNavigationHistory", json!({}))?;
        let index = history
            .get("currentIndex")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("Page.getNavigationHistory: unexpected reply {history}"))?;
        history
            .pointer(&format!("/entries/{index}/url"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("Page.getNavigationHistory: unexpected reply {history}"))
    }

    /// A PNG of the viewport, for debugging failures.
    pub fn screenshot_png(&mut self) -> Result<Vec<u8>, String> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = str_field(&shot, "data")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("Page.captureScreenshot: {e}"))
    }

    /// Console messages and uncaught exceptions of the page so far (the last 200).
    pub fn console(&self) -> &[String] {
        &self.console
    }

    /// The last lines of Chromium's own stderr (noise about D-Bus left out).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    /// Starts keeping this page's events named `method` (e.g. `"Fetch.requestPaused"`)
    /// for `wait_event`; other events are skipped. At most 256 are kept.
    pub fn watch_events(&mut self, method: &str) {
        if !self.watched.iter().any(|m| m == method) {
            self.watched.push(method.to_owned());
        }
    }

    /// Removes and returns the `params` of the oldest kept event named `method`,
    /// reading (bounded) until one arrives. Call `watch_events` first.
    pub fn wait_event(&mut self, method: &str, timeout: Duration) -> Result<Value, String> {
        if !self.watched.iter().any(|m| m == method) {
            return Err(format!("wait_event({method}): call watch_events first"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(|(m, _)| m == method) {
                return Ok(self.events.remove(i).map(|(_, p)| p).unwrap_or(Value::Null));
            }
            match self.read_message(deadline, method)? {
                Some(message) => self.on_message(&message)?,
                None => return Err(format!("no {method} event within {timeout:?}")),
            }
        }
    }

    fn send(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
        timeout: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.ws
            .get_mut()
            .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| format!("{method}: {e}"))?;
        self.ws
            .send(Message::text(message.to_string()))
            .map_err(|e| format!("{method}: send: {e}"))?;
        loop {
            let Some(reply) = self.read_message(deadline, method)? else {
                return Err(format!("{method}: no reply within {timeout:?}"));
            };
            if reply.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(error) = reply.get("error") {
                    return Err(format!("{method}: {error}"));
                }
                return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
            }
            self.on_message(&reply)?;
        }
    }

    /// The next DevTools message, or `None` once `deadline` has passed.
    fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Option<Value>, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.ws
                .get_mut()
                .set_read_timeout(Some(left))
                .map_err(|e| format!("{what}: {e}"))?;
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    return serde_json::from_str(text.as_str())
                        .map(Some)
                        .map_err(|e| format!("{what}: bad devtools message: {e}"))
                }
                Ok(Message::Close(frame)) => {
                    return Err(format!("{what}: devtools websocket closed ({frame:?})"))
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("{what}: devtools websocket: {e}")),
            }
        }
    }

    /// Handles an event (or a stale reply, which is dropped).
    fn on_message(&mut self, message: &Value) -> Result<(), String> {
        match message.get("method").and_then(Value::as_str) {
            Some(event) => self.on_event(event, message),
            None => Ok(()),
        }
    }

    fn on_event(&mut self, event: &str, message: &Value) -> Result<(), String> {
        let ours = message.get("sessionId").and_then(Value::as_str) == Some(&self.session_id);
        match event {
            "Runtime.consoleAPICalled" if ours => {
                let kind = message
                    .pointer("/params/type")
                    .and_then(Value::as_str)
                    .unwrap_or("log");
                let args: Vec<String> = message
                    .pointer("/params/args")
                    .and_then(Value::as_array)
                    .map(|args| {
                        args.iter()
                            .map(|a| match a.get("value") {
                                Some(Value::String(s)) => s.clone(),
                                Some(v) => v.to_string(),
                                None => a
                                    .get("description")
                                    .and_then(Value::as_str)
                                    .unwrap_or("?")
                                    .to_owned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.keep_console(format!("console.{kind}: {}", args.join(" ")));
            }
            "Runtime.exceptionThrown" if ours => {
                let details = message.pointer("/params/exceptionDetails");
                let description = details
                    .and_then(|d| d.pointer("/exception/description"))
                    .or_else(|| details.and_then(|d| d.get("text")))
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                self.keep_console(format!("uncaught: {description}"));
            }
            "Inspector.targetCrashed" if ours => return Err("the page crashed".into()),
            "Target.detachedFromTarget"
                if message.pointer("/params/sessionId").and_then(Value::as_str)
                    == Some(&self.session_id) =>
            {
                return Err("detached from the page (was it closed?)".into())
            }
            _ => {}
        }
        if ours && self.watched.iter().any(|m| m == event) {
            if self.events.len() == EVENTS_KEEP {
                self.events.pop_front();
            }
            let params = message.get("params").cloned().unwrap_or(Value::Null);
            self.events.push_back((event.to_owned(), params));
        }
        Ok(())
    }

    fn keep_console(&mut self, line: String) {
        if self.console.len() == CONSOLE_KEEP {
            self.console.remove(0);
        }
        self.console.push(line);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask politely (no reply awaited), give it a moment, then kill and reap.
        let _ = self
            .ws
            .get_mut()
            .set_write_timeout(Some(Duration::from_millis(500)));
        self.next_id += 1;
        let close = json!({"id": self.next_id, "method": "Browser.close", "params": {}});
        let _ = self.ws.send(Message::text(close.to_string()));
        self.child.stop(Duration::from_secs(3));
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if dir.close().is_err() {
                // A dying renderer may still have written a file; try once more.
                sleep(Duration::from_millis(200));
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

/// The certificate a test must trust for this registration's attestation, as PEM:
/// the last (for Chromium, the only) certificate of `attStmt.x5c`, after checking
/// that it is self-signed (issuer = subject, verified with its own P-256 key).
/// `Err` when the attestation has no `x5c` or its top certificate is not a root.
pub fn chromium_attestation_root_pem(attestation_object: &[u8]) -> Result<String, String> {
    use ciborium::Value as Cbor;
    let value: Cbor = ciborium::from_reader(attestation_object)
        .map_err(|e| format!("attestationObject is not CBOR: {e}"))?;
    let entry = |map: &[(Cbor, Cbor)], key: &str| {
        map.iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v.clone())
    };
    let top = value
        .as_map()
        .and_then(|m| entry(m, "attStmt"))
        .and_then(|s| s.as_map().and_then(|m| entry(m, "x5c")))
        .and_then(|x5c| x5c.as_array().and_then(|certs| certs.last().cloned()))
        .and_then(|cert| cert.as_bytes().cloned())
        .ok_or("attestation has no attStmt.x5c certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&top)
        .map_err(|e| format!("x5c certificate does not parse: {e}"))?;
    if cert.subject() != cert.issuer() {
        return Err(format!(
            "x5c ends at \"{}\", issued by \"{}\": its issuer is not in the attestation",
            cert.subject(),
            cert.issuer()
        ));
    }
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        &cert.public_key().subject_public_key.data,
    )
    .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
    .map_err(|_| format!("\"{}\" is not self-signed with a P-256 key", cert.subject()))?;
    let body = base64::engine::general_purpose::STANDARD.encode(&top);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    Ok(pem)
}

fn str_field(value: &Value, field: &str) -> Result<String, String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("expected `{field}` in {value}"))
}

/// `DevToolsActivePort`: first line the port, second the browser websocket path.
fn read_port_file(path: &Path) -> Option<(u16, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let port = lines.next()?.trim().parse().ok()?;
    let ws_path = lines.next()?.trim();
    ws_path
        .starts_with("/devtools/browser/")
        .then(|| (port, ws_path.to_owned()))
}

fn connect_ws(port: u16, path: &str, deadline: Instant) -> Result<WebSocket<TcpStream>, String> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, left).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    // Screenshots arrive as one large text frame.
    let config = WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    let url = format!("ws://127.0.0.1:{port}{path}");
    match tungstenite::client::client_with_config(url.as_str(), stream, Some(config)) {
        Ok((ws, _response)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(format!("handshake: {e}")),
        Err(tungstenite::HandshakeError::Interrupted(_)) => Err("handshake timed out".into()),
    }
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("dbus") && !l.contains("unexpected operator"))
        .collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
