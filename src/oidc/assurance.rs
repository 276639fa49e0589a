//! What a sign-in proved, in the vocabularies relying parties ask in (SPEC §4).
//!
//! keygate knows three facts about a sign-in: whether the key's attestation chained to a
//! trusted root when it was enrolled, whether the key verified the user, and how (PIN, or
//! fingerprint on a Bio model). From them:
//!
//! | requested `acr` | satisfied when |
//! | --- | --- |
//! | `phrh`, `phr` (OpenID EAP ACR Values 1.0) | attested key **and** user verification |
//! | `http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true` | the same |
//! | `https://refeds.org/profile/mfa`, `http://idmanagement.gov/ns/assurance/aal/2`, `http://schemas.microsoft.com/claims/multipleauthn` | user verification (key + PIN or fingerprint) |
//! | `possessionorinherence` (Microsoft Entra external authentication method) | any key sign-in (a possession factor) |
//! | `https://refeds.org/profile/sfa` | any key sign-in |
//!
//! `amr` (RFC 8176) lists `hwk` only for an attested key, `pop` always (a WebAuthn
//! assertion proves possession of a private key), `pin` or `fpt` for the verification used
//! (`user` when only presence was proven) and `mfa` when the user was verified. For the
//! Entra shape `amr` holds one value only: `hwk` for an attested key, else `pop`.
//!
//! An unattested key (allowed by an administrator) never earns `phrh`, `phr`, the
//! phishing-resistant AAL2 value or `hwk`, whatever else it proves.

use serde::{Deserialize, Serialize};

/// Authentication context class values keygate understands.
pub mod acr {
    /// OpenID EAP: phishing-resistant, hardware-protected.
    pub const PHRH: &str = "phrh";
    /// OpenID EAP: phishing-resistant.
    pub const PHR: &str = "phr";
    /// REFEDS multi-factor authentication profile.
    pub const REFEDS_MFA: &str = "https://refeds.org/profile/mfa";
    /// REFEDS single-factor authentication profile.
    pub const REFEDS_SFA: &str = "https://refeds.org/profile/sfa";
    /// US federal AAL2, phishing-resistant.
    pub const AAL2_PHISHING_RESISTANT: &str =
        "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true";
    /// US federal AAL2.
    pub const AAL2: &str = "http://idmanagement.gov/ns/assurance/aal/2";
    /// Microsoft: multi-factor authentication was performed.
    pub const MS_MULTIPLE_AUTHN: &str = "http://schemas.microsoft.com/claims/multipleauthn";
    /// Microsoft Entra external authentication method.
    pub const ENTRA_POSSESSION_OR_INHERENCE: &str = "possessionorinherence";

    /// Every value keygate can emit, strongest first (what discovery advertises).
    pub const SUPPORTED: [&str; 8] = [
        PHRH,
        PHR,
        AAL2_PHISHING_RESISTANT,
        REFEDS_MFA,
        AAL2,
        MS_MULTIPLE_AUTHN,
        ENTRA_POSSESSION_OR_INHERENCE,
        REFEDS_SFA,
    ];
}

/// Authentication method reference values (RFC 8176) keygate emits.
pub mod amr {
    /// Proof of possession of a hardware-secured key.
    pub const HWK: &str = "hwk";
    /// Proof of possession of a key.
    pub const POP: &str = "pop";
    /// Multiple-factor authentication.
    pub const MFA: &str = "mfa";
    /// A PIN was used.
    pub const PIN: &str = "pin";
    /// A fingerprint was used.
    pub const FPT: &str = "fpt";
    /// User presence was tested.
    pub const USER: &str = "user";
}

/// How the key verified the person touching it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// Presence only (a touch, no PIN or fingerprint).
    Presence,
    /// The key's PIN.
    Pin,
    /// A fingerprint on the key.
    Fingerprint,
}

impl Verification {
    /// From the authenticator's UV flag and the key's model name: a verified sign-in on a
    /// Bio model counts as fingerprint, on any other model as PIN. (A Bio key can fall
    /// back to its PIN; WebAuthn does not say which was used.)
    pub fn derive(user_verified: bool, model: Option<&str>) -> Verification {
        if !user_verified {
            Verification::Presence
        } else if model.is_some_and(|m| m.split_whitespace().any(|w| w.eq_ignore_ascii_case("bio")))
        {
            Verification::Fingerprint
        } else {
            Verification::Pin
        }
    }

    /// Whether the user was verified (a second factor).
    pub fn user_verified(self) -> bool {
        self != Verification::Presence
    }
}

/// What a key sign-in proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignInFacts {
    /// The key's attestation chained to a trusted root at enrolment.
    pub attested: bool,
    /// How the key verified the user.
    pub verification: Verification,
}

impl SignInFacts {
    /// Attested hardware and user verification: earns the phishing-resistant values.
    pub fn phishing_resistant(&self) -> bool {
        self.attested && self.verification.user_verified()
    }

    /// Key plus PIN or fingerprint.
    pub fn multi_factor(&self) -> bool {
        self.verification.user_verified()
    }
}

/// The `acr` and `amr` to put in a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assurance {
    pub acr: String,
    pub amr: Vec<String>,
}

/// Whether keygate knows what `value` means (and so could ever satisfy it).
pub fn understands(value: &str) -> bool {
    acr::SUPPORTED.contains(&value)
}

