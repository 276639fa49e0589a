//! The authorization endpoint: validate the request, ask for a (fresh) key touch when the
//! protocol core says so, force the client's workspace, and issue a code.
//!
//! A request that needs a key touch waits in the ephemeral store under a random id while
//! the browser goes to the sign-in page (`/?continue=<id>`); after the touch the page
//! sends the browser to `/oauth2/authorize/continue?id=<id>`, which takes the request
//! (single use) and decides again with the new session.

use serde::{Deserialize, Serialize};

use super::{audit, clients, code_key, request_key};
use crate::audit::{NewAuditEvent, Outcome};
use crate::error::Result;
use crate::oidc::assurance::{Assurance, SignInFacts, Verification};
use crate::oidc::authorize::{
    Authentication, AuthorizationRequest, AuthorizeError, SignInReason, Step,
    UntrustedAuthorizationRequest,
};
use crate::oidc::tokens::{CodeRecord, Grant, KeyEvidence, OpaqueToken, UserClaims};
use crate::oidc::OidcError;
use crate::service::limits;
use crate::service::session::Session;
use crate::service::tokens;
use crate::state::AppState;
use crate::storage::{OidcClient, UserStatus};

/// What the browser gets.
#[derive(Debug)]
pub enum Next {
    /// Send the browser here: the client's redirect URI (with a code or an error), or the
    /// sign-in page.
    Redirect(String),
    /// Show this error on a page; never redirect (unknown client, unregistered redirect
    /// URI, an expired pending request).
    Show(OidcError),
}

/// What the store keeps under a code's digest.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredCode {
    pub record: CodeRecord,
    /// The grant the exchange will create (known now, so a reuse can name it).
    pub grant_id: String,
    pub user_id: String,
    pub session_id: String,
    pub key_id: Option<String>,
}

/// `GET /oauth2/authorize?<query>`.
pub async fn authorize(
    state: &AppState,
    session: Option<&Session>,
    query: &str,
    ip: Option<String>,
) -> Result<Next> {
    limits::authorization(state, ip.as_deref()).await?;
    if query.len() > 16 * 1024 {
        return Ok(Next::Show(OidcError::InvalidRequest(
            "the authorization request is too long".into(),
        )));
    }
    let untrusted = UntrustedAuthorizationRequest::from_query(query);
    let client = match untrusted.client_id() {
        Ok(id) => clients::find_enabled(state, id).await?,
        Err(e) => return Ok(Next::Show(e)),
    };
    let view = client.as_ref().map(clients::view);
    let request = match untrusted.validate(view.as_ref(), state.clock.now()) {
        Ok(r) => r,
        Err(refusal) => {
            // A request naming a registered client is audited against it (an unregistered
            // redirect URI, a PKCE downgrade: someone may be trying that client); one
            // naming none is not, so anonymous callers cannot write to the audit chain at
            // will. The authorization limit, counted above, bounds both.
            if let Some(c) = &client {
                let event = request_refused(session, &c.client_id, refusal.error(), &ip);
                audit(state, event).await?;
            }
            return Ok(match refusal {
                AuthorizeError::Show(e) => Next::Show(e),
                AuthorizeError::Redirect(r) => {
                    Next::Redirect(r.location(state.oidc.issuer()).to_string())
                }
            });
        }
    };
    let Some(client) = client else {
        return Ok(Next::Show(OidcError::UnknownClient(
            "the client is not registered with keygate".into(),
        )));
    };
    decide(state, session, &client, request, ip).await
}

/// `GET /oauth2/authorize/continue?id=<id>`, after the key touch.
pub async fn resume(
    state: &AppState,
    session: Option<&Session>,
    id: &str,
    ip: Option<String>,
) -> Result<Next> {
    let Some(request) = tokens::take_parked::<AuthorizationRequest>(state, id, request_key).await?
    else {
        return Ok(Next::Show(OidcError::InvalidRequest(
            tokens::DETOUR_EXPIRED.into(),
        )));
    };
    let Some(client) = clients::find_enabled(state, &request.client_id).await? else {
        return Ok(Next::Show(OidcError::UnknownClient(
            "the client is no longer registered with keygate".into(),
        )));
    };
    decide(state, session, &client, request, ip).await
}

