//! Admin pages and API for SAML service providers: list, register or change by hand,
//! import metadata (shown for review, saved only when the admin submits it), disable and
//! enable.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::Error;
use crate::http::errors::{ApiError, PageError};
use crate::http::extract::{see_other, AdminSession};
use crate::http::views::{self, AdminSamlPage, Nav, SamlSpDraft};
use crate::saml::keys::PeerCert;
use crate::saml::sp::{Acs, AttributeSource, NameIdFormat, ServiceProvider};
use crate::service::saml::registry;
use crate::state::AppState;

/// The page form. Lists are one per line; certificates are PEM blocks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpForm {
    #[serde(default)]
    csrf: String,
    entity_id: String,
    #[serde(default)]
    name: String,
    acs_urls: String,
    #[serde(default)]
    name_id_format: String,
    #[serde(default)]
    authn_context: String,
    #[serde(default)]
    workspace: String,
    #[serde(default)]
    attributes: String,
    #[serde(default)]
    signing_certs: String,
    #[serde(default)]
    encryption_cert: String,
    #[serde(default)]
    require_signed_requests: Option<String>,
    #[serde(default)]
    idp_initiated: Option<String>,
    #[serde(default)]
    sign_response: Option<String>,
}

fn pem_blocks(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some(i) = rest.find(END) {
        out.push(format!("{}{END}\n", rest[..i].trim_start()));
        rest = rest[i + END.len()..].trim_start();
    }
    if !rest.is_empty() {
        // Bare base64 DER (as metadata carries it, and as an imported draft shows it):
        // one certificate per line when every line is one, else one wrapped certificate.
        let lines: Vec<&str> = rest
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.len() > 1 && lines.iter().all(|l| PeerCert::parse(l).is_ok()) {
            out.extend(lines.into_iter().map(str::to_string));
        } else {
            out.push(rest.to_string());
        }
    }
    out
}

fn bad(message: impl Into<String>) -> Error {
    Error::bad_request("invalid_saml_sp", message)
}

/// One line of the ACS list: a URL, optionally followed by its index (as metadata
/// numbers its endpoints; without one, the position is the index).
fn acs_line(line: &str) -> Result<Acs, Error> {
    let mut parts = line.split_whitespace();
    let url = parts.next().unwrap_or_default().to_string();
    match (parts.next(), parts.next()) {
        (None, _) => Ok(Acs::Url(url)),
        (Some(index), None) => index
            .parse()
            .map(|index| Acs::Indexed { url, index })
            .map_err(|_| bad(format!("ACS line `{line}` is not `URL` or `URL index`"))),
        _ => Err(bad(format!(
            "ACS line `{line}` is not `URL` or `URL index`"
        ))),
    }
}

impl SpForm {
    fn to_sp(&self) -> Result<ServiceProvider, Error> {
        let mut attributes = BTreeMap::new();
        for line in self
            .attributes
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let (source, name) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("attribute line `{line}` is not `source = name`")))?;
            let source = AttributeSource::ALL
                .into_iter()
                .find(|s| s.key() == source.trim())
                .ok_or_else(|| bad(format!("unknown attribute source `{}`", source.trim())))?;
            attributes.insert(source, name.trim().to_string());
        }
        Ok(ServiceProvider {
            entity_id: self.entity_id.trim().to_string(),
            name: self.name.trim().to_string(),
            acs_urls: self
                .acs_urls
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(acs_line)
                .collect::<Result<_, _>>()?,
            name_id_format: match self.name_id_format.as_str() {
                "" | "email" => NameIdFormat::Email,
                "persistent" => NameIdFormat::Persistent,
                "unspecified" => NameIdFormat::Unspecified,
                other => return Err(bad(format!("unknown NameID format `{other}`"))),
            },
            attributes,
            authn_context: Some(self.authn_context.trim())
                .filter(|c| !c.is_empty())
                .unwrap_or(crate::saml::context::REFEDS_MFA)
                .to_string(),
            require_signed_requests: self.require_signed_requests.is_some(),
            signing_certs: pem_blocks(&self.signing_certs),
            idp_initiated: self.idp_initiated.is_some(),
            encryption_cert: Some(self.encryption_cert.trim().to_string())
                .filter(|c| !c.is_empty()),
            sign_response: self.sign_response.is_some(),
            workspace: Some(self.workspace.clone()).filter(|w| !w.is_empty()),
        })
    }
}

