//! Which `AuthnContextClassRef` a sign-in may be asserted with (SPEC §4).
//!
//! Only a sign-in with an attested hardware key and user verification earns any context
//! keygate asserts; anything less earns `unspecified` at most. The SP's configured context
//! is what keygate asserts when the request names none; a requested context is honoured
//! when the sign-in earns it, otherwise the answer is `NoAuthnContext`.

use super::request::{Comparison, RequestedContext};

pub const REFEDS_MFA: &str = "https://refeds.org/profile/mfa";
pub const NIST_AAL2_PR: &str = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true";
pub const NIST_AAL3: &str = "http://idmanagement.gov/ns/assurance/aal/3";
pub const MS_MULTIPLE_AUTHN: &str = "http://schemas.microsoft.com/claims/multipleauthn";
pub const EAP_PHR: &str = "phr";
pub const EAP_PHRH: &str = "phrh";
pub const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified";
pub const PASSWORD_PROTECTED: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";
pub const X509: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:X509";

/// The class references keygate understands, with a strength to compare them.
/// 0: nothing proven; 1: a password (never keygate's); 2: multi-factor; 3: phishing-resistant
/// hardware (what an attested key with user verification proves).
pub fn strength(class_ref: &str) -> Option<u8> {
    Some(match class_ref {
        UNSPECIFIED => 0,
        PASSWORD_PROTECTED => 1,
        REFEDS_MFA | MS_MULTIPLE_AUTHN => 2,
        NIST_AAL2_PR | NIST_AAL3 | EAP_PHR | EAP_PHRH | X509 => 3,
        _ => return None,
    })
}

/// Whether keygate may configure an SP to be asserted this context.
pub fn configurable(class_ref: &str) -> bool {
    matches!(
        class_ref,
        REFEDS_MFA | NIST_AAL2_PR | MS_MULTIPLE_AUTHN | EAP_PHR | EAP_PHRH | UNSPECIFIED
    )
}

/// What the sign-in proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    /// Attested hardware key with user verification.
    pub phishing_resistant: bool,
}

impl Proof {
    fn strength(self) -> u8 {
        if self.phishing_resistant {
            3
        } else {
            0
        }
    }

    /// Whether this sign-in may be asserted as `class_ref`. Contexts keygate does not
    /// know are never asserted, except the SP's own configured one for phishing-resistant
    /// sign-ins (a vendor-specific URI an admin chose).
    fn earns(self, class_ref: &str, configured: &str) -> bool {
        match strength(class_ref) {
            // A password was never used; X509 is a client certificate, not a key touch.
            Some(1) => false,
            _ if class_ref == X509 => false,
            Some(s) => s <= self.strength(),
            None => self.phishing_resistant && class_ref == configured,
        }
    }
}

/// What keygate could assert for this SP and sign-in, the SP's configured context first:
/// named when a request is answered `NoAuthnContext`, so the SP's administrator can see
/// which `RequestedAuthnContext` to configure.
pub fn offered(configured: &str, proof: Proof) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let known = [
        configured,
        NIST_AAL2_PR,
        NIST_AAL3,
        REFEDS_MFA,
        MS_MULTIPLE_AUTHN,
        EAP_PHR,
        EAP_PHRH,
        UNSPECIFIED,
    ];
    for c in known {
        if proof.earns(c, configured) && !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
    }
    out
}

/// The `StatusMessage` (and log text) of a `NoAuthnContext` answer: the contexts the
/// request asked for, with its comparison, and what keygate offers instead. Bounded: at
/// most eight requested references of 200 characters each are named.
pub fn unmet_message(
    requested: Option<&RequestedContext>,
    configured: &str,
    offered: &[String],
) -> String {
    let asked = match requested {
        Some(r) => {
            let comparison = match r.comparison {
                Comparison::Exact => "exact",
                Comparison::Minimum => "minimum",
                Comparison::Better => "better",
                Comparison::Maximum => "maximum",
            };
            let mut refs: Vec<String> = r
                .class_refs
                .iter()
                .take(8)
                .map(|c| c.chars().take(200).collect())
                .collect();
            if r.class_refs.len() > 8 {
                refs.push(format!("and {} more", r.class_refs.len() - 8));
            }
            format!(
                "the service provider asked for {comparison} {}",
                refs.join(", ")
            )
        }
        None => format!(
            "the request named no context and the sign-in does not earn the one configured \
             for this service provider ({configured})"
        ),
    };
    let offers = if offered.is_empty() {
        "nothing for this sign-in".to_string()
    } else {
        offered.join(", ")
    };
    format!(
        "the sign-in does not meet the requested authentication context: {asked}; keygate \
         offers {offers} (a password is never used: request one of these, or none)"
    )
}

