//! Random secrets and their digests. Secrets are shown once; only digests are stored.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The system RNG only fails when the OS cannot supply randomness at all; continuing
    // without it would be unsafe, so that is the one place we stop.
    SystemRandom::new()
        .fill(&mut buf)
        .unwrap_or_else(|_| std::process::abort());
    buf
}

/// A URL-safe secret token of 32 random bytes (256 bits).
pub fn secret_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(32))
}

/// A time-ordered row id (a version 7 UUID as 32 hex digits, see
/// [`crate::storage::ordered_id`]) for rows inserted on hot paths.
pub fn ordered_id() -> String {
    let mut random = [0u8; 10];
    random.copy_from_slice(&random_bytes(10));
    crate::storage::ordered_id(crate::storage::unix_millis(), random)
}

/// A random opaque identifier (128 bits, hex).
pub fn new_id() -> String {
    hex::encode(random_bytes(16))
}

/// Hex SHA-256, used to store and look up tokens without storing them.
pub fn digest_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url with or without padding; `None` on anything else.
pub fn from_b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Constant-time equality for secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a person is told when a request parked for their key touch is gone.
pub const DETOUR_EXPIRED: &str =
    "this sign-in request expired or was already used; go back to the application and start again";

/// Takes (once) the request a sign-in detour parked under `key(id)`: `None` when `id` is not
/// an id keygate makes ([`new_id`]), or the request expired, was taken, or does not parse.
pub async fn take_parked<T: serde::de::DeserializeOwned>(
    state: &crate::state::AppState,
    id: &str,
    key: impl Fn(&str) -> String,
) -> crate::error::Result<Option<T>> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(raw) = state.ephemeral.take(&key(id)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&raw).ok())
}
