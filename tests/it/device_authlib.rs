//! Authlib (Python) as an independent device-flow client (RFC 8628): it reads discovery,
//! asks for a device code, polls the token endpoint with Authlib's own token request and
//! error handling (authorization_pending / slow_down) while this test plays the member,
//! who approves with a key touch, then validates the ID token against our JWKS and calls
//! userinfo. The script is `tests/it/rp/authlib_device.py`, one JSON line each way.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::device_flow::{begin, finish, open_page, DEVICE_CLIENT, DEVICE_CLIENTS};
use crate::oidc_authlib::authlib_missing;
use crate::support::oidc::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/rp/authlib_device.py");

/// Reads one line on the blocking pool: the client calls our server meanwhile.
async fn read_line(
    mut out: BufReader<std::process::ChildStdout>,
) -> (BufReader<std::process::ChildStdout>, String) {
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        out.read_line(&mut line)
            .expect("read from the device client");
        (out, line)
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn authlib_logs_a_device_in_after_the_members_touch() {
    if authlib_missing() {
        return;
    }
    let mut p = provider_with_settings_and_config(
        &[("oidc.device_poll_interval_secs", "1")],
        DEVICE_CLIENTS,
    )
    .await;
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(
        stdin,
        "{}",
        json!({ "issuer": p.app.base, "client_id": DEVICE_CLIENT, "scope": "openid email" })
    )
    .expect("write to the device client");

    let (stdout, line) = read_line(stdout).await;
    let shown: Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("device client said: {line}"));
    let user_code = shown["user_code"]
        .as_str()
        .unwrap_or_else(|| panic!("{shown}"))
        .to_string();
    assert_eq!(shown["verification_uri"], format!("{}/device", p.app.base));
    assert_eq!(shown["interval"], 1);

    // Let the client see a pending answer or two, then the member approves with a touch.
    actix_rt::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut browser = p.browser().await;
    let (page, csrf) = open_page(&mut browser, &user_code).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let options = begin(&mut browser, &csrf, &user_code).await;
    let approved = finish(&mut p, &mut browser, &csrf, &options, &user_code).await;
    assert_eq!(approved.status, 200, "{}", approved.body);

    let (_, line) = read_line(stdout).await;
    drop(stdin);
    let output = child.wait_with_output().expect("the device client exits");
    let done: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!(
            "device client said: {line}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(done.get("error").is_none(), "device client refused: {done}");
    assert!(output.status.success());
    assert!(done["pending"].as_u64().unwrap() >= 1, "{done}");
    let claims = &done["claims"];
    assert_eq!(claims["iss"], p.app.base.as_str());
    assert_eq!(claims["aud"], DEVICE_CLIENT);
    assert_eq!(claims["sub"], p.user_id.as_str());
    assert_eq!(claims["acr"], "phrh");
    assert!(claims["auth_time"].is_i64());
    assert_eq!(done["token_type"], "Bearer");
    assert_eq!(done["userinfo"]["sub"], p.user_id.as_str());
    assert_eq!(done["userinfo"]["email"], "admin@example.com");
    p.app.stop().await;
}
