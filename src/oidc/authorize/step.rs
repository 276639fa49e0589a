//! What happens next for an authorization request, given the browser's session.

use time::OffsetDateTime;
use url::Url;

use super::{code_location, error_location, AuthorizationRequest};
use crate::oidc::assurance::{self, Assurance, SignInFacts};
use crate::oidc::OidcError;

/// How the browser's session was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authentication {
    /// When the key was last touched for this session.
    pub auth_time: OffsetDateTime,
    /// What that touch proved.
    pub facts: SignInFacts,
}

/// Why a key touch is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInReason {
    /// No session.
    NoSession,
    /// `prompt=login`.
    PromptLogin,
    /// `prompt=select_account`.
    SelectAccount,
    /// The session's authentication is older than `max_age`.
    MaxAge,
    /// The session's key does not meet the `acr` the request or client requires; another
    /// (attested) key might.
    Assurance,
}

/// What to do with an authorization request for the current session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Show the sign-in page and ask for a key touch; then call `next_step` again.
    SignIn(SignInReason),
    /// Issue an authorization code carrying this assurance.
    Issue(Assurance),
    /// Redirect this error to the client.
    Refuse(OidcError),
}

impl AuthorizationRequest {
    /// Decides the next step for `session` at `now` (pure).
    pub fn next_step(&self, session: Option<&Authentication>, now: OffsetDateTime) -> Step {
        let ask = |reason: SignInReason| {
            if self.prompt.none {
                Step::Refuse(OidcError::LoginRequired(
                    "a key touch is needed and prompt=none was requested".into(),
                ))
            } else {
                Step::SignIn(reason)
            }
        };
        let Some(session) = session else {
            return ask(SignInReason::NoSession);
        };
        let auth_time = session.auth_time.unix_timestamp();
        let fresh = auth_time >= self.received_at;
        if !fresh {
            if self.prompt.login {
                return ask(SignInReason::PromptLogin);
            }
            if self.prompt.select_account {
                return ask(SignInReason::SelectAccount);
            }
            if let Some(max_age) = self.max_age {
                let age = now.unix_timestamp().saturating_sub(auth_time);
                if age < 0 || age.unsigned_abs() > max_age {
                    return ask(SignInReason::MaxAge);
                }
            }
        }

        let facts = &session.facts;
        let requested = assurance::satisfy(&self.acr.values, facts);
        let required = assurance::satisfy(&self.required_acr, facts);
        let unmet = (self.acr.essential && !self.acr.values.is_empty() && requested.is_none())
            || (!self.required_acr.is_empty() && required.is_none());
        if unmet {
            return if fresh {
                Step::Refuse(OidcError::UnmetAuthenticationRequirements(
                    "the key used cannot meet the authentication level required".into(),
                ))
            } else {
                ask(SignInReason::Assurance)
            };
        }
        let acr = requested
            .or(required)
            .unwrap_or_else(|| assurance::strongest(facts).to_owned());
        let amr = assurance::methods(&acr, facts);
        Step::Issue(Assurance { acr, amr })
    }

    /// The `Location` for an error found after validation (e.g. `login_required`).
    pub fn error_location(&self, error: &OidcError, issuer: &str) -> Url {
        error_location(&self.redirect_uri, error, self.state.as_deref(), issuer)
    }

    /// The `Location` carrying a new authorization code.
    pub fn code_location(&self, code: &str, issuer: &str) -> Url {
        code_location(&self.redirect_uri, code, self.state.as_deref(), issuer)
    }
}
