//! PKCE with S256 (RFC 7636): the only method keygate accepts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::OidcError;

/// `BASE64URL(SHA256(ASCII(code_verifier)))`.
pub fn s256_challenge(code_verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        code_verifier.as_bytes(),
    ))
}

/// Whether `v` is a syntactically valid code verifier: 43 to 128 characters of
/// `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"` (RFC 7636 §4.1).
pub fn is_valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Checks `code_verifier` against the stored S256 `code_challenge`, comparing in
/// constant time. Any failure is `invalid_grant` (RFC 7636 §4.6).
pub fn verify_s256(code_verifier: &str, code_challenge: &str) -> Result<(), OidcError> {
    if !is_valid_verifier(code_verifier) {
        return Err(OidcError::InvalidGrant(
            "the code_verifier is missing or malformed".into(),
        ));
    }
    if constant_time_eq(
        s256_challenge(code_verifier).as_bytes(),
        code_challenge.as_bytes(),
    ) {
        Ok(())
    } else {
        Err(OidcError::InvalidGrant(
            "the code_verifier does not match the code_challenge".into(),
        ))
    }
}

/// Equality whose time depends only on the lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256_challenge(verifier), challenge);
        assert!(verify_s256(verifier, challenge).is_ok());
        assert!(verify_s256(verifier, &challenge.replace('E', "F")).is_err());
        assert!(verify_s256("short", challenge).is_err());
        assert!(verify_s256(&"a".repeat(129), challenge).is_err());
    }
}
