//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
//!
//! `id_token_hint` is optional; when it is one of our ID tokens for the member signed in
//! here, the session ends at once. Without it keygate asks the member to confirm, so a
//! link on another site cannot sign anyone out. `post_logout_redirect_uri` must be one
//! the client registered, exactly; `state` is passed back.

use url::Url;

use super::{audit, clients, Failure};
use crate::audit::{NewAuditEvent, Outcome};
use crate::oidc::jwt::{self, Audience, Validation};
use crate::oidc::OidcError;
use crate::service::session::{self, Session};
use crate::state::AppState;

/// The logout request's parameters (query or confirmation form).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogoutParams {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

impl LogoutParams {
    /// From decoded pairs; a repeated parameter is `invalid_request`, unknown ones are
    /// ignored.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, OidcError> {
        let mut p = LogoutParams::default();
        for (k, v) in pairs {
            let slot = match k {
                "id_token_hint" => &mut p.id_token_hint,
                "client_id" => &mut p.client_id,
                "post_logout_redirect_uri" => &mut p.post_logout_redirect_uri,
                "state" => &mut p.state,
                _ => continue,
            };
            if slot.is_some() {
                return Err(OidcError::InvalidRequest(format!(
                    "{k} is given more than once"
                )));
            }
            if v.len() > jwt::MAX_TOKEN_LEN {
                return Err(OidcError::InvalidRequest(format!("{k} is too long")));
            }
            if !v.is_empty() {
                *slot = Some(v.to_string());
            }
        }
        Ok(p)
    }
}

/// What to do after a logout request.
#[derive(Debug, PartialEq, Eq)]
pub enum LogoutNext {
    /// Done (the session ended, or there was none): go here, or show the signed-out page.
    Done { redirect: Option<String> },
    /// Ask the member to confirm.
    Confirm,
}

/// Handles a logout request; `confirmed` when the member pressed the confirmation button
/// (the caller checked its CSRF token).
pub async fn logout(
    state: &AppState,
    current: Option<&Session>,
    params: &LogoutParams,
    confirmed: bool,
    ip: Option<String>,
) -> Result<LogoutNext, Failure> {
    let issuer = state.oidc.issuer();
    let hint = match &params.id_token_hint {
        None => None,
        Some(token) => {
            let keys = state.oidc.keys.get(state).await;
            // An expired hint still says who it was for: accept it for a session's length.
            let mut v =
                Validation::new(issuer, Audience::Any, state.clock.now()).with_typ(jwt::TYP_JWT);
            v.leeway = time::Duration::seconds(state.config.session.absolute_ttl_secs as i64);
            let verified = jwt::verify(token, &keys.set, &v).map_err(|_| {
                OidcError::InvalidRequest("id_token_hint is not an ID token keygate issued".into())
            })?;
            let aud = match verified.claims.get("aud") {
                Some(serde_json::Value::String(a)) => Some(a.clone()),
                Some(serde_json::Value::Array(a)) => {
                    a.first().and_then(|x| x.as_str()).map(str::to_string)
                }
                _ => None,
            };
            Some((aud, verified.subject().map(str::to_string)))
        }
    };
    let hinted_client = hint.as_ref().and_then(|(aud, _)| aud.clone());
    if let (Some(given), Some(hinted)) = (&params.client_id, &hinted_client) {
        if given != hinted {
            return Err(OidcError::InvalidRequest(
                "client_id does not match the id_token_hint".into(),
            )
            .into());
        }
    }
    let client_id = params.client_id.clone().or(hinted_client);
    let redirect = match &params.post_logout_redirect_uri {
        None => None,
        Some(uri) => {
            let unregistered = || {
                OidcError::InvalidRequest(
                    "post_logout_redirect_uri is not registered for this client".into(),
                )
            };
            let Some(id) = &client_id else {
                return Err(OidcError::InvalidRequest(
                    "post_logout_redirect_uri needs client_id or id_token_hint".into(),
                )
                .into());
            };
            let client = clients::find_enabled(state, id)
                .await?
                .ok_or_else(unregistered)?;
            if !client.post_logout_redirect_uris.iter().any(|r| r == uri) {
                return Err(unregistered().into());
            }
            let mut url = Url::parse(uri).map_err(|_| unregistered())?;
            if let Some(s) = &params.state {
                url.query_pairs_mut().append_pair("state", s);
            }
            Some(url.to_string())
        }
    };
    let Some(session) = current.filter(|s| s.user_id().is_some()) else {
        return Ok(LogoutNext::Done { redirect });
    };
    let user_id = session.user_id().unwrap_or_default().to_string();
    let hint_matches = hint
        .as_ref()
        .and_then(|(_, sub)| sub.as_deref())
        .is_some_and(|sub| sub == user_id);
    if !hint_matches && !confirmed {
        return Ok(LogoutNext::Confirm);
    }
    session::sign_out(state, session).await?;
    audit(
        state,
        NewAuditEvent {
            actor: format!("user:{user_id}"),
            action: "oidc.logout".into(),
            subject: format!("user:{user_id}"),
            outcome: Outcome::Success,
            reason: None,
            details: serde_json::json!({
                "client_id": client_id,
                "confirmed": confirmed,
                "ip": ip,
            }),
        },
    )
    .await?;
    Ok(LogoutNext::Done { redirect })
}
