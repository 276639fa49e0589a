//! The AAGUID catalogue: authenticator model, FIPS status and certification level,
//! shipped from `assets/aaguids.json` and extendable from configuration.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::AttestationError;
use crate::webauthn::Aaguid;

/// The shipped catalogue of Yubico AAGUIDs.
pub const BUILTIN_CATALOGUE_JSON: &str = include_str!("../../assets/aaguids.json");

/// What the catalogue knows about one authenticator model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The model's AAGUID (all zero for U2F-era devices that have none).
    pub aaguid: Aaguid,
    /// Model name, e.g. "YubiKey 5 NFC".
    pub model: String,
    /// Whether the model is FIPS 140 validated.
    #[serde(default)]
    pub fips: bool,
    /// Firmware series (major.minor) this AAGUID is used with, when known.
    #[serde(default)]
    pub firmware_series: Vec<String>,
    /// FIDO certification level ("L1", "L2"), when known.
    #[serde(default)]
    pub certification_level: Option<String>,
    /// Whether this is the enterprise-attestation profile of the model.
    #[serde(default)]
    pub enterprise_profile: bool,
    /// Yubico's device OID, when known.
    #[serde(default)]
    pub device_oid: Option<String>,
}

impl DeviceInfo {
    /// An entry with only a model name and FIPS status (e.g. from configuration).
    pub fn new(aaguid: Aaguid, model: impl Into<String>, fips: bool) -> DeviceInfo {
        DeviceInfo {
            aaguid,
            model: model.into(),
            fips,
            firmware_series: Vec::new(),
            certification_level: None,
            enterprise_profile: false,
            device_oid: None,
        }
    }
}

#[derive(Deserialize)]
struct RawCatalogue {
    aaguids: Vec<RawEntry>,
    #[serde(default)]
    legacy_u2f_devices: Vec<RawLegacy>,
}

#[derive(Deserialize)]
struct RawEntry {
    aaguid: Aaguid,
    model: String,
    #[serde(default)]
    device_oid: Option<String>,
    #[serde(default)]
    enterprise_profile: bool,
    #[serde(default)]
    fips: bool,
    #[serde(default)]
    firmware: Option<Vec<String>>,
    #[serde(default)]
    fido_certification_level: Option<String>,
}

#[derive(Deserialize)]
struct RawLegacy {
    device_oid: String,
    model: String,
    selectors: Vec<LegacySelector>,
}

/// How a U2F-era device without an AAGUID is recognised from its certificate.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
struct LegacySelector {
    /// An extension OID in the attestation certificate.
    extension: String,
    /// Its value (a dotted OID for the Yubico device-type extension), or `None` when the
    /// presence of the extension is enough.
    value: Option<String>,
}

/// AAGUID → device information.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    by_aaguid: HashMap<Aaguid, DeviceInfo>,
    legacy: Vec<(Vec<LegacySelector>, DeviceInfo)>,
}

/// The Yubico device-type extension, whose value is a device OID.
const YUBICO_DEVICE_TYPE_OID: &str = "1.3.6.1.4.1.41482.2";

impl Catalogue {
    /// The shipped catalogue (77 Yubico AAGUIDs and four U2F-era devices).
    pub fn builtin() -> Catalogue {
        // The shipped asset parses (see the unit test below).
        Catalogue::from_json(BUILTIN_CATALOGUE_JSON).unwrap_or_default()
    }

    /// Parses a catalogue in the shape of `assets/aaguids.json`.
    pub fn from_json(json: &str) -> Result<Catalogue, AttestationError> {
        let raw: RawCatalogue =
            serde_json::from_str(json).map_err(|e| AttestationError::Catalogue(e.to_string()))?;
        let mut catalogue = Catalogue::default();
        for e in raw.aaguids {
            catalogue.insert(DeviceInfo {
                aaguid: e.aaguid,
                model: e.model,
                fips: e.fips,
                firmware_series: e.firmware.unwrap_or_default(),
                certification_level: e.fido_certification_level,
                enterprise_profile: e.enterprise_profile,
                device_oid: e.device_oid,
            });
        }
        for l in raw.legacy_u2f_devices {
            catalogue.legacy.push((
                l.selectors,
                DeviceInfo {
                    aaguid: Aaguid::ZERO,
                    model: l.model,
                    fips: false,
                    firmware_series: Vec::new(),
                    certification_level: None,
                    enterprise_profile: false,
                    device_oid: Some(l.device_oid),
                },
            ));
        }
        Ok(catalogue)
    }

    /// Adds or replaces an entry (e.g. from configuration). Returns the entry it
    /// replaced, if any.
    pub fn insert(&mut self, device: DeviceInfo) -> Option<DeviceInfo> {
        self.by_aaguid.insert(device.aaguid, device)
    }

    /// The model for an AAGUID. The zero AAGUID is never catalogued.
    pub fn lookup(&self, aaguid: &Aaguid) -> Option<&DeviceInfo> {
        if aaguid.is_zero() {
            return None;
        }
        self.by_aaguid.get(aaguid)
    }

    /// A U2F-era device recognised from its attestation certificate: the Yubico
    /// extensions it carries (dotted OIDs) and the value of the device-type extension.
    pub fn lookup_legacy(
        &self,
        yubico_extensions: &[String],
        device_type: Option<&str>,
    ) -> Option<&DeviceInfo> {
        self.legacy.iter().find_map(|(selectors, device)| {
            selectors
                .iter()
                .any(|s| match &s.value {
                    None => yubico_extensions.contains(&s.extension),
                    Some(v) => s.extension == YUBICO_DEVICE_TYPE_OID && device_type == Some(v),
                })
                .then_some(device)
        })
    }

    /// Number of AAGUID entries.
    pub fn len(&self) -> usize {
        self.by_aaguid.len()
    }

    /// Whether there are no AAGUID entries.
    pub fn is_empty(&self) -> bool {
        self.by_aaguid.is_empty()
    }

    /// Every AAGUID entry (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = &DeviceInfo> {
        self.by_aaguid.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_parses() {
        let c = Catalogue::builtin();
        assert_eq!(c.len(), 77);
        let fips: Aaguid = "85203421-48f9-4355-9bc8-8a53846e5083"
            .parse()
            .expect("aaguid");
        let d = c.lookup(&fips).expect("catalogued");
        assert_eq!(d.model, "YubiKey 5Ci FIPS");
        assert!(d.fips);
        assert_eq!(d.certification_level.as_deref(), Some("L2"));
        assert_eq!(d.firmware_series, ["5.4"]);
        assert!(c.lookup(&Aaguid::ZERO).is_none());
        let neo = c
            .lookup_legacy(&[], Some("1.3.6.1.4.1.41482.1.2"))
            .expect("legacy");
        assert_eq!(neo.model, "YubiKey NEO/NEO-n");
        assert!(c
            .lookup_legacy(&[], Some("1.3.6.1.4.1.41482.1.7"))
            .is_none());
    }
}
