//! HTTP: the actix-web app factory, middleware, extractors, the error mapping, handlers
//! and page models. Handlers stay thin; everything else lives in `service`.

pub mod errors;
pub mod extract;
pub mod handlers;
pub mod views;

use std::time::Instant;

use actix_web::dev::Service;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest};

use crate::error::Error;
use crate::state::AppState;
use errors::{ApiError, PageError};
use handlers::{
    admin, assets, audit, clients, compliance, device, enrol, health, me, oidc, openapi, recovery,
    saml, saml_admin, signin, workspaces,
};

/// Content-Security-Policy: scripts and styles only from here, no inline script, no framing.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Strict security headers on every response (SPEC §7).
pub fn security_headers(https: bool) -> DefaultHeaders {
    let h = DefaultHeaders::new()
        .add(("Content-Security-Policy", CSP))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add((
            "Permissions-Policy",
            "publickey-credentials-create=(self), publickey-credentials-get=(self)",
        ))
        .add(("Cache-Control", "no-store"));
    if https {
        h.add(("Strict-Transport-Security", "max-age=31536000"))
    } else {
        h
    }
}

fn body_error(req: &HttpRequest, code: &'static str, message: String) -> actix_web::Error {
    let err = Error::bad_request(code, message);
    if req.path().starts_with("/api/") {
        ApiError(err).into()
    } else {
        PageError(err).into()
    }
}

/// Routes and request-body limits; shared by the server and the tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(64 * 1024)
            .error_handler(|e, req| body_error(req, "malformed_json", e.to_string())),
    )
    .app_data(
        web::FormConfig::default()
            .limit(16 * 1024)
            .error_handler(|e, req| body_error(req, "malformed_form", e.to_string())),
    )
    .app_data(web::PayloadConfig::default().limit(64 * 1024))
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, req| body_error(req, "malformed_path", e.to_string())),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|e, req| body_error(req, "malformed_query", e.to_string())),
    )
    .service(health::healthz)
    .service(health::readyz)
    .service(health::metrics)
    // The router tries routes in order: protocol endpoints and sign-in, which carry the
    // load, before the admin pages with path parameters (each one a regex to try).
    .service(oidc::discovery)
    .service(oidc::jwks)
    .service(oidc::authorize_get)
    .service(oidc::authorize_post)
    .service(oidc::authorize_continue)
    .service(oidc::token_endpoint)
    .service(device::device_authorization)
    .service(device::device_page)
    .service(device::device_continue)
    .service(device::deny)
    .service(device::approve_begin)
    .service(device::approve_finish)
    .service(oidc::userinfo_get)
    .service(oidc::userinfo_post)
    .service(oidc::introspect)
    .service(oidc::revoke)
    .service(oidc::logout_get)
    .service(oidc::logout_post)
    .service(saml::metadata)
    .service(saml::sso_redirect)
    .service(saml::sso_post)
    .service(saml::sso_continue)
    .service(saml::idp_initiated)
    .service(assets::script)
    .service(assets::style)
    .service(signin::index)
    .service(signin::begin)
    .service(signin::finish)
    .service(me::page)
    .service(me::api)
    .service(me::revoke_key)
    .service(me::sign_out)
    .service(me::api_sessions)
    .service(me::end_session)
    .service(enrol::page)
    .service(enrol::add_key_page)
    .service(enrol::begin)
    .service(enrol::finish)
    .service(admin::home)
    .service(admin::api_dashboard)
    .service(admin::members_page)
    .service(admin::member_page)
    .service(admin::revoke_key_form)
    .service(admin::invitations_get)
    .service(admin::invitations_post)
    .service(admin::invitation_revoke_form)
    .service(admin::invitation_approve_form)
    .service(admin::api_members)
    .service(admin::api_member)
    .service(admin::api_revoke_key)
    .service(admin::api_invitations)
    .service(admin::api_invite)
    .service(admin::api_revoke_invitation)
    .service(admin::api_approve_invitation)
    .service(admin::end_sessions_form)
    .service(admin::api_end_sessions)
    .service(admin::member_status_form)
    .service(admin::api_member_status)
    .service(recovery::request_form)
    .service(recovery::approve_form)
    .service(recovery::api_list)
    .service(recovery::api_request)
    .service(recovery::api_approve)
    .service(audit::page)
    .service(audit::api_list)
    .service(audit::api_export)
    .service(openapi::document)
    .service(compliance::export)
    .service(compliance::api_report)
    .service(compliance::api_evidence)
    .service(workspaces::list_page)
    .service(workspaces::create_form)
    .service(workspaces::detail_page)
    .service(workspaces::add_member_form)
    .service(workspaces::remove_member_form)
    .service(workspaces::api_list)
    .service(workspaces::api_create)
    .service(workspaces::api_add_member)
    .service(workspaces::api_remove_member)
    .service(workspaces::codex_requirements)
    .service(workspaces::api_codex_requirements)
    .service(clients::list_page)
    .service(clients::create_form)
    .service(clients::disable_form)
    .service(clients::detail_page)
    .service(clients::update_form)
    .service(clients::rotate_secret_form)
    .service(clients::api_list)
    .service(clients::api_create)
    .service(clients::api_update)
    .service(clients::api_rotate_secret)
    .service(clients::api_disable)
    .service(saml_admin::list_page)
    .service(saml_admin::save_form)
    .service(saml_admin::import_form)
    .service(saml_admin::enabled_form)
    .service(saml_admin::api_list)
    .service(saml_admin::api_save)
    .service(saml_admin::api_import)
    .service(saml_admin::api_enabled)
    .default_service(web::to(|req: HttpRequest| async move {
        let err = Error::NotFound;
        if req.path().starts_with("/api/") {
            Err::<actix_web::HttpResponse, actix_web::Error>(ApiError(err).into())
        } else {
            Err(PageError(err).into())
        }
    }));
}

