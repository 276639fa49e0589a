//! `keygate verify-export` (the real binary, offline) on a fresh signed export: it passes
//! with the test CA as an extra root, and fails, naming what, on a changed byte, swapped
//! evidence, a wrong JWKS, truncated files and an untrusted root. `keygate export` over
//! the CLI, and an independent JOSE library (Python joserfc) verifying our JWS with our
//! JWKS.

use crate::support::bin::{keygate, run};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keygate::oidc::keys::{Algorithm, KeySet};
use keygate::service::compliance::{self, Format};
use keygate::service::Actor;
use secrecy::ExposeSecret;

use crate::compliance_export::{request, seeded};

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }
}

fn verify(
    report: &Path,
    jwks: &Path,
    evidence: Option<&Path>,
    roots: Option<&Path>,
) -> (bool, String, String) {
    let mut cmd = keygate();
    cmd.arg("verify-export").arg(report).arg("--jwks").arg(jwks);
    if let Some(e) = evidence {
        cmd.arg("--evidence").arg(e);
    }
    if let Some(r) = roots {
        cmd.arg("--roots").arg(r);
    }
    run(&mut cmd)
}

fn assert_fails(outcome: (bool, String, String), what: &str, needle: &str) {
    let (ok, out, err) = outcome;
    assert!(!ok, "{what}: must fail\n{out}\n{err}");
    assert!(
        out.contains(needle) || err.contains(needle),
        "{what}: names {needle:?}\nstdout: {out}\nstderr: {err}"
    );
}

