//! keygate: an enterprise SSO attestation gateway.
//!
//! Data flows one way: `http` → `service` → protocol and policy modules (`webauthn`,
//! `attestation`, `audit`) → `storage` / `ephemeral`. Protocol modules import neither
//! actix-web nor diesel. [`build`] assembles an [`App`] from a [`Config`]; the binary and the
//! tests share it.
#![forbid(unsafe_code)]

pub mod attestation;
pub mod audit;
pub mod compliance;
pub mod config;
pub mod ephemeral;
pub mod error;
pub mod form;
pub mod http;
pub mod managed_config;
pub mod metrics;
pub mod oidc;
pub mod outbound;
pub mod saml;
pub mod service;
pub mod state;
pub mod storage;
pub mod webauthn;

use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::attestation::Verifier;
pub use crate::config::Config;
use crate::service::invitations::IssuedInvitation;
use crate::state::{AppState, Clock};

/// What can stop keygate from starting; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("database: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("ephemeral store: {0}")]
    Ephemeral(#[from] ephemeral::EphemeralError),
    #[error("attestation trust: {0}")]
    Attestation(String),
    #[error("the database has pending migrations ({0}); run `keygate migrate` first")]
    PendingMigrations(String),
    #[error("refusing to start: {0}; the audit chain's stored head and its table disagree, and keygate writes nothing until they do (`keygate audit verify` names the row; README, \"Audit chain\")")]
    AuditChain(audit::ChainBreak),
    #[error("{0}")]
    Service(#[from] error::Error),
}

/// How much [`build`] may change on its way up.
#[derive(Clone, Copy, Debug)]
pub struct BuildOptions {
    /// Apply pending migrations (dev, tests) instead of refusing to start (serve).
    pub migrate: bool,
    /// Issue a bootstrap link when no admin exists.
    pub bootstrap: bool,
}

/// An assembled keygate: its state, and the bootstrap link when one was issued.
pub struct App {
    pub state: AppState,
    pub bootstrap: Option<IssuedInvitation>,
}

/// Loads the FIDO trust anchors, intermediates and extra models the config names.
pub fn verifier(config: &Config) -> Result<Verifier, BuildError> {
    let mut verifier = Verifier::builtin();
    for path in &config.attestation.extra_roots {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| BuildError::Attestation(format!("{}: {e}", path.display())))?;
        verifier
            .trust
            .add_anchor_pem(&pem)
            .map_err(|e| BuildError::Attestation(format!("{}: {e}", path.display())))?;
    }
    for path in &config.attestation.extra_intermediates {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| BuildError::Attestation(format!("{}: {e}", path.display())))?;
        verifier
            .trust
            .add_intermediates_pem(&pem)
            .map_err(|e| BuildError::Attestation(format!("{}: {e}", path.display())))?;
    }
    for m in &config.attestation.extra_models {
        let aaguid = m
            .aaguid
            .parse()
            .map_err(|_| BuildError::Attestation(format!("`{}` is not an AAGUID", m.aaguid)))?;
        verifier
            .catalogue
            .insert(attestation::DeviceInfo::new(aaguid, &m.model, m.fips));
    }
    Ok(verifier)
}

/// Connects storage and the ephemeral store, loads trust, and (optionally) migrates and
/// issues the first admin's bootstrap link.
pub async fn build(
    config: Config,
    clock: Arc<dyn Clock>,
    opts: BuildOptions,
) -> Result<App, BuildError> {
    config.validate()?;
    let origin = config.origin()?;
    let rp_id = config.rp_id()?;
    let verifier = verifier(&config)?;
    let alerts = service::alerts::Alerts::new(&config)?;
    let db_url = config.database.url.expose_secret().to_string();
    let pool = config.database.pool_size;
    let acquire = std::time::Duration::from_millis(config.database.acquire_timeout_ms);
    let storage =
        tokio::task::spawn_blocking(move || storage::Storage::connect_with(&db_url, pool, acquire))
            .await
            .map_err(|e| BuildError::Attestation(e.to_string()))??;
    storage.set_sqlite_log_limit(u64::from(config.database.sqlite_log_limit_mib) << 20);
    if opts.migrate {
        storage.run(|s| s.migrate().map(|_| ())).await?;
    } else {
        let pending = storage.run(|s| s.pending_migrations()).await?;
        if !pending.is_empty() {
            return Err(BuildError::PendingMigrations(pending.join(", ")));
        }
    }
    // Before anything is written: a row past the chain's head would take the seq of the
    // next append, and a chain that cannot be vouched for must not grow.
    if let Some(broken) = storage.run(|s| s.audit_ends_agree()).await? {
        tracing::error!(audit.seq = broken.seq, audit.break_kind = %broken.kind, "audit chain ends disagree");
        return Err(BuildError::AuditChain(broken));
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let ephemeral = ephemeral::connect(
        Some(config.ephemeral.url.expose_secret()),
        &config.ephemeral.prefix,
    )
    .await?;
    // A deployment-wide secret for keyed digests (e.g. decoy credential IDs), kept in the
    // database so every replica derives the same values.
    let candidate = service::tokens::secret_token();
    let now = clock.unix();
    let lookup_key = storage
        .run(move |s| s.setting_or_insert("lookup_key", &candidate, now))
        .await?;
    let keys =
        service::oidc::keys::KeyCache::load(&storage, clock.now(), config.oidc.key_reload_secs)
            .await?;
    let oidc = service::oidc::Provider::new(&config, keys)?;
    let saml_keys =
        service::saml::keys::KeyCache::load(&storage, now, config.saml.key_reload_secs).await?;
    let saml = service::saml::Idp::new(&config, saml_keys)?;
    let ranges = |list: &[String]| -> Vec<(std::net::IpAddr, u8)> {
        list.iter().filter_map(|p| config::parse_cidr(p)).collect()
    };
    let proxies = ranges(&config.server.trusted_proxies);
    let metrics_allow = ranges(&config.server.metrics_allow);
    let state = AppState {
        config: Arc::new(config),
        storage,
        ephemeral,
        verifier: Arc::new(verifier),
        clock,
        origin: origin.into(),
        rp_id: rp_id.into(),
        proxies: proxies.into(),
        metrics: Arc::default(),
        metrics_allow: metrics_allow.into(),
        lookup_key: lookup_key.into_bytes().into(),
        alerts: Arc::new(alerts),
        oidc: Arc::new(oidc),
        saml: Arc::new(saml),
    };
    service::workspaces::sync_from_config(&state).await?;
    service::oidc::clients::sync_from_config(&state).await?;
    service::saml::registry::sync_from_config(&state).await?;
    let bootstrap = if opts.bootstrap {
        service::invitations::ensure_bootstrap(&state).await?
    } else {
        None
    };
    Ok(App { state, bootstrap })
}

/// Starts the HTTP server on `listener`; the returned server runs until stopped.
pub fn start(
    state: &AppState,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let workers = match state.config.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let shutdown = state.config.server.shutdown_timeout_secs;
    service::siem::spawn(state).map_err(std::io::Error::other)?;
    let state = state.clone();
    // The factory runs on each worker's thread.
    Ok(
        actix_web::HttpServer::new(move || http::app(state.for_worker()))
            .listen(listener)?
            .workers(workers)
            .shutdown_timeout(shutdown)
            .run(),
    )
}
