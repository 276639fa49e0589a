//! Authenticator data (WebAuthn L3 §6.1): the bytes the authenticator signs.

use super::aaguid::Aaguid;
use super::cbor;
use super::cose::CoseKey;
use super::error::WebauthnError;

/// Longest credential ID WebAuthn allows (§5.1, `credentialIdLength` ≤ 1023).
pub const MAX_CREDENTIAL_ID_LEN: usize = 1023;

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

/// The flags byte, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flags {
    /// UP: a user touched the authenticator.
    pub user_present: bool,
    /// UV: the authenticator verified the user (PIN or biometric).
    pub user_verified: bool,
    /// BE: the credential may be backed up (synced passkey).
    pub backup_eligible: bool,
    /// BS: the credential is currently backed up.
    pub backup_state: bool,
    /// AT: attested credential data follows.
    pub attested_data: bool,
    /// ED: extension data follows.
    pub extension_data: bool,
}

impl Flags {
    /// Decodes the flags byte (reserved bits are ignored, as WebAuthn asks).
    pub fn from_byte(b: u8) -> Flags {
        Flags {
            user_present: b & FLAG_UP != 0,
            user_verified: b & FLAG_UV != 0,
            backup_eligible: b & FLAG_BE != 0,
            backup_state: b & FLAG_BS != 0,
            attested_data: b & FLAG_AT != 0,
            extension_data: b & FLAG_ED != 0,
        }
    }
}

/// Attested credential data (§6.5.2): the new credential and its model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedCredentialData {
    /// The authenticator's model identifier.
    pub aaguid: Aaguid,
    /// The credential ID (at most 1023 bytes).
    pub credential_id: Vec<u8>,
    /// The credential public key, parsed.
    pub public_key: CoseKey,
    /// The credential public key exactly as the authenticator encoded it.
    pub public_key_cose: Vec<u8>,
}

/// Parsed authenticator data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatorData {
    /// SHA-256 of the RP ID the authenticator scoped the credential to.
    pub rp_id_hash: [u8; 32],
    /// The flags.
    pub flags: Flags,
    /// The signature counter (0 when the authenticator keeps none).
    pub sign_count: u32,
    /// Present when the AT flag is set.
    pub attested: Option<AttestedCredentialData>,
    /// The extension outputs map, as CBOR bytes, when the ED flag is set.
    pub extensions: Option<Vec<u8>>,
}

impl AuthenticatorData {
    /// Parses authenticator data; every length is checked and trailing bytes are refused.
    pub fn parse(data: &[u8]) -> Result<AuthenticatorData, WebauthnError> {
        let malformed = |m: String| WebauthnError::MalformedAuthenticatorData(m);
        let (rp_id_hash, rest) = data.split_first_chunk::<32>().ok_or_else(|| {
            malformed(format!(
                "{} bytes, shorter than the 37-byte minimum",
                data.len()
            ))
        })?;
        let (&[flags_byte], rest) = rest.split_first_chunk::<1>().ok_or_else(|| {
            malformed(format!(
                "{} bytes, shorter than the 37-byte minimum",
                data.len()
            ))
        })?;
        let (count, mut rest) = rest.split_first_chunk::<4>().ok_or_else(|| {
            malformed(format!(
                "{} bytes, shorter than the 37-byte minimum",
                data.len()
            ))
        })?;
        let flags = Flags::from_byte(flags_byte);
        let sign_count = u32::from_be_bytes(*count);

        let attested = if flags.attested_data {
            let (aaguid, after) = rest.split_first_chunk::<16>().ok_or_else(|| {
                malformed("attested credential data is truncated before the AAGUID end".into())
            })?;
            let (len, after) = after.split_first_chunk::<2>().ok_or_else(|| {
                malformed("attested credential data is truncated before the ID length".into())
            })?;
            let id_len = usize::from(u16::from_be_bytes(*len));
            if id_len > MAX_CREDENTIAL_ID_LEN {
                return Err(WebauthnError::CredentialIdTooLong(id_len));
            }
            if after.len() < id_len {
                return Err(malformed(format!(
                    "credential ID of {id_len} bytes but only {} bytes follow",
                    after.len()
                )));
            }
            let (credential_id, after) = after.split_at(id_len);
            let (public_key, used) = CoseKey::from_cbor(after)?;
            let (key_bytes, after) = after.split_at(used.min(after.len()));
            rest = after;
            Some(AttestedCredentialData {
                aaguid: Aaguid(*aaguid),
                credential_id: credential_id.to_vec(),
                public_key,
                public_key_cose: key_bytes.to_vec(),
            })
        } else {
            None
        };

        let extensions = if flags.extension_data {
            let (value, used) = cbor::decode_prefix(rest)?;
            if !matches!(value, ciborium::value::Value::Map(_)) {
                return Err(WebauthnError::MalformedCbor(
                    "authenticator extension outputs are not a CBOR map".into(),
                ));
            }
            let (ext, after) = rest.split_at(used.min(rest.len()));
            rest = after;
            Some(ext.to_vec())
        } else {
            None
        };

        if !rest.is_empty() {
            return Err(malformed(format!(
                "{} trailing bytes after the authenticator data",
                rest.len()
            )));
        }
        Ok(AuthenticatorData {
            rp_id_hash: *rp_id_hash,
            flags,
            sign_count,
            attested,
            extensions,
        })
    }
}
