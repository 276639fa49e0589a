//! Typed extractors: the browser session, the signed-in member, the admin, the client.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

use crate::error::Error;
use crate::http::errors::{ApiError, PageError};
use crate::service::ceremony::Ceremony;
use crate::service::session::{self, Session};
use crate::service::tokens;
use crate::state::AppState;

fn app_state(req: &HttpRequest) -> Result<AppState, Error> {
    req.app_data::<web::Data<AppState>>()
        .map(|d| d.get_ref().clone())
        .ok_or_else(|| Error::Internal("AppState missing".into()))
}

/// The client's address: the TCP peer, or what a trusted proxy forwarded
/// (`server.trusted_proxies`).
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    // Every line of the header, in order: a proxy may add a line of its own rather than
    // append to the client's. A line that is not text reads as no address.
    let lines: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| v.to_str().unwrap_or("?"))
        .collect();
    let forwarded = (!lines.is_empty()).then(|| lines.join(","));
    Some(match app_state(req) {
        Ok(state) => state.client_addr(peer, forwarded.as_deref()).to_string(),
        Err(_) => peer.to_string(),
    })
}

fn is_api(req: &HttpRequest) -> bool {
    req.path().starts_with("/api/")
}

/// An extractor failure, answered as JSON on the API and as a page elsewhere.
pub fn reject(api: bool, err: Error) -> actix_web::Error {
    if api {
        ApiError(err).into()
    } else {
        PageError(err).into()
    }
}

/// The browser session, if the cookie names a live one.
pub struct MaybeSession(pub Option<Session>);

/// The session cookie's value, unchecked (`session::load` finds what it names).
pub fn session_token(state: &AppState, req: &HttpRequest) -> Option<String> {
    req.cookie(&state.config.session_cookie_name())
        .map(|c| c.value().to_string())
}

impl FromRequest for MaybeSession {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = app_state(req);
        let token = state.as_ref().ok().and_then(|s| session_token(s, req));
        let api = is_api(req);
        Box::pin(async move {
            let state = state.map_err(|e| reject(api, e))?;
            match token {
                Some(t) => Ok(MaybeSession(
                    session::load(&state, &t)
                        .await
                        .map_err(|e| reject(api, e))?,
                )),
                None => Ok(MaybeSession(None)),
            }
        })
    }
}

/// A signed-in member's session; 401 otherwise.
pub struct SignedIn(pub Session);

impl SignedIn {
    pub fn user_id(&self) -> &str {
        self.0.user_id().unwrap_or_default()
    }
}

impl FromRequest for SignedIn {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = MaybeSession::from_request(req, payload);
        let api = is_api(req);
        Box::pin(async move {
            match fut.await?.0 {
                Some(s) if s.user_id().is_some() => Ok(SignedIn(s)),
                _ => Err(reject(api, Error::Unauthenticated)),
            }
        })
    }
}

/// An admin's session; 401 when not signed in, 403 when not an admin.
pub struct AdminSession(pub Session);

impl AdminSession {
    pub fn user_id(&self) -> &str {
        self.0.user_id().unwrap_or_default()
    }

    /// This admin, as the audit chain records them.
    pub fn actor(&self, req: &HttpRequest) -> crate::service::Actor {
        crate::service::Actor::user(self.user_id(), client_ip(req))
    }
}

/// A form whose only field is the CSRF token (buttons that revoke, end or approve).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

/// The redirect after a form post (303, so the browser follows with a GET).
pub fn see_other(to: impl Into<String>) -> actix_web::HttpResponse {
    actix_web::HttpResponse::SeeOther()
        .insert_header(("Location", to.into()))
        .finish()
}

impl FromRequest for AdminSession {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = SignedIn::from_request(req, payload);
        let api = is_api(req);
        let state = app_state(req);
        let ip = client_ip(req);
        // The path, not the query: a query may carry what does not belong in the audit log.
        let what = format!("{} {}", req.method(), req.path());
        Box::pin(async move {
            let s = fut.await?.0;
            if s.is_admin() {
                return Ok(AdminSession(s));
            }
            let actor = crate::service::Actor::user(s.user_id().unwrap_or_default(), ip);
            let audited = match state {
                Ok(state) => crate::service::forbidden(&state, &actor, &what).await,
                Err(e) => Err(e),
            };
            Err(reject(
                api,
                audited
                    .err()
                    .unwrap_or(Error::Forbidden("this page is for admins")),
            ))
        })
    }
}

