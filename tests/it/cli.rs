//! The `keygate` binary: config check, migrate, invite, audit verify (with tampering), serve
//! refusing pending migrations, and `keygate dev` starting on the embedded default.

use crate::support::bin::{keygate, run, run_bounded};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use keygate::storage::Storage;

use crate::support::db::{test_storage_unmigrated, TestDb};

fn write_config(dir: &std::path::Path, db: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("keygate.toml");
    std::fs::write(
        &path,
        format!("[database]\nurl = \"{db}\"\n\n[organisation]\nname = \"CLI Org\"\n{extra}"),
    )
    .expect("write config");
    path
}

#[test]
fn config_check_accepts_good_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), "postgres://kg@db.internal/kg", "");
    let (ok, out, err) = run(keygate()
        .args(["config", "check", "--config"])
        .arg(&good)
        .env(
            "KEYGATE__DATABASE__URL",
            "postgres://kg:s3cret-password@db.internal/kg",
        ));
    assert!(ok, "{err}");
    assert!(out.contains("CLI Org"));
    assert!(
        !out.contains("s3cret-password"),
        "secrets are redacted: {out}"
    );
    // The same password written in the file: refused, and not echoed.
    let inline = dir.path().join("inline.toml");
    std::fs::write(
        &inline,
        "[database]\nurl = \"postgres://kg:s3cret-password@db.internal/kg\"\n",
    )
    .unwrap();
    let (ok, out, err) = run(keygate().args(["config", "check", "--config"]).arg(&inline));
    assert!(!ok);
    assert!(err.contains("KEYGATE__DATABASE__URL"), "{err}");
    assert!(!format!("{out}{err}").contains("s3cret-password"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[session]\nidle_ttl = 5\n").unwrap();
    let (ok, _, err) = run(keygate().args(["config", "check", "--config"]).arg(&bad));
    assert!(!ok);
    assert!(err.contains("idle_ttl"), "the unknown key is named: {err}");

    std::fs::write(&bad, "[server\nbind = ").unwrap();
    let (ok, _, err) = run(keygate().args(["config", "check", "--config"]).arg(&bad));
    assert!(!ok);
    assert!(err.contains("not valid TOML"), "{err}");

    let (ok, _, err) = run(keygate()
        .args(["config", "check", "--config"])
        .arg(&good)
        .env("KEYGATE__SERVER__PUBLIC_URL", "http://sso.example.com"));
    assert!(!ok);
    assert!(err.contains("https"), "{err}");

    let (ok, _, err) = run(keygate()
        .args(["config", "check", "--config"])
        .arg(dir.path().join("missing.toml")));
    assert!(!ok);
    assert!(err.contains("cannot read config file"), "{err}");
}

#[test]
fn migrate_invite_and_audit_verify_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let test_db: TestDb = test_storage_unmigrated(Some(1));
    let db = test_db.url.clone();
    let config = write_config(dir.path(), &db, "");

    // serve refuses to start on an unmigrated database.
    let (ok, _, err) = run(keygate().args(["serve", "--config"]).arg(&config));
    assert!(!ok);
    assert!(err.contains("keygate migrate"), "{err}");

    let (ok, out, err) = run(keygate().args(["migrate", "--config"]).arg(&config));
    assert!(ok, "{err}");
    assert!(out.contains("migrations applied"));

    let (ok, out, err) = run(keygate()
        .args([
            "invite",
            "--email",
            "dana@example.com",
            "--name",
            "Dana",
            "--config",
        ])
        .arg(&config));
    assert!(ok, "{err}");
    assert!(
        out.trim().starts_with("http://localhost:8080/enrol/"),
        "{out}"
    );
    let (ok, _, err) = run(keygate()
        .args(["invite", "--email", "not-an-email", "--config"])
        .arg(&config));
    assert!(!ok);
    assert!(err.contains("e-mail"), "{err}");
    let (ok, _, err) = run(keygate()
        .args([
            "invite",
            "--email",
            "e@example.com",
            "--role",
            "root",
            "--config",
        ])
        .arg(&config));
    assert!(!ok);
    assert!(err.contains("role"), "{err}");

    for email in ["erin@example.com", "frank@example.com"] {
        let (ok, _, err) = run(keygate()
            .args(["invite", "--email", email, "--config"])
            .arg(&config));
        assert!(ok, "{err}");
    }
    let (ok, out, err) = run(keygate().args(["audit", "verify", "--config"]).arg(&config));
    assert!(ok, "{err}");
    assert!(out.contains("audit chain OK: 3 events"), "{out}");

    // Edit a field of the second event: verification names it and fails.
    let storage = Storage::connect(&db, Some(1)).unwrap();
    storage
        .debug_execute("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2")
        .unwrap();
    let (ok, _, err) = run(keygate().args(["audit", "verify", "--config"]).arg(&config));
    assert!(!ok);
    assert!(
        err.contains("broken") && err.contains('2'),
        "names the link: {err}"
    );
}

/// A row written past the head: `audit verify` fails naming it, and `serve` refuses to
/// start rather than answer 409 to every audited write.
#[test]
fn a_row_past_the_head_fails_verification_and_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let test_db: TestDb = test_storage_unmigrated(Some(1));
    let db = test_db.url.clone();
    let config = write_config(dir.path(), &db, "");
    assert!(run(keygate().args(["migrate", "--config"]).arg(&config)).0);
    assert!(
        run(keygate()
            .args(["invite", "--email", "a@example.com", "--config"])
            .arg(&config))
        .0
    );
    let storage = Storage::connect(&db, Some(1)).unwrap();
    storage.debug_execute(&crate::audit::forged_row(2)).unwrap();
    let (ok, out, err) = run(keygate().args(["audit", "verify", "--config"]).arg(&config));
    assert!(!ok, "{out}");
    assert!(err.contains("beyond_head") && err.contains('2'), "{err}");
    let (ok, _, err) = run_bounded(
        keygate()
            .args(["serve", "--config"])
            .arg(&config)
            .env("KEYGATE__SERVER__BIND", "127.0.0.1:0"),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(
        err.contains("refusing to start") && err.contains("beyond_head"),
        "{err}"
    );
    // Verification needs nothing but the database; it still names the row after the refusal.
    let (ok, _, err) = run(keygate().args(["audit", "verify", "--config"]).arg(&config));
    assert!(!ok && err.contains("beyond_head"), "{err}");
}