#[actix_web::test]
async fn compliance_verify_export_passes_and_names_each_failure() {
    let s = seeded().await;
    let state = &s.app.state;
    let done = compliance::export(state, &Actor::cli(), &request(Format::Jws, None))
        .await
        .expect("export");
    let jwks = serde_json::to_vec(&compliance::jwks(state).await.expect("jwks")).unwrap();
    let files = Files {
        dir: tempfile::tempdir().unwrap(),
    };
    let report = files.write("report.jws", &done.body);
    let evidence = files.write("evidence.json", &done.evidence);
    let jwks_file = files.write("jwks.json", &jwks);
    std::fs::create_dir(files.path("roots")).unwrap();
    let roots = files.path("roots");
    std::fs::write(roots.join("test-ca.pem"), s.ca.ca.root_pem()).unwrap();

    // A fresh export verifies: signature, integrity, and every key's attestation.
    let (ok, out, err) = verify(&report, &jwks_file, Some(&evidence), Some(&roots));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("signature: OK"), "{out}");
    assert!(
        out.contains("evidence: 3 of 3 key attestation(s) re-verified"),
        "{out}"
    );
    assert!(
        out.contains("OK    admin@example.com: compliant; 2 of 2 key(s) verified"),
        "{out}"
    );
    assert!(
        out.contains("OK    bob@example.com: not compliant (too_few_keys)"),
        "{out}"
    );
    assert!(out.contains("verdict: VERIFIED"), "{out}");
    // Without the evidence: the signature and integrity only.
    let (ok, out, _) = verify(&report, &jwks_file, None, None);
    assert!(ok && out.contains("evidence: not checked"), "{out}");

    // The test CA is no Yubico root: without --roots the chains do not verify.
    assert_fails(
        verify(&report, &jwks_file, Some(&evidence), None),
        "untrusted root",
        "does not reach a trusted root",
    );

    // One changed byte in the report's payload.
    let token = String::from_utf8(done.body.clone()).unwrap();
    let token = token.trim_end();
    let at = token.find('.').unwrap() + 40;
    let mut changed = token.as_bytes().to_vec();
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    let changed = files.write("changed.jws", &changed);
    assert_fails(
        verify(&changed, &jwks_file, Some(&evidence), Some(&roots)),
        "changed byte",
        "the signature does not verify",
    );

    // Swapped evidence blobs: each affected key is named.
    let mut bundle: serde_json::Value = serde_json::from_slice(&done.evidence).unwrap();
    let entries = bundle["entries"].as_array_mut().unwrap();
    let first = entries[0]["attestation_object"].clone();
    entries[0]["attestation_object"] = entries[1]["attestation_object"].clone();
    entries[1]["attestation_object"] = first;
    let key0 = entries[0]["key_id"].as_str().unwrap().to_string();
    let swapped = files.write("swapped.json", &serde_json::to_vec(&bundle).unwrap());
    let (ok, out, err) = verify(&report, &jwks_file, Some(&swapped), Some(&roots));
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "key {key0}: the evidence digest does not match the report"
        )),
        "{out}\n{err}"
    );
    assert!(err.contains("verification FAILED"), "{err}");

    // An entry's own sha256 field edited (the contents untouched): named, not VERIFIED.
    let mut edited: serde_json::Value = serde_json::from_slice(&done.evidence).unwrap();
    let entry = &mut edited["entries"][0];
    let key = entry["key_id"].as_str().unwrap().to_string();
    entry["sha256"] = "00".repeat(32).into();
    let edited = files.write("edited.json", &serde_json::to_vec(&edited).unwrap());
    let (ok, out, err) = verify(&report, &jwks_file, Some(&edited), Some(&roots));
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("key {key}: the entry's own sha256 does not match")),
        "{out}\n{err}"
    );
    assert!(!out.contains("VERIFIED"), "{out}");

    // Evidence of another report (same keys, another report ID) is refused too.
    let mut other: serde_json::Value = serde_json::from_slice(&done.evidence).unwrap();
    other["report_id"] = "0000".into();
    let other = files.write("other.json", &serde_json::to_vec(&other).unwrap());
    assert_fails(
        verify(&report, &jwks_file, Some(&other), Some(&roots)),
        "other report's evidence",
        "belongs to report 0000",
    );

    // A JWKS without the signing key.
    let stranger = KeySet::generate(&[Algorithm::Es256], time::OffsetDateTime::now_utc()).unwrap();
    let wrong = files.write("wrong.json", &serde_json::to_vec(&stranger.jwks()).unwrap());
    assert_fails(
        verify(&report, &wrong, Some(&evidence), Some(&roots)),
        "wrong JWKS",
        "is not in the given JWKS",
    );
    // A JWKS whose key carries a private part is refused.
    let mut leaky: serde_json::Value = serde_json::from_slice(&jwks).unwrap();
    for k in leaky["keys"].as_array_mut().unwrap() {
        k["d"] = "c2VjcmV0".into();
    }
    let leaky = files.write("leaky.json", &serde_json::to_vec(&leaky).unwrap());
    assert_fails(
        verify(&report, &leaky, None, None),
        "private JWK",
        "holds a private part",
    );
    let not_jwks = files.write("not-jwks.json", b"[1,2]");
    assert_fails(
        verify(&report, &not_jwks, None, None),
        "not a JWKS",
        "the JWKS is not usable",
    );

    // Truncated files.
    let truncated = files.write("truncated.jws", &done.body[..done.body.len() / 2]);
    assert_fails(
        verify(&truncated, &jwks_file, None, None),
        "truncated report",
        "verification FAILED",
    );
    let cut = files.write("cut.json", &done.evidence[..done.evidence.len() - 20]);
    assert_fails(
        verify(&report, &jwks_file, Some(&cut), Some(&roots)),
        "truncated evidence",
        "evidence bundle",
    );
    let empty = files.write("empty.jws", b"");
    assert_fails(
        verify(&empty, &jwks_file, None, None),
        "empty report",
        "not a compact JWS",
    );
    // An unsigned JSON export is not accepted as a signed report.
    let json = compliance::export(state, &Actor::cli(), &request(Format::Json, None))
        .await
        .unwrap();
    let json = files.write("report.json", &json.body);
    assert_fails(
        verify(&json, &jwks_file, None, None),
        "JSON report",
        "--format jws",
    );
    assert_fails(
        verify(&files.path("missing.jws"), &jwks_file, None, None),
        "missing file",
        "cannot read the report",
    );
    s.app.stop().await;
}

