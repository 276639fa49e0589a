//! Enrolment policy as data, and one pure function that applies it.
//!
//! [`evaluate`] looks only at its arguments: the policy, the facts of the key being
//! enrolled, the member's other active keys and whether the credential ID is already
//! registered. It returns every rule that refuses the key (not just the first), each
//! with a stable code, a message naming the rule and a remedy.
//!
//! `same_physical_key` compares attestation leaf certificates: two keys whose
//! attestation certificate has the same SHA-256 are treated as one physical key.
//! Yubico issues attestation certificates per production batch, so two keys of the
//! same batch share a certificate and the second is refused; the member enrols a key
//! of another batch or model as the backup. This errs on the side of a backup that is
//! really a second device. Enterprise-attestation certificates are per device, so for
//! them the comparison is exact.

use serde::{Deserialize, Serialize};

use super::chain::codes;
use super::chain::TrustResult;
use super::formats::{AttestationEvidence, AttestationKind, ModelSource};
use crate::webauthn::{Aaguid, Flags};

/// The policy format version this code understands.
pub const CURRENT_POLICY_VERSION: u32 = 1;

/// Stable refusal codes ([`Refusal::rule`]).
pub mod rules {
    /// None or self attestation where a trusted attestation is required.
    pub const NOT_ATTESTED: &str = "not_attested";
    /// The attestation chain does not reach a configured trust anchor.
    pub const UNTRUSTED_ROOT: &str = "untrusted_root";
    /// A certificate of the attestation chain is expired (or not yet valid).
    pub const CERTIFICATE_EXPIRED: &str = "certificate_expired";
    /// The authenticator did not verify the user (PIN/biometric).
    pub const USER_VERIFICATION_REQUIRED: &str = "user_verification_required";
    /// The credential is backup eligible (a synced passkey).
    pub const BACKUP_ELIGIBLE: &str = "backup_eligible";
    /// The model (AAGUID or name) is not on the allow list.
    pub const MODEL_NOT_ALLOWED: &str = "model_not_allowed";
    /// The AAGUID is not in the catalogue.
    pub const UNCATALOGUED_AUTHENTICATOR: &str = "uncatalogued_authenticator";
    /// The model is not FIPS validated.
    pub const FIPS_REQUIRED: &str = "fips_required";
    /// The credential ID is already registered.
    pub const DUPLICATE_CREDENTIAL: &str = "duplicate_credential";
    /// The member already has an active key with the same attestation certificate.
    pub const SAME_PHYSICAL_KEY: &str = "same_physical_key";
    /// A trusted attestation certificate without the AAGUID extension: only the
    /// authenticator's own data names the model.
    pub const AAGUID_NOT_CERTIFIED: &str = "aaguid_not_certified";
}

/// What keys are accepted at enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Policy format version (1).
    pub version: u32,
    /// AAGUIDs accepted; empty = any catalogued model.
    pub allowed_aaguids: Vec<Aaguid>,
    /// Model names accepted (case-insensitive, as in the catalogue); empty = any.
    pub allowed_models: Vec<String>,
    /// Accept authenticators whose AAGUID is not in the catalogue.
    pub allow_uncatalogued: bool,
    /// Accept only FIPS-validated models.
    pub fips_only: bool,
    /// Require user verification (PIN or biometric) at enrolment.
    pub require_user_verification: bool,
    /// Refuse backup-eligible credentials (synced passkeys).
    pub refuse_backup_eligible: bool,
    /// Refuse none and self attestation and chains that do not reach an anchor.
    pub require_trusted_attestation: bool,
    /// Refuse a trusted attestation whose certificate lacks the AAGUID extension
    /// (1.3.6.1.4.1.45724.1.1.4) while authenticator data names a model: the model would
    /// then rest on what the authenticator says of itself. Under Yubico's roots, whose
    /// genuine FIDO2 certificates always carry it, such a key is refused whatever this says.
    pub require_aaguid_extension: bool,
    /// Refuse a second key with the same attestation certificate for one member.
    pub distinct_physical_keys: bool,
    /// Active attested keys a member needs to be compliant (primary + backup).
    pub min_keys: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            version: CURRENT_POLICY_VERSION,
            allowed_aaguids: Vec::new(),
            allowed_models: Vec::new(),
            allow_uncatalogued: false,
            fips_only: false,
            require_user_verification: true,
            refuse_backup_eligible: true,
            require_trusted_attestation: true,
            require_aaguid_extension: true,
            distinct_physical_keys: true,
            min_keys: 2,
        }
    }
}

