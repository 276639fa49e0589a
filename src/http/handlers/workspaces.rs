//! Admin pages and API for workspaces and their members.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::http::errors::{ApiError, PageError};
use crate::http::extract::{csrf_header, AdminSession};
use crate::http::extract::{see_other, CsrfForm};
use crate::http::views::{self, AdminWorkspacePage, AdminWorkspacesPage, Nav};
use crate::service::{managed_config, workspaces};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    #[serde(default)]
    pub csrf: String,
    pub name: String,
    pub external_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberForm {
    #[serde(default)]
    pub csrf: String,
    pub email: String,
}

#[get("/admin/workspaces")]
pub async fn list_page(
    state: web::Data<AppState>,
    admin: AdminSession,
) -> Result<HttpResponse, PageError> {
    Ok(views::ok(&AdminWorkspacesPage {
        nav: Nav::of(Some(&admin.0)),
        csrf: admin.0.data.csrf.clone(),
        workspaces: workspaces::list(&state).await?,
        error: None,
    }))
}

#[post("/admin/workspaces")]
pub async fn create_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    form: web::Form<NewWorkspace>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    match workspaces::create(&state, &admin.actor(&req), &form.name, &form.external_id).await {
        Ok(w) => Ok(see_other(format!("/admin/workspaces/{}", w.id))),
        Err(
            e @ (crate::error::Error::BadRequest { .. } | crate::error::Error::Conflict { .. }),
        ) => Ok(views::render(
            actix_web::http::StatusCode::BAD_REQUEST,
            &AdminWorkspacesPage {
                nav: Nav::of(Some(&admin.0)),
                csrf: admin.0.data.csrf.clone(),
                workspaces: workspaces::list(&state).await?,
                error: Some(e.to_string()),
            },
        )),
        Err(e) => Err(e.into()),
    }
}

#[get("/admin/workspaces/{id}")]
pub async fn detail_page(
    state: web::Data<AppState>,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    Ok(views::ok(&AdminWorkspacePage {
        nav: Nav::of(Some(&admin.0)),
        csrf: admin.0.data.csrf.clone(),
        view: workspaces::detail(&state, &id).await?,
    }))
}

#[post("/admin/workspaces/{id}/members")]
pub async fn add_member_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    form: web::Form<MemberForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    workspaces::add_member(&state, &admin.actor(&req), &id, &form.email).await?;
    Ok(see_other(format!("/admin/workspaces/{id}")))
}

#[post("/admin/workspaces/{id}/members/{user}/remove")]
pub async fn remove_member_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    let (id, user) = path.into_inner();
    workspaces::remove_member(&state, &admin.actor(&req), &id, &user).await?;
    Ok(see_other(format!("/admin/workspaces/{id}")))
}

/// `GET /admin/workspaces/{id}/managed-config/codex`: Codex's `requirements.toml` pinned to
/// this workspace, as a download (audited).
#[get("/admin/workspaces/{id}/managed-config/codex")]
pub async fn codex_requirements(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let done = managed_config::codex_requirements(&state, &admin.actor(&req), &id).await?;
    Ok(HttpResponse::Ok()
        .content_type(done.file.media_type)
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{}\"", done.file.filename),
        ))
        .insert_header(("Cache-Control", "no-store"))
        .body(done.file.body))
}

#[get("/api/admin/workspaces")]
pub async fn api_list(
    state: web::Data<AppState>,
    _admin: AdminSession,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(workspaces::list(&state).await?))
}

#[post("/api/admin/workspaces")]
pub async fn api_create(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    body: web::Json<NewWorkspace>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let w = workspaces::create(&state, &admin.actor(&req), &body.name, &body.external_id).await?;
    Ok(HttpResponse::Created().json(w))
}

#[post("/api/admin/workspaces/{id}/members")]
pub async fn api_add_member(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    body: web::Json<MemberForm>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    workspaces::add_member(&state, &admin.actor(&req), &id, &body.email).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[post("/api/admin/workspaces/{id}/members/{user}/remove")]
pub async fn api_remove_member(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let (id, user) = path.into_inner();
    workspaces::remove_member(&state, &admin.actor(&req), &id, &user).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The same file as JSON: `{workspace, external_id, tool, filename, media_type, content}`.
#[get("/api/admin/workspaces/{id}/managed-config/codex")]
pub async fn api_codex_requirements(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let done = managed_config::codex_requirements(&state, &admin.actor(&req), &id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "workspace": done.workspace.id,
        "external_id": done.workspace.external_id,
        "tool": "codex",
        "filename": done.file.filename,
        "media_type": done.file.media_type,
        "content": done.file.body,
    })))
}