/// What the browser says it is, for the member's session list (truncated when stored).
/// The request's query string as decoded pairs; one that does not decode to UTF-8 is
/// `malformed_query`, as the typed query extractor answers.
pub fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, Error> {
    crate::form::pairs(req.query_string())
        .map_err(|e| Error::bad_request("malformed_query", format!("the query string: {e}")))
}

pub fn user_agent(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The CSRF token a script sends in the `X-CSRF-Token` header.
pub fn csrf_header(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
}

/// The session cookie for `session`, with the attributes SPEC §7 asks for.
pub fn session_cookie(state: &AppState, session: &Session) -> Cookie<'static> {
    let ttl = (session.data.expires_at - state.now()).max(0);
    Cookie::build(state.config.session_cookie_name(), session.token.clone())
        .path("/")
        .http_only(true)
        .secure(state.config.cookies_secure())
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(ttl))
        .finish()
}

/// A cookie that removes the session cookie.
pub fn cleared_cookie(state: &AppState) -> Cookie<'static> {
    let mut c = Cookie::build(state.config.session_cookie_name(), "")
        .path("/")
        .http_only(true)
        .secure(state.config.cookies_secure())
        .same_site(SameSite::Lax)
        .finish();
    c.make_removal();
    c
}

fn csrf_cookie_name(state: &AppState) -> String {
    format!("{}_csrf", state.config.session_cookie_name())
}

/// The CSRF token a page that starts a ceremony carries: the session's, or, for a visitor
/// without one, a double-submit token in a `SameSite=Strict` cookie. Visitors cost no
/// server state until they actually begin a ceremony.
pub fn page_csrf(
    state: &AppState,
    req: &HttpRequest,
    session: Option<&Session>,
) -> (String, Option<Cookie<'static>>) {
    if let Some(s) = session {
        return (s.data.csrf.clone(), None);
    }
    if let Some(c) = req.cookie(&csrf_cookie_name(state)) {
        if (32..=64).contains(&c.value().len()) {
            return (c.value().to_string(), None);
        }
    }
    let token = tokens::secret_token();
    let cookie = Cookie::build(csrf_cookie_name(state), token.clone())
        .path("/")
        .http_only(true)
        .secure(state.config.cookies_secure())
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(
            state.config.session.anonymous_ttl_secs as i64,
        ))
        .finish();
    (token, Some(cookie))
}

/// The session a ceremony's first step runs in: the browser's own (its CSRF token
/// checked), or a new anonymous one when the double-submit token matches (stored, and
/// rate-limited per client, with the ceremony's challenge; its cookie must be set).
pub fn ceremony_session(
    state: &AppState,
    req: &HttpRequest,
    current: Option<Session>,
) -> Result<Ceremony, Error> {
    if let Some(s) = current {
        s.check_csrf(csrf_header(req))?;
        return Ok(Ceremony::within(s));
    }
    let cookie = req
        .cookie(&csrf_cookie_name(state))
        .ok_or(Error::Csrf { user: None })?;
    let header = csrf_header(req).ok_or(Error::Csrf { user: None })?;
    if cookie.value().len() < 32 || !tokens::same_secret(cookie.value(), header) {
        return Err(Error::Csrf { user: None });
    }
    let ip = client_ip(req).unwrap_or_default();
    Ok(Ceremony::in_new_session(state, header, &ip))
}

/// After a ceremony proved `user_id`'s key: rotates the browser into a signed-in session
/// (recorded with the key, address and browser) and returns its cookie.
pub async fn signed_in_cookie(
    state: &AppState,
    req: &HttpRequest,
    old: &Session,
    user_id: &str,
    role: &str,
    key_id: &str,
    user_verified: bool,
) -> Result<Cookie<'static>, Error> {
    let context = session::SignInContext {
        key_id: Some(key_id.to_string()),
        user_verified,
        ip: client_ip(req),
        user_agent: user_agent(req),
    };
    let fresh = session::sign_in(state, Some(old), user_id, role, context).await?;
    Ok(session_cookie(state, &fresh))
}