/// The signed-in member behind a session, with what their key touch proved.
struct Signed {
    user_id: String,
    session_id: String,
    key_id: Option<String>,
    auth: Authentication,
    key: Option<KeyEvidence>,
}

/// The session's authentication. Sessions that no key touch signed in (an enrolment)
/// count as none: OpenID Connect sign-ins always follow a touch.
async fn signed(state: &AppState, session: Option<&Session>) -> Result<Option<Signed>> {
    let Some(s) = session else { return Ok(None) };
    let (Some(user_id), Some(at), Some(key_id)) = (
        s.data.user_id.clone(),
        s.data.authenticated_at,
        s.data.key_id.clone(),
    ) else {
        return Ok(None);
    };
    let kid = key_id.clone();
    let Some(key) = state
        .storage
        .read(move |tx| tx.credential_by_id(&kid))
        .await?
    else {
        return Ok(None);
    };
    if key.revoked_at.is_some() || key.user_id != user_id {
        return Ok(None);
    }
    let Ok(auth_time) = time::OffsetDateTime::from_unix_timestamp(at) else {
        return Ok(None);
    };
    let facts = SignInFacts {
        attested: key.phishing_resistant,
        verification: Verification::derive(s.data.user_verified, key.model.as_deref()),
    };
    Ok(Some(Signed {
        user_id,
        session_id: s.data.id.clone(),
        key_id: Some(key_id),
        auth: Authentication { auth_time, facts },
        key: Some(KeyEvidence {
            aaguid: key.aaguid,
            model: key.model,
            fips: key.fips,
        }),
    }))
}

/// An authorization request refused before anyone was asked to sign in.
fn request_refused(
    session: Option<&Session>,
    client_id: &str,
    error: &OidcError,
    ip: &Option<String>,
) -> NewAuditEvent {
    let actor = session
        .and_then(|s| s.data.user_id.as_deref())
        .map_or_else(|| "anonymous".to_string(), |u| format!("user:{u}"));
    let subject = format!("oidc_client:{client_id}");
    refusal(actor, "oidc.request_refused", subject, client_id, error, ip)
}

fn refused_event(
    user_id: &str,
    client_id: &str,
    error: &OidcError,
    ip: &Option<String>,
) -> NewAuditEvent {
    let user = format!("user:{user_id}");
    refusal(user.clone(), "oidc.refused", user, client_id, error, ip)
}

/// A refused request's audit event, naming the client and why.
fn refusal(
    actor: String,
    action: &str,
    subject: String,
    client_id: &str,
    error: &OidcError,
    ip: &Option<String>,
) -> NewAuditEvent {
    NewAuditEvent {
        actor,
        action: action.into(),
        subject,
        outcome: Outcome::Refused,
        reason: Some(error.code().into()),
        details: serde_json::json!({
            "client_id": client_id,
            "message": error.description(),
            "ip": ip,
        }),
    }
}

async fn decide(
    state: &AppState,
    session: Option<&Session>,
    client: &OidcClient,
    request: AuthorizationRequest,
    ip: Option<String>,
) -> Result<Next> {
    let signed = signed(state, session).await?;
    let now = state.clock.now();
    let issuer = state.oidc.issuer().to_string();
    match request.next_step(signed.as_ref().map(|s| &s.auth), now) {
        Step::SignIn(reason) => {
            let id = tokens::new_id();
            let body = serde_json::to_vec(&request)
                .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
            state
                .ephemeral
                .set_ex(&request_key(&id), &body, state.oidc.request_ttl)
                .await?;
            let why = match reason {
                SignInReason::NoSession => "none",
                SignInReason::PromptLogin => "prompt_login",
                SignInReason::SelectAccount => "select_account",
                SignInReason::MaxAge => "max_age",
                SignInReason::Assurance => "assurance",
            };
            Ok(Next::Redirect(format!("/?continue={id}&why={why}")))
        }
        Step::Refuse(error) => {
            if let Some(s) = &signed {
                audit(
                    state,
                    refused_event(&s.user_id, &client.client_id, &error, &ip),
                )
                .await?;
            }
            Ok(Next::Redirect(
                request.error_location(&error, &issuer).to_string(),
            ))
        }
        Step::Issue(assurance) => {
            // `next_step` only issues for a session it saw.
            let Some(signed) = signed else {
                return Ok(Next::Show(OidcError::ServerError(
                    "no session to issue for".into(),
                )));
            };
            issue(state, client, request, signed, assurance, ip).await
        }
    }
}

