//! OAuth scopes: the values keygate knows and a parsed, ordered, de-duplicated set.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::OidcError;

/// Required for every OpenID Connect request.
pub const OPENID: &str = "openid";
/// `name` in ID tokens and userinfo.
pub const PROFILE: &str = "profile";
/// `email` and `email_verified`.
pub const EMAIL: &str = "email";
/// A refresh token is issued.
pub const OFFLINE_ACCESS: &str = "offline_access";
/// The key evidence claims `key_aaguid`, `key_model`, `key_fips`.
pub const KEY_EVIDENCE: &str = "keygate:key_evidence";

/// Reading the compliance attestation over the API (`GET /api/compliance/report`).
pub const COMPLIANCE: &str = "keygate:compliance";

/// Every scope keygate understands (what discovery advertises).
pub const SUPPORTED: [&str; 6] = [
    OPENID,
    PROFILE,
    EMAIL,
    OFFLINE_ACCESS,
    KEY_EVIDENCE,
    COMPLIANCE,
];

/// Scopes granted to a client acting for itself (the client credentials grant), never in
/// a user's authorization request. A confidential client whose registered scopes include
/// one of them may use the client credentials grant for it.
pub const CLIENT_ONLY: [&str; 1] = [COMPLIANCE];

/// Registered with a client, lets it use the device authorization grant (RFC 8628). A
/// registration mark like the client-only scopes: never asked for, never granted, never
/// advertised.
pub const DEVICE_GRANT: &str = "keygate:device";

/// Values a client's registered scope list may hold that are not scopes of a token.
pub const GRANT_MARKS: [&str; 1] = [DEVICE_GRANT];

/// The longest `scope` parameter read.
const MAX_SCOPE_LEN: usize = 1024;

/// A set of scope tokens in the order first given, without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// Parses a space-separated `scope` parameter (RFC 6749 §3.3). Tokens must be
    /// printable ASCII without `"` or `\`; repeated tokens count once.
    pub fn parse(s: &str) -> Result<Scopes, OidcError> {
        if s.len() > MAX_SCOPE_LEN {
            return Err(OidcError::InvalidScope(
                "the scope parameter is too long".into(),
            ));
        }
        let mut out: Vec<String> = Vec::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            let ok = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !ok {
                return Err(OidcError::InvalidScope(
                    "a scope contains characters scopes may not have".into(),
                ));
            }
            if !out.iter().any(|t| t == token) {
                out.push(token.to_owned());
            }
        }
        Ok(Scopes(out))
    }

    /// A set from known values (no checks).
    pub fn from_values<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Scopes {
        let mut out: Vec<String> = Vec::new();
        for v in values {
            let v = v.into();
            if !out.contains(&v) {
                out.push(v);
            }
        }
        Scopes(out)
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    /// The tokens, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every token is also in `other` (a refresh may narrow, never widen).
    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.iter().all(|s| other.contains(s))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_dedupes_and_keeps_order() {
        let s = Scopes::parse("openid  email openid profile").unwrap();
        assert_eq!(s.to_string(), "openid email profile");
        assert!(s.contains(EMAIL) && !s.contains(OFFLINE_ACCESS));
        assert!(Scopes::parse("openid").unwrap().is_subset_of(&s));
        assert!(!s.is_subset_of(&Scopes::parse("openid").unwrap()));
    }

    #[test]
    fn parse_refuses_forbidden_characters() {
        for bad in ["open\"id", "a\\b", "tab\there", "é"] {
            assert!(Scopes::parse(bad).is_err(), "{bad}");
        }
        assert!(Scopes::parse(&"a ".repeat(600)).is_err());
    }
}
