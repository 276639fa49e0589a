//! The one integration-test binary: every suite runs on the embedded default and,
//! with `KEYGATE_TEST_DATABASE_URL` / `KEYGATE_TEST_REDIS_URL` set, on PostgreSQL + Redis.

mod alerts_http;
mod attestation_chain;
mod attestation_policy;
mod audit;
mod audit_export;
mod audit_siem;
mod audit_viewer;
mod browser_enrolment;
mod browser_oidc;
mod browser_smoke;
mod cli;
mod compliance_export;
mod compliance_verify;
mod dashboard_http;
mod enrolment_http;
mod ephemeral;
mod oidc_authlib;
mod oidc_authorize;
mod oidc_core;
mod oidc_http;
mod oidc_http_endpoints;
mod oidc_http_errors;
mod oidc_http_policy;
mod oidc_tokens;
mod replicas;
mod sessions_http;
mod signin_http;
mod storage;
mod support;
mod webauthn_assertion;
mod webauthn_common;
mod webauthn_fixtures;
mod webauthn_fuzz;
mod webauthn_software;
mod workspaces_http;
