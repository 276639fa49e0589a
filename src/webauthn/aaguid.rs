//! The Authenticator Attestation GUID: a 16-byte model identifier.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// An AAGUID. Displays (and serialises) as a lowercase hyphenated UUID,
/// e.g. `fa2b99dc-9e39-4257-8f92-4a30d23c4118`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Aaguid(pub [u8; 16]);

impl Aaguid {
    /// The all-zero AAGUID (fido-u2f, and authenticators that hide their model).
    pub const ZERO: Aaguid = Aaguid([0; 16]);

    /// Whether every byte is zero.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl From<[u8; 16]> for Aaguid {
    fn from(bytes: [u8; 16]) -> Self {
        Aaguid(bytes)
    }
}

impl fmt::Display for Aaguid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Aaguid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aaguid({self})")
    }
}

/// Why a string is not an AAGUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an AAGUID (expected 32 hex digits, optionally hyphenated as a UUID): {0:?}")]
pub struct ParseAaguidError(String);

impl FromStr for Aaguid {
    type Err = ParseAaguidError;

    /// Accepts the hyphenated UUID form (8-4-4-4-12) or 32 bare hex digits, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAaguidError(s.chars().take(64).collect());
        let bytes = s.as_bytes();
        let hex: Vec<u8> = if bytes.len() == 36 {
            for (i, b) in bytes.iter().enumerate() {
                let dash = matches!(i, 8 | 13 | 18 | 23);
                if dash != (*b == b'-') {
                    return Err(err());
                }
            }
            bytes.iter().copied().filter(|b| *b != b'-').collect()
        } else if bytes.len() == 32 {
            bytes.to_vec()
        } else {
            return Err(err());
        };
        let mut out = [0u8; 16];
        hex::decode_to_slice(&hex, &mut out).map_err(|_| err())?;
        Ok(Aaguid(out))
    }
}

impl Serialize for Aaguid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Aaguid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display_and_parse() {
        let text = "fa2b99dc-9e39-4257-8f92-4a30d23c4118";
        let a: Aaguid = text.parse().expect("valid");
        assert_eq!(a.to_string(), text);
        assert_eq!("FA2B99DC9E3942578F924A30D23C4118".parse::<Aaguid>(), Ok(a));
        assert!("fa2b99dc-9e39-4257-8f92-4a30d23c411"
            .parse::<Aaguid>()
            .is_err());
        assert!("fa2b99dc9-e39-4257-8f92-4a30d23c4118"
            .parse::<Aaguid>()
            .is_err());
        assert!("zz2b99dc-9e39-4257-8f92-4a30d23c4118"
            .parse::<Aaguid>()
            .is_err());
        assert!(Aaguid::ZERO.is_zero());
        let json = serde_json::to_string(&a).expect("serialise");
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<Aaguid>(&json).expect("parse"), a);
    }
}
