//! The audit log for admins: the viewer page, its JSON API, and JSON-lines exports.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{get, web, HttpRequest, HttpResponse};

use crate::error::Error;
use crate::http::errors::{ApiError, PageError};
use crate::http::extract::{client_ip, query_pairs, AdminSession};
use crate::http::views::{self, AdminAuditPage, Nav};
use crate::service::audit_log::{self, AuditFilters, Export};
use crate::service::Actor;
use crate::state::AppState;

fn filters_of(req: &HttpRequest) -> Result<AuditFilters, Error> {
    AuditFilters::from_pairs(query_pairs(req)?)
}

#[get("/admin/audit")]
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
) -> Result<HttpResponse, PageError> {
    let nav = Nav::of(Some(&admin.0));
    let filters = match filters_of(&req) {
        Ok(f) => f,
        Err(e) => return Ok(bad_filters(nav, AuditFilters::default(), e)),
    };
    match audit_log::list(&state, &filters).await {
        Ok(listing) => {
            let older = listing
                .next_cursor
                .map(|c| format!("/admin/audit?{}", filters.query_string(Some(c))));
            let newest = (!filters.cursor.is_empty())
                .then(|| format!("/admin/audit?{}", filters.query_string(None)));
            Ok(views::ok(&AdminAuditPage {
                nav,
                filters,
                events: listing.events,
                older,
                newest,
                error: None,
            }))
        }
        Err(e @ Error::BadRequest { .. }) => Ok(bad_filters(nav, filters, e)),
        Err(e) => Err(e.into()),
    }
}

/// The page again with the filters as typed and what is wrong with them (400).
fn bad_filters(nav: Nav, filters: AuditFilters, err: Error) -> HttpResponse {
    views::render(
        StatusCode::BAD_REQUEST,
        &AdminAuditPage {
            nav,
            filters,
            events: Vec::new(),
            older: None,
            newest: None,
            error: Some((err.code(), err.to_string())),
        },
    )
}

#[get("/api/admin/audit")]
pub async fn api_list(
    state: web::Data<AppState>,
    req: HttpRequest,
    _admin: AdminSession,
) -> Result<HttpResponse, ApiError> {
    let filters = filters_of(&req)?;
    Ok(HttpResponse::Ok().json(audit_log::list(&state, &filters).await?))
}

/// `GET /api/admin/audit/export?from_seq=&to_seq=`: the range as JSON lines, streamed
/// page by page after the anchor line.
#[get("/api/admin/audit/export")]
pub async fn api_export(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminSession,
) -> Result<HttpResponse, ApiError> {
    let (mut from, mut to) = (None, None);
    for (k, v) in query_pairs(&req)? {
        let slot = match k.as_str() {
            "from_seq" => &mut from,
            "to_seq" => &mut to,
            _ => {
                return Err(Error::bad_request(
                    "unknown_filter",
                    "an export takes only from_seq and to_seq",
                )
                .into())
            }
        };
        if slot.replace(v).is_some() {
            return Err(Error::bad_request("unknown_filter", "a parameter is given twice").into());
        }
    }
    let actor = Actor::user(admin.user_id(), client_ip(&req));
    let export = audit_log::start_export(&state, &actor, from.as_deref(), to.as_deref()).await?;
    let filename = format!(
        "keygate-audit-{}-{}.jsonl",
        export.header.from_seq, export.header.to_seq
    );
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    actix_web::rt::spawn(produce(state.get_ref().clone(), export, tx));
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{filename}\""),
        ))
        .body(ExportBody { rx }))
}

type Chunk = Result<Bytes, ExportFailed>;

/// Reads the range page by page into the response; a storage failure part-way ends the
/// body abruptly (the client sees an incomplete response, and the file fails to verify).
async fn produce(state: AppState, export: Export, tx: tokio::sync::mpsc::Sender<Chunk>) {
    if tx
        .send(Ok(Bytes::from(export.header.to_line())))
        .await
        .is_err()
    {
        return;
    }
    let mut after = export.header.from_seq - 1;
    let mut sent = 0i64;
    loop {
        match export.page(&state, after).await {
            Ok(records) => {
                let Some(last) = records.last() else { break };
                after = last.seq;
                sent += records.len() as i64;
                let chunk = Bytes::from(Export::lines(&records));
                if tx.send(Ok(chunk)).await.is_err() {
                    return; // the client went away
                }
            }
            Err(e) => {
                tracing::error!(error.code = e.code(), error.detail = %e, "audit export failed");
                let _ = tx.send(Err(ExportFailed)).await;
                return;
            }
        }
    }
    if sent != export.header.count {
        tracing::error!(
            sent,
            expected = export.header.count,
            "audit export incomplete: events are missing from the chain"
        );
        let _ = tx.send(Err(ExportFailed)).await;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the audit export could not be completed")]
struct ExportFailed;

/// The streamed body of an export.
struct ExportBody {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
}

impl MessageBody for ExportBody {
    type Error = ExportFailed;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.get_mut().rx.poll_recv(cx)
    }
}
