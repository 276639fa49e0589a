//! The OpenID Connect provider's endpoints: discovery, JWKS, authorization (and its
//! return after the key touch), token, userinfo, introspection, revocation and logout.
//! Each reads the request, calls one service and answers; OAuth errors are answered by
//! [`OAuthError`], authorization errors that must not be redirected by the error page.

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};

use crate::error::Error;
use crate::http::errors::{Challenge, OAuthError, PageError};
use crate::http::extract::{cleared_cookie, client_ip, MaybeSession};
use crate::http::views::{self, Nav, OidcLogoutPage};
use crate::oidc::OidcError;
use crate::service::limits;
use crate::service::oidc::authorize::{self, Next};
use crate::service::oidc::logout::{self, LogoutNext, LogoutParams};
use crate::service::oidc::{resource, token, Failure};
use crate::state::AppState;

fn public_json(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .body(body)
}

fn no_store_json(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .body(body)
}

#[get("/.well-known/openid-configuration")]
pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    public_json(state.oidc.discovery.clone())
}

#[get("/oauth2/jwks")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    public_json(state.oidc.keys.get(&state).await.jwks.clone())
}

/// Redirects from the sign-in flows answer 303 See Other, as SAML's do: the next request
/// is a GET whatever method brought the browser here (`POST /oauth2/authorize` too).
fn answer(next: Next) -> Result<HttpResponse, PageError> {
    match next {
        Next::Redirect(location) => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .finish()),
        Next::Show(e) => Err(PageError(Error::bad_request(
            e.code(),
            e.description().to_string(),
        ))),
    }
}

#[get("/oauth2/authorize")]
pub async fn authorize_get(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: MaybeSession,
) -> Result<HttpResponse, PageError> {
    let next = authorize::authorize(
        &state,
        session.0.as_ref(),
        req.query_string(),
        client_ip(&req),
    )
    .await?;
    answer(next)
}

/// OpenID Connect Core §3.1.2.1: the request may also come as a form post.
#[post("/oauth2/authorize")]
pub async fn authorize_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: MaybeSession,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let Ok(query) = std::str::from_utf8(&body) else {
        return answer(Next::Show(OidcError::InvalidRequest(
            "the request body is not UTF-8 form data".into(),
        )));
    };
    let next = authorize::authorize(&state, session.0.as_ref(), query, client_ip(&req)).await?;
    answer(next)
}

#[derive(serde::Deserialize)]
pub struct ContinueQuery {
    #[serde(default)]
    id: String,
}

/// Where the sign-in page sends the browser after the key touch.
#[get("/oauth2/authorize/continue")]
pub async fn authorize_continue(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: MaybeSession,
    query: web::Query<ContinueQuery>,
) -> Result<HttpResponse, PageError> {
    let next = authorize::resume(&state, session.0.as_ref(), &query.id, client_ip(&req)).await?;
    answer(next)
}

fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

fn basic(req: &HttpRequest) -> Challenge {
    match authorization(req) {
        Some(h) if h.len() >= 6 && h[..6].eq_ignore_ascii_case("basic ") => Challenge::Basic,
        _ => Challenge::None,
    }
}

/// Token-style endpoints take `application/x-www-form-urlencoded` only.
fn form_only(req: &HttpRequest) -> Result<(), OAuthError> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if form {
        Ok(())
    } else {
        Err(OAuthError::new(
            OidcError::InvalidRequest("the body must be application/x-www-form-urlencoded".into()),
            Challenge::None,
        ))
    }
}

/// [`form_only`], then one count against the per-address limit in the shared store (the
/// token endpoint counts its own: `token::token`).
async fn form_request(state: &AppState, req: &HttpRequest, action: &str) -> Result<(), OAuthError> {
    form_only(req)?;
    limits::check_at(
        state,
        action,
        &client_ip(req).unwrap_or_default(),
        state.oidc.token_requests_per_minute,
    )
    .await
    .map_err(|e| OAuthError::new(e, Challenge::None))
}

