//! Ids, token hashes and the clock used by the stores.

use std::time::{SystemTime, UNIX_EPOCH};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use super::error::StorageError;

/// A time-ordered (version 7, RFC 9562) UUID as lowercase text, for audit event ids.
pub fn new_id() -> Result<String, StorageError> {
    let mut random = [0u8; 10];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| StorageError::Backend("system random number generator failed".into()))?;
    let hex = ordered_id(unix_millis(), random);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// A row id for rows written on hot paths (sessions, grants, audit events): a version 7
/// UUID as 32 lowercase hex digits — 48 bits of unix milliseconds, then 74 random bits.
/// Ids made later sort later, so inserts append to the primary key's b-tree instead of
/// touching a random page of it (fewer pages written per commit, on SQLite and
/// PostgreSQL). Not a secret: it says when the row was made, which the row says anyway.
pub fn ordered_id(unix_ms: u64, random: [u8; 10]) -> String {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&random);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    hex::encode(bytes)
}

/// The current time in unix milliseconds (0 before 1970).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Lowercase hex SHA-256 of a secret token (invitation links): the form stored and
/// looked up, so the token itself is never stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// The current time in unix seconds.
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_uuids() {
        let id = new_id().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "7");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, new_id().unwrap());
    }

    #[test]
    fn ordered_ids_sort_by_time_then_randomness() {
        let a = ordered_id(1_700_000_000_000, [0xff; 10]);
        let b = ordered_id(1_700_000_000_001, [0; 10]);
        assert!(a < b, "{a} < {b}");
        assert_eq!(&a[..12], "018bcfe56800");
        assert_eq!(a.len(), 32);
        assert_eq!(&a[12..13], "7");
        assert_eq!(&a[16..17], "b");
        assert_ne!(
            ordered_id(1, [1; 10]),
            ordered_id(1, [2; 10]),
            "the same millisecond still differs"
        );
    }

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