/// Whether a sign-in with `facts` meets `value`. Unknown values are never met.
pub fn meets(value: &str, facts: &SignInFacts) -> bool {
    match value {
        acr::PHRH | acr::PHR | acr::AAL2_PHISHING_RESISTANT => facts.phishing_resistant(),
        acr::REFEDS_MFA | acr::AAL2 | acr::MS_MULTIPLE_AUTHN => facts.multi_factor(),
        acr::ENTRA_POSSESSION_OR_INHERENCE | acr::REFEDS_SFA => true,
        _ => false,
    }
}

/// The first of `requested` (in the client's order of preference) that `facts` meet:
/// the `acr` value to emit, or `None` when none is met.
pub fn satisfy(requested: &[String], facts: &SignInFacts) -> Option<String> {
    requested
        .iter()
        .find(|v| meets(v, facts))
        .map(|v| v.to_owned())
}

/// The strongest value `facts` earn when nothing in particular was asked for:
/// `phrh`, else REFEDS MFA, else REFEDS SFA.
pub fn strongest(facts: &SignInFacts) -> &'static str {
    if facts.phishing_resistant() {
        acr::PHRH
    } else if facts.multi_factor() {
        acr::REFEDS_MFA
    } else {
        acr::REFEDS_SFA
    }
}

/// The `amr` list for `facts`, shaped for the `acr` being emitted (one value for the
/// Entra external-method shape).
pub fn methods(acr_value: &str, facts: &SignInFacts) -> Vec<String> {
    if acr_value == acr::ENTRA_POSSESSION_OR_INHERENCE {
        let one = if facts.attested { amr::HWK } else { amr::POP };
        return vec![one.to_owned()];
    }
    let mut out = Vec::with_capacity(4);
    if facts.attested {
        out.push(amr::HWK);
    }
    out.push(amr::POP);
    match facts.verification {
        Verification::Presence => out.push(amr::USER),
        Verification::Pin => out.push(amr::PIN),
        Verification::Fingerprint => out.push(amr::FPT),
    }
    if facts.multi_factor() {
        out.push(amr::MFA);
    }
    out.into_iter().map(str::to_owned).collect()
}

/// Best-effort assurance: the first requested value `facts` meet, else the strongest
/// value they earn; `amr` to match.
pub fn assurance(requested: &[String], facts: &SignInFacts) -> Assurance {
    let acr_value = satisfy(requested, facts).unwrap_or_else(|| strongest(facts).to_owned());
    let amr = methods(&acr_value, facts);
    Assurance {
        acr: acr_value,
        amr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(attested: bool, verification: Verification) -> SignInFacts {
        SignInFacts {
            attested,
            verification,
        }
    }

    fn req(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bio_models_verify_by_fingerprint() {
        assert_eq!(
            Verification::derive(true, Some("YubiKey Bio Series - FIDO Edition")),
            Verification::Fingerprint
        );
        assert_eq!(
            Verification::derive(true, Some("YubiKey 5 NFC")),
            Verification::Pin
        );
        assert_eq!(
            Verification::derive(true, Some("Biometric-free key")),
            Verification::Pin
        );
        assert_eq!(
            Verification::derive(false, Some("YubiKey Bio")),
            Verification::Presence
        );
    }

    #[test]
    fn attested_and_verified_earns_phrh_and_phr() {
        let f = facts(true, Verification::Pin);
        assert_eq!(satisfy(&req(&["phrh"]), &f).as_deref(), Some("phrh"));
        assert_eq!(satisfy(&req(&["phr"]), &f).as_deref(), Some("phr"));
        assert_eq!(methods("phrh", &f), req(&["hwk", "pop", "pin", "mfa"]));
        assert_eq!(strongest(&f), "phrh");
    }

    #[test]
    fn unattested_never_earns_phishing_resistance_or_hwk() {
        let f = facts(false, Verification::Fingerprint);
        for v in ["phrh", "phr", acr::AAL2_PHISHING_RESISTANT] {
            assert_eq!(satisfy(&req(&[v]), &f), None, "{v}");
        }
        let a = assurance(&req(&["phrh"]), &f);
        assert_eq!(a.acr, acr::REFEDS_MFA);
        assert!(!a.amr.contains(&"hwk".to_owned()));
        assert_eq!(a.amr, req(&["pop", "fpt", "mfa"]));
        assert_eq!(
            methods(acr::ENTRA_POSSESSION_OR_INHERENCE, &f),
            req(&["pop"])
        );
    }

    #[test]
    fn presence_only_is_single_factor() {
        let f = facts(true, Verification::Presence);
        assert_eq!(satisfy(&req(&["phrh", acr::REFEDS_MFA]), &f), None);
        assert_eq!(methods(acr::REFEDS_SFA, &f), req(&["hwk", "pop", "user"]));
        assert_eq!(strongest(&f), acr::REFEDS_SFA);
    }

    #[test]
    fn preference_order_and_unknown_values() {
        let f = facts(true, Verification::Pin);
        let r = req(&["urn:example:gold", acr::MS_MULTIPLE_AUTHN, "phrh"]);
        assert_eq!(satisfy(&r, &f).as_deref(), Some(acr::MS_MULTIPLE_AUTHN));
        assert!(!understands("urn:example:gold"));
        assert!(understands(acr::ENTRA_POSSESSION_OR_INHERENCE));
        assert_eq!(
            methods(acr::ENTRA_POSSESSION_OR_INHERENCE, &f),
            req(&["hwk"])
        );
    }
}
