//! JSON-lines exports of the audit chain: over the admin API (streamed, audited) and with
//! `keygate audit export`; `keygate audit verify --file` checks a file on its own and names
//! the first line that was edited, removed, reordered or duplicated, or where the file
//! was cut short.

use crate::support::bin::{keygate, run};
use std::path::Path;

use keygate::audit::{verify_export, ExportHeader, NewAuditEvent, Outcome, GENESIS};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::enrolment_http::{audit_events, bootstrap_admin, trusted_ca};
use crate::support::app::TestApp;
use crate::support::authenticator::SoftAuthenticator;
use crate::support::db::test_storage;

fn verify_file(path: &Path) -> (bool, String, String) {
    run(keygate().args(["audit", "verify", "--file"]).arg(path))
}

fn config_for(dir: &Path, db_url: &str) -> std::path::PathBuf {
    let path = dir.join("keygate.toml");
    std::fs::write(
        &path,
        format!("[database]\nurl = \"{db_url}\"\n\n[organisation]\nname = \"Export Org\"\n"),
    )
    .expect("write config");
    path
}

fn seed(storage: &keygate::storage::Storage, n: i64, at: i64) {
    for i in 0..n {
        let e = NewAuditEvent::new(
            "cli",
            "invitation.created",
            format!("invitation:{i}"),
            Outcome::Success,
        )
        .with_details(json!({ "i": i, "role": "member", "note": "line\nbreak \"quoted\"" }));
        storage.append_audit(&e, at + i).expect("append");
    }
}

/// Runs `keygate <command> --out <out> --config <config>`, which must succeed.
fn export_to(command: &[&str], out: &Path, config: &Path) {
    let (ok, _, err) = run(keygate()
        .args(command)
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(config));
    assert!(ok, "{err}");
}

/// The lines of a file, without their newlines.
fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn header_of(text: &str) -> ExportHeader {
    serde_json::from_str(text.lines().next().expect("a header line")).expect("header")
}

