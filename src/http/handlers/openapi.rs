//! The OpenAPI 3.1 description of the JSON API, for admins.
//!
//! `docs/openapi.yaml` is the document people edit; `docs/openapi.json` is the same
//! document as JSON (`scripts/openapi-json` writes it, a test checks the two agree and that
//! real responses match its schemas). The JSON is embedded so serving needs no YAML parser.

use actix_web::{get, HttpResponse};

use crate::http::extract::AdminSession;

/// `docs/openapi.json`, embedded at build time.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

#[get("/api/openapi.json")]
pub async fn document(_admin: AdminSession) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_document_is_openapi_3_1_json() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/api/openapi.json"]["get"].is_object());
    }
}
