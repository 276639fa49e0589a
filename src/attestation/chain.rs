//! Certificate path building and validation: leaf → presented intermediates, then the
//! trust store's intermediates pool → a trust anchor.
//!
//! Every link is checked: exact issuer/subject name match, the issuer's signature
//! (ring), the validity period at `now`, basicConstraints CA=true and keyCertSign (when
//! keyUsage is present) on every intermediate, pathLenConstraint, unknown critical
//! extensions. Paths are at most [`MAX_PATH_LEN`] certificates below the anchor, never
//! revisit a certificate, and the search stops after [`MAX_SIGNATURE_CHECKS`] signature
//! verifications.
//!
//! A trust anchor is a name and a public key (RFC 5280 §6.1.1 (d)): it is an input to
//! path validation, not a certificate of the path. A certificate chains to an anchor
//! when its issuer name equals the anchor's subject and the anchor's key verifies its
//! signature. The anchor certificate's own validity period, self-signature,
//! basicConstraints CA flag and keyUsage are not checked, so a self-signed end-entity
//! certificate (CA:FALSE) may be pinned as an anchor, and a later certificate with the
//! same name and key (e.g. re-issued with a new notAfter) chains to it. A
//! pathLenConstraint the anchor states is still honoured (RFC 5937): it can only
//! narrow what the anchor vouches for.
//!
//! A path that cannot be built is not an error: it yields [`TrustResult::Untrusted`]
//! with a stable code, and policy decides what to do with it.

use serde::Serialize;

use super::cert::{Certificate, SignatureFailure};
use super::trust::{TrustAnchor, TrustStore};

/// Longest path accepted, counting the leaf and intermediates (not the anchor).
pub const MAX_PATH_LEN: usize = 5;
/// Upper bound on signature verifications spent on one path search.
pub const MAX_SIGNATURE_CHECKS: usize = 32;

/// Stable codes of [`TrustResult::Untrusted`].
pub mod codes {
    /// No path reaches a configured trust anchor.
    pub const UNTRUSTED_ROOT: &str = "untrusted_root";
    /// A certificate of the path has expired.
    pub const CERTIFICATE_EXPIRED: &str = "certificate_expired";
    /// A certificate of the path is not valid yet.
    pub const CERTIFICATE_NOT_YET_VALID: &str = "certificate_not_yet_valid";
    /// An issuer's signature on a certificate does not verify.
    pub const BAD_CHAIN_SIGNATURE: &str = "bad_chain_signature";
    /// A signature or key algorithm that is not supported.
    pub const UNSUPPORTED_ALGORITHM: &str = "unsupported_signature_algorithm";
    /// An issuer without basicConstraints CA=true.
    pub const NOT_A_CA: &str = "not_a_ca";
    /// An issuer whose keyUsage lacks keyCertSign.
    pub const KEY_USAGE: &str = "issuer_key_usage";
    /// An issuer's pathLenConstraint is exceeded.
    pub const PATH_LEN: &str = "path_length_constraint";
    /// The path would be longer than the accepted maximum.
    pub const PATH_TOO_LONG: &str = "path_too_long";
    /// A critical extension we do not understand.
    pub const CRITICAL_EXTENSION: &str = "unsupported_critical_extension";
    /// A certificate could not be parsed.
    pub const MALFORMED_CERTIFICATE: &str = "malformed_certificate";
    /// The search ran out of its signature budget.
    pub const SEARCH_LIMIT: &str = "path_search_limit";
}

/// The outcome of chain validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TrustResult {
    /// The chain reaches a trust anchor.
    Trusted {
        /// The anchor's name (its subject common name).
        anchor_name: String,
        /// SHA-256 of the anchor's DER.
        #[serde(serialize_with = "super::hex_serde::one")]
        anchor_sha256: [u8; 32],
        /// SHA-256 of every certificate on the path, leaf first, anchor excluded.
        #[serde(serialize_with = "super::hex_serde::many")]
        path_sha256: Vec<[u8; 32]>,
        /// The anchor is one of Yubico's FIDO roots ([`TrustAnchor::yubico`]).
        yubico_root: bool,
    },
    /// No valid path: `code` is one of [`codes`], `reason` says which certificate failed.
    Untrusted {
        /// A stable snake_case code.
        code: &'static str,
        /// A human explanation.
        reason: String,
    },
    /// No certificate chain to validate (self attestation, `none`).
    NotApplicable,
}