/// The context to assert, or `None` for `NoAuthnContext`.
pub fn decide(
    requested: Option<&RequestedContext>,
    configured: &str,
    proof: Proof,
) -> Option<String> {
    let Some(req) = requested else {
        return proof
            .earns(configured, configured)
            .then(|| configured.to_string());
    };
    match req.comparison {
        Comparison::Exact => req
            .class_refs
            .iter()
            .find(|r| proof.earns(r, configured))
            .cloned(),
        Comparison::Minimum | Comparison::Better => {
            let strict = req.comparison == Comparison::Better;
            // The floor is the weakest requested context keygate knows.
            let floor = req.class_refs.iter().filter_map(|r| strength(r)).min()?;
            let enough = |s: u8| if strict { s > floor } else { s >= floor };
            // Prefer the SP's configured context, else the strongest the sign-in earns.
            let configured_ok =
                strength(configured).is_some_and(enough) && proof.earns(configured, configured);
            if configured_ok {
                return Some(configured.to_string());
            }
            [NIST_AAL2_PR, REFEDS_MFA, UNSPECIFIED]
                .into_iter()
                .find(|c| strength(c).is_some_and(enough) && proof.earns(c, configured))
                .map(str::to_string)
        }
        Comparison::Maximum => req
            .class_refs
            .iter()
            .filter(|r| proof.earns(r, configured))
            .max_by_key(|r| strength(r))
            .cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PR: Proof = Proof {
        phishing_resistant: true,
    };
    const WEAK: Proof = Proof {
        phishing_resistant: false,
    };

    fn req(c: Comparison, refs: &[&str]) -> RequestedContext {
        RequestedContext {
            comparison: c,
            class_refs: refs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_configured_context_needs_an_attested_key() {
        assert_eq!(decide(None, REFEDS_MFA, PR).as_deref(), Some(REFEDS_MFA));
        assert_eq!(decide(None, REFEDS_MFA, WEAK), None);
        assert_eq!(
            decide(None, UNSPECIFIED, WEAK).as_deref(),
            Some(UNSPECIFIED)
        );
    }

    #[test]
    fn exact_requests_are_met_or_refused() {
        let r = req(Comparison::Exact, &[PASSWORD_PROTECTED, NIST_AAL2_PR]);
        assert_eq!(
            decide(Some(&r), REFEDS_MFA, PR).as_deref(),
            Some(NIST_AAL2_PR)
        );
        assert_eq!(decide(Some(&r), REFEDS_MFA, WEAK), None);
        let pw = req(Comparison::Exact, &[PASSWORD_PROTECTED]);
        assert_eq!(decide(Some(&pw), REFEDS_MFA, PR), None);
        let unknown = req(Comparison::Exact, &["urn:vendor:strong"]);
        assert_eq!(decide(Some(&unknown), REFEDS_MFA, PR), None);
        assert_eq!(
            decide(Some(&unknown), "urn:vendor:strong", PR).as_deref(),
            Some("urn:vendor:strong")
        );
    }

    #[test]
    fn minimum_and_better_compare_strength() {
        let min = req(Comparison::Minimum, &[PASSWORD_PROTECTED]);
        assert_eq!(
            decide(Some(&min), REFEDS_MFA, PR).as_deref(),
            Some(REFEDS_MFA)
        );
        assert_eq!(decide(Some(&min), REFEDS_MFA, WEAK), None);
        let better = req(Comparison::Better, &[REFEDS_MFA]);
        assert_eq!(
            decide(Some(&better), REFEDS_MFA, PR).as_deref(),
            Some(NIST_AAL2_PR)
        );
        let nothing_known = req(Comparison::Minimum, &["urn:x"]);
        assert_eq!(decide(Some(&nothing_known), REFEDS_MFA, PR), None);
    }

    #[test]
    fn microsoft_and_eap_contexts_are_earned_only_by_an_attested_key() {
        for c in [MS_MULTIPLE_AUTHN, EAP_PHR, EAP_PHRH] {
            assert!(configurable(c), "{c}");
            let exact = req(Comparison::Exact, &[c]);
            assert_eq!(decide(Some(&exact), REFEDS_MFA, PR).as_deref(), Some(c));
            assert_eq!(decide(Some(&exact), REFEDS_MFA, WEAK), None, "{c}");
            assert_eq!(decide(None, c, PR).as_deref(), Some(c));
            assert_eq!(decide(None, c, WEAK), None, "{c}");
        }
        // Entra ID asks for at least multipleauthn: an SP configured for phr gets phr.
        let min = req(Comparison::Minimum, &[MS_MULTIPLE_AUTHN]);
        assert_eq!(decide(Some(&min), EAP_PHR, PR).as_deref(), Some(EAP_PHR));
        assert_eq!(decide(Some(&min), EAP_PHR, WEAK), None);
        // Nothing keygate proves is stronger than phishing-resistant hardware.
        let better = req(Comparison::Better, &[EAP_PHRH]);
        assert_eq!(decide(Some(&better), EAP_PHRH, PR), None);
        let max = req(Comparison::Maximum, &[MS_MULTIPLE_AUTHN, EAP_PHRH]);
        assert_eq!(
            decide(Some(&max), REFEDS_MFA, PR).as_deref(),
            Some(EAP_PHRH)
        );
        assert_eq!(decide(Some(&max), REFEDS_MFA, WEAK), None);
    }

    #[test]
    fn an_unmet_request_names_what_was_asked_and_what_is_offered() {
        let pw = req(Comparison::Exact, &[PASSWORD_PROTECTED]);
        let strong = offered(REFEDS_MFA, PR);
        assert_eq!(
            strong,
            [
                REFEDS_MFA,
                NIST_AAL2_PR,
                NIST_AAL3,
                MS_MULTIPLE_AUTHN,
                EAP_PHR,
                EAP_PHRH,
                UNSPECIFIED
            ]
        );
        let m = unmet_message(Some(&pw), REFEDS_MFA, &strong);
        assert!(
            m.contains(&format!("asked for exact {PASSWORD_PROTECTED};")),
            "{m}"
        );
        assert!(
            m.contains(&format!("offers {REFEDS_MFA}, {NIST_AAL2_PR}")),
            "{m}"
        );
        // A sign-in without an attested key earns only `unspecified`; an SP's own context
        // is offered only when the sign-in earns it.
        assert_eq!(offered(REFEDS_MFA, WEAK), [UNSPECIFIED]);
        assert_eq!(offered("urn:vendor:strong", PR)[0], "urn:vendor:strong");
        assert!(!offered("urn:vendor:strong", WEAK).contains(&"urn:vendor:strong".to_string()));
        let m = unmet_message(None, REFEDS_MFA, &[]);
        assert!(
            m.contains(&format!("named no context and the sign-in does not earn the one configured for this service provider ({REFEDS_MFA})"))
                && m.contains("offers nothing"),
            "{m}"
        );
        // Long and many references are cut.
        let many: Vec<String> = (0..20)
            .map(|i| format!("urn:x:{i}:{}", "y".repeat(500)))
            .collect();
        let r = RequestedContext {
            comparison: Comparison::Minimum,
            class_refs: many,
        };
        let m = unmet_message(Some(&r), REFEDS_MFA, &offered(REFEDS_MFA, PR));
        assert!(m.len() < 3000 && m.contains("and 12 more"), "{}", m.len());
    }

    #[test]
    fn maximum_picks_the_strongest_earned_at_or_below() {
        let max = req(Comparison::Maximum, &[UNSPECIFIED, REFEDS_MFA]);
        assert_eq!(
            decide(Some(&max), NIST_AAL2_PR, PR).as_deref(),
            Some(REFEDS_MFA)
        );
        assert_eq!(
            decide(Some(&max), NIST_AAL2_PR, WEAK).as_deref(),
            Some(UNSPECIFIED)
        );
    }
}
