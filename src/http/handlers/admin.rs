//! Admin pages and the admin JSON API: members, keys, invitations.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::http::errors::{ApiError, PageError};
use crate::http::extract::{csrf_header, AdminSession};
use crate::http::extract::{see_other, CsrfForm};
use crate::http::views::{
    self, AdminDashboardPage, AdminInvitationsPage, AdminMemberPage, AdminMembersPage, Nav,
};
use crate::service::{dashboard, invitations, members, recovery, session};
use crate::state::AppState;
use crate::storage::SessionScope;

#[derive(Deserialize)]
pub struct InviteForm {
    pub csrf: String,
    pub email: String,
    #[serde(default)]
    pub display_name: String,
    pub role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    pub email: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "member".into()
}

/// The compliance dashboard.
#[get("/admin")]
pub async fn home(
    state: web::Data<AppState>,
    admin: AdminSession,
) -> Result<HttpResponse, PageError> {
    Ok(views::ok(&AdminDashboardPage {
        nav: Nav::of(Some(&admin.0)),
        d: dashboard::build(&state).await?,
    }))
}

#[get("/api/admin/dashboard")]
pub async fn api_dashboard(
    state: web::Data<AppState>,
    _admin: AdminSession,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(dashboard::build(&state).await?))
}

#[get("/admin/members")]
pub async fn members_page(
    state: web::Data<AppState>,
    admin: AdminSession,
) -> Result<HttpResponse, PageError> {
    let members = members::list(&state).await?;
    let compliant = members.iter().filter(|m| m.compliant).count();
    Ok(views::ok(&AdminMembersPage {
        nav: Nav::of(Some(&admin.0)),
        members,
        compliant,
    }))
}

#[get("/admin/members/{id}")]
pub async fn member_page(
    state: web::Data<AppState>,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let detail = members::detail(&state, &id).await?;
    let sessions = session::list(&state, &id).await?;
    let recoveries = recovery::list_for(&state, &id).await?;
    Ok(views::ok(&AdminMemberPage {
        nav: Nav::of(Some(&admin.0)),
        csrf: admin.0.data.csrf.clone(),
        detail,
        sessions,
        recoveries,
        me: admin.user_id().to_string(),
    }))
}

#[post("/admin/keys/{id}/revoke")]
pub async fn revoke_key_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    let actor = admin.actor(&req);
    session::step_up(&state, &admin.0, &actor, "key.revoke").await?;
    members::revoke_key(&state, &actor, admin.user_id(), true, &id).await?;
    let back = req
        .headers()
        .get("referer")
        .and_then(|r| r.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
        .map(|u| u.path().to_string())
        .filter(|p| p.starts_with("/admin/"))
        .unwrap_or_else(|| "/admin/members".into());
    Ok(see_other(back))
}

async fn invitations_page(
    state: &AppState,
    admin: &AdminSession,
    issued: Option<invitations::IssuedInvitation>,
    error: Option<String>,
) -> Result<HttpResponse, PageError> {
    let page = AdminInvitationsPage {
        nav: Nav::of(Some(&admin.0)),
        csrf: admin.0.data.csrf.clone(),
        invitations: invitations::list(state).await?,
        issued,
        error,
        me: format!("user:{}", admin.user_id()),
    };
    Ok(views::ok(&page))
}

#[get("/admin/invitations")]
pub async fn invitations_get(
    state: web::Data<AppState>,
    admin: AdminSession,
) -> Result<HttpResponse, PageError> {
    invitations_page(&state, &admin, None, None).await
}

#[post("/admin/invitations")]
pub async fn invitations_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    match invitations::invite(
        &state,
        &admin.0,
        &admin.actor(&req),
        &form.email,
        &form.display_name,
        &form.role,
    )
    .await
    {
        Ok(issued) => invitations_page(&state, &admin, Some(issued), None).await,
        Err(e @ crate::error::Error::BadRequest { .. }) => {
            invitations_page(&state, &admin, None, Some(e.to_string())).await
        }
        Err(e) => Err(e.into()),
    }
}

