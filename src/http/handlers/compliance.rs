//! The compliance attestation download for admins (SPEC C7).

use actix_web::{get, web, HttpRequest, HttpResponse};

use crate::error::Error;
use crate::http::errors::PageError;
use crate::http::extract::{client_ip, AdminSession};
use crate::service::compliance::{self, ExportRequest, Format, DEFAULT_PERIOD_DAYS};
use crate::service::Actor;
use crate::state::AppState;

fn export_request(query: &str) -> Result<ExportRequest, Error> {
    let mut request = ExportRequest {
        workspace: None,
        format: Format::Jws,
        period_days: DEFAULT_PERIOD_DAYS,
        evidence: false,
    };
    let mut seen = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if seen.contains(&k) {
            return Err(Error::bad_request(
                "invalid_parameter",
                "a parameter is given twice",
            ));
        }
        match k.as_ref() {
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
    let request = export_request(req.query_string())?;
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
