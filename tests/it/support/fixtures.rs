//! The real-world fixtures kept in the repository (`tests/fixtures`): YubiKey
//! registrations and assertions, Yubico's roots and a certificate-only leaf.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

/// The fixtures directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture file as text.
pub fn read_text(relative: &str) -> String {
    let path = dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture file as JSON.
pub fn read_json(relative: &str) -> Value {
    serde_json::from_str(&read_text(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// base64url (padding tolerated).
pub fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("base64url {s:?}: {e}"))
}

fn str_field<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("fixture field {pointer} missing"))
}

fn json_files(sub: &str) -> Vec<(String, Value)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir().join(sub))
        .unwrap_or_else(|e| panic!("{sub}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect()
}

/// A real registration and what it must verify to.
pub struct RegistrationVector {
    pub name: String,
    pub rp_id: String,
    pub origin: String,
    pub challenge: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub attestation_object: Vec<u8>,
    pub raw_id: Vec<u8>,
    /// The `expected` object of the fixture.
    pub expected: Value,
}

/// Every vector in `yubikey/registration`, sorted by file name.
pub fn registrations() -> Vec<RegistrationVector> {
    json_files("yubikey/registration")
        .into_iter()
        .map(|(name, v)| RegistrationVector {
            rp_id: str_field(&v, "/rp_id").to_owned(),
            origin: str_field(&v, "/origin").to_owned(),
            challenge: b64(str_field(&v, "/challenge_b64url")),
            client_data_json: b64(str_field(&v, "/credential/response/clientDataJSON")),
            attestation_object: b64(str_field(&v, "/credential/response/attestationObject")),
            raw_id: b64(str_field(&v, "/credential/rawId")),
            expected: v.get("expected").cloned().unwrap_or(Value::Null),
            name,
        })
        .collect()
}

/// A real assertion and what it must verify to.
pub struct AssertionVector {
    pub name: String,
    pub rp_id: String,
    pub origin: String,
    pub challenge: Vec<u8>,
    pub public_key_cose: Vec<u8>,
    pub public_key_alg: i64,
    pub current_sign_count: u32,
    pub client_data_json: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub signature: Vec<u8>,
    pub expected_sign_count: u32,
    pub expected: Value,
}

/// Every vector in `yubikey/authentication`, sorted by file name.
pub fn assertions() -> Vec<AssertionVector> {
    let num = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("fixture field {p} missing"))
    };
    json_files("yubikey/authentication")
        .into_iter()
        .map(|(name, v)| AssertionVector {
            rp_id: str_field(&v, "/rp_id").to_owned(),
            origin: str_field(&v, "/origin").to_owned(),
            challenge: b64(str_field(&v, "/challenge_b64url")),
            public_key_cose: b64(str_field(&v, "/credential_public_key_cose_b64url")),
            public_key_alg: num(&v, "/credential_public_key_alg"),
            current_sign_count: num(&v, "/credential_current_sign_count") as u32,
            client_data_json: b64(str_field(&v, "/credential/response/clientDataJSON")),
            authenticator_data: b64(str_field(&v, "/credential/response/authenticatorData")),
            signature: b64(str_field(&v, "/credential/response/signature")),
            expected_sign_count: num(&v, "/expected_sign_count") as u32,
            expected: v.get("expected").cloned().unwrap_or(Value::Null),
            name,
        })
        .collect()
}

/// A root from `roots/` as PEM.
pub fn root_pem(file: &str) -> String {
    read_text(&format!("roots/{file}"))
}

/// The three roots' file names with their subject common names.
pub const ROOTS: [(&str, &str); 3] = [
    (
        "yubico-u2f-root-ca-serial-457200631.pem",
        "Yubico U2F Root CA Serial 457200631",
    ),
    (
        "yubico-fido-root-ca-serial-450203556.pem",
        "Yubico FIDO Root CA Serial 450203556",
    ),
    ("yubico-attestation-root-1.pem", "Yubico Attestation Root 1"),
];
