//! The authorization request: parsing (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2,
//! RFC 7636), and the decision of what happens next for a given browser session.
//!
//! 1. [`UntrustedAuthorizationRequest`] holds the raw query pairs. Its
//!    [`client_id`](UntrustedAuthorizationRequest::client_id) tells the caller which client
//!    to load.
//! 2. [`UntrustedAuthorizationRequest::validate`] checks the client and the exact
//!    `redirect_uri` first: a failure there is [`AuthorizeError::Show`] and must be shown
//!    to the user, never redirected. Every later failure is [`AuthorizeError::Redirect`],
//!    sent back to the now-trusted `redirect_uri` with `error`, `error_description`,
//!    `state` and `iss` (RFC 9207).
//! 3. [`AuthorizationRequest::next_step`] is called with the session's authentication (or
//!    none) each time the browser arrives, before and after the key touch: it asks for a
//!    (fresh) touch, refuses, or says which `acr`/`amr` to issue a code with.
//!
//! `login_hint` is kept for the sign-in page (never trusted); `ui_locales`, `display`,
//! `claims_locales` and `id_token_hint` are ignored; unknown parameters are ignored as
//! RFC 6749 §3.1 requires; any parameter given twice is `invalid_request`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use super::assurance;
use super::keys::Algorithm;
use super::scope::{self, Scopes};
use super::OidcError;

mod params;
mod step;

use params::{parse_claims_acr, parse_prompt, printable};
pub use step::{Authentication, SignInReason, Step};

/// Longest `state` echoed back.
pub const MAX_STATE_LEN: usize = 1024;
/// Longest `nonce` accepted.
pub const MAX_NONCE_LEN: usize = 512;
/// Longest `claims` parameter accepted.
pub const MAX_CLAIMS_LEN: usize = 4096;
/// Longest `login_hint` kept.
pub const MAX_LOGIN_HINT_LEN: usize = 256;

/// Whether a client can keep a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// Authenticates at the token endpoint (`client_secret_basic` / `client_secret_post`).
    Confidential,
    /// A native or browser app: no secret (`none`), PKCE only.
    Public,
}

/// What the authorization endpoint needs to know about a registered client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    pub client_id: String,
    /// Registered redirect URIs, compared as exact strings.
    pub redirect_uris: Vec<String>,
    pub kind: ClientKind,
    /// Scopes this client may ask for (`openid` is always needed in the request).
    pub allowed_scopes: Vec<String>,
    /// How its ID tokens are signed.
    pub id_token_alg: Algorithm,
    /// The workspace it is bound to (SPEC C6), if any.
    pub workspace_id: Option<String>,
    /// `acr` values asked on the client's behalf when a request names none (best effort).
    pub default_acr_values: Vec<String>,
    /// An administrator's requirement: a sign-in must meet one of these, whatever the
    /// request says, or the request is refused with `unmet_authentication_requirements`.
    pub required_acr_values: Vec<String>,
}

/// What `prompt` asked for (OpenID Connect Core §3.1.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// No user interaction at all.
    pub none: bool,
    /// A fresh key touch even with a session.
    pub login: bool,
    /// Consent (keygate's clients are approved by an administrator; flows may show a page).
    pub consent: bool,
    /// Let the user pick the account: a fresh key touch picks it.
    pub select_account: bool,
}

/// The `acr` a request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcrRequest {
    /// Values in order of preference.
    pub values: Vec<String>,
    /// Requested as an essential claim: refuse rather than issue anything else.
    pub essential: bool,
}

/// A validated authorization request: every field checked against the client. Keep it
/// (e.g. in the ephemeral store) while the user signs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    /// One of the client's registered redirect URIs, exactly.
    #[serde(with = "url_string")]
    pub redirect_uri: Url,
    pub scopes: Scopes,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The S256 code challenge (43 base64url characters).
    pub code_challenge: String,
    pub prompt: Prompt,
    /// Seconds.
    pub max_age: Option<u64>,
    /// What the request (or the client's defaults) asked for.
    pub acr: AcrRequest,
    /// The client's required values (see [`ClientView::required_acr_values`]).
    pub required_acr: Vec<String>,
    /// A hint for the sign-in page; never trusted.
    pub login_hint: Option<String>,
    /// Unix seconds when the request was validated: a key touch at or after it is fresh.
    pub received_at: i64,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Show on a page; never redirect (unknown client, unregistered redirect URI).
    Show(OidcError),
    /// Redirect to the client's `redirect_uri` with the error.
    Redirect(Box<ErrorRedirect>),
}

impl AuthorizeError {
    /// The error either way.
    pub fn error(&self) -> &OidcError {
        match self {
            AuthorizeError::Show(e) => e,
            AuthorizeError::Redirect(r) => &r.error,
        }
    }
}

/// An error to send back to a trusted redirect URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorRedirect {
    pub redirect_uri: Url,
    pub error: OidcError,
    pub state: Option<String>,
}

