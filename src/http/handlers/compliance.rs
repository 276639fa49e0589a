//! The compliance attestation download for admins (SPEC C7).

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};

use crate::error::Error;
use crate::http::errors::{ApiError, Challenge, OAuthError, PageError};
use crate::http::extract::{client_ip, query_pairs, AdminSession};
use crate::service::compliance::{self, ExportRequest, Format, DEFAULT_PERIOD_DAYS};
use crate::service::Actor;
use crate::state::AppState;

fn export_request(req: &HttpRequest) -> Result<ExportRequest, Error> {
    let mut request = ExportRequest {
        workspace: None,
        format: Format::Jws,
        period_days: DEFAULT_PERIOD_DAYS,
        evidence: false,
    };
    let mut seen = Vec::new();
    for (k, v) in query_pairs(req)? {
        if seen.contains(&k) {
            return Err(Error::bad_request(
                "invalid_parameter",
                "a parameter is given twice",
            ));
        }
        match k.as_str() {
            "format" => request.format = v.parse()?,
            "workspace" if !v.is_empty() => request.workspace = Some(v.to_string()),
            "workspace" => {}
            "period_days" => {
                request.period_days = v.parse().map_err(|_| {
                    Error::bad_request("invalid_period", "period_days must be a number of days")
                })?
            }
            _ => {
                return Err(Error::bad_request(
                    "invalid_parameter",
                    "an export takes only format, workspace and period_days",
                ))
            }
        }
        seen.push(k);
    }
    Ok(request)
}

/// `GET /admin/compliance/export?format=jws|json|csv|html&workspace=&period_days=`: the
/// report as a download. The evidence bundle that goes with a signed report comes from
/// `keygate export compliance --evidence FILE`.
#[get("/admin/compliance/export")]
pub async fn export(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
) -> Result<HttpResponse, PageError> {
    let request = export_request(&req)?;
    let actor = Actor::user(admin.user_id(), client_ip(&req));
    let done = compliance::export(&state, &actor, &request).await?;
    let day = done.report.generated_at.get(..10).unwrap_or("report");
    let filename = format!("keygate-compliance-{day}.{}", request.format.as_str());
    Ok(HttpResponse::Ok()
        .content_type(request.format.content_type())
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{filename}\""),
        ))
        .insert_header(("Cache-Control", "no-store"))
        .body(done.body))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let h = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    (h.len() > 7 && h[..7].eq_ignore_ascii_case("bearer ")).then(|| h[7..].trim())
}

/// `GET /api/compliance/report?format=jws|json&workspace=&period_days=` with
/// `Authorization: Bearer <token>` from the client credentials grant with scope
/// `keygate:compliance`: the report for the vendor (RFC 6750 errors for the token; 403 for
/// another workspace; 429 past the per-client limit). Audited as `compliance.exported`.
#[get("/api/compliance/report")]
pub async fn api_report(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, actix_web::Error> {
    let active = crate::service::oidc::resource::verify_client_access(
        &state,
        bearer(&req),
        crate::oidc::scope::COMPLIANCE,
    )
    .await
    .map_err(|e| OAuthError::new(e, Challenge::Bearer))?;
    let request = export_request(&req).map_err(ApiError)?;
    if !matches!(request.format, Format::Jws | Format::Json) {
        return Err(ApiError(Error::bad_request(
            "unknown_format",
            "the API serves format=jws or format=json",
        ))
        .into());
    }
    let done =
        compliance::export_for_client(&state, &active.client, client_ip(&req), request.clone())
            .await
            .map_err(ApiError)?;
    Ok(HttpResponse::Ok()
        .content_type(request.format.content_type())
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Keygate-Report-Id", done.report.report_id.clone()))
        .body(done.body))
}

/// `GET /api/compliance/evidence?report=<report_id>` with the same kind of bearer token: the
/// evidence bundle (JSON: each key's raw attestation) of a report this client pulled in the
/// last ten minutes; 404 otherwise. Audited as `compliance.exported` (format `evidence`).
#[get("/api/compliance/evidence")]
pub async fn api_evidence(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, actix_web::Error> {
    let active = crate::service::oidc::resource::verify_client_access(
        &state,
        bearer(&req),
        crate::oidc::scope::COMPLIANCE,
    )
    .await
    .map_err(|e| OAuthError::new(e, Challenge::Bearer))?;
    let pairs = query_pairs(&req).map_err(ApiError)?;
    let report = match pairs.as_slice() {
        [(k, v)] if k == "report" => v.clone(),
        _ => {
            return Err(ApiError(Error::bad_request(
                "invalid_parameter",
                "the evidence takes one parameter, report",
            ))
            .into())
        }
    };
    let bundle = compliance::evidence_for_client(&state, &active.client, client_ip(&req), &report)
        .await
        .map_err(ApiError)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "no-store"))
        .body(bundle))
}
