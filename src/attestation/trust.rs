//! FIDO trust anchors, kept apart from TLS trust, and an intermediates pool for path
//! building. Everything is parsed once, when added.

use x509_parser::pem::Pem;

use super::cert::Certificate;
use super::chain::{self, TrustResult};
use super::AttestationError;

/// Yubico's published FIDO attestation roots, built in (file name, PEM).
pub const BUILTIN_ROOTS: [(&str, &str); 3] = [
    (
        "yubico-u2f-root-ca-serial-457200631.pem",
        include_str!("../../assets/roots/yubico-u2f-root-ca-serial-457200631.pem"),
    ),
    (
        "yubico-fido-root-ca-serial-450203556.pem",
        include_str!("../../assets/roots/yubico-fido-root-ca-serial-450203556.pem"),
    ),
    (
        "yubico-attestation-root-1.pem",
        include_str!("../../assets/roots/yubico-attestation-root-1.pem"),
    ),
];

/// Yubico's published sub-CAs under "Yubico Attestation Root 1" (not anchors).
pub const BUILTIN_INTERMEDIATES: &str = include_str!("../../assets/yubico-intermediate.pem");

/// Certificates accepted in one PEM bundle, to bound configuration mistakes.
const MAX_PEM_CERTIFICATES: usize = 256;

/// A trust anchor: a subject name and a public key (RFC 5280 §6.1.1 (d)), kept as the
/// certificate it was configured with. Path validation uses only the name, the key and
/// a pathLenConstraint the certificate states; its validity period, CA flag and
/// keyUsage are not checked, so a pinned self-signed end-entity certificate also
/// anchors later certificates with the same name and key (see [`chain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchor {
    /// Subject common name (or the whole subject when it has none).
    pub name: String,
    /// SHA-256 of the DER.
    pub sha256: [u8; 32],
    /// The parsed certificate (its `der` field holds the DER).
    pub cert: Certificate,
    /// One of Yubico's published FIDO roots (whoever configured it): every genuine
    /// FIDO2 attestation certificate under it names its model in the AAGUID extension.
    pub yubico: bool,
}

/// SHA-256 of Yubico's built-in roots, computed once.
fn yubico_root_digests() -> &'static [[u8; 32]] {
    static DIGESTS: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    DIGESTS.get_or_init(|| {
        BUILTIN_ROOTS
            .iter()
            .filter_map(|(_, pem)| parse_pem_bundle(pem).ok())
            .flatten()
            .map(|c| c.sha256)
            .collect()
    })
}

/// Trust anchors plus intermediates for path building.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor>,
    intermediates: Vec<Certificate>,
}

impl TrustStore {
    /// A store with no anchors: every chain is untrusted.
    pub fn empty() -> TrustStore {
        TrustStore::default()
    }

    /// Yubico's three FIDO roots as anchors and Yubico's published intermediates.
    pub fn builtin() -> TrustStore {
        let mut store = TrustStore::empty();
        for (_, pem) in BUILTIN_ROOTS {
            // The shipped assets parse (see the unit test below); an error here could
            // only drop an anchor, never add one.
            let _ = store.add_anchor_pem(pem);
        }
        // Only the FIDO branch of Yubico's published sub-CAs: the PIV, OpenPGP, SD and
        // YubiHSM attestation CAs vouch for keys a user can sign anything with, and have
        // no place on a WebAuthn attestation path.
        if let Ok(certs) = parse_pem_bundle(BUILTIN_INTERMEDIATES) {
            store.intermediates.extend(certs.into_iter().filter(|c| {
                c.common_name.as_deref().is_some_and(|cn| {
                    cn.starts_with("Yubico FIDO Attestation ")
                        || cn.starts_with("Yubico Attestation Intermediate ")
                })
            }));
        }
        store
    }

    /// Adds every certificate of a PEM bundle as a trust anchor (e.g. an admin-configured
    /// root). Returns how many were new; duplicates are skipped. Nothing is added when
    /// any block fails to parse.
    pub fn add_anchor_pem(&mut self, pem: &str) -> Result<usize, AttestationError> {
        let certs = parse_pem_bundle(pem)?;
        let mut added = 0;
        for cert in certs {
            if self.add_anchor_cert(cert) {
                added += 1;
            }
        }
        Ok(added)
    }

    /// Adds one DER certificate as a trust anchor; `Ok(false)` when already present.
    pub fn add_anchor_der(&mut self, der: &[u8]) -> Result<bool, AttestationError> {
        let cert = Certificate::from_der(der).map_err(AttestationError::Certificate)?;
        Ok(self.add_anchor_cert(cert))
    }

    fn add_anchor_cert(&mut self, cert: Certificate) -> bool {
        if self.anchors.iter().any(|a| a.sha256 == cert.sha256) {
            return false;
        }
        let name = cert
            .common_name
            .clone()
            .unwrap_or_else(|| cert.subject.clone());
        let yubico = yubico_root_digests().contains(&cert.sha256);
        self.anchors.push(TrustAnchor {
            name,
            sha256: cert.sha256,
            cert,
            yubico,
        });
        true
    }