impl ErrorRedirect {
    /// The `Location`: `redirect_uri` with `error`, `error_description`, `state` (when the
    /// request had one) and `iss` added to its query, keeping any query it already has.
    pub fn location(&self, issuer: &str) -> Url {
        error_location(
            &self.redirect_uri,
            &self.error,
            self.state.as_deref(),
            issuer,
        )
    }
}

/// `redirect_uri` with an error response added (RFC 6749 §4.1.2.1, RFC 9207).
pub fn error_location(
    redirect_uri: &Url,
    error: &OidcError,
    state: Option<&str>,
    issuer: &str,
) -> Url {
    let mut url = redirect_uri.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", error.code());
        q.append_pair(
            "error_description",
            &super::error::safe_description(error.description()),
        );
        if let Some(state) = state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", issuer);
    }
    url
}

/// `redirect_uri` with a successful response (`code`, `state`, `iss`) added.
pub fn code_location(redirect_uri: &Url, code: &str, state: Option<&str>, issuer: &str) -> Url {
    let mut url = redirect_uri.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", code);
        if let Some(state) = state {
            q.append_pair("state", state);
        }
        q.append_pair("iss", issuer);
    }
    url
}

/// The raw query of an authorization request. Nothing in it is trusted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UntrustedAuthorizationRequest {
    pairs: Vec<(String, String)>,
    /// Some name or value's escapes decode to no UTF-8 (kept, repaired, only to find the
    /// client; the request itself is refused).
    undecodable: bool,
}