#[actix_web::test]
async fn compliance_cli_exports_then_verifies() {
    let s = seeded().await;
    let files = Files {
        dir: tempfile::tempdir().unwrap(),
    };
    let db = s.app.state.config.database.url.expose_secret().to_string();
    let config = files.write(
        "keygate.toml",
        format!(
            "[server]\npublic_url = \"{}\"\n\n[database]\nurl = \"{db}\"\n\n[organisation]\nname = \"CLI Org\"\n",
            s.app.base
        )
        .as_bytes(),
    );
    let report = files.path("report.jws");
    let evidence = files.path("evidence.json");
    let jwks = files.path("jwks.json");
    let (ok, _, err) = run(keygate()
        .args([
            "export",
            "compliance",
            "--workspace",
            "ws-vendor-1",
            "--evidence",
        ])
        .arg(&evidence)
        .arg("--out")
        .arg(&report)
        .arg("--config")
        .arg(&config));
    assert!(ok, "{err}");
    assert!(err.contains("1 member(s), 0 compliant"), "{err}");
    let (ok, _, err) = run(keygate()
        .args(["export", "jwks", "--out"])
        .arg(&jwks)
        .arg("--config")
        .arg(&config));
    assert!(ok, "{err}");
    let roots = files.write("test-ca.pem", s.ca.ca.root_pem().as_bytes());
    let (ok, out, err) = verify(&report, &jwks, Some(&evidence), Some(&roots));
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("workspace Vendor <Program> (ws-vendor-1)"),
        "{out}"
    );
    assert!(out.contains("OK    bob@example.com"), "{out}");

    // CSV to standard output; an unknown format and workspace are clear errors.
    let (ok, out, err) = run(keygate()
        .args(["export", "compliance", "--format", "csv", "--config"])
        .arg(&config));
    assert!(ok, "{err}");
    assert!(out.starts_with("organisation,"), "{out}");
    let (ok, _, err) = run(keygate()
        .args(["export", "compliance", "--format", "pdf", "--config"])
        .arg(&config));
    assert!(!ok && err.contains("unknown export format"), "{err}");
    let (ok, _, err) = run(keygate()
        .args(["export", "compliance", "--workspace", "nope", "--config"])
        .arg(&config));
    assert!(!ok && err.contains("no workspace"), "{err}");
    s.app.stop().await;
}

/// Python's joserfc, an independent JOSE implementation, verifies our JWS with our JWKS
/// and gets the canonical report back; a changed signature fails there too.
const PYTHON_CHECK: &str = r#"
import hashlib, json, sys
from joserfc import jws
from joserfc.jwk import KeySet
token = open(sys.argv[1]).read().strip()
keys = KeySet.import_key_set(json.load(open(sys.argv[2])))
obj = jws.deserialize_compact(token, keys, algorithms=["ES256"])
assert obj.protected["alg"] == "ES256", obj.protected
assert obj.protected["typ"] == "keygate-compliance+json", obj.protected
report = json.loads(obj.payload)
print(obj.protected["kid"], hashlib.sha256(obj.payload).hexdigest(), report["summary"]["members"])
"#;

pub(crate) fn python_has_joserfc() -> bool {
    Command::new("python3")
        .args(["-c", "import joserfc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[actix_web::test]
async fn compliance_jws_verifies_with_an_independent_jose_library() {
    if crate::support::skip::unless_available(python_has_joserfc(), "python3 with joserfc") {
        return;
    }
    let s = seeded().await;
    let state = &s.app.state;
    let done = compliance::export(state, &Actor::cli(), &request(Format::Jws, None))
        .await
        .expect("export");
    let jwks = serde_json::to_vec(&compliance::jwks(state).await.unwrap()).unwrap();
    let files = Files {
        dir: tempfile::tempdir().unwrap(),
    };
    let script = files.write("check.py", PYTHON_CHECK.as_bytes());
    let report = files.write("report.jws", &done.body);
    let jwks = files.write("jwks.json", &jwks);
    let (ok, out, err) = run(Command::new("python3").arg(&script).arg(&report).arg(&jwks));
    assert!(ok, "joserfc refused our JWS: {err}");
    let canonical = keygate::compliance::to_json(&done.report).unwrap();
    let expected = format!(
        "{} {} 2",
        done.kid.as_deref().unwrap(),
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &canonical))
    );
    assert_eq!(out.trim(), expected);

    // A changed signature fails in joserfc too.
    let token = String::from_utf8(done.body).unwrap();
    let token = token.trim_end();
    let mut bad = token.as_bytes().to_vec();
    let i = bad.len() - 5;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let bad = files.write("bad.jws", &bad);
    let (ok, _, _) = run(Command::new("python3").arg(&script).arg(&bad).arg(&jwks));
    assert!(!ok, "joserfc must refuse a changed signature");
    s.app.stop().await;
}