/// Records a request refused for its CSRF token (`csrf.refused`, with the method and path,
/// never the query). The 403 stands whether or not the event could be written.
async fn audit_csrf(state: &AppState, req: &HttpRequest, user: Option<String>) {
    let ip = extract::client_ip(req);
    let actor = match user {
        Some(id) => crate::service::Actor::user(&id, ip),
        None => crate::service::Actor::anonymous(ip),
    };
    let what = format!("{} {}", req.method(), req.path());
    if let Err(e) = crate::service::csrf_refused(state, &actor, &what).await {
        tracing::warn!(error = %e, "a CSRF refusal could not be audited");
    }
}

/// A ceremony request whose body the framework could not read, audited like the
/// ceremony's own refusals (`service::unreadable_ceremony_request`).
async fn audit_unreadable(state: &AppState, req: &HttpRequest, code: &'static str) {
    let actor = crate::service::Actor::anonymous(extract::client_ip(req));
    if let Err(e) =
        crate::service::unreadable_ceremony_request(state, &actor, req.path(), code).await
    {
        tracing::warn!(error = %e, "an unreadable ceremony request could not be audited");
    }
}

/// Builds the actix-web app for `state`: routes, security headers, request logging.
/// Request logs carry the route pattern, never the raw path (links hold secrets).
pub fn app(
    state: AppState,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let https = state.config.cookies_secure();
    let metrics = state.metrics.clone();
    actix_web::App::new()
        .app_data(web::Data::new(state))
        .wrap(security_headers(https))
        .wrap_fn(move |req, srv| {
            let started = Instant::now();
            let method = req.method().to_string();
            let route = req.match_pattern().unwrap_or_else(|| "<unmatched>".into());
            let fut = srv.call(req);
            let metrics = metrics.clone();
            async move {
                let res = fut.await?;
                if let Some(user) = res.response().error().and_then(errors::csrf_refusal) {
                    if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
                        audit_csrf(state, res.request(), user).await;
                    }
                } else if let Some(code) = res.response().error().and_then(errors::unreadable_body)
                {
                    if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
                        audit_unreadable(state, res.request(), code).await;
                    }
                }
                let (status, took) = (res.status().as_u16(), started.elapsed());
                metrics.record(&method, &route, status, took);
                let code = res
                    .response()
                    .extensions()
                    .get::<crate::metrics::ErrorCode>()
                    .map(|c| c.0);
                metrics.record_outcome(&route, status, code);
                tracing::info!(
                    http.method = %method,
                    http.route = %route,
                    http.status = status,
                    duration_ms = took.as_secs_f64() * 1000.0,
                    "request"
                );
                Ok(res)
            }
        })
        .configure(configure)
}