impl UntrustedAuthorizationRequest {
    /// From decoded name/value pairs, in order, repeats kept.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        UntrustedAuthorizationRequest {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            undecodable: false,
        }
    }

    /// From a raw (percent-encoded) query string, `+` a space.
    pub fn from_query(query: &str) -> Self {
        let (pairs, undecodable) = crate::form::pairs_repaired(query);
        UntrustedAuthorizationRequest { pairs, undecodable }
    }

    fn count(&self, name: &str) -> usize {
        self.pairs.iter().filter(|(k, _)| k == name).count()
    }

    /// The value of a parameter given once; empty values count as absent (RFC 6749 §3.1).
    /// `Err(())` when it is repeated.
    fn single(&self, name: &str) -> Result<Option<&str>, ()> {
        let mut found = self.pairs.iter().filter(|(k, _)| k == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(());
        }
        Ok(first.map(|(_, v)| v.as_str()).filter(|v| !v.is_empty()))
    }

    /// The `client_id` to look up. Missing or repeated: an error to show, not redirect.
    pub fn client_id(&self) -> Result<&str, OidcError> {
        match self.single("client_id") {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(OidcError::UnknownClient(
                "the request names no client_id".into(),
            )),
            Err(()) => Err(OidcError::UnknownClient(
                "client_id is given more than once".into(),
            )),
        }
    }

    /// Checks the request against `client` (`None`: no client has that ID) at `now`.
    pub fn validate(
        &self,
        client: Option<&ClientView>,
        now: OffsetDateTime,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        // 0. A query that does not decode is shown, never redirected: its `state` and
        // redirect URI cannot be echoed as sent.
        if self.undecodable {
            return Err(AuthorizeError::Show(OidcError::InvalidRequest(
                "the authorization request's query is not UTF-8 once decoded".into(),
            )));
        }
        // 1. Client and redirect URI: failures here are shown, never redirected.
        let client_id = self.client_id().map_err(AuthorizeError::Show)?;
        let client = match client {
            Some(c) if c.client_id == client_id => c,
            _ => {
                return Err(AuthorizeError::Show(OidcError::UnknownClient(
                    "the client is not registered with keygate".into(),
                )))
            }
        };
        let redirect = match self.single("redirect_uri") {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(AuthorizeError::Show(OidcError::InvalidRedirectUri(
                    "the request names no redirect_uri".into(),
                )))
            }
            Err(()) => {
                return Err(AuthorizeError::Show(OidcError::InvalidRedirectUri(
                    "redirect_uri is given more than once".into(),
                )))
            }
        };
        if !client.redirect_uris.iter().any(|r| r == redirect) {
            return Err(AuthorizeError::Show(OidcError::InvalidRedirectUri(
                "the redirect_uri is not registered for this client".into(),
            )));
        }
        let redirect_uri = Url::parse(redirect).map_err(|_| {
            AuthorizeError::Show(OidcError::InvalidRedirectUri(
                "the registered redirect_uri is not an absolute URL".into(),
            ))
        })?;
        if redirect_uri.fragment().is_some() {
            return Err(AuthorizeError::Show(OidcError::InvalidRedirectUri(
                "a redirect_uri may not have a fragment".into(),
            )));
        }

        // 2. From here on, errors go back to the client, with `state` when it is usable.
        let state = match self.single("state") {
            Ok(s) => s.filter(|s| s.len() <= MAX_STATE_LEN).map(str::to_owned),
            Err(()) => None,
        };
        let fail = |error: OidcError| {
            AuthorizeError::Redirect(Box::new(ErrorRedirect {
                redirect_uri: redirect_uri.clone(),
                error,
                state: state.clone(),
            }))
        };
        let invalid = |msg: &str| fail(OidcError::InvalidRequest(msg.to_owned()));

        if let Some((name, _)) = self.pairs.iter().find(|(k, _)| self.count(k) > 1) {
            return Err(invalid(&format!(
                "{} is given more than once",
                printable(name)
            )));
        }
        let get = |name: &str| self.single(name).unwrap_or(None);
        if get("state").is_some_and(|s| s.len() > MAX_STATE_LEN) {
            return Err(invalid("state is too long"));
        }
        if get("request").is_some() {
            return Err(fail(OidcError::RequestNotSupported(
                "request objects are not supported".into(),
            )));
        }
        if get("request_uri").is_some() {
            return Err(fail(OidcError::RequestUriNotSupported(
                "request_uri is not supported".into(),
            )));
        }

        match get("response_type") {
            None => return Err(invalid("response_type is required")),
            Some("code") => {}
            Some(_) => {
                return Err(fail(OidcError::UnsupportedResponseType(
                    "only response_type=code is supported".into(),
                )))
            }
        }
        if get("response_mode").is_some_and(|m| m != "query") {
            return Err(invalid("only response_mode=query is supported"));
        }

        let scopes = Scopes::parse(get("scope").unwrap_or("")).map_err(fail)?;
        if !scopes.contains(scope::OPENID) {
            return Err(fail(OidcError::InvalidScope(
                "the scope must include openid".into(),
            )));
        }
        if let Some(s) = scopes.iter().find(|s| {
            !scope::SUPPORTED.contains(s)
                || scope::CLIENT_ONLY.contains(s)
                || (*s != scope::OPENID && !client.allowed_scopes.iter().any(|a| a == s))
        }) {
            return Err(fail(OidcError::InvalidScope(format!(
                "the scope {} is not allowed for this client",
                printable(s)
            ))));
        }

        let code_challenge = match get("code_challenge") {
            None => return Err(invalid("code_challenge is required (PKCE with S256)")),
            Some(c) => c,
        };
        match get("code_challenge_method") {
            Some("S256") => {}
            Some("plain") | None => {
                return Err(invalid(
                    "code_challenge_method must be S256 (plain is not accepted)",
                ))
            }
            Some(_) => return Err(invalid("code_challenge_method must be S256")),
        }
        if code_challenge.len() != 43
            || !code_challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("code_challenge is not a base64url SHA-256 value"));
        }

        let nonce = get("nonce");
        if nonce.is_some_and(|n| n.len() > MAX_NONCE_LEN) {
            return Err(invalid("nonce is too long"));
        }

        let prompt = match get("prompt") {
            None => Prompt::default(),
            Some(p) => parse_prompt(p).map_err(|m| invalid(&m))?,
        };

        let max_age = match get("max_age") {
            None => None,
            Some(m) if m.bytes().all(|b| b.is_ascii_digit()) && m.len() <= 10 => {
                m.parse::<u64>().ok()
            }
            Some(_) => return Err(invalid("max_age must be a non-negative integer")),
        };

        let from_claims = match get("claims") {
            None => None,
            Some(c) if c.len() > MAX_CLAIMS_LEN => return Err(invalid("claims is too long")),
            Some(c) => parse_claims_acr(c).map_err(|m| invalid(&m))?,
        };
        let acr = match from_claims {
            Some(a) => a,
            None => match get("acr_values") {
                Some(v) => AcrRequest {
                    values: v
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    essential: false,
                },
                None => AcrRequest {
                    values: client.default_acr_values.clone(),
                    essential: false,
                },
            },
        };
        if acr.essential
            && !acr.values.is_empty()
            && !acr.values.iter().any(|v| assurance::understands(v))
        {
            return Err(fail(OidcError::UnmetAuthenticationRequirements(
                "none of the essential acr values can be met by keygate".into(),
            )));
        }

        let login_hint = get("login_hint")
            .filter(|h| h.len() <= MAX_LOGIN_HINT_LEN)
            .map(str::to_owned);

        Ok(AuthorizationRequest {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            scopes,
            state,
            nonce: nonce.map(str::to_owned),
            code_challenge: code_challenge.to_owned(),
            prompt,
            max_age,
            acr,
            required_acr: client.required_acr_values.clone(),
            login_hint,
            received_at: now.unix_timestamp(),
        })
    }
}

/// Serialises a [`Url`] as its string (the `url` crate's serde feature is not enabled).
mod url_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(url.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        let s = String::deserialize(d)?;
        Url::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_keep_the_registered_query() {
        let uri = Url::parse("https://rp.example/cb?tenant=a").unwrap();
        let loc = code_location(&uri, "c0de", Some("s t"), "https://id.example");
        assert_eq!(
            loc.as_str(),
            "https://rp.example/cb?tenant=a&code=c0de&state=s+t&iss=https%3A%2F%2Fid.example"
        );
    }
}