async fn page(
    state: &AppState,
    admin: &AdminSession,
    status: StatusCode,
    draft: Option<ServiceProvider>,
    notice: Option<String>,
    error: Option<String>,
) -> Result<HttpResponse, PageError> {
    let workspaces = state.storage.run(|s| s.list_workspaces()).await?;
    let keys = state.saml.keys.get(state).await;
    let shown = SamlSpDraft::of(draft.as_ref());
    Ok(views::render(
        status,
        &AdminSamlPage {
            nav: Nav::of(Some(&admin.0)),
            csrf: admin.0.data.csrf.clone(),
            sps: registry::list(state).await?,
            workspaces,
            draft: shown,
            entity_id: state.saml.entity_id.clone(),
            sso_url: state.saml.sso_url.clone(),
            fingerprint: keys.current.fingerprint.clone(),
            next_fingerprint: keys.next.as_ref().map(|k| k.fingerprint.clone()),
            notice,
            error,
        },
    ))
}

#[get("/admin/saml")]
pub async fn list_page(
    state: web::Data<AppState>,
    admin: AdminSession,
) -> Result<HttpResponse, PageError> {
    page(&state, &admin, StatusCode::OK, None, None, None).await
}

/// Registers or changes an SP from the form.
#[post("/admin/saml")]
pub async fn save_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    form: web::Form<SpForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    let saved = match form.to_sp() {
        Ok(sp) => registry::save(&state, &admin.actor(&req), sp).await,
        Err(e) => Err(e),
    };
    match saved {
        Ok(r) => {
            let notice = format!("Service provider {} saved.", r.sp.entity_id);
            page(&state, &admin, StatusCode::OK, None, Some(notice), None).await
        }
        Err(e @ (Error::BadRequest { .. } | Error::Conflict { .. })) => {
            let draft = form.to_sp().ok();
            page(
                &state,
                &admin,
                StatusCode::BAD_REQUEST,
                draft,
                None,
                Some(e.to_string()),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportForm {
    #[serde(default)]
    csrf: String,
    metadata: String,
}

/// Reads pasted metadata into the form for review; nothing is saved yet.
#[post("/admin/saml/import")]
pub async fn import_form(
    state: web::Data<AppState>,
    admin: AdminSession,
    form: web::Form<ImportForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    match registry::import(&form.metadata) {
        Ok(sp) => {
            let notice = "Metadata read: review the registration below and save it.".to_string();
            page(&state, &admin, StatusCode::OK, Some(sp), Some(notice), None).await
        }
        Err(e) => {
            page(
                &state,
                &admin,
                StatusCode::BAD_REQUEST,
                None,
                None,
                Some(e.to_string()),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnableForm {
    #[serde(default)]
    csrf: String,
    entity_id: String,
    enabled: String,
}

#[post("/admin/saml/enabled")]
pub async fn enabled_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    form: web::Form<EnableForm>,
) -> Result<HttpResponse, PageError> {
    admin.0.check_csrf(Some(&form.csrf))?;
    registry::set_enabled(
        &state,
        &admin.actor(&req),
        &form.entity_id,
        form.enabled == "true",
    )
    .await?;
    Ok(see_other("/admin/saml"))
}

#[get("/api/admin/saml/service-providers")]
pub async fn api_list(
    state: web::Data<AppState>,
    _admin: AdminSession,
) -> Result<HttpResponse, ApiError> {
    let list: Vec<serde_json::Value> = registry::list(&state)
        .await?
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "service_provider": r.sp,
                "source": r.source,
                "created_at": r.created_at,
                "updated_at": r.updated_at,
                "disabled_at": r.disabled_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// Registers or replaces an SP (the registration as JSON, the shape of
/// `[[saml.service_providers]]`).
#[post("/api/admin/saml/service-providers")]
pub async fn api_save(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    admin
        .0
        .check_csrf(crate::http::extract::csrf_header(&req))?;
    let sp: ServiceProvider = serde_json::from_slice(&body)
        .map_err(|e| Error::bad_request("invalid_saml_sp", e.to_string()))?;
    let saved = registry::save(&state, &admin.actor(&req), sp).await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "service_provider": saved.sp, "source": saved.source })))
}

/// Reads SP metadata (the request body) into a registration, for review; saves nothing.
#[post("/api/admin/saml/service-providers/import")]
pub async fn api_import(
    req: HttpRequest,
    admin: AdminSession,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    admin
        .0
        .check_csrf(crate::http::extract::csrf_header(&req))?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Error::bad_request("invalid_metadata", "the metadata is not UTF-8"))?;
    Ok(HttpResponse::Ok().json(registry::import(text)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnableBody {
    entity_id: String,
    enabled: bool,
}

#[post("/api/admin/saml/service-providers/enabled")]
pub async fn api_enabled(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
    body: web::Json<EnableBody>,
) -> Result<HttpResponse, ApiError> {
    admin
        .0
        .check_csrf(crate::http::extract::csrf_header(&req))?;
    registry::set_enabled(&state, &admin.actor(&req), &body.entity_id, body.enabled).await?;
    Ok(HttpResponse::NoContent().finish())
}