#[post("/admin/invitations/{id}/revoke")]
pub async fn invitation_revoke_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    invitations::revoke(&state, &admin.actor(&req), &id).await?;
    Ok(see_other("/admin/invitations"))
}

/// A second admin approves an admin invitation (a fresh key touch required).
#[post("/admin/invitations/{id}/approve")]
pub async fn invitation_approve_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    invitations::approve(&state, &admin.0, &admin.actor(&req), &id).await?;
    Ok(see_other("/admin/invitations"))
}

// ---- JSON API (same services; CSRF header required on writes) ----

#[get("/api/admin/members")]
pub async fn api_members(
    state: web::Data<AppState>,
    _admin: AdminSession,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(members::list(&state).await?))
}

#[get("/api/admin/members/{id}")]
pub async fn api_member(
    state: web::Data<AppState>,
    _admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(members::detail(&state, &id).await?))
}

#[post("/api/admin/keys/{id}/revoke")]
pub async fn api_revoke_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let actor = admin.actor(&req);
    session::step_up(&state, &admin.0, &actor, "key.revoke").await?;
    members::revoke_key(&state, &actor, admin.user_id(), true, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[get("/api/admin/invitations")]
pub async fn api_invitations(
    state: web::Data<AppState>,
    _admin: AdminSession,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(invitations::list(&state).await?))
}

#[post("/api/admin/invitations")]
pub async fn api_invite(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    body: web::Json<InviteRequest>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let issued = invitations::invite(
        &state,
        &admin.0,
        &admin.actor(&req),
        &body.email,
        &body.display_name,
        &body.role,
    )
    .await?;
    Ok(HttpResponse::Created().json(issued))
}

/// The API's approval of an admin invitation: the invitation as it is now.
#[post("/api/admin/invitations/{id}/approve")]
pub async fn api_approve_invitation(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let view = invitations::approve(&state, &admin.0, &admin.actor(&req), &id).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[post("/api/admin/invitations/{id}/revoke")]
pub async fn api_revoke_invitation(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    invitations::revoke(&state, &admin.actor(&req), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ends every session of a member.
#[post("/admin/members/{id}/sessions/end")]
pub async fn end_sessions_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    session::end(&state, &admin.actor(&req), &id, SessionScope::All).await?;
    Ok(see_other(format!("/admin/members/{id}")))
}

#[post("/api/admin/members/{id}/sessions/end")]
pub async fn api_end_sessions(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let ended = session::end(&state, &admin.actor(&req), &id, SessionScope::All).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ended": ended })))
}

/// `disable` or `enable`, the last segment of the routes below (their pattern admits no other).
fn enabling(change: &str) -> bool {
    change == "enable"
}

/// Disables or enables a member from their page (a fresh key touch required).
#[post("/admin/members/{id}/{change:disable|enable}")]
pub async fn member_status_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let (id, change) = path.into_inner();
    admin.0.check_csrf(Some(&form.csrf))?;
    let actor = admin.actor(&req);
    session::step_up(&state, &admin.0, &actor, &format!("member.{change}")).await?;
    members::set_enabled(&state, &actor, admin.user_id(), &id, enabling(&change)).await?;
    Ok(see_other(format!("/admin/members/{id}")))
}

/// The API's disable and enable: the member's detail as it is now.
#[post("/api/admin/members/{id}/{change:disable|enable}")]
pub async fn api_member_status(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, change) = path.into_inner();
    admin.0.check_csrf(csrf_header(&req))?;
    let actor = admin.actor(&req);
    session::step_up(&state, &admin.0, &actor, &format!("member.{change}")).await?;
    let detail =
        members::set_enabled(&state, &actor, admin.user_id(), &id, enabling(&change)).await?;
    Ok(HttpResponse::Ok().json(detail))
}
