//! The small WebAuthn script and the stylesheet, compiled into the binary.

use actix_web::{get, HttpResponse};

const SCRIPT: &str = include_str!("../../../static/keygate.js");
const STYLE: &str = include_str!("../../../static/keygate.css");

#[get("/static/keygate.js")]
pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(SCRIPT)
}

#[get("/static/keygate.css")]
pub async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(STYLE)
}