#[post("/oauth2/token")]
pub async fn token_endpoint(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    form_only(&req)?;
    let reply = token::token(&state, &body, authorization(&req), client_ip(&req))
        .await
        .map_err(|e| OAuthError::new(e, basic(&req)))?;
    Ok(no_store_json(reply))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let h = authorization(req)?;
    (h.len() > 7 && h[..7].eq_ignore_ascii_case("bearer ")).then(|| h[7..].trim())
}

async fn userinfo(state: &AppState, req: &HttpRequest) -> Result<HttpResponse, OAuthError> {
    let claims = resource::userinfo(state, bearer(req))
        .await
        .map_err(|e| OAuthError::new(e, Challenge::Bearer))?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .json(claims))
}

#[get("/oauth2/userinfo")]
pub async fn userinfo_get(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    userinfo(&state, &req).await
}

#[post("/oauth2/userinfo")]
pub async fn userinfo_post(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    userinfo(&state, &req).await
}

#[post("/oauth2/introspect")]
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    form_request(&state, &req, "oidc-introspect").await?;
    let reply = resource::introspect(&state, &body, authorization(&req))
        .await
        .map_err(|e| OAuthError::new(e, basic(&req)))?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(reply))
}

#[post("/oauth2/revoke")]
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    form_request(&state, &req, "oidc-revoke").await?;
    resource::revoke(&state, &body, authorization(&req), client_ip(&req))
        .await
        .map_err(|e| OAuthError::new(e, basic(&req)))?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}

fn logout_error(f: Failure) -> PageError {
    match f {
        Failure::OAuth(e) => PageError(Error::bad_request(e.code(), e.description().to_string())),
        Failure::Service(e) => PageError(e),
    }
}

/// A logout request's query or form; one that does not decode is refused, since its
/// `state` could not go back as sent.
fn logout_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, PageError> {
    crate::form::pairs_of_body(raw).map_err(|_| {
        logout_error(
            OidcError::InvalidRequest("the logout request is not UTF-8 once decoded".into()).into(),
        )
    })
}

async fn logout_answer(
    state: &AppState,
    session: MaybeSession,
    params: LogoutParams,
    confirmed: bool,
    req: &HttpRequest,
) -> Result<HttpResponse, PageError> {
    let next = logout::logout(
        state,
        session.0.as_ref(),
        &params,
        confirmed,
        client_ip(req),
    )
    .await
    .map_err(logout_error)?;
    let page = |confirm: bool| OidcLogoutPage {
        nav: Nav::of(session.0.as_ref().filter(|_| confirm)),
        csrf: session
            .0
            .as_ref()
            .map(|s| s.data.csrf.clone())
            .unwrap_or_default(),
        confirm,
        id_token_hint: params.id_token_hint.clone().unwrap_or_default(),
        client_id: params.client_id.clone().unwrap_or_default(),
        post_logout_redirect_uri: params.post_logout_redirect_uri.clone().unwrap_or_default(),
        state: params.state.clone().unwrap_or_default(),
    };
    let mut res = match next {
        LogoutNext::Confirm => return Ok(views::ok(&page(true))),
        LogoutNext::Done {
            redirect: Some(location),
        } => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .finish(),
        LogoutNext::Done { redirect: None } => views::ok(&page(false)),
    };
    res.add_cookie(&cleared_cookie(state))
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(res)
}

#[get("/oauth2/logout")]
pub async fn logout_get(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: MaybeSession,
) -> Result<HttpResponse, PageError> {
    let pairs = logout_pairs(req.query_string().as_bytes())?;
    let params = LogoutParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| logout_error(e.into()))?;
    logout_answer(&state, session, params, false, &req).await
}

/// The confirmation form (CSRF-checked), or a relying party posting the request.
#[post("/oauth2/logout")]
pub async fn logout_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: MaybeSession,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let pairs = logout_pairs(&body)?;
    let params = LogoutParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| logout_error(e.into()))?;
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    let confirmed = match (&session.0, csrf) {
        (Some(s), Some(_)) => {
            s.check_csrf(csrf)?;
            true
        }
        _ => false,
    };
    logout_answer(&state, session, params, confirmed, &req).await
}