impl Policy {
    /// Checks the policy itself (version known, at least one key required).
    pub fn validate(&self) -> Result<(), String> {
        if self.version != CURRENT_POLICY_VERSION {
            return Err(format!(
                "policy version {} is not supported (expected {CURRENT_POLICY_VERSION})",
                self.version
            ));
        }
        if self.min_keys == 0 {
            return Err("min_keys must be at least 1".into());
        }
        Ok(())
    }
}

/// An active key the member already has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingKey {
    /// Its credential ID.
    pub credential_id: Vec<u8>,
    /// SHA-256 of its attestation certificate, when it had one.
    pub leaf_sha256: Option<[u8; 32]>,
    /// Its AAGUID.
    pub aaguid: Aaguid,
}

/// The facts of the key being enrolled.
#[derive(Clone, Copy, Debug)]
pub struct KeyFacts<'a> {
    /// Authenticator-data flags.
    pub flags: &'a Flags,
    /// Its credential ID.
    pub credential_id: &'a [u8],
    /// What its attestation proved.
    pub evidence: &'a AttestationEvidence,
}

/// One reason a key was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// A stable code from [`rules`].
    pub rule: &'static str,
    /// What happened, naming the rule.
    pub message: String,
    /// What the member or admin can do about it.
    pub remedy: String,
}

/// The outcome of [`evaluate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// True when no rule refused the key.
    pub accepted: bool,
    /// Every rule that refused it.
    pub refusals: Vec<Refusal>,
    /// Trusted attestation and user verification: the key may earn phishing-resistant
    /// assurance values (§4), whatever else the policy says.
    pub phishing_resistant: bool,
    /// The version of the policy applied.
    pub policy_version: u32,
}

fn refusal(rule: &'static str, message: String, remedy: &str) -> Refusal {
    Refusal {
        rule,
        message,
        remedy: remedy.to_owned(),
    }
}

