//! Key sign-in: the start page's form and the two JSON steps of the ceremony.

use actix_web::{get, post, web, HttpRequest, HttpResponse};

use crate::error::Error;
use crate::http::errors::{ApiError, PageError};
use crate::http::extract::{
    ceremony_session, client_ip, csrf_header, page_csrf, session_cookie, session_token, user_agent,
    MaybeSession,
};
use crate::http::views::{self, IndexPage, Nav};
use crate::service::signin;
use crate::state::AppState;

#[derive(serde::Deserialize)]
pub struct IndexQuery {
    #[serde(default)]
    reauth: Option<String>,
    /// A pending OpenID Connect request (`/?continue=<id>`) to return to after the touch.
    #[serde(default, rename = "continue")]
    resume: Option<String>,
    #[serde(default)]
    why: Option<String>,
    /// `saml` when the pending request is a SAML one, `device` for a device's user code.
    #[serde(default)]
    via: Option<String>,
}

/// The start page: signed-in members go to their keys; others get the sign-in form.
#[get("/")]
pub async fn index(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<IndexQuery>,
    current: MaybeSession,
) -> Result<HttpResponse, PageError> {
    // `?reauth=1`: a signed-in member confirms with a fresh touch before a sensitive action.
    let resume = query
        .resume
        .clone()
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|id| match query.via.as_deref() {
            Some("saml") => format!("/saml/continue?id={id}"),
            Some("device") => format!("/device/continue?id={id}"),
            _ => format!("/oauth2/authorize/continue?id={id}"),
        });
    let notice = resume.as_ref().map(|_| match query.why.as_deref() {
        Some("prompt_login" | "max_age" | "select_account") => {
            "The application asks for a fresh touch of your key."
        }
        Some("assurance") => {
            "The application needs a stronger sign-in: use an attested key with its PIN or fingerprint."
        }
        _ => "Sign in to continue to the application.",
    });
    if current.0.as_ref().and_then(|s| s.user_id()).is_some()
        && query.reauth.is_none()
        && resume.is_none()
    {
        return Ok(HttpResponse::SeeOther()
            .insert_header(("Location", "/me"))
            .finish());
    }
    let (csrf, cookie) = page_csrf(&state, &req, current.0.as_ref());
    let mut res = views::ok(&IndexPage {
        nav: Nav::of(current.0.as_ref()),
        csrf,
        organisation: state.config.organisation.name.clone(),
        resume,
        notice,
    });
    if let Some(cookie) = cookie {
        res.add_cookie(&cookie)
            .map_err(|e| Error::Internal(e.to_string()))?;
    }
    Ok(res)
}

#[post("/api/signin/begin")]
pub async fn begin(
    state: web::Data<AppState>,
    req: HttpRequest,
    current: MaybeSession,
    body: web::Json<signin::BeginRequest>,
) -> Result<HttpResponse, ApiError> {
    let ceremony = ceremony_session(&state, &req, current.0)?;
    let ip = client_ip(&req).unwrap_or_default();
    let options = signin::begin(&state, &ceremony, &ip, body.into_inner()).await?;
    let mut res = HttpResponse::Ok().json(options);
    if ceremony.is_new() {
        res.add_cookie(&session_cookie(&state, &ceremony.session))
            .map_err(|e| Error::Internal(e.to_string()))?;
    }
    Ok(res)
}

#[post("/api/signin/finish")]
pub async fn finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let browser = signin::Browser {
        session_token: session_token(&state, &req).ok_or(Error::Csrf { user: None })?,
        csrf: csrf_header(&req).map(str::to_owned),
        ip: client_ip(&req),
        user_agent: user_agent(&req),
    };
    let (signed_in, fresh) = signin::finish(&state, browser, &body).await?;
    let mut res = HttpResponse::Ok().json(&signed_in);
    res.add_cookie(&session_cookie(&state, &fresh))
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(res)
}
