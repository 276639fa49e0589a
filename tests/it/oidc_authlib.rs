//! Authlib (Python), a widely used OAuth/OpenID Connect client library, as an independent
//! relying party: it reads our discovery document, builds the authorization request (PKCE
//! S256, nonce), exchanges the code with `client_secret_basic` (or `private_key_jwt`), validates the ID token
//! against our JWKS (iss, aud, exp, iat, nonce, at_hash) and calls userinfo. The script is
//! `tests/it/rp/authlib_rp.py`; it talks to this test over stdin/stdout, one JSON line
//! each way, while the test plays the member's browser. `scripts/setup` installs Authlib.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::oidc::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/rp/authlib_rp.py");

fn python_has_authlib() -> bool {
    Command::new("python3")
        .args(["-c", "import authlib, requests"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn authlib_missing() -> bool {
    crate::support::skip::unless_available(
        python_has_authlib(),
        "python3 with authlib and requests",
    )
}

/// Runs the relying party as `client_id` with `credentials` (`client_secret` or
/// `private_key`) through one sign-in of the admin's browser; returns what it reports.
async fn authlib_flow(p: &mut Provider, client_id: &str, credentials: Value, scope: &str) -> Value {
    let mut browser = p.browser().await;
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut say = move |v: Value| {
        writeln!(stdin, "{v}").expect("write to the relying party");
    };
    // Reads one line on the blocking pool: the relying party calls our server meanwhile.
    let read = |mut out: BufReader<std::process::ChildStdout>| async move {
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            out.read_line(&mut line)
                .expect("read from the relying party");
            (out, line)
        })
        .await
        .unwrap()
    };

    let mut start = json!({
        "issuer": p.app.base,
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
    });
    for (k, v) in credentials.as_object().expect("credentials") {
        start[k] = v.clone();
    }
    say(start);
    let (out, line) = read(stdout).await;
    stdout = out;
    let start: Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("relying party said: {line}"));
    let url = start["authorization_url"]
        .as_str()
        .unwrap_or_else(|| panic!("{start}"));
    let path = url
        .strip_prefix(&p.app.base)
        .expect("our authorization endpoint");
    assert!(path.contains("code_challenge_method=S256"), "{path}");
    let r = browser.get(path).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let callback = location(&p.app, &r);
    assert!(callback.as_str().starts_with(REDIRECT));

    say(json!({ "callback": callback.as_str() }));
    let (_, line) = read(stdout).await;
    let output = child.wait_with_output().expect("relying party exits");
    let done: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!(
            "relying party said: {line}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(done.get("error").is_none(), "relying party refused: {done}");
    assert!(output.status.success());
    done
}

#[actix_web::test]
async fn authlib_signs_in_through_keygate() {
    if authlib_missing() {
        return;
    }
    let mut p = provider().await;
    let secret = json!({ "client_secret": p.secret });
    let done = authlib_flow(
        &mut p,
        CLIENT_ID,
        secret,
        "openid profile email keygate:key_evidence",
    )
    .await;
    let claims = &done["claims"];
    assert_eq!(claims["iss"], p.app.base.as_str());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], p.user_id.as_str());
    assert_eq!(claims["acr"], "phrh");
    let amr: Vec<&str> = claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for m in ["hwk", "pop", "mfa"] {
        assert!(amr.contains(&m), "{amr:?}");
    }
    assert!(claims["auth_time"].is_i64());
    assert_eq!(claims["workspace_id"], WORKSPACE_EXTERNAL);
    assert_eq!(claims["key_model"], "YubiKey 5 NFC");
    assert_eq!(done["token_type"], "Bearer");
    assert_eq!(done["userinfo"]["sub"], p.user_id.as_str());
    assert_eq!(done["userinfo"]["email"], "admin@example.com");
    p.app.stop().await;
}

/// Authlib authenticates a client registered with its public key (`private_key_jwt`,
/// RS256, the assertion made by Authlib's RFC 7523 code from the PEM private key).
#[actix_web::test]
async fn authlib_authenticates_with_private_key_jwt() {
    if authlib_missing() {
        return;
    }
    let key = crate::oidc_private_key_jwt::client_key(keygate::oidc::keys::Algorithm::Rs256);
    let mut p = provider_with_config(&crate::oidc_private_key_jwt::client_toml(&[&key])).await;
    let pem = crate::oidc_private_key_jwt::pem(&key);
    let done = authlib_flow(
        &mut p,
        crate::oidc_private_key_jwt::JWT_CLIENT,
        json!({ "private_key": pem }),
        "openid email",
    )
    .await;
    assert_eq!(
        done["claims"]["aud"],
        crate::oidc_private_key_jwt::JWT_CLIENT
    );
    assert_eq!(done["claims"]["sub"], p.user_id.as_str());
    assert_eq!(done["claims"]["acr"], "phrh");
    assert_eq!(done["userinfo"]["email"], "admin@example.com");
    let audit = crate::enrolment_http::audit_events(&p.app).await;
    assert!(
        audit.iter().any(|e| e.action == "oidc.token_issued"
            && e.details_json
                .contains(crate::oidc_private_key_jwt::JWT_CLIENT)),
        "the exchange is audited"
    );
    p.app.stop().await;
}
