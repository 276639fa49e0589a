//! Admin pages and API for OpenID Connect clients: list, create (the secret is shown
//! once), change, issue a new secret (shown once), disable.

use actix_web::{get, post, put, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::Error;
use crate::http::errors::{ApiError, PageError};
use crate::http::extract::{csrf_header, AdminSession};
use crate::http::extract::{see_other, CsrfForm};
use crate::http::views::{self, AdminClientPage, AdminClientsPage, Nav};
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
        let change = self.to_change()?;
        Ok(NewClient {
            name: change.name,
            redirect_uris: change.redirect_uris,
            post_logout_redirect_uris: change.post_logout_redirect_uris,
            scopes: change.scopes,
            public: self.public.is_some(),
            id_token_alg: change.id_token_alg,
            workspace_id: change.workspace_id,
            required_acr: change.required_acr,
            jwks: change.jwks,
        })
    }

    /// The change form has the same fields but `public` (which cannot change).
    fn to_change(&self) -> Result<ClientChange, Error> {
        Ok(ClientChange {
            name: self.name.clone(),
            redirect_uris: words(&self.redirect_uris),
            post_logout_redirect_uris: words(&self.post_logout_redirect_uris),
            scopes: words(&self.scopes),
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

/// What the client page shows besides the client.
#[derive(Default)]
struct ClientPageExtras {
    new_secret: Option<String>,
    notice: Option<String>,
    error: Option<String>,
}

async fn client_page(
    state: &AppState,
    admin: &AdminSession,
    status: actix_web::http::StatusCode,
    client_id: &str,
    extras: ClientPageExtras,
) -> Result<HttpResponse, PageError> {
    let client = state
        .storage
        .find_oidc_client(client_id.to_string())
        .await?
        .ok_or(Error::NotFound)?;
    let workspaces = state.storage.run(|s| s.list_workspaces()).await?;
    Ok(views::render(
        status,
        &AdminClientPage {
            nav: Nav::of(Some(&admin.0)),
            csrf: admin.0.data.csrf.clone(),
            client,
            workspaces,
            new_secret: extras.new_secret,
            notice: extras.notice,
            error: extras.error,
        },
    ))
}

#[get("/admin/clients/{id}")]
pub async fn detail_page(
    state: web::Data<AppState>,
    admin: AdminSession,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let ok = actix_web::http::StatusCode::OK;
    client_page(&state, &admin, ok, &id, ClientPageExtras::default()).await
}

#[post("/admin/clients/{id}")]
pub async fn update_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    form: web::Form<ClientForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    let updated = match form.to_change() {
        Ok(change) => clients::update(&state, &admin.actor(&req), &id, change).await,
        Err(e) => Err(e),
    };
    let (status, extras) = match updated {
        Ok(_) => (
            actix_web::http::StatusCode::OK,
            ClientPageExtras {
                notice: Some("Saved.".into()),
                ..ClientPageExtras::default()
            },
        ),
        Err(e @ (Error::BadRequest { .. } | Error::Conflict { .. })) => (
            crate::http::errors::status_of(&e),
            ClientPageExtras {
                error: Some(e.to_string()),
                ..ClientPageExtras::default()
            },
        ),
        Err(e) => return Err(e.into()),
    };
    client_page(&state, &admin, status, &id, extras).await
}

#[post("/admin/clients/{id}/secret")]
pub async fn rotate_secret_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    let rotated = clients::rotate_secret(&state, &admin.actor(&req), &id).await?;
    let extras = ClientPageExtras {
        new_secret: rotated.client_secret,
        ..ClientPageExtras::default()
    };
    let ok = actix_web::http::StatusCode::OK;
    let mut page = client_page(&state, &admin, ok, &id, extras).await?;
    page.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    Ok(page)
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
