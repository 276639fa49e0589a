//! The member's own page: keys, compliance, revoking a key, signing out.

use actix_web::{get, post, web, HttpRequest, HttpResponse};

use crate::http::errors::{ApiError, PageError};
use crate::http::extract::{cleared_cookie, client_ip, MaybeSession, SignedIn};
use crate::http::extract::{see_other, CsrfForm};
use crate::http::views::{self, MePage, Nav};
use crate::service::{members, session, Actor};
use crate::state::AppState;
use crate::storage::SessionScope;

#[get("/me")]
pub async fn page(state: web::Data<AppState>, me: SignedIn) -> Result<HttpResponse, PageError> {
    let detail = members::detail(&state, me.user_id()).await?;
    let sessions = session::list(&state, me.user_id()).await?;
    Ok(views::ok(&MePage {
        nav: Nav::of(Some(&me.0)),
        csrf: me.0.data.csrf.clone(),
        detail,
        min_keys: state.policy().min_keys,
        sessions,
        current_session: me.0.data.id.clone(),
    }))
}

#[get("/api/me")]
pub async fn api(state: web::Data<AppState>, me: SignedIn) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(members::detail(&state, me.user_id()).await?))
}

#[post("/me/keys/{id}/revoke")]
pub async fn revoke_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    me.0.check_csrf(Some(&form.csrf))?;
    let actor = Actor::user(me.user_id(), client_ip(&req));
    session::step_up(&state, &me.0, &actor, "key.revoke").await?;
    members::revoke_key(&state, &actor, me.user_id(), false, &id).await?;
    Ok(see_other("/me"))
}

#[post("/signout")]
pub async fn sign_out(
    state: web::Data<AppState>,
    current: MaybeSession,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    if let Some(s) = current.0 {
        s.check_csrf(Some(&form.csrf))?;
        session::sign_out(&state, &s).await?;
    }
    let mut res = see_other("/");
    res.add_cookie(&cleared_cookie(&state))
        .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    Ok(res)
}

#[get("/api/me/sessions")]
pub async fn api_sessions(
    state: web::Data<AppState>,
    me: SignedIn,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(session::list(&state, me.user_id()).await?))
}

/// Ends one of the member's own sessions (`all` ends every one, this browser's too).
#[post("/me/sessions/{id}/end")]
pub async fn end_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    me.0.check_csrf(Some(&form.csrf))?;
    let actor = Actor::user(me.user_id(), client_ip(&req));
    let scope = if id.as_str() == "all" {
        SessionScope::All
    } else {
        SessionScope::One(id.as_str())
    };
    session::end(&state, &actor, me.user_id(), scope).await?;
    if id.as_str() == "all" || id.as_str() == me.0.data.id {
        let mut res = see_other("/");
        res.add_cookie(&cleared_cookie(&state))
            .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
        return Ok(res);
    }
    Ok(see_other("/me"))
}