impl TrustResult {
    /// Whether the chain reached a trust anchor.
    pub fn is_trusted(&self) -> bool {
        matches!(self, TrustResult::Trusted { .. })
    }
}

/// A failure seen while searching, ranked so the most telling one is reported.
struct Failure {
    rank: u8,
    code: &'static str,
    reason: String,
}

struct Search<'a> {
    store: &'a TrustStore,
    presented: &'a [Certificate],
    now: i64,
    budget: usize,
    best: Option<Failure>,
}

/// Validates `leaf` (with the intermediates the authenticator presented) against the
/// store at `now` (Unix seconds).
pub fn validate(
    store: &TrustStore,
    leaf: &Certificate,
    presented: &[Certificate],
    now: i64,
) -> TrustResult {
    if let Some(anchor) = store.anchors().iter().find(|a| a.sha256 == leaf.sha256) {
        return trusted(anchor, &[leaf]);
    }
    if let Some(f) = validity_failure(leaf, now) {
        return TrustResult::Untrusted {
            code: f.code,
            reason: f.reason,
        };
    }
    if let Some(f) = critical_failure(leaf) {
        return TrustResult::Untrusted {
            code: f.code,
            reason: f.reason,
        };
    }
    let mut search = Search {
        store,
        presented,
        now,
        budget: MAX_SIGNATURE_CHECKS,
        best: None,
    };
    let mut path = vec![leaf];
    match search.extend(&mut path) {
        Some(result) => result,
        None => match search.best {
            Some(f) => TrustResult::Untrusted {
                code: f.code,
                reason: f.reason,
            },
            None => TrustResult::Untrusted {
                code: codes::UNTRUSTED_ROOT,
                reason: format!(
                    "no path from \"{}\" reaches a configured trust anchor",
                    leaf.subject
                ),
            },
        },
    }
}

fn trusted(anchor: &TrustAnchor, path: &[&Certificate]) -> TrustResult {
    TrustResult::Trusted {
        anchor_name: anchor.name.clone(),
        anchor_sha256: anchor.sha256,
        path_sha256: path.iter().map(|c| c.sha256).collect(),
        yubico_root: anchor.yubico,
    }
}

fn validity_failure(cert: &Certificate, now: i64) -> Option<Failure> {
    if now > cert.not_after {
        Some(Failure {
            rank: 4,
            code: codes::CERTIFICATE_EXPIRED,
            reason: format!(
                "\"{}\" expired at {}",
                cert.subject,
                format_time(cert.not_after)
            ),
        })
    } else if now < cert.not_before {
        Some(Failure {
            rank: 4,
            code: codes::CERTIFICATE_NOT_YET_VALID,
            reason: format!(
                "\"{}\" is not valid before {}",
                cert.subject,
                format_time(cert.not_before)
            ),
        })
    } else {
        None
    }
}

fn critical_failure(cert: &Certificate) -> Option<Failure> {
    cert.unknown_critical_extensions.first().map(|oid| Failure {
        rank: 3,
        code: codes::CRITICAL_EXTENSION,
        reason: format!(
            "\"{}\" has a critical extension {oid} that is not understood",
            cert.subject
        ),
    })
}

fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Checks that the intermediate `issuer` may issue at the top of `path` (the
/// certificates below it): CA, keyCertSign, pathLenConstraint.
fn issuer_failure(issuer: &Certificate, path: &[&Certificate]) -> Option<Failure> {
    if !issuer.is_ca() {
        return Some(Failure {
            rank: 3,
            code: codes::NOT_A_CA,
            reason: format!(
                "\"{}\" issues certificates but is not a CA (basicConstraints)",
                issuer.subject
            ),
        });
    }
    if issuer.key_cert_sign == Some(false) {
        return Some(Failure {
            rank: 3,
            code: codes::KEY_USAGE,
            reason: format!("\"{}\" keyUsage does not allow keyCertSign", issuer.subject),
        });
    }
    path_len_failure(issuer, path)
}

/// Checks an anchor against the path below it. The anchor is a name and a key: its CA
/// flag and keyUsage are not looked at, only a pathLenConstraint it states.
fn anchor_failure(anchor: &Certificate, path: &[&Certificate]) -> Option<Failure> {
    path_len_failure(anchor, path)
}

/// The issuer's pathLenConstraint, when it states one, against the intermediates
/// between it and the leaf (self-issued ones not counted).
fn path_len_failure(issuer: &Certificate, path: &[&Certificate]) -> Option<Failure> {
    let Some((true, Some(max))) = issuer.basic_constraints else {
        return None;
    };
    let below = path.iter().skip(1).filter(|c| !c.is_self_issued()).count();
    if below > usize::try_from(max).unwrap_or(usize::MAX) {
        return Some(Failure {
            rank: 3,
            code: codes::PATH_LEN,
            reason: format!(
                "\"{}\" allows {max} intermediate(s) below it, the path has {below}",
                issuer.subject
            ),
        });
    }
    None
}

impl<'a> Search<'a> {
    fn note(&mut self, f: Failure) {
        if self.best.as_ref().is_none_or(|b| f.rank > b.rank) {
            self.best = Some(f);
        }
    }

    fn check_signature(&mut self, cert: &Certificate, issuer: &Certificate) -> bool {
        if self.budget == 0 {
            self.note(Failure {
                rank: 2,
                code: codes::SEARCH_LIMIT,
                reason: "the path search used up its signature budget".into(),
            });
            return false;
        }
        self.budget -= 1;
        match cert.verify_signed_by(&issuer.key) {
            Ok(()) => true,
            Err(SignatureFailure::Invalid) => {
                self.note(Failure {
                    rank: 3,
                    code: codes::BAD_CHAIN_SIGNATURE,
                    reason: format!(
                        "the signature of \"{}\" on \"{}\" does not verify",
                        issuer.subject, cert.subject
                    ),
                });
                false
            }
            Err(SignatureFailure::Unsupported(what)) => {
                self.note(Failure {
                    rank: 3,
                    code: codes::UNSUPPORTED_ALGORITHM,
                    reason: format!("\"{}\": {what}", cert.subject),
                });
                false
            }
        }
    }

    /// Tries to complete `path` (leaf first) up to an anchor.
    fn extend(&mut self, path: &mut Vec<&'a Certificate>) -> Option<TrustResult> {
        let store = self.store;
        let presented = self.presented;
        let current = *path.last()?;

        for anchor in store.anchors() {
            if !current.issued_by_name(&anchor.cert) {
                continue;
            }
            if let Some(f) = anchor_failure(&anchor.cert, path) {
                self.note(f);
                continue;
            }
            if self.check_signature(current, &anchor.cert) {
                return Some(trusted(anchor, path));
            }
        }

        if path.len() >= MAX_PATH_LEN {
            self.note(Failure {
                rank: 2,
                code: codes::PATH_TOO_LONG,
                reason: format!("no anchor within {MAX_PATH_LEN} certificates of the leaf"),
            });
            return None;
        }

        let candidates = presented.iter().chain(store.intermediates());
        for candidate in candidates {
            if !current.issued_by_name(candidate)
                || path.iter().any(|c| c.sha256 == candidate.sha256)
                || store
                    .anchors()
                    .iter()
                    .any(|a| a.sha256 == candidate.sha256 || a.cert.same_name_and_key(candidate))
            {
                continue;
            }
            if let Some(f) = issuer_failure(candidate, path)
                .or_else(|| validity_failure(candidate, self.now))
                .or_else(|| critical_failure(candidate))
            {
                self.note(f);
                continue;
            }
            if !self.check_signature(current, candidate) {
                continue;
            }
            path.push(candidate);
            if let Some(result) = self.extend(path) {
                return Some(result);
            }
            path.pop();
        }
        self.note(Failure {
            rank: 1,
            code: codes::UNTRUSTED_ROOT,
            reason: format!(
                "no configured trust anchor or known intermediate issued \"{}\" (its issuer is \"{}\")",
                current.subject, current.issuer
            ),
        });
        None
    }
}