#[actix_web::test]
async fn audit_export_over_the_api_streams_verifies_and_is_audited() {
    let ca = trusted_ca();
    let app = TestApp::builder().with_toml(&ca.toml).start().await;
    let mut admin = app.client();
    let done = bootstrap_admin(&app, &mut admin, &SoftAuthenticator::new(&ca.ca)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    // More than two storage pages of events.
    let now = app.state.now();
    app.state
        .storage
        .run(move |s| {
            seed(s, 1_100, now);
            Ok(())
        })
        .await
        .unwrap();
    let head = app.state.storage.run(|s| s.audit_head()).await.unwrap();

    let reply = admin.get("/api/admin/audit/export").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    assert!(reply
        .header("content-disposition")
        .unwrap()
        .contains(&format!("keygate-audit-1-{}.jsonl", head.seq)));
    let verified = verify_export(reply.body.as_bytes()).expect("the export verifies");
    assert_eq!(verified.count, head.seq as u64);
    let header = header_of(&reply.body);
    assert_eq!(header.kind, "anchor");
    assert_eq!((header.from_seq, header.to_seq), (1, head.seq));
    assert_eq!(header.prev_hash, GENESIS);
    assert_eq!(header.last_hash, head.hash);
    assert_eq!(
        header.head.seq,
        head.seq + 1,
        "the export's own event is the head"
    );
    assert_eq!(reply.body.lines().count() as i64, head.seq + 1);

    // The export is itself in the chain, with the range and where it ends.
    let exported = audit_events(&app).await.pop().unwrap();
    assert_eq!(exported.action, "audit.exported");
    assert_eq!(exported.seq, header.head.seq);
    assert_eq!(exported.hash, header.head.hash);
    let details = exported.details_value();
    assert_eq!(details["from_seq"], 1);
    assert_eq!(details["to_seq"], head.seq);
    assert_eq!(details["last_hash"], head.hash.as_str());
    assert!(exported.actor.starts_with("user:"));

    // The same file verifies with the binary, on its own.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &reply.body).unwrap();
    let (ok, out, err) = verify_file(&file);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("audit export OK: {} events", head.seq)),
        "{out}"
    );

    // A range in the middle hangs on the hash of the event before it.
    let events = audit_events(&app).await;
    let range = admin
        .get("/api/admin/audit/export?from_seq=5&to_seq=20")
        .await;
    assert_eq!(range.status, 200, "{}", range.body);
    let verified = verify_export(range.body.as_bytes()).expect("the range verifies");
    assert_eq!(verified.count, 16);
    assert_eq!(verified.header.prev_hash, events[3].hash);
    assert_eq!(verified.header.last_hash, events[19].hash);
    // An empty range (from the next seq on) verifies too.
    let next = events.len() + 2;
    let empty = admin
        .get(&format!("/api/admin/audit/export?from_seq={next}"))
        .await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(verify_export(empty.body.as_bytes()).unwrap().count, 0);

    // Bad ranges and parameters are refused with a code, and not audited.
    let before = audit_events(&app).await.len();
    for (query, code) in [
        ("to_seq=999999", "invalid_range"),
        ("from_seq=0", "invalid_range"),
        ("from_seq=-3", "invalid_range"),
        ("from_seq=abc", "invalid_range"),
        ("from_seq=10&to_seq=5", "invalid_range"),
        ("from=2025-01-01", "unknown_filter"),
        ("from_seq=1&from_seq=2", "unknown_filter"),
        ("from_seq=1%FF", "malformed_query"),
    ] {
        let reply = admin.get(&format!("/api/admin/audit/export?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert_eq!(reply.json()["error"], code, "{query}");
    }
    assert_eq!(audit_events(&app).await.len(), before);

    // `keygate audit export` on the same database: a range to a file, and to stdout.
    let db_url = app.state.config.database.url.expose_secret().to_string();
    let config = config_for(dir.path(), &db_url);
    let out_file = dir.path().join("range.jsonl");
    let (ok, _, err) = run(keygate()
        .args([
            "audit",
            "export",
            "--from-seq",
            "3",
            "--to-seq",
            "700",
            "--out",
        ])
        .arg(&out_file)
        .arg("--config")
        .arg(&config));
    assert!(ok, "{err}");
    assert!(err.contains("exported 698 audit events"), "{err}");
    let (ok, out, err) = verify_file(&out_file);
    assert!(ok, "{err}");
    assert!(out.contains("698 events, seq 3..700"), "{out}");
    let (ok, stdout, err) = run(keygate()
        .args(["audit", "export", "--from-seq", "1100", "--config"])
        .arg(&config));
    assert!(ok, "{err}");
    let verified = verify_export(stdout.as_bytes()).expect("stdout export verifies");
    assert_eq!(verified.header.from_seq, 1100);
    let last = audit_events(&app).await.pop().unwrap();
    assert_eq!(last.action, "audit.exported");
    assert_eq!(last.actor, "cli");
    let (ok, _, err) = run(keygate()
        .args(["audit", "export", "--to-seq", "99999999", "--config"])
        .arg(&config));
    assert!(!ok);
    assert!(err.contains("past the last event"), "{err}");
    app.stop().await;
}

/// Writes `lines` (each without its newline) to a new file and runs the verifier on it.
fn verify_lines(dir: &Path, name: &str, lines: &[String]) -> (bool, String) {
    let path = dir.join(name);
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    let (ok, _, err) = verify_file(&path);
    (ok, err)
}

fn assert_broken_at(result: (bool, String), line: usize, words: &str) {
    let (ok, err) = result;
    assert!(!ok, "verification must fail (line {line})");
    assert!(
        err.contains(&format!("line {line}:")),
        "names line {line}: {err}"
    );
    assert!(err.contains(words), "says {words:?}: {err}");
}

#[test]
fn audit_export_tampering_is_named_by_line() {
    let db = test_storage();
    seed(&db, 8, 1_764_000_000);
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), &db.url);
    let file = dir.path().join("full.jsonl");
    export_to(&["audit", "export"], &file, &config);
    let (ok, out, err) = verify_file(&file);
    assert!(ok, "{err}");
    assert!(out.contains("8 events, seq 1..8"), "{out}");

    // Line 1 is the anchor; event seq n is on line n + 1.
    let good = lines_of(&file);
    assert_eq!(good.len(), 9);
    let d = dir.path();

    let mut edited = good.clone();
    edited[3] = edited[3].replace("invitation:2", "invitation:7");
    assert_broken_at(verify_lines(d, "edited", &edited), 4, "edited");

    let mut details = good.clone();
    details[5] = details[5].replace("member", "admin");
    assert_broken_at(verify_lines(d, "details", &details), 6, "edited");

    let mut removed = good.clone();
    removed.remove(4);
    assert_broken_at(verify_lines(d, "removed", &removed), 5, "missing");

    let mut swapped = good.clone();
    swapped.swap(4, 5);
    assert_broken_at(verify_lines(d, "swapped", &swapped), 5, "out of order");

    let mut duplicated = good.clone();
    duplicated.insert(5, good[4].clone());
    assert_broken_at(verify_lines(d, "duplicated", &duplicated), 6, "repeated");

    let mut added = good.clone();
    added.push(good[8].clone());
    assert_broken_at(verify_lines(d, "added", &added), 10, "past the end");

    let truncated = good[..8].to_vec();
    assert_broken_at(verify_lines(d, "truncated", &truncated), 9, "truncated");

    let mut cut = good.clone();
    let half = cut[8].len() / 2;
    cut[8].truncate(half);
    assert_broken_at(verify_lines(d, "cut", &cut), 9, "not an audit event");

    let mut header = good.clone();
    header[0] = header[0].replace("\"to_seq\":8", "\"to_seq\":7");
    assert_broken_at(verify_lines(d, "header", &header), 1, "count");

    assert_broken_at(verify_lines(d, "empty", &[]), 1, "empty");
    let (ok, _, err) = verify_file(&d.join("missing.jsonl"));
    assert!(!ok);
    assert!(err.contains("cannot read"), "{err}");

    // A range from the middle verifies on its own; its anchor cannot be swapped.
    let range = d.join("range.jsonl");
    let (ok, _, err) = run(keygate()
        .args([
            "audit",
            "export",
            "--from-seq",
            "3",
            "--to-seq",
            "6",
            "--out",
        ])
        .arg(&range)
        .arg("--config")
        .arg(&config));
    assert!(ok, "{err}");
    let (ok, out, err) = verify_file(&range);
    assert!(ok, "{err}");
    assert!(out.contains("4 events, seq 3..6"), "{out}");
    let mut lines = lines_of(&range);
    let h = header_of(&lines[0]);
    lines[0] = lines[0].replace(&h.prev_hash, GENESIS);
    assert_broken_at(verify_lines(d, "anchor", &lines), 2, "does not link");
}