/// Applies `policy` to a key being enrolled.
///
/// `member_keys` are the member's other active keys; `credential_id_registered` says
/// whether the credential ID is already registered to anyone.
pub fn evaluate(
    policy: &Policy,
    key: &KeyFacts<'_>,
    member_keys: &[ExistingKey],
    credential_id_registered: bool,
) -> Decision {
    let ev = key.evidence;
    let mut refusals = Vec::new();

    if policy.require_trusted_attestation {
        match (&ev.kind, &ev.trust) {
            (AttestationKind::None | AttestationKind::SelfAttestation, _) => {
                refusals.push(refusal(
                    rules::NOT_ATTESTED,
                    format!(
                        "Refused by rule not_attested: the authenticator gave {} attestation \
                         (format \"{}\"), so its make and model cannot be proven.",
                        if ev.kind == AttestationKind::None {
                            "no"
                        } else {
                            "only self"
                        },
                        ev.fmt
                    ),
                    "Use a hardware security key that provides attestation, and allow \
                     attestation (\"direct\") when the browser asks.",
                ));
            }
            (AttestationKind::Basic, TrustResult::Untrusted { code, reason }) => {
                if *code == codes::CERTIFICATE_EXPIRED || *code == codes::CERTIFICATE_NOT_YET_VALID
                {
                    refusals.push(refusal(
                        rules::CERTIFICATE_EXPIRED,
                        format!(
                            "Refused by rule certificate_expired: the attestation certificate \
                             chain is not valid now ({reason})."
                        ),
                        "Use another security key; if the clock of this server is wrong, ask \
                         an administrator to fix it.",
                    ));
                } else {
                    refusals.push(refusal(
                        rules::UNTRUSTED_ROOT,
                        format!(
                            "Refused by rule untrusted_root: the attestation certificate does \
                             not chain to a trusted FIDO root ({code}: {reason})."
                        ),
                        "Use a security key from a vendor whose attestation root is trusted; \
                         an administrator can add a vendor root to the trust store.",
                    ));
                }
            }
            (AttestationKind::Basic, TrustResult::NotApplicable) => {
                refusals.push(refusal(
                    rules::UNTRUSTED_ROOT,
                    "Refused by rule untrusted_root: the attestation chain was not validated."
                        .into(),
                    "Use a security key whose attestation chains to a trusted root.",
                ));
            }
            (AttestationKind::Basic, TrustResult::Trusted { .. }) => {}
        }
    }

    // A trusted chain vouches for the model only through the certificate's AAGUID
    // extension; without it, authenticator data alone would name the model.
    if let (
        AttestationKind::Basic,
        TrustResult::Trusted {
            yubico_root,
            anchor_name,
            ..
        },
        Some(ModelSource::AuthenticatorData),
    ) = (&ev.kind, &ev.trust, ev.model_source)
    {
        if *yubico_root {
            refusals.push(refusal(
                rules::AAGUID_NOT_CERTIFIED,
                format!(
                    "Refused by rule aaguid_not_certified: the attestation certificate chains \
                     to {anchor_name}, yet it does not name the model (no AAGUID extension); \
                     genuine keys under this root always do, so the model (AAGUID {}) would \
                     rest on the authenticator's word alone.",
                    ev.aaguid
                ),
                "Use another security key; this one does not attest as a genuine key of \
                 its vendor.",
            ));
        } else if policy.require_aaguid_extension {
            refusals.push(refusal(
                rules::AAGUID_NOT_CERTIFIED,
                format!(
                    "Refused by rule aaguid_not_certified: the attestation certificate \
                     (chaining to {anchor_name}) does not name the model (no AAGUID \
                     extension), so the model (AAGUID {}) rests on the authenticator's word \
                     alone.",
                    ev.aaguid
                ),
                "Use a security key whose attestation certificate names its model; an \
                 administrator who trusts this vendor root for the model can set \
                 policy.require_aaguid_extension = false.",
            ));
        }
    }

    if policy.require_user_verification && !key.flags.user_verified {
        refusals.push(refusal(
            rules::USER_VERIFICATION_REQUIRED,
            "Refused by rule user_verification_required: the key did not verify you with a \
             PIN or fingerprint."
                .into(),
            "Set a PIN on the security key (or enrol a fingerprint) and try again, entering \
             it when asked.",
        ));
    }

    if policy.refuse_backup_eligible && key.flags.backup_eligible {
        refusals.push(refusal(
            rules::BACKUP_ELIGIBLE,
            "Refused by rule backup_eligible: this credential can be synced or backed up \
             (a passkey in a password manager or cloud account), so it is not bound to one \
             hardware key."
                .into(),
            "Use a hardware security key instead of a synced passkey; when the browser \
             offers choices, pick \"security key\".",
        ));
    }

    let aaguid = ev.effective_aaguid();
    let device = ev.device.as_ref();
    if device.is_none() && !policy.allow_uncatalogued {
        refusals.push(refusal(
            rules::UNCATALOGUED_AUTHENTICATOR,
            format!(
                "Refused by rule uncatalogued_authenticator: the authenticator model \
                 (AAGUID {aaguid}) is not in the catalogue of known security keys."
            ),
            "Use one of the organisation's approved security keys; an administrator can \
             add this model to the catalogue.",
        ));
    }

    let model_name = device.map(|d| d.model.as_str());
    let aaguid_allowed =
        policy.allowed_aaguids.is_empty() || policy.allowed_aaguids.contains(&aaguid);
    let model_allowed = policy.allowed_models.is_empty()
        || model_name.is_some_and(|m| {
            policy
                .allowed_models
                .iter()
                .any(|allowed| allowed.trim().eq_ignore_ascii_case(m))
        });
    if !aaguid_allowed || !model_allowed {
        refusals.push(refusal(
            rules::MODEL_NOT_ALLOWED,
            format!(
                "Refused by rule model_not_allowed: {} (AAGUID {aaguid}) is not on the list of \
                 allowed models.",
                model_name.unwrap_or("this authenticator")
            ),
            "Use one of the security key models your organisation allows; ask an \
             administrator which ones.",
        ));
    }

    if policy.fips_only && !device.is_some_and(|d| d.fips) {
        refusals.push(refusal(
            rules::FIPS_REQUIRED,
            format!(
                "Refused by rule fips_required: {} is not a FIPS-validated model.",
                model_name.unwrap_or("this authenticator")
            ),
            "Use a FIPS-validated security key (for example a YubiKey 5 FIPS series key).",
        ));
    }

    if credential_id_registered
        || member_keys
            .iter()
            .any(|k| k.credential_id.as_slice() == key.credential_id)
    {
        refusals.push(refusal(
            rules::DUPLICATE_CREDENTIAL,
            "Refused by rule duplicate_credential: this credential is already registered.".into(),
            "This key is already enrolled; use it to sign in, or enrol a different key.",
        ));
    }

    if policy.distinct_physical_keys {
        if let Some(leaf) = ev.leaf_sha256 {
            if member_keys.iter().any(|k| k.leaf_sha256 == Some(leaf)) {
                refusals.push(refusal(
                    rules::SAME_PHYSICAL_KEY,
                    "Refused by rule same_physical_key: you already have an active key with \
                     the same attestation certificate, so this may be the same physical key \
                     (keys from one production batch share a certificate)."
                        .into(),
                    "Enrol a different physical key as your backup, preferably another model \
                     or one bought separately.",
                ));
            }
        }
    }

    Decision {
        accepted: refusals.is_empty(),
        refusals,
        phishing_resistant: ev.is_trusted() && key.flags.user_verified,
        policy_version: policy.version,
    }
}

