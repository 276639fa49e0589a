//! The evidence bundle: each key's raw WebAuthn registration (attestationObject and
//! clientDataJSON, exactly as the browser sent them) and the x5c chain as received, so
//! a vendor can re-verify every attestation against Yubico's roots without trusting
//! keygate.
//!
//! The signed report commits to each entry with [`entry_digest`], a SHA-256 over a
//! length-prefixed, language-neutral encoding of the raw bytes (not over JSON, so no
//! canonicalisation is needed to recompute it):
//!
//! ```text
//! SHA-256( "keygate-evidence-v1" 0x00
//!          u64be(len(attestationObject)) attestationObject
//!          u64be(len(clientDataJSON))    clientDataJSON
//!          u64be(number of certificates)
//!          for each certificate, leaf first: u64be(len(der)) der )
//! ```

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::report::KeyRecord;
use super::ComplianceError;

/// The bundle format this code writes and reads.
pub const EVIDENCE_FORMAT: &str = "keygate.compliance-evidence/1";

/// The domain separator of [`entry_digest`].
const DIGEST_LABEL: &[u8] = b"keygate-evidence-v1\0";

/// The whole bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBundle {
    /// [`EVIDENCE_FORMAT`].
    pub format: String,
    /// The report this bundle belongs to.
    pub report_id: String,
    pub rp_id: String,
    pub origin: String,
    pub entries: Vec<EvidenceEntry>,
}

/// One key's evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceEntry {
    /// The key's ID in the report.
    pub key_id: String,
    pub member_id: String,
    /// base64url, as in WebAuthn.
    pub credential_id: String,
    /// base64url of the CBOR attestation object.
    pub attestation_object: String,
    /// base64url of clientDataJSON.
    pub client_data_json: String,
    /// The x5c certificates as received, standard base64 DER (as JOSE `x5c`), leaf first.
    pub chain: Vec<String>,
    /// [`entry_digest`] of this entry (hex), for people; verifiers recompute it.
    pub sha256: String,
}

/// An entry's raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedEntry {
    pub credential_id: Vec<u8>,
    pub attestation_object: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
}

impl EvidenceEntry {
    /// The entry for a stored key.
    pub fn new(member_id: &str, key: &KeyRecord) -> EvidenceEntry {
        EvidenceEntry {
            key_id: key.id.clone(),
            member_id: member_id.to_owned(),
            credential_id: URL_SAFE_NO_PAD.encode(&key.credential_id),
            attestation_object: URL_SAFE_NO_PAD.encode(&key.attestation_object),
            client_data_json: URL_SAFE_NO_PAD.encode(&key.client_data_json),
            chain: key.chain.iter().map(|c| STANDARD.encode(c)).collect(),
            sha256: hex::encode(entry_digest(
                &key.attestation_object,
                &key.client_data_json,
                &key.chain,
            )),
        }
    }

    /// Decodes the base64 fields; the error names the key and the field.
    pub fn decode(&self) -> Result<DecodedEntry, ComplianceError> {
        let url = |field: &str, v: &str| {
            URL_SAFE_NO_PAD
                .decode(v.trim_end_matches('='))
                .map_err(|_| {
                    ComplianceError::Evidence(format!(
                        "key {}: {field} is not base64url",
                        self.key_id
                    ))
                })
        };
        let mut chain = Vec::with_capacity(self.chain.len());
        for (i, c) in self.chain.iter().enumerate() {
            chain.push(STANDARD.decode(c).map_err(|_| {
                ComplianceError::Evidence(format!(
                    "key {}: certificate {i} of the chain is not base64",
                    self.key_id
                ))
            })?);
        }
        Ok(DecodedEntry {
            credential_id: url("credential_id", &self.credential_id)?,
            attestation_object: url("attestation_object", &self.attestation_object)?,
            client_data_json: url("client_data_json", &self.client_data_json)?,
            chain,
        })
    }
}

/// The digest the report carries for one key's evidence (see the module docs).
pub fn entry_digest(
    attestation_object: &[u8],
    client_data_json: &[u8],
    chain: &[Vec<u8>],
) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(DIGEST_LABEL);
    let mut field = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    field(attestation_object);
    field(client_data_json);
    ctx.update(&(chain.len() as u64).to_be_bytes());
    for der in chain {
        ctx.update(&(der.len() as u64).to_be_bytes());
        ctx.update(der);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl EvidenceBundle {
    /// Parses a bundle; the error says what is wrong with it (e.g. a truncated file).
    pub fn parse(bytes: &[u8]) -> Result<EvidenceBundle, ComplianceError> {
        let bundle: EvidenceBundle = serde_json::from_slice(bytes)
            .map_err(|e| ComplianceError::Evidence(format!("not a valid evidence bundle ({e})")))?;
        if bundle.format != EVIDENCE_FORMAT {
            return Err(ComplianceError::Evidence(format!(
                "format {:?} is not supported (expected {EVIDENCE_FORMAT:?})",
                bundle.format
            )));
        }
        Ok(bundle)
    }

    /// The bundle as pretty JSON (it is read by people too; the digests do not depend
    /// on its formatting).
    pub fn to_json(&self) -> Result<Vec<u8>, ComplianceError> {
        let mut out =
            serde_json::to_vec_pretty(self).map_err(|e| ComplianceError::Render(e.to_string()))?;
        out.push(b'\n');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_separates_fields() {
        let a = entry_digest(b"ab", b"c", &[]);
        let b = entry_digest(b"a", b"bc", &[]);
        assert_ne!(a, b);
        let c = entry_digest(b"a", b"b", &[b"c".to_vec()]);
        let d = entry_digest(b"a", b"b", &[b"c".to_vec(), Vec::new()]);
        assert_ne!(c, d);
    }

    #[test]
    fn malformed_bundles_are_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"format":"x","report_id":"r","rp_id":"a","origin":"o","entries":[]}"#,
        ] {
            assert!(EvidenceBundle::parse(bad).is_err());
        }
    }
}
