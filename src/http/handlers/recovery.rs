//! Recovery of a member who lost every key: open a request (one admin), approve it (a
//! different admin), each with a fresh key touch. Pages and the JSON API.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::http::errors::{ApiError, PageError};
use crate::http::extract::{csrf_header, AdminSession};
use crate::http::extract::{see_other, CsrfForm};
use crate::http::views::{self, AdminRecoveryLinkPage, Nav};
use crate::service::{members, recovery};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct RecoveryForm {
    pub csrf: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryRequestBody {
    pub reason: String,
}

#[post("/admin/members/{id}/recovery")]
pub async fn request_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    form: web::Form<RecoveryForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    recovery::request(&state, &admin.0, &admin.actor(&req), &id, &form.reason).await?;
    Ok(see_other(format!("/admin/members/{id}")))
}

#[post("/admin/recovery/{id}/approve")]
pub async fn approve_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    let issued = recovery::approve(&state, &admin.0, &admin.actor(&req), &id).await?;
    let member = members::detail(&state, &issued.request.user_id).await?;
    Ok(views::ok(&AdminRecoveryLinkPage {
        nav: Nav::of(Some(&admin.0)),
        email: member.member.email,
        issued,
    }))
}

#[get("/api/admin/members/{id}/recovery")]
pub async fn api_list(
    state: web::Data<AppState>,
    _admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(recovery::list_for(&state, &id).await?))
}

#[post("/api/admin/members/{id}/recovery")]
pub async fn api_request(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    body: web::Json<RecoveryRequestBody>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let view = recovery::request(&state, &admin.0, &admin.actor(&req), &id, &body.reason).await?;
    Ok(HttpResponse::Created().json(view))
}

#[post("/api/admin/recovery/{id}/approve")]
pub async fn api_approve(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let issued = recovery::approve(&state, &admin.0, &admin.actor(&req), &id).await?;
    Ok(HttpResponse::Created().json(issued))
}