/// An active key, as compliance sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComplianceKey {
    /// Whether its attestation chained to a trust anchor when enrolled.
    pub trusted_attestation: bool,
    /// SHA-256 of its attestation certificate.
    pub leaf_sha256: Option<[u8; 32]>,
}

/// Whether a member meets the key requirement, and why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Compliance {
    /// At least `min_keys` active keys with trusted attestation.
    pub compliant: bool,
    /// Distinct attested keys counted.
    pub attested_keys: u32,
    /// Human reasons when not compliant.
    pub reasons: Vec<String>,
}

/// A member is compliant with at least `policy.min_keys` active keys with trusted
/// attestation (keys sharing an attestation certificate count once when
/// `distinct_physical_keys` is on).
pub fn is_compliant(policy: &Policy, active_keys: &[ComplianceKey]) -> Compliance {
    let mut counted: Vec<Option<[u8; 32]>> = Vec::new();
    let mut unattested = 0u32;
    for k in active_keys {
        if !k.trusted_attestation {
            unattested += 1;
            continue;
        }
        let duplicate = policy.distinct_physical_keys
            && k.leaf_sha256.is_some()
            && counted.contains(&k.leaf_sha256);
        if !duplicate {
            counted.push(k.leaf_sha256);
        }
    }
    let attested_keys = u32::try_from(counted.len()).unwrap_or(u32::MAX);
    let mut reasons = Vec::new();
    if attested_keys < policy.min_keys {
        reasons.push(format!(
            "{attested_keys} active attested key(s); the policy requires {} (a primary and a \
             backup key)",
            policy.min_keys
        ));
        if unattested > 0 {
            reasons.push(format!(
                "{unattested} active key(s) without trusted attestation do not count"
            ));
        }
    }
    Compliance {
        compliant: reasons.is_empty(),
        attested_keys,
        reasons,
    }
}

