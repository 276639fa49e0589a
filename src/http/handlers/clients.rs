//! Admin pages and API for OpenID Connect clients: list, create (the secret is shown
//! once), disable.

use actix_web::{get, post, put, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::Error;
use crate::http::errors::{ApiError, PageError};
use crate::http::extract::{csrf_header, AdminSession};
use crate::http::extract::{see_other, CsrfForm};
use crate::http::views::{self, AdminClientsPage, Nav};
use crate::oidc::keys::Algorithm;
use crate::service::oidc::clients::{self, ClientChange, CreatedClient, NewClient};
use crate::state::AppState;

/// The page form: lists as whitespace-separated text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientForm {
    #[serde(default)]
    csrf: String,
    name: String,
    redirect_uris: String,
    #[serde(default)]
    post_logout_redirect_uris: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    workspace_id: String,
    #[serde(default)]
    id_token_alg: String,
    #[serde(default)]
    required_acr: String,
    #[serde(default)]
    public: Option<String>,
    #[serde(default)]
    jwks: String,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

impl ClientForm {
    fn to_new(&self) -> Result<NewClient, Error> {
        Ok(NewClient {
            name: self.name.clone(),
            redirect_uris: words(&self.redirect_uris),
            post_logout_redirect_uris: words(&self.post_logout_redirect_uris),
            scopes: words(&self.scopes),
            public: self.public.is_some(),
            id_token_alg: match self.id_token_alg.as_str() {
                "" => Algorithm::Es256,
                a => Algorithm::from_name(a).ok_or_else(|| {
                    Error::bad_request("invalid_client_metadata", "unknown ID token algorithm")
                })?,
            },
            workspace_id: Some(self.workspace_id.clone()).filter(|w| !w.is_empty()),
            required_acr: words(&self.required_acr),
            jwks: match self.jwks.trim() {
                "" => None,
                text => Some(serde_json::from_str(text).map_err(|_| {
                    Error::bad_request("invalid_client_metadata", "the JWKS is not JSON")
                })?),
            },
        })
    }
}

async fn page(
    state: &AppState,
    admin: &AdminSession,
    status: actix_web::http::StatusCode,
    created: Option<CreatedClient>,
    error: Option<String>,
) -> Result<HttpResponse, PageError> {
    let workspaces = state.storage.run(|s| s.list_workspaces()).await?;
    Ok(views::render(
        status,
        &AdminClientsPage {
            nav: Nav::of(Some(&admin.0)),
            csrf: admin.0.data.csrf.clone(),
            clients: clients::list(state).await?,
            workspaces,
            created,
            error,
        },
    ))
}

#[get("/admin/clients")]
pub async fn list_page(
    state: web::Data<AppState>,
    admin: AdminSession,
) -> Result<HttpResponse, PageError> {
    page(&state, &admin, actix_web::http::StatusCode::OK, None, None).await
}

#[post("/admin/clients")]
pub async fn create_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    form: web::Form<ClientForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    let created = match form.to_new() {
        Ok(new) => clients::create(&state, &admin.actor(&req), new).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(c) => {
            page(
                &state,
                &admin,
                actix_web::http::StatusCode::OK,
                Some(c),
                None,
            )
            .await
        }
        Err(e @ Error::BadRequest { .. }) => {
            page(
                &state,
                &admin,
                actix_web::http::StatusCode::BAD_REQUEST,
                None,
                Some(e.to_string()),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[post("/admin/clients/{id}/disable")]
pub async fn disable_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    clients::disable(&state, &admin.actor(&req), &id).await?;
    Ok(see_other("/admin/clients"))
}

#[get("/api/admin/clients")]
pub async fn api_list(
    state: web::Data<AppState>,
    _admin: AdminSession,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(clients::list(&state).await?))
}

/// Creates a client; the answer holds `client_secret` this once.
#[post("/api/admin/clients")]
pub async fn api_create(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    body: web::Json<NewClient>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let created = clients::create(&state, &admin.actor(&req), body.into_inner()).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(created))
}

/// Replaces an admin-created client's metadata (see `clients::ClientChange`).
#[put("/api/admin/clients/{id}")]
pub async fn api_update(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    body: web::Json<ClientChange>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let client = clients::update(&state, &admin.actor(&req), &id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(client))
}

/// A new secret for a client; the answer holds `client_secret` this once.
#[post("/api/admin/clients/{id}/secret")]
pub async fn api_rotate_secret(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    let rotated = clients::rotate_secret(&state, &admin.actor(&req), &id).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(rotated))
}

#[post("/api/admin/clients/{id}/disable")]
pub async fn api_disable(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin.0.check_csrf(csrf_header(&req))?;
    clients::disable(&state, &admin.actor(&req), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