    /// Adds every certificate of a PEM bundle to the intermediates pool (used for path
    /// building only, never trusted by itself). Returns how many were new.
    pub fn add_intermediates_pem(&mut self, pem: &str) -> Result<usize, AttestationError> {
        let certs = parse_pem_bundle(pem)?;
        let mut added = 0;
        for cert in certs {
            if !self.intermediates.iter().any(|c| c.sha256 == cert.sha256) {
                self.intermediates.push(cert);
                added += 1;
            }
        }
        Ok(added)
    }

    /// The anchors, in the order added.
    pub fn anchors(&self) -> &[TrustAnchor] {
        &self.anchors
    }

    /// The intermediates pool.
    pub fn intermediates(&self) -> &[Certificate] {
        &self.intermediates
    }

    /// Validates a chain given as DER, leaf first (an x5c array), at `now`.
    /// A certificate that does not parse gives `Untrusted { code: "malformed_certificate" }`.
    pub fn validate_der(&self, chain_der: &[&[u8]], now: time::OffsetDateTime) -> TrustResult {
        let mut parsed = Vec::with_capacity(chain_der.len());
        for (i, der) in chain_der.iter().enumerate() {
            match Certificate::from_der(der) {
                Ok(c) => parsed.push(c),
                Err(e) => {
                    return TrustResult::Untrusted {
                        code: chain::codes::MALFORMED_CERTIFICATE,
                        reason: format!("certificate {i} of the chain does not parse: {e}"),
                    }
                }
            }
        }
        match parsed.split_first() {
            Some((leaf, rest)) => self.validate(leaf, rest, now),
            None => TrustResult::Untrusted {
                code: chain::codes::MALFORMED_CERTIFICATE,
                reason: "empty certificate chain".into(),
            },
        }
    }

    /// Validates a parsed leaf with the intermediates presented alongside it.
    pub fn validate(
        &self,
        leaf: &Certificate,
        presented: &[Certificate],
        now: time::OffsetDateTime,
    ) -> TrustResult {
        chain::validate(self, leaf, presented, now.unix_timestamp())
    }
}

fn parse_pem_bundle(pem: &str) -> Result<Vec<Certificate>, AttestationError> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| AttestationError::Pem(e.to_string()))?;
        if block.label != "CERTIFICATE" {
            return Err(AttestationError::Pem(format!(
                "unexpected PEM block {:?}; only CERTIFICATE blocks are accepted",
                block.label
            )));
        }
        if out.len() >= MAX_PEM_CERTIFICATES {
            return Err(AttestationError::Pem(format!(
                "more than {MAX_PEM_CERTIFICATES} certificates in one bundle"
            )));
        }
        out.push(Certificate::from_der(&block.contents).map_err(AttestationError::Certificate)?);
    }
    if out.is_empty() {
        return Err(AttestationError::Pem("no CERTIFICATE block found".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_store_holds_the_yubico_roots_and_intermediates() {
        let store = TrustStore::builtin();
        let names: Vec<&str> = store.anchors().iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Yubico U2F Root CA Serial 457200631",
                "Yubico FIDO Root CA Serial 450203556",
                "Yubico Attestation Root 1"
            ]
        );
        // Of Yubico's 15 published sub-CAs, only the FIDO branch: Attestation
        // Intermediate A 1 / B 1 and FIDO Attestation A 1 / B 1 / B2 1.
        let mut cns: Vec<&str> = store
            .intermediates()
            .iter()
            .filter_map(|c| c.common_name.as_deref())
            .collect();
        cns.sort_unstable();
        assert_eq!(
            cns,
            [
                "Yubico Attestation Intermediate A 1",
                "Yubico Attestation Intermediate B 1",
                "Yubico FIDO Attestation A 1",
                "Yubico FIDO Attestation B 1",
                "Yubico FIDO Attestation B2 1"
            ]
        );
        assert_eq!(
            hex::encode(store.anchors()[0].sha256),
            "0fa1386f80eb8713263ae5c1d84deb455bdf08aea50ab05503cefee82b092d42"
        );
    }

    #[test]
    fn yubico_roots_are_marked_whoever_adds_them() {
        let store = TrustStore::builtin();
        assert!(store.anchors().iter().all(|a| a.yubico));
        // An operator who configures a Yubico root by hand gets the same mark; any other
        // root (here a Yubico intermediate added as an anchor) does not.
        let mut own = TrustStore::empty();
        own.add_anchor_pem(BUILTIN_ROOTS[1].1).expect("parses");
        own.add_anchor_der(&store.intermediates()[0].der)
            .expect("parses");
        let marks: Vec<bool> = own.anchors().iter().map(|a| a.yubico).collect();
        assert_eq!(marks, [true, false]);
    }

    #[test]
    fn every_published_intermediate_chains_to_attestation_root_1() {
        let store = TrustStore::builtin();
        let now = time::OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("time");
        for cert in store.intermediates() {
            match store.validate(cert, &[], now) {
                TrustResult::Trusted {
                    anchor_name,
                    yubico_root,
                    ..
                } => {
                    assert_eq!(anchor_name, "Yubico Attestation Root 1", "{}", cert.subject);
                    assert!(yubico_root, "{}", cert.subject);
                }
                other => panic!("{}: {other:?}", cert.subject),
            }
        }
    }

    #[test]
    fn bad_pem_is_an_error() {
        let mut store = TrustStore::empty();
        assert!(store.add_anchor_pem("").is_err());
        assert!(store
            .add_anchor_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .is_err());
        assert!(store.anchors().is_empty());
    }
}