/// [`is_compliant`] over a plain list: one `bool` per active key, true when that key
/// counts as attested (e.g. its stored `phishing_resistant` flag). No de-duplication
/// by attestation certificate is possible from booleans alone.
pub fn compliance(policy: &Policy, active_keys_attested: &[bool]) -> Compliance {
    let keys: Vec<ComplianceKey> = active_keys_attested
        .iter()
        .map(|&trusted_attestation| ComplianceKey {
            trusted_attestation,
            leaf_sha256: None,
        })
        .collect();
    is_compliant(policy, &keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::catalogue::Catalogue;

    const YUBIKEY_5_NFC: &str = "2fc0579f-8113-47ea-b116-bb5a8db9202a";

    fn flags() -> Flags {
        Flags {
            user_present: true,
            user_verified: true,
            backup_eligible: false,
            backup_state: false,
            attested_data: true,
            extension_data: false,
        }
    }

    /// Packed basic attestation of a catalogued model, trusted under an anchor, with or
    /// without the AAGUID extension on the leaf.
    fn evidence(yubico_root: bool, extension: bool) -> AttestationEvidence {
        let aaguid: Aaguid = YUBIKEY_5_NFC.parse().expect("aaguid");
        AttestationEvidence {
            fmt: "packed".into(),
            kind: AttestationKind::Basic,
            aaguid,
            chain: vec![vec![1, 2, 3]],
            trust: TrustResult::Trusted {
                anchor_name: if yubico_root {
                    "Yubico FIDO Root CA Serial 450203556".into()
                } else {
                    "Vendor Root".into()
                },
                anchor_sha256: [9; 32],
                path_sha256: vec![[1; 32]],
                yubico_root,
            },
            leaf_sha256: Some([1; 32]),
            leaf_aaguid: extension.then_some(aaguid),
            firmware: None,
            device: Catalogue::builtin().lookup(&aaguid).cloned(),
            model_source: Some(if extension {
                ModelSource::Certificate
            } else {
                ModelSource::AuthenticatorData
            }),
        }
    }

    fn refused_by(policy: &Policy, ev: &AttestationEvidence) -> Vec<&'static str> {
        let flags = flags();
        let key = KeyFacts {
            flags: &flags,
            credential_id: b"cred",
            evidence: ev,
        };
        evaluate(policy, &key, &[], false)
            .refusals
            .into_iter()
            .map(|r| r.rule)
            .collect()
    }

    #[test]
    fn a_leaf_without_the_aaguid_extension_under_a_yubico_root_is_always_refused() {
        assert!(evidence(true, false).device.is_some(), "a catalogued model");
        let lenient = Policy {
            require_aaguid_extension: false,
            ..Policy::default()
        };
        for policy in [Policy::default(), lenient.clone()] {
            assert_eq!(
                refused_by(&policy, &evidence(true, false)),
                [rules::AAGUID_NOT_CERTIFIED]
            );
            assert!(refused_by(&policy, &evidence(true, true)).is_empty());
        }
        // Under another root the setting decides.
        assert_eq!(
            refused_by(&Policy::default(), &evidence(false, false)),
            [rules::AAGUID_NOT_CERTIFIED]
        );
        assert!(refused_by(&lenient, &evidence(false, false)).is_empty());
        assert!(refused_by(&Policy::default(), &evidence(false, true)).is_empty());
    }

    #[test]
    fn the_refusal_names_the_root_and_the_unproven_model() {
        let flags = flags();
        let ev = evidence(true, false);
        let key = KeyFacts {
            flags: &flags,
            credential_id: b"cred",
            evidence: &ev,
        };
        let d = evaluate(&Policy::default(), &key, &[], false);
        let m = &d.refusals[0].message;
        assert!(m.contains("Yubico FIDO Root CA Serial 450203556"), "{m}");
        assert!(m.contains(YUBIKEY_5_NFC), "{m}");
        assert!(!d.accepted);
    }
}
