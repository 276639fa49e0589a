//! What both SAML request targets share: the registered SP certificate, the checks, and a
//! decoded request driven through `peek` and `verify` (with and without the certificate,
//! signature required or not).

use keygate::saml::keys::PeerCert;
use keygate::saml::request::{Checks, Received, Trust};
use keygate::saml::SamlError;
use time::OffsetDateTime;

/// 2026-11-25T12:00:00Z, the IssueInstant of the seeds (fuzz/seeds.py), so a seed passes every check.
pub const NOW: i64 = 1_764_072_000;
/// The SSO endpoint the seeds name as Destination.
pub const DESTINATION: &str = "https://idp.example/saml/sso";

/// The signing certificate of the SP that signed the seeds (fuzz/keys; its key is not kept).
pub fn certs() -> &'static [PeerCert] {
    static CERTS: std::sync::OnceLock<Vec<PeerCert>> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| {
        vec![PeerCert::parse(include_str!("../keys/saml-sp-signing.pem"))
            .expect("the SP certificate")]
    })
}

/// Decoded → peek → verify; returns, never panics.
pub fn exercise(received: Result<Received, SamlError>) {
    let Ok(r) = received else { return };
    let peeked = r.peek();
    let destinations = [DESTINATION.to_string()];
    let checks = Checks {
        now: OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time"),
        skew_secs: 90,
        max_age_secs: 300,
        destinations: &destinations,
    };
    for certs in [certs(), &[]] {
        for require_signed in [false, true] {
            let trust = Trust {
                certs,
                require_signed,
            };
            if let Ok(request) = r.verify(&trust, &checks) {
                assert!(
                    request.signed || !require_signed,
                    "unsigned request accepted as signed"
                );
                assert!(
                    !request.signed || !certs.is_empty(),
                    "signed without a certificate"
                );
                // What verified was peekable, and names the same issuer and ID.
                let p = peeked.as_ref().expect("a verified request peeks");
                assert_eq!(p.issuer, request.issuer);
                assert_eq!(p.id, request.id);
            }
        }
    }
}