/// Workspace forcing, then a code for the client.
async fn issue(
    state: &AppState,
    client: &OidcClient,
    request: AuthorizationRequest,
    signed: Signed,
    assurance: Assurance,
    ip: Option<String>,
) -> Result<Next> {
    let issuer = state.oidc.issuer().to_string();
    let (uid, workspace) = (signed.user_id.clone(), client.workspace_id.clone());
    let (user, membership) = state
        .storage
        .read(move |tx| {
            let user = tx.user_by_id(&uid)?;
            let membership = match workspace {
                Some(w) => Some((tx.workspace(&w)?, tx.is_workspace_member(&w, &uid)?)),
                None => None,
            };
            Ok((user, membership))
        })
        .await?;
    let user = user.filter(|u| u.status == UserStatus::Active);
    let refusal = match (&user, &membership) {
        (None, _) => Some(OidcError::AccessDenied("this account is disabled".into())),
        (Some(_), Some((w, member))) if w.is_none() || !member => Some(OidcError::AccessDenied(
            "you are not a member of the workspace this application is bound to".into(),
        )),
        _ => None,
    };
    let (Some(user), None) = (user, refusal.clone()) else {
        let error = refusal.unwrap_or_else(|| OidcError::AccessDenied("refused".into()));
        audit(
            state,
            refused_event(&signed.user_id, &client.client_id, &error, &ip),
        )
        .await?;
        return Ok(Next::Redirect(
            request.error_location(&error, &issuer).to_string(),
        ));
    };
    let workspace_id = membership.and_then(|(w, _)| w).map(|w| w.external_id);
    let grant = Grant {
        client_id: client.client_id.clone(),
        subject: user.id.clone(),
        scopes: request.scopes.clone(),
        nonce: request.nonce.clone(),
        auth_time: signed.auth.auth_time.unix_timestamp(),
        assurance: assurance.clone(),
        sid: Some(public_sid(state, &signed.session_id)),
        workspace_id,
        id_token_alg: clients::algorithm(client),
        user: UserClaims {
            name: Some(user.display_name.clone()).filter(|n| !n.trim().is_empty()),
            email: Some(user.email.clone()),
            email_verified: true,
        },
        key: signed.key,
    };
    let now = state.clock.now();
    let stored = StoredCode {
        record: CodeRecord::new(
            &clients::view(client),
            &request,
            grant,
            &state.oidc.settings,
            now,
        ),
        grant_id: tokens::ordered_id(),
        user_id: user.id.clone(),
        session_id: signed.session_id,
        key_id: signed.key_id,
    };
    let code = OpaqueToken::authorization_code().map_err(|e| {
        crate::error::Error::Internal(format!("cannot make a code: {}", e.description()))
    })?;
    let body = super::token::code_value(&stored)?;
    let ttl = state.oidc.settings.code_ttl.whole_seconds().max(1) as u64;
    state
        .ephemeral
        .set_ex(
            &code_key(&code.digest),
            &body,
            std::time::Duration::from_secs(ttl),
        )
        .await?;
    audit(
        state,
        NewAuditEvent {
            actor: format!("user:{}", user.id),
            action: "oidc.code_issued".into(),
            subject: format!("user:{}", user.id),
            outcome: Outcome::Success,
            reason: None,
            details: serde_json::json!({
                "client_id": client.client_id,
                "grant": stored.grant_id,
                "scope": request.scopes.to_string(),
                "acr": assurance.acr,
                "amr": assurance.amr,
                "ip": ip,
            }),
        },
    )
    .await?;
    Ok(Next::Redirect(
        request.code_location(&code.value, &issuer).to_string(),
    ))
}

/// The `sid` put in ID tokens: derived from the session id with the deployment's key, so
/// relying parties never see keygate's own identifier.
pub fn public_sid(state: &AppState, session_id: &str) -> String {
    hex::encode(&state.keyed_digest(format!("sid:{session_id}").as_bytes())[..16])
}
