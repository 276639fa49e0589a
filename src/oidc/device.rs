//! The OAuth 2.0 device authorization grant (RFC 8628): user codes, the polling rules and
//! the canonical approval a member's key touch is bound to.
//!
//! - A user code is 8 letters from the 20 consonants `BCDFGHJKLMNPQRSTVWXZ` (RFC 8628
//!   §6.1: no vowels, so no words; no digits to confuse with letters), shown `XXXX-XXXX`
//!   and accepted in any case, with or without the dash or spaces.
//! - Polling (§3.5): a poll sooner than the interval after the previous one is answered
//!   `slow_down` and the interval grows by 5 seconds for this and every later poll.
//! - The approval touch's WebAuthn challenge is SHA-256 of [`Approval::canonical`]: the
//!   client, the user code, the scopes, the resource, the lifetime and a server nonce, each
//!   length-prefixed, so no two approvals encode alike. The server recomputes it from the
//!   request it stored, so a touch made for one request can never approve another.

use serde::{Deserialize, Serialize};

use super::scope::Scopes;

/// The grant type at the token endpoint (RFC 8628 §3.4).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The user-code alphabet (RFC 8628 §6.1): 20 consonants.
pub const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Letters in a user code: 20^8 ≈ 2.56e10 codes.
pub const USER_CODE_LEN: usize = 8;

/// How much a `slow_down` adds to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_SECS: u64 = 5;

/// A user code from `random` bytes (rejection sampling keeps every letter equally likely:
/// bytes ≥ 240 are skipped). `None` when `random` runs out first (ask again with more).
pub fn user_code_from(random: &[u8]) -> Option<String> {
    let code: String = random
        .iter()
        .filter(|b| **b < 240)
        .take(USER_CODE_LEN)
        .map(|b| ALPHABET[usize::from(*b % 20)] as char)
        .collect();
    (code.len() == USER_CODE_LEN).then_some(code)
}

/// The code as people read it: `XXXX-XXXX`.
pub fn display(code: &str) -> String {
    if code.len() == USER_CODE_LEN && code.is_ascii() {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// What a person typed, as the stored code: upper case, without dashes and white space;
/// `None` when it cannot be a user code (wrong length or a letter outside the alphabet).
pub fn normalize(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// Exactly what a member approves; its digest is the approval touch's challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub client_id: String,
    pub user_code: String,
    pub scopes: Scopes,
    /// The audience/resource (RFC 8707), when the request named one.
    pub resource: Option<String>,
    /// Seconds the issued access token lives.
    pub lifetime_secs: u64,
    /// A random value stored with the pending request (base64url).
    pub nonce: String,
}

impl Approval {
    /// The canonical encoding: a version line, then each field as its byte length in
    /// decimal, `:`, the bytes and `\n` (the resource's absence is the field `-`, which a
    /// present one can never equal since it is an absolute URI).
    pub fn canonical(&self) -> Vec<u8> {
        let scopes = self.scopes.to_string();
        let lifetime = self.lifetime_secs.to_string();
        let fields: [(&str, &str); 6] = [
            ("client_id", &self.client_id),
            ("user_code", &self.user_code),
            ("scope", &scopes),
            ("resource", self.resource.as_deref().unwrap_or("-")),
            ("lifetime", &lifetime),
            ("nonce", &self.nonce),
        ];
        let mut out = b"keygate device approval v1\n".to_vec();
        for (name, value) in fields {
            out.extend_from_slice(format!("{name}={}:", value.len()).as_bytes());
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// SHA-256 of [`Approval::canonical`]: the WebAuthn challenge of the approving touch.
    pub fn digest(&self) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.canonical());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

/// The polling state of one device code: when it was last polled and the interval now
/// asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polling {
    pub last: Option<i64>,
    pub interval: u64,
}

impl Polling {
    pub fn new(interval: u64) -> Polling {
        Polling {
            last: None,
            interval,
        }
    }

    /// A poll at `now`: `true` when it came too soon (answer `slow_down`; the interval
    /// grew by [`SLOW_DOWN_SECS`]). Either way the poll is remembered.
    pub fn poll(&mut self, now: i64) -> bool {
        let too_soon = self
            .last
            .is_some_and(|last| now - last < self.interval as i64);
        if too_soon {
            self.interval += SLOW_DOWN_SECS;
        }
        self.last = Some(now);
        too_soon
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_alphabet_evenly_and_read_back_in_any_shape() {
        let code = user_code_from(&[0, 19, 20, 239, 240, 255, 1, 2, 3, 4]).unwrap();
        assert_eq!(code, "BZBZCDFG");
        assert_eq!(user_code_from(&[240; 30]), None);
        assert_eq!(display(&code), "BZBZ-CDFG");
        for typed in ["BZBZ-CDFG", "bzbz-cdfg", " bzbz cdfg ", "BzBzCdFg"] {
            assert_eq!(normalize(typed).as_deref(), Some("BZBZCDFG"), "{typed}");
        }
        for bad in [
            "BZBZ-CDFA",
            "BZBZ-CDF",
            "BZBZ-CDFGH",
            "BZBZ-CDF1",
            "",
            "ßZBZCDFG",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    fn approval() -> Approval {
        Approval {
            client_id: "cli".into(),
            user_code: "BCDFGHJK".into(),
            scopes: Scopes::parse("openid offline_access").unwrap(),
            resource: None,
            lifetime_secs: 600,
            nonce: "n".into(),
        }
    }

    #[test]
    fn every_field_changes_the_digest() {
        let base = approval();
        let d = base.digest();
        let changes: [fn(&mut Approval); 6] = [
            |a| a.client_id = "cli2".into(),
            |a| a.user_code = "BCDFGHJL".into(),
            |a| a.scopes = Scopes::parse("openid").unwrap(),
            |a| a.resource = Some("https://api.example".into()),
            |a| a.lifetime_secs = 601,
            |a| a.nonce = "m".into(),
        ];
        for change in changes {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(other.digest(), d, "{other:?}");
        }
        // Length prefixes: moving bytes between fields changes the encoding.
        let mut a = base.clone();
        a.client_id = "cli\nuser_code=8:X".into();
        assert_ne!(a.canonical(), base.canonical());
        assert_eq!(base.digest(), approval().digest());
    }

    #[test]
    fn polling_too_fast_slows_down_by_five_seconds() {
        let mut p = Polling::new(5);
        assert!(!p.poll(100));
        assert!(p.poll(103));
        assert_eq!(p.interval, 10);
        assert!(p.poll(112));
        assert_eq!(p.interval, 15);
        assert!(!p.poll(127));
        assert_eq!(p.interval, 15);
    }
}
