//! clientDataJSON (WebAuthn L3 §5.8.1): what the browser says the ceremony was for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use super::error::WebauthnError;

/// Which ceremony a clientDataJSON must describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ceremony {
    /// Registration: `webauthn.create`.
    Create,
    /// Authentication: `webauthn.get`.
    Get,
}

impl Ceremony {
    /// The `type` string WebAuthn uses for this ceremony.
    pub fn type_str(self) -> &'static str {
        match self {
            Ceremony::Create => "webauthn.create",
            Ceremony::Get => "webauthn.get",
        }
    }
}

#[derive(Deserialize)]
struct RawClientData {
    #[serde(rename = "type")]
    ty: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
    #[serde(rename = "topOrigin", default)]
    top_origin: Option<String>,
}

/// clientDataJSON, parsed but not yet checked against the ceremony.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UncheckedClientData {
    /// `type`.
    pub ty: String,
    /// The challenge bytes (base64url-decoded).
    pub challenge: Vec<u8>,
    /// `origin`.
    pub origin: String,
    /// `crossOrigin` (absent = false).
    pub cross_origin: bool,
    /// `topOrigin`, present in cross-origin iframes.
    pub top_origin: Option<String>,
}

impl UncheckedClientData {
    /// Parses clientDataJSON. Unknown members are ignored, as WebAuthn requires.
    pub fn parse(json: &[u8]) -> Result<UncheckedClientData, WebauthnError> {
        let raw: RawClientData = serde_json::from_slice(json)
            .map_err(|e| WebauthnError::MalformedClientData(e.to_string()))?;
        let challenge = URL_SAFE_NO_PAD
            .decode(raw.challenge.trim_end_matches('='))
            .map_err(|e| {
                WebauthnError::MalformedClientData(format!("challenge is not base64url: {e}"))
            })?;
        Ok(UncheckedClientData {
            ty: raw.ty,
            challenge,
            origin: raw.origin,
            cross_origin: raw.cross_origin.unwrap_or(false),
            top_origin: raw.top_origin,
        })
    }

    /// Checks type, challenge (in constant time), origin (exactly) and that the
    /// ceremony did not run cross-origin, in that order.
    pub fn check(
        &self,
        ceremony: Ceremony,
        expected_challenge: &[u8],
        expected_origin: &str,
    ) -> Result<(), WebauthnError> {
        if self.ty != ceremony.type_str() {
            return Err(WebauthnError::WrongType {
                expected: ceremony.type_str(),
                found: self.ty.chars().take(64).collect(),
            });
        }
        if !constant_time_eq(&self.challenge, expected_challenge) {
            return Err(WebauthnError::ChallengeMismatch);
        }
        if self.origin != expected_origin {
            return Err(WebauthnError::OriginMismatch {
                expected: expected_origin.to_owned(),
                found: self.origin.chars().take(256).collect(),
            });
        }
        if self.cross_origin {
            return Err(WebauthnError::CrossOrigin);
        }
        if self
            .top_origin
            .as_deref()
            .is_some_and(|top| top != expected_origin)
        {
            return Err(WebauthnError::CrossOrigin);
        }
        Ok(())
    }
}

/// Compares two byte strings without an early exit on the first difference. The
/// lengths are not secret (every challenge we issue has the same length).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(ty: &str, challenge: &str, origin: &str, extra: &str) -> Vec<u8> {
        format!(r#"{{"type":"{ty}","challenge":"{challenge}","origin":"{origin}"{extra}}}"#)
            .into_bytes()
    }

    #[test]
    fn checks_in_order() {
        let ok = UncheckedClientData::parse(&json("webauthn.get", "AQID", "https://a.example", ""))
            .expect("parses");
        assert_eq!(ok.challenge, vec![1, 2, 3]);
        assert!(ok
            .check(Ceremony::Get, &[1, 2, 3], "https://a.example")
            .is_ok());
        let code = |r: Result<(), WebauthnError>| r.map_err(|e| e.code()).err();
        assert_eq!(
            code(ok.check(Ceremony::Create, &[1, 2, 3], "https://a.example")),
            Some("wrong_type")
        );
        assert_eq!(
            code(ok.check(Ceremony::Get, &[1, 2, 4], "https://a.example")),
            Some("challenge_mismatch")
        );
        assert_eq!(
            code(ok.check(Ceremony::Get, &[1, 2], "https://a.example")),
            Some("challenge_mismatch")
        );
        assert_eq!(
            code(ok.check(Ceremony::Get, &[1, 2, 3], "https://a.example:443")),
            Some("origin_mismatch")
        );
        let cross = UncheckedClientData::parse(&json(
            "webauthn.get",
            "AQID",
            "https://a.example",
            r#","crossOrigin":true"#,
        ))
        .expect("parses");
        assert_eq!(
            code(cross.check(Ceremony::Get, &[1, 2, 3], "https://a.example")),
            Some("cross_origin")
        );
    }

    #[test]
    fn malformed_is_an_error() {
        for bad in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            br#"{"type":"webauthn.get","challenge":"A$","origin":"x"}"#,
            br#"{"type":1,"challenge":"AQID","origin":"x"}"#,
            b"\xff\xfe",
        ] {
            let err = UncheckedClientData::parse(bad).expect_err("must fail");
            assert_eq!(err.code(), "malformed_client_data");
        }
    }
}
