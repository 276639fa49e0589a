//! The SAML 2.0 identity provider's protocol side (SPEC C5): receiving and verifying
//! `AuthnRequest`s, deciding the authentication context, building and signing responses,
//! metadata in and out. Nothing here knows HTTP or the database.

pub mod context;
pub mod encrypt;
pub mod keys;
pub mod metadata;
pub mod request;
pub mod response;
pub mod sp;
pub mod xml;

pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// Status codes keygate answers with.
pub mod status {
    pub const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
    pub const REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
    pub const RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
    pub const NO_AUTHN_CONTEXT: &str = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext";
    pub const REQUEST_DENIED: &str = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied";
    pub const NO_PASSIVE: &str = "urn:oasis:names:tc:SAML:2.0:status:NoPassive";
    pub const INVALID_NAME_ID_POLICY: &str =
        "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy";
    pub const UNSUPPORTED_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:status:UnsupportedBinding";
}

/// How a request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Binding {
    Redirect,
    Post,
}

impl Binding {
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::Redirect => "redirect",
            Binding::Post => "post",
        }
    }
}

/// Why a SAML message was refused. Each is shown to the person on a page (keygate never
/// posts a response to an ACS URL it could not trust) and audited.
#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error("the SAML message is malformed: {0}")]
    Malformed(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("the service provider is not registered with keygate")]
    UnknownSp,
    #[error("the AssertionConsumerServiceURL is not one registered for this service provider")]
    AcsMismatch,
    #[error("this request was already used")]
    Replay,
    #[error("the request's IssueInstant is out of range: {0}")]
    Stale(&'static str),
    #[error("this service provider must sign its requests, and this one is unsigned")]
    SignatureRequired,
    #[error("{0}")]
    BadSignature(&'static str),
    #[error("only SAML 2.0 is supported")]
    Version,
    #[error("the request's Destination is not this identity provider")]
    Destination,
    #[error("the service provider's registration is invalid: {0}")]
    Registration(String),
    #[error("signing key: {0}")]
    Key(String),
}

impl SamlError {
    /// Stable reason code for audit events and API problems.
    pub fn code(&self) -> &'static str {
        match self {
            SamlError::Malformed(_) => "saml_malformed",
            SamlError::Forbidden(_) => "saml_forbidden_construct",
            SamlError::UnknownSp => "saml_unknown_sp",
            SamlError::AcsMismatch => "saml_acs_mismatch",
            SamlError::Replay => "saml_replay",
            SamlError::Stale(_) => "saml_issue_instant",
            SamlError::SignatureRequired => "saml_signature_required",
            SamlError::BadSignature(_) => "saml_bad_signature",
            SamlError::Version => "saml_version",
            SamlError::Destination => "saml_destination",
            SamlError::Registration(_) => "saml_invalid_registration",
            SamlError::Key(_) => "saml_key",
        }
    }
}
