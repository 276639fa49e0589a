//! Liveness and readiness probes.

use actix_web::{get, web, HttpResponse};

use crate::state::AppState;

/// The process is up.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The process can serve: database and ephemeral store answer.
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.storage.run(|s| s.ping()).await.is_ok();
    let eph = state.ephemeral.ping().await.is_ok();
    let body = serde_json::json!({ "database": db, "ephemeral": eph });
    if db && eph {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
