//! Enrolment: the invitation page and the two JSON steps of the ceremony.

use actix_web::{get, post, web, HttpRequest, HttpResponse};

use crate::http::errors::{ApiError, PageError};
use crate::http::extract::{
    ceremony_session, client_ip, csrf_header, page_csrf, session_cookie, signed_in_cookie,
    MaybeSession, SignedIn,
};
use crate::http::views::{self, EnrolPage, Nav};
use crate::service::{enrolment, invitations, limits, session, Actor};
use crate::state::AppState;

/// Who is acting: the signed-in member, or an anonymous visitor, with their address.
fn visitor(req: &HttpRequest, session: Option<&session::Session>) -> Actor {
    match session.and_then(|s| s.user_id()) {
        Some(uid) => Actor::user(uid, client_ip(req)),
        None => Actor {
            id: "anonymous".into(),
            ip: client_ip(req),
        },
    }
}

/// The page an invitation (or bootstrap) link opens.
#[get("/enrol/{token}")]
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    current: MaybeSession,
) -> Result<HttpResponse, PageError> {
    let actor = visitor(&req, current.0.as_ref());
    limits::check(
        &state,
        "enrol-page",
        actor.ip.as_deref().unwrap_or_default(),
    )
    .await?;
    let inv = invitations::find_usable(&state, &actor, &token).await?;
    let (csrf, cookie) = page_csrf(&state, &req, current.0.as_ref());
    let view = EnrolPage {
        nav: Nav::of(current.0.as_ref()),
        csrf,
        organisation: state.config.organisation.name.clone(),
        token: token.into_inner(),
        bootstrap: inv.kind == crate::storage::InvitationKind::Bootstrap,
        recovery: inv.kind == crate::storage::InvitationKind::Recovery,
        email: inv.email,
        display_name: inv.display_name,
        role: inv.role.as_str().into(),
        min_keys: state.policy().min_keys,
    };
    let mut res = views::ok(&view);
    if let Some(cookie) = cookie {
        res.add_cookie(&cookie)
            .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    }
    Ok(res)
}

/// A signed-in member adds another key.
#[get("/me/keys/new")]
pub async fn add_key_page(
    state: web::Data<AppState>,
    me: SignedIn,
) -> Result<HttpResponse, PageError> {
    session::require_recent_touch(&state, &me.0)?;
    let detail = crate::service::members::detail(&state, me.user_id()).await?;
    let view = EnrolPage {
        nav: Nav::of(Some(&me.0)),
        csrf: me.0.data.csrf.clone(),
        organisation: state.config.organisation.name.clone(),
        token: String::new(),
        bootstrap: false,
        recovery: false,
        email: detail.member.email,
        display_name: detail.member.display_name,
        role: detail.member.role,
        min_keys: state.policy().min_keys,
    };
    Ok(views::ok(&view))
}

#[post("/api/enrol/begin")]
pub async fn begin(
    state: web::Data<AppState>,
    req: HttpRequest,
    current: MaybeSession,
    body: web::Json<enrolment::BeginRequest>,
) -> Result<HttpResponse, ApiError> {
    let ceremony = ceremony_session(&state, &req, current.0)?;
    let actor = visitor(&req, Some(&ceremony.session));
    let options = enrolment::begin(&state, &ceremony, &actor, body.into_inner()).await?;
    let mut res = HttpResponse::Ok().json(options);
    if ceremony.is_new() {
        res.add_cookie(&session_cookie(&state, &ceremony.session))
            .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    }
    Ok(res)
}

#[post("/api/enrol/finish")]
pub async fn finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    current: MaybeSession,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = current.0.ok_or(crate::error::Error::Csrf { user: None })?;
    session.check_csrf(csrf_header(&req))?;
    let ip = client_ip(&req);
    let enrolled = enrolment::finish(&state, &session, ip, &body).await?;
    let mut res = HttpResponse::Ok().json(&enrolled);
    // A new member, or one recovered through a recovery link, is signed in by this touch.
    if enrolled.new_member || enrolled.recovered {
        let cookie = signed_in_cookie(
            &state,
            &req,
            &session,
            &enrolled.user_id,
            &enrolled.role,
            &enrolled.key_id,
            enrolled.user_verified,
        )
        .await?;
        res.add_cookie(&cookie)
            .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    }
    Ok(res)
}
