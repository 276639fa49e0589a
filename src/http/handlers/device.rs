//! The device authorization grant (RFC 8628): the client's endpoint
//! (`POST /oauth2/device_authorization`) and the member's pages: `/device` (enter the code,
//! see what is asked), the approval touch (`/api/device/approve/begin`, `…/finish`) and
//! the one-click denial (`POST /device/deny`).

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;

use crate::error::Error;
use crate::http::errors::{ApiError, Challenge, OAuthError, PageError};
use crate::http::extract::{client_ip, csrf_header, user_agent, MaybeSession, SignedIn};
use crate::http::views::{self, format_time, Nav};
use crate::oidc::OidcError;
use crate::service::oidc::device::{self, Pending};
use crate::service::Actor;
use crate::state::AppState;

fn actor(req: &HttpRequest, session: Option<&crate::service::session::Session>) -> Actor {
    Actor {
        id: session
            .and_then(|s| s.user_id())
            .map_or_else(|| "anonymous".to_string(), |u| format!("user:{u}")),
        ip: client_ip(req),
    }
}

#[post("/oauth2/device_authorization")]
pub async fn device_authorization(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let challenge = match req.headers().get(header::AUTHORIZATION) {
        Some(_) => Challenge::Basic,
        None => Challenge::None,
    };
    if !form {
        return Err(OAuthError::new(
            OidcError::InvalidRequest("the body must be application/x-www-form-urlencoded".into()),
            Challenge::None,
        ));
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let reply = device::authorize_device(
        &state,
        &body,
        authorization,
        client_ip(&req),
        user_agent(&req),
    )
    .await
    .map_err(|e| OAuthError::new(e, challenge))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "no-store"))
        .body(reply))
}

#[derive(Template)]
#[template(path = "device.html")]
pub struct DevicePage {
    pub nav: Nav,
    pub csrf: String,
    /// The request to decide on, once a code named one.
    pub pending: Option<Pending>,
    pub requested_at: String,
    pub expires_at: String,
    /// What was typed, to show again with an error.
    pub typed: String,
    pub error: Option<String>,
    /// After a decision.
    pub done: Option<&'static str>,
}

impl DevicePage {
    fn new(session: &crate::service::session::Session) -> DevicePage {
        DevicePage {
            nav: Nav::of(Some(session)),
            csrf: session.data.csrf.clone(),
            pending: None,
            requested_at: String::new(),
            expires_at: String::new(),
            typed: String::new(),
            error: None,
            done: None,
        }
    }
}

#[derive(serde::Deserialize)]
pub struct DeviceQuery {
    #[serde(default)]
    user_code: Option<String>,
}

/// `/device[?user_code=…]`: sign in first (the code waits), then the code's request.
#[get("/device")]
pub async fn device_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: MaybeSession,
    query: web::Query<DeviceQuery>,
) -> Result<HttpResponse, PageError> {
    let typed = query.user_code.clone().unwrap_or_default();
    let Some(session) = session.0.filter(|s| s.user_id().is_some()) else {
        let id = device::park(&state, &typed).await?;
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("/?continue={id}&via=device")))
            .finish());
    };
    let mut page = DevicePage::new(&session);
    if typed.trim().is_empty() {
        return Ok(views::ok(&page));
    }
    page.typed = typed.clone();
    match device::pending(&state, &actor(&req, Some(&session)), &typed).await {
        Ok(pending) => {
            page.requested_at = format_time(pending.requested_at);
            page.expires_at = format_time(pending.expires_at);
            page.pending = Some(pending);
            Ok(views::ok(&page))
        }
        Err(e @ Error::BadRequest { .. }) => {
            page.error = Some(e.to_string());
            Ok(views::render(
                actix_web::http::StatusCode::BAD_REQUEST,
                &page,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
pub struct ContinueQuery {
    #[serde(default)]
    id: String,
}

/// Where the sign-in page sends the browser after the touch: back to the parked code.
#[get("/device/continue")]
pub async fn device_continue(
    state: web::Data<AppState>,
    query: web::Query<ContinueQuery>,
) -> Result<HttpResponse, PageError> {
    let code = device::unpark(&state, &query.id).await?.unwrap_or_default();
    let location = if code.is_empty() {
        "/device".to_string()
    } else {
        format!("/device?user_code={code}")
    };
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish())
}

#[derive(serde::Deserialize)]
pub struct DenyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_code: String,
}

/// One click, CSRF-checked, final for the code.
#[post("/device/deny")]
pub async fn deny(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: SignedIn,
    form: web::Form<DenyForm>,
) -> Result<HttpResponse, PageError> {
    let session = session.0;
    session.check_csrf(Some(&form.csrf))?;
    device::deny(
        &state,
        &session,
        &actor(&req, Some(&session)),
        &form.user_code,
    )
    .await?;
    let mut page = DevicePage::new(&session);
    page.done = Some("denied");
    Ok(views::ok(&page))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeginBody {
    user_code: String,
}

#[post("/api/device/approve/begin")]
pub async fn approve_begin(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: SignedIn,
    body: web::Json<BeginBody>,
) -> Result<HttpResponse, ApiError> {
    let session = session.0;
    session.check_csrf(csrf_header(&req))?;
    let options = device::begin(
        &state,
        &session,
        &actor(&req, Some(&session)),
        &body.user_code,
    )
    .await?;
    Ok(HttpResponse::Ok().json(options))
}

#[post("/api/device/approve/finish")]
pub async fn approve_finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: SignedIn,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = session.0;
    session.check_csrf(csrf_header(&req))?;
    let done = device::finish(&state, &session, &actor(&req, Some(&session)), &body).await?;
    Ok(HttpResponse::Ok().json(done))
}
