//! Liveness and readiness probes, and the metrics scrape.

use std::time::Duration;

use actix_web::{get, web, HttpRequest, HttpResponse};

use crate::state::AppState;

/// The process is up.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// How long `/readyz` takes at most: its checks run side by side, each bounded by this, so
/// a probe hears "not ready" in time while the database or the store does not answer.
pub const READY_BUDGET: Duration = Duration::from_secs(1);

/// The process can serve: database and ephemeral store answer, and the audit chain's
/// stored head agrees with its table (a row written past it would block every audited
/// write and hide from verification). Answers within [`READY_BUDGET`]: a check that has
/// not answered by then counts as failed.
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let eph = tokio::time::timeout(READY_BUDGET, state.ephemeral.ping());
    let chain = tokio::time::timeout(READY_BUDGET, crate::service::audit_log::ends_agree(&state));
    let (eph, chain) = tokio::join!(eph, chain);
    let eph = matches!(eph, Ok(Ok(())));
    let (db, audit_chain) = match chain {
        Ok(Ok(broken)) => (true, broken.is_none()),
        Ok(Err(_)) | Err(_) => (false, false),
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