#[test]
fn audit_verify_detects_a_deleted_last_event() {
    let dir = tempfile::tempdir().unwrap();
    let test_db: TestDb = test_storage_unmigrated(Some(1));
    let db = test_db.url.clone();
    let config = write_config(dir.path(), &db, "");
    assert!(run(keygate().args(["migrate", "--config"]).arg(&config)).0);
    for email in ["a@example.com", "b@example.com"] {
        assert!(
            run(keygate()
                .args(["invite", "--email", email, "--config"])
                .arg(&config))
            .0
        );
    }
    let storage = Storage::connect(&db, Some(1)).unwrap();
    storage
        .debug_execute("DELETE FROM audit_events WHERE seq = 2")
        .unwrap();
    let (ok, _, err) = run(keygate().args(["audit", "verify", "--config"]).arg(&config));
    assert!(!ok, "a deleted last event is found");
    assert!(err.contains("broken"), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// `keygate dev` on `port` in `dir`, once it has printed its bootstrap link and answers
/// `/readyz` (bounded: 30 s). Returns the child, the link's path and its stderr lines.
fn start_dev(
    dir: &std::path::Path,
    port: u16,
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    start_dev_with(dir, port, &[])
}

/// [`start_dev`] with more environment variables.
fn start_dev_with(
    dir: &std::path::Path,
    port: u16,
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = keygate()
        .args(["dev", "--data-dir"])
        .arg(dir)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("KEYGATE_LOG", "debug")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keygate dev");
    let lines = |from: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let stdout = lines(Box::new(child.stdout.take().expect("stdout")));
    let stderr = lines(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut link = None;
    while Instant::now() < deadline && link.is_none() {
        if let Ok(line) = stdout.recv_timeout(Duration::from_millis(200)) {
            if let Some(i) = line.find("http://localhost:") {
                if line.contains("/enrol/") {
                    link = Some(line[i..].trim().to_string());
                }
            }
        }
    }
    let Some(link) = link else {
        let _ = child.kill();
        panic!("keygate dev printed no bootstrap link")
    };
    let mut health = None;
    while Instant::now() < deadline && health.is_none() {
        health = http_get(port, "/readyz").filter(|r| r.starts_with("HTTP/1.1 200"));
        if health.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if health.is_none() {
        let _ = child.kill();
        panic!("readyz never answered 200");
    }
    let path = link
        .trim_start_matches(&format!("http://localhost:{port}"))
        .to_string();
    (child, path, stderr)
}

#[test]
fn dev_runs_on_the_embedded_default_and_prints_the_bootstrap_link() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, path, _stderr) = start_dev(dir.path(), port);
    let page = http_get(port, &path).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(page.starts_with("HTTP/1.1 200"), "the link opens: {page}");
    assert!(page.contains("Set up the first admin"));
    assert!(
        dir.path().join("keygate.db").exists(),
        "SQLite file in the data dir"
    );
}

/// SPEC C12: the logs carry no secret (the bootstrap link's token is in the path of a
/// request that is logged), and SIGTERM stops keygate cleanly.
#[test]
fn logs_carry_no_secret_and_sigterm_stops_keygate_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, path, stderr) = start_dev(dir.path(), port);
    let token = path.rsplit('/').next().unwrap().to_string();
    assert!(token.len() >= 20, "{path}");
    let page = http_get(port, &format!("{path}?probe=1")).unwrap_or_default();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");

    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = status.expect("keygate stopped within 20 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");

    // Everything it logged, now that it has exited and closed stderr.
    let logged: Vec<String> = stderr.iter().collect();
    let requests: Vec<&String> = logged
        .iter()
        .filter(|l| l.contains("\"request\"") || l.contains(" request "))
        .collect();
    assert!(
        requests.iter().any(|l| l.contains("/enrol/{token}")),
        "the link's request is logged by its route: {logged:#?}"
    );
    for line in &logged {
        assert!(!line.contains(&token), "a log line holds the token: {line}");
        assert!(
            !line.contains("probe=1"),
            "a log line holds the query: {line}"
        );
    }
}

/// Logs: text under `dev`, JSON lines when `KEYGATE_LOG_FORMAT=json` (as under `serve` by
/// default); never ANSI colour codes when stderr is not a terminal.
#[test]
fn logs_are_plain_text_or_json_lines_without_colour_codes() {
    for format in [None, Some("json")] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let env: Vec<(&str, &str)> = format
            .map(|f| ("KEYGATE_LOG_FORMAT", f))
            .into_iter()
            .collect();
        let (mut child, _path, stderr) = start_dev_with(dir.path(), port, &env);
        let _ = http_get(port, "/healthz");
        let _ = child.kill();
        let _ = child.wait();
        let lines: Vec<String> = stderr.try_iter().collect();
        assert!(lines.len() >= 2, "{format:?}: {lines:?}");
        for line in &lines {
            assert!(
                !line.contains('\u{1b}'),
                "{format:?}: colour codes in {line:?}"
            );
            let json = serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object());
            assert_eq!(json, format.is_some(), "{format:?}: {line}");
        }
    }
}
