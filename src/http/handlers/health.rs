//! Liveness and readiness probes, and the metrics scrape.

use actix_web::{get, web, HttpRequest, HttpResponse};

use crate::state::AppState;

/// The process is up.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The process can serve: database and ephemeral store answer, and the audit chain's
/// stored head agrees with its table (a row written past it would block every audited
/// write and hide from verification).
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let eph = state.ephemeral.ping().await.is_ok();
    let (db, audit_chain) = match crate::service::audit_log::ends_agree(&state).await {
        Ok(broken) => (true, broken.is_none()),
        Err(_) => (false, false),
    };
    let body = serde_json::json!({ "database": db, "ephemeral": eph, "audit_chain": audit_chain });
    if db && eph && audit_chain {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics, for the peers `server.metrics_allow` names when they ask directly;
/// 404 to everyone else, and to anything a proxy forwarded (a reverse proxy on an allowed
/// address must not expose the metrics to the people it serves).
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let direct =
        !req.headers().contains_key("x-forwarded-for") && !req.headers().contains_key("forwarded");
    let allowed = req
        .peer_addr()
        .is_some_and(|peer| crate::state::in_ranges(&state.metrics_allow, &peer.ip()));
    if !(direct && allowed) {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(state.metrics.render())
}