/// The anchor is signed with the gateway's key: with its JWKS, `keygate audit verify` also
/// proves where the file comes from, so an anchor rewritten (even in a field the chain check
/// cannot see), a file from another gateway, or an unsigned file is refused.
#[test]
fn audit_export_anchor_signature_is_checked_against_the_jwks() {
    let db = test_storage();
    seed(&db, 3, 1_764_000_000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = config_for(d, &db.url);
    let (file, jwks) = (d.join("full.jsonl"), d.join("jwks.json"));
    export_to(&["audit", "export"], &file, &config);
    export_to(&["export", "jwks"], &jwks, &config);
    let with_jwks = |path: &Path, jwks: &Path| {
        run(keygate()
            .args(["audit", "verify", "--file"])
            .arg(path)
            .arg("--jwks")
            .arg(jwks))
    };
    let (ok, out, err) = with_jwks(&file, &jwks);
    assert!(ok, "{err}");
    assert!(out.contains("3 events, seq 1..3"), "{out}");
    assert!(out.contains("anchor signed by key"), "{out}");
    let (ok, out, _) = verify_file(&file);
    assert!(ok);
    assert!(out.contains("anchor signature not checked"), "{out}");

    let lines = lines_of(&file);
    let write = |name: &str, anchor: &ExportHeader| {
        let mut l = lines.clone();
        l[0] = serde_json::to_string(anchor).unwrap();
        let path = d.join(name);
        std::fs::write(&path, l.join("\n") + "\n").unwrap();
        path
    };
    let anchor = header_of(&lines[0]);

    // A field the chain does not cover: only the signature notices.
    let mut moved = anchor.clone();
    moved.exported_at = "2020-01-01T00:00:00Z".into();
    let moved = write("moved.jsonl", &moved);
    assert!(verify_file(&moved).0, "the chain alone cannot see it");
    let (ok, _, err) = with_jwks(&moved, &jwks);
    assert!(!ok);
    assert!(
        err.contains("line 1") && err.contains("anchor was changed"),
        "{err}"
    );

    // Another gateway's JWKS (a fresh database has keys of its own).
    let other_db = test_storage();
    let other = d.join("other");
    std::fs::create_dir(&other).unwrap();
    let other_config = config_for(&other, &other_db.url);
    let other_jwks = other.join("jwks.json");
    export_to(&["export", "jwks"], &other_jwks, &other_config);
    let (ok, _, err) = with_jwks(&file, &other_jwks);
    assert!(!ok);
    assert!(err.contains("does not verify"), "{err}");

    // An unsigned anchor: a v1 file verifies as such, and is refused when a JWKS is given;
    // a v2 anchor without its signature is broken.
    let mut v1 = anchor.clone();
    v1.signature = None;
    v1.format = "keygate.audit.export.v1".into();
    let v1 = write("v1.jsonl", &v1);
    let (ok, out, err) = verify_file(&v1);
    assert!(ok, "{err}");
    assert!(out.contains("anchor not signed"), "{out}");
    let (ok, _, err) = with_jwks(&v1, &jwks);
    assert!(!ok);
    assert!(err.contains("not signed"), "{err}");
    let mut stripped = anchor;
    stripped.signature = None;
    let stripped = write("stripped.jsonl", &stripped);
    let (ok, _, err) = verify_file(&stripped);
    assert!(!ok);
    assert!(err.contains("must be signed"), "{err}");
}

/// Python's joserfc, an independent JOSE implementation, checks an export's anchor with the
/// exported JWKS: the signature verifies, `typ` names an audit anchor, and the signed
/// payload is the anchor line itself without its signature. A changed anchor fails there.
const PYTHON_ANCHOR_CHECK: &str = r#"
import json, sys
from joserfc import jws
from joserfc.jwk import KeySet
anchor = json.loads(open(sys.argv[1]).readline())
keys = KeySet.import_key_set(json.load(open(sys.argv[2])))
obj = jws.deserialize_compact(anchor.pop("signature"), keys, algorithms=["ES256"])
assert obj.protected["typ"] == "keygate-audit-anchor+json", obj.protected
signed = json.loads(obj.payload)
assert signed == anchor, (signed, anchor)
print(obj.protected["kid"], anchor["format"])
"#;

#[test]
fn audit_export_anchor_verifies_with_an_independent_jose_library() {
    if crate::support::skip::unless_available(
        crate::compliance_verify::python_has_joserfc(),
        "python3 with joserfc",
    ) {
        return;
    }
    let db = test_storage();
    seed(&db, 2, 1_764_000_000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = config_for(d, &db.url);
    let (file, jwks, script) = (d.join("a.jsonl"), d.join("jwks.json"), d.join("check.py"));
    export_to(&["audit", "export"], &file, &config);
    export_to(&["export", "jwks"], &jwks, &config);
    std::fs::write(&script, PYTHON_ANCHOR_CHECK).unwrap();
    let python = |path: &Path| {
        run(std::process::Command::new("python3")
            .arg(&script)
            .arg(path)
            .arg(&jwks))
    };
    let (ok, out, err) = python(&file);
    assert!(ok, "joserfc refused the anchor: {err}");
    let anchor = header_of(&lines_of(&file)[0]);
    let kid = serde_json::from_slice::<serde_json::Value>(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            anchor
                .signature
                .as_deref()
                .unwrap()
                .split('.')
                .next()
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(out.trim(), format!("{kid} keygate.audit.export.v2"));

    // The anchor with a field changed under its signature: refused there too.
    let mut lines = lines_of(&file);
    let mut moved = anchor;
    moved.exported_at = "2020-01-01T00:00:00Z".into();
    lines[0] = serde_json::to_string(&moved).unwrap();
    let changed = d.join("changed.jsonl");
    std::fs::write(&changed, lines.join("\n") + "\n").unwrap();
    let (ok, _, err) = python(&changed);
    assert!(!ok, "joserfc must refuse a changed anchor");
    assert!(err.contains("AssertionError"), "{err}");
}
