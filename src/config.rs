//! Typed configuration, layered: built-in defaults → TOML file → `KEYGATE__…` environment.
//!
//! Every section rejects unknown keys, so a typo is an error that names the key
//! instead of a setting silently ignored. Values that may hold credentials (database and
//! Redis URLs) are `SecretString`s: they never appear in `Debug` output or in logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::attestation::Policy;

/// Prefix of environment variables that override the file; `__` separates levels:
/// `KEYGATE__DATABASE__URL=postgres://…` sets `[database] url`.
pub const ENV_PREFIX: &str = "KEYGATE__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub organisation: OrganisationConfig,
    pub webauthn: WebauthnConfig,
    pub database: DatabaseConfig,
    pub ephemeral: EphemeralConfig,
    pub session: SessionConfig,
    pub enrolment: EnrolmentConfig,
    pub attestation: AttestationConfig,
    pub policy: Policy,
    pub rate_limit: RateLimitConfig,
    pub alerts: AlertsConfig,
    /// Streaming every new audit event to a SIEM.
    pub audit: AuditConfig,
    /// Where keygate's own outgoing requests (webhooks) may go.
    pub outbound: OutboundConfig,
    /// Workspaces declared here are kept in step at start-up (GitOps).
    pub workspaces: Vec<crate::service::workspaces::WorkspaceConfig>,
    /// The OpenID Connect provider: token lifetimes, keys and declared clients.
    pub oidc: crate::service::oidc::OidcConfig,
    /// The SAML identity provider: lifetimes, skew and declared service providers.
    pub saml: crate::service::saml::SamlConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Socket address to listen on.
    pub bind: String,
    /// The URL users reach keygate at; its origin is the WebAuthn origin.
    pub public_url: String,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// Seconds to let in-flight requests finish on shutdown.
    pub shutdown_timeout_secs: u64,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed.
    /// Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// Peers (addresses or CIDR ranges) `GET /metrics` answers, when asked directly (a
    /// request carrying `X-Forwarded-For` or `Forwarded` came through a proxy and gets a
    /// 404). Empty: nobody.
    pub metrics_allow: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrganisationConfig {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebauthnConfig {
    /// Relying-party ID; defaults to the host of `server.public_url`.
    pub rp_id: Option<String>,
    pub rp_name: String,
    /// Lifetime of a ceremony challenge.
    pub challenge_ttl_secs: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    #[serde(serialize_with = "redact")]
    pub url: SecretString,
    pub pool_size: Option<u32>,
    /// How long a request waits for a pooled connection before it fails (503): short, so
    /// that while the database is down requests and `/readyz` fail fast.
    pub acquire_timeout_ms: u64,
    /// SQLite: how large the write-ahead log may grow under steady writes before writers
    /// pause (≈ 20 ms) for it to restart from its beginning.
    pub sqlite_log_limit_mib: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EphemeralConfig {
    /// `memory://` (in-process, one replica only) or `redis://host:port/db`.
    #[serde(serialize_with = "redact")]
    pub url: SecretString,
    /// Prefix of every key, so several deployments can share one Redis.
    pub prefix: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Absolute lifetime of a signed-in session.
    pub absolute_ttl_secs: u64,
    /// A session unused this long ends.
    pub idle_ttl_secs: u64,
    /// Lifetime of a browser session that has not signed in (ceremonies in progress).
    pub anonymous_ttl_secs: u64,
    /// Adding or revoking keys needs a key touch at most this old.
    pub step_up_secs: u64,
    pub cookie_name: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrolmentConfig {
    /// Lifetime of an invitation link.
    pub invitation_ttl_secs: u64,
    /// Lifetime of the first admin's bootstrap link.
    pub bootstrap_ttl_secs: u64,
    /// How long a key-recovery request waits for its second admin.
    pub recovery_request_ttl_secs: u64,
    /// Lifetime of the one-time recovery link an approval issues.
    pub recovery_link_ttl_secs: u64,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttestationConfig {
    /// PEM files of extra FIDO trust anchors (kept apart from TLS trust).
    pub extra_roots: Vec<PathBuf>,
    /// PEM files of extra intermediates used only for path building.
    pub extra_intermediates: Vec<PathBuf>,
    /// Extra authenticator models, beyond the built-in Yubico catalogue.
    pub extra_models: Vec<ExtraModel>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraModel {
    pub aaguid: String,
    pub model: String,
    #[serde(default)]
    pub fips: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Ceremony starts and finishes per client address per minute.
    pub ceremonies_per_minute: u64,
    /// Sign-in requests from applications (OIDC authorization, SAML single sign-on and
    /// IdP-initiated sign-in) per client address per minute, counted together: each may
    /// store a pending request in the shared store, or issue a code and an audit event.
    pub authorization_requests_per_minute: u64,
    /// Compliance reports (and evidence) one OpenID Connect client may pull over the API
    /// per minute (`GET /api/compliance/report`, `/api/compliance/evidence`).
    pub compliance_reports_per_minute: u64,
    /// Audit events per kind of refusal (`signin.refused`, `enrolment.refused`,
    /// `csrf.refused`…) that one client address may cause per minute when no account is
    /// proven; past it one `audit.throttled` event, then log lines only.
    pub refusal_events_per_minute: u64,
}

/// Alerts on every new session: a signed JSON webhook and, where SMTP is configured, an
/// e-mail to the member. Nothing is sent while neither is set.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// `https://…` (plain http only to localhost) that receives a signed JSON POST per new
    /// session. Redacted like the database URL: chat webhooks carry a token in the path.
    #[serde(
        serialize_with = "redact_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub webhook_url: Option<SecretString>,
    /// The HMAC-SHA-256 key that signs webhook bodies, from the environment
    /// (`KEYGATE__ALERTS__WEBHOOK_SECRET`); or see `webhook_secret_file`.
    #[serde(
        serialize_with = "redact_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub webhook_secret: Option<SecretString>,
    /// A file holding the HMAC key (surrounding whitespace is ignored).
    pub webhook_secret_file: Option<PathBuf>,
    /// `smtps://user:pass@host[:465]`, `smtp://user:pass@host[:587]?tls=required`
    /// (STARTTLS), or plain `smtp://` to a relay on localhost: e-mails the member on every
    /// new session.
    #[serde(
        serialize_with = "redact_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub smtp_url: Option<SecretString>,
    /// Sender of alert e-mails, e.g. `keygate <keygate@example.com>`; required with SMTP.
    pub email_from: Option<String>,
    /// Tries per alert and channel (a webhook answer other than 2xx, a timeout or a refused
    /// connection is retried; a permanent SMTP refusal is not).
    pub attempts: u32,
    /// Wait before the second attempt; each later wait is four times the one before.
    pub backoff_ms: u64,
    /// Limit of one attempt, connection to answer.
    pub timeout_ms: u64,
    /// Alerts being delivered at once; past it an alert is dropped (and audited) rather
    /// than queued, so a dead receiver cannot pile up work.
    pub max_in_flight: usize,
}

impl AlertsConfig {
    pub fn enabled(&self) -> bool {
        self.webhook_url.is_some() || self.smtp_url.is_some()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(raw) = &self.webhook_url {
            let Ok(url) = Url::parse(raw.expose_secret()) else {
                return invalid("alerts.webhook_url is not a URL".into());
            };
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            if host.is_empty() || !matches!(url.scheme(), "http" | "https") {
                return invalid("alerts.webhook_url must be an http(s) URL with a host".into());
            }
            if url.scheme() != "https" && !is_loopback_host(&host) {
                return invalid(
                    "alerts.webhook_url must use https (plain http is only for localhost)".into(),
                );
            }
            match (&self.webhook_secret, &self.webhook_secret_file) {
                (None, None) => {
                    return invalid(
                        "alerts.webhook_url needs a signing key: alerts.webhook_secret_file or KEYGATE__ALERTS__WEBHOOK_SECRET"
                            .into(),
                    )
                }
                (Some(_), Some(_)) => {
                    return invalid(
                        "set one of alerts.webhook_secret and alerts.webhook_secret_file, not both"
                            .into(),
                    )
                }
                (Some(secret), None) => check_webhook_secret(secret.expose_secret())?,
                (None, Some(_)) => {}
            }
        } else if self.webhook_secret.is_some() || self.webhook_secret_file.is_some() {
            return invalid("a webhook secret is set but alerts.webhook_url is not".into());
        }
        if let Some(raw) = &self.smtp_url {
            let Ok(url) = Url::parse(raw.expose_secret()) else {
                return invalid("alerts.smtp_url is not a URL".into());
            };
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let starttls = url
                .query_pairs()
                .any(|(k, v)| k == "tls" && v == "required");
            if host.is_empty() || !matches!(url.scheme(), "smtp" | "smtps") {
                return invalid(
                    "alerts.smtp_url must be an smtp:// or smtps:// URL with a host".into(),
                );
            }
            if url.scheme() == "smtp" && !starttls && !is_loopback_host(&host) {
                return invalid(
                    "alerts.smtp_url must use smtps:// or smtp://…?tls=required (plain smtp is only for localhost)"
                        .into(),
                );
            }
            match &self.email_from {
                Some(from) if from.contains('@') => {}
                _ => {
                    return invalid(
                        "alerts.email_from (e.g. \"keygate <keygate@example.com>\") is required with alerts.smtp_url"
                            .into(),
                    )
                }
            }
        }
        for (name, value, min, max) in [
            ("alerts.attempts", u64::from(self.attempts), 1, 10),
            ("alerts.backoff_ms", self.backoff_ms, 0, 60_000),
            ("alerts.timeout_ms", self.timeout_ms, 100, 60_000),
            ("alerts.max_in_flight", self.max_in_flight as u64, 1, 10_000),
        ] {
            if value < min || value > max {
                return invalid(format!("{name} = {value} is outside {min}..={max}"));
            }
        }
        Ok(())
    }

    /// The webhook signing key, from the environment or its file.
    pub fn webhook_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        if let Some(secret) = &self.webhook_secret {
            return Ok(Some(secret.clone()));
        }
        let Some(path) = &self.webhook_secret_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Invalid(format!(
                "alerts.webhook_secret_file {}: {e}",
                path.display()
            ))
        })?;
        check_webhook_secret(text.trim())?;
        Ok(Some(SecretString::from(text.trim().to_string())))
    }
}

fn check_webhook_secret(secret: &str) -> Result<(), ConfigError> {
    if secret.len() < 16 {
        return Err(ConfigError::Invalid(
            "the webhook secret must be at least 16 characters".into(),
        ));
    }
    Ok(())
}

fn redact<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("<redacted>")
}

fn redact_some<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

/// keygate's own outgoing requests (alert and SIEM webhooks): loopback, private,
/// link-local and other special-purpose addresses are refused unless listed here
/// (`crate::outbound`). Redirects are never followed.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Addresses or CIDR ranges a webhook may reach although they are private, loopback,
    /// link-local… (e.g. `["10.0.3.7/32"]` for an in-cluster collector). Empty: none.
    pub allow_private_ranges: Vec<String>,
}

impl OutboundConfig {
    /// The policy these settings make.
    pub fn policy(&self) -> Result<crate::outbound::OutboundPolicy, ConfigError> {
        crate::outbound::OutboundPolicy::new(&self.allow_private_ranges)
            .map_err(ConfigError::Invalid)
    }

    /// The webhook URLs whose host is a literal address must point where [`Self::policy`]
    /// allows (names are checked again at every connection).
    fn validate(&self, urls: &[(&str, Option<&SecretString>)]) -> Result<(), ConfigError> {
        let policy = self.policy()?;
        for (name, url) in urls {
            let Some(url) = url.and_then(|u| Url::parse(u.expose_secret()).ok()) else {
                continue;
            };
            if let Err(refused) = policy.check_url(&url) {
                return Err(ConfigError::Invalid(format!("{name}: {refused}")));
            }
        }
        Ok(())
    }
}

/// Streaming the audit chain to a SIEM: every new event is POSTed as JSON, in seq order, in
/// the background. Nothing is sent while `siem_webhook_url` is unset.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `https://…` (plain http only to localhost). Redacted: collectors often take a token
    /// in the URL.
    #[serde(
        serialize_with = "redact_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub siem_webhook_url: Option<SecretString>,
    /// Optional HMAC-SHA-256 key that signs each body as alerts are signed, from the
    /// environment (`KEYGATE__AUDIT__SIEM_WEBHOOK_SECRET`); or see `siem_webhook_secret_file`.
    #[serde(
        serialize_with = "redact_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub siem_webhook_secret: Option<SecretString>,
    /// A file holding the HMAC key (surrounding whitespace is ignored).
    pub siem_webhook_secret_file: Option<PathBuf>,
    /// Tries per event while the receiver answers; once an event has failed, later ones
    /// get one try each until one is delivered.
    pub siem_attempts: u32,
    /// Wait before the second attempt; each later wait is four times the one before.
    pub siem_backoff_ms: u64,
    /// Limit of one attempt, connection to answer.
    pub siem_timeout_ms: u64,
    /// How often new events are looked for.
    pub siem_poll_ms: u64,
}

impl AuditConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(raw) = &self.siem_webhook_url {
            let Ok(url) = Url::parse(raw.expose_secret()) else {
                return invalid("audit.siem_webhook_url is not a URL".into());
            };
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            if host.is_empty() || !matches!(url.scheme(), "http" | "https") {
                return invalid("audit.siem_webhook_url must be an http(s) URL with a host".into());
            }
            if url.scheme() != "https" && !is_loopback_host(&host) {
                return invalid(
                    "audit.siem_webhook_url must use https (plain http is only for localhost)"
                        .into(),
                );
            }
        } else if self.siem_webhook_secret.is_some() || self.siem_webhook_secret_file.is_some() {
            return invalid(
                "a SIEM webhook secret is set but audit.siem_webhook_url is not".into(),
            );
        }
        match (&self.siem_webhook_secret, &self.siem_webhook_secret_file) {
            (Some(_), Some(_)) => return invalid(
                "set one of audit.siem_webhook_secret and audit.siem_webhook_secret_file, not both"
                    .into(),
            ),
            (Some(secret), None) => check_webhook_secret(secret.expose_secret())?,
            _ => {}
        }
        for (name, value, min, max) in [
            ("audit.siem_attempts", u64::from(self.siem_attempts), 1, 10),
            ("audit.siem_backoff_ms", self.siem_backoff_ms, 0, 60_000),
            ("audit.siem_timeout_ms", self.siem_timeout_ms, 100, 60_000),
            ("audit.siem_poll_ms", self.siem_poll_ms, 50, 60_000),
        ] {
            if value < min || value > max {
                return invalid(format!("{name} = {value} is outside {min}..={max}"));
            }
        }
        Ok(())
    }

    /// The SIEM signing key, from the environment or its file (`None`: unsigned).
    pub fn siem_webhook_secret(&self) -> Result<Option<SecretString>, ConfigError> {
        if let Some(secret) = &self.siem_webhook_secret {
            return Ok(Some(secret.clone()));
        }
        let Some(path) = &self.siem_webhook_secret_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Invalid(format!(
                "audit.siem_webhook_secret_file {}: {e}",
                path.display()
            ))
        })?;
        check_webhook_secret(text.trim())?;
        Ok(Some(SecretString::from(text.trim().to_string())))
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            siem_webhook_url: None,
            siem_webhook_secret: None,
            siem_webhook_secret_file: None,
            siem_attempts: 5,
            siem_backoff_ms: 500,
            siem_timeout_ms: 5000,
            siem_poll_ms: 1000,
        }
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_secret: None,
            webhook_secret_file: None,
            smtp_url: None,
            email_from: None,
            attempts: 3,
            backoff_ms: 200,
            timeout_ms: 5000,
            max_in_flight: 64,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            public_url: "http://localhost:8080".into(),
            workers: 0,
            shutdown_timeout_secs: 10,
            trusted_proxies: Vec::new(),
            metrics_allow: vec!["127.0.0.1/32".into(), "::1/128".into()],
        }
    }
}

impl Default for OrganisationConfig {
    fn default() -> Self {
        Self {
            name: "Example Organisation".into(),
        }
    }
}

impl Default for WebauthnConfig {
    fn default() -> Self {
        Self {
            rp_id: None,
            rp_name: "keygate".into(),
            challenge_ttl_secs: 300,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://keygate.db"),
            pool_size: None,
            acquire_timeout_ms: 1000,
            sqlite_log_limit_mib: 256,
        }
    }
}

impl Default for EphemeralConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("memory://"),
            prefix: "kg:".into(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            absolute_ttl_secs: 12 * 3600,
            idle_ttl_secs: 3600,
            anonymous_ttl_secs: 900,
            step_up_secs: 300,
            cookie_name: "kg_session".into(),
        }
    }
}

impl Default for EnrolmentConfig {
    fn default() -> Self {
        Self {
            invitation_ttl_secs: 24 * 3600,
            bootstrap_ttl_secs: 3600,
            recovery_request_ttl_secs: 24 * 3600,
            recovery_link_ttl_secs: 3600,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            ceremonies_per_minute: 60,
            authorization_requests_per_minute: 600,
            compliance_reports_per_minute: 6,
            refusal_events_per_minute: 20,
        }
    }
}

/// Secrets come from files or the environment (SPEC §7), never from the config file itself,
/// which is meant to be shared and kept in version control.
fn refuse_inline_secrets(file: &toml::Table) -> Result<(), ConfigError> {
    for (section, key) in [
        ("alerts", "webhook_secret"),
        ("audit", "siem_webhook_secret"),
    ] {
        let inline = file
            .get(section)
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.contains_key(key));
        if inline {
            return Err(ConfigError::Invalid(format!(
                "{section}.{key} may not be written in the config file: set {ENV_PREFIX}{}__{} or {section}.{key}_file",
                section.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            )));
        }
    }
    // URLs written in the file may say where, not with which password: a URL with one
    // (in its user part, or as a `password` parameter, as libpq takes it) is refused.
    for (section, key) in [
        ("database", "url"),
        ("ephemeral", "url"),
        ("alerts", "smtp_url"),
        ("alerts", "webhook_url"),
        ("audit", "siem_webhook_url"),
    ] {
        let value = file
            .get(section)
            .and_then(toml::Value::as_table)
            .and_then(|t| t.get(key))
            .and_then(toml::Value::as_str);
        if value.is_some_and(carries_password) {
            let env = format!(
                "{ENV_PREFIX}{}__{}",
                section.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            );
            let hint = if section == "database" {
                " (or leave the password to PGPASSWORD or ~/.pgpass)"
            } else {
                ""
            };
            return Err(ConfigError::Invalid(format!(
                "{section}.{key} in the config file carries a password: set the URL in {env} instead{hint}"
            )));
        }
    }
    Ok(())
}

/// Whether a URL carries a password: `scheme://user:password@…` or `?password=…`.
fn carries_password(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) => {
            u.password().is_some_and(|p| !p.is_empty())
                || u.query_pairs()
                    .any(|(k, v)| k == "password" && !v.is_empty())
        }
        // Not a URL the parser reads: look for the user-part shape itself.
        Err(_) => url
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?']).next())
            .is_some_and(|authority| {
                authority
                    .rsplit_once('@')
                    .is_some_and(|(user, _)| user.contains(':'))
            }),
    }
}

impl Config {
    /// Defaults, then the file (if any), then `KEYGATE__…` variables from `env`; then validated.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            tree = text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.message().to_string(),
                })?;
            refuse_inline_secrets(&tree)?;
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            overlay_env(&mut tree, &name, rest, &value)?;
        }
        let config: Config = toml::Value::Table(tree)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// What is allowed but likely a mistake, for the log at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut found = Vec::new();
        let shared_db = self.database.url.expose_secret().starts_with("postgres");
        if shared_db && self.ephemeral.url.expose_secret().starts_with("memory:") {
            // A shared database suggests several replicas; each would keep challenges,
            // sessions and rate limits of its own.
            found.push(
                "the database is PostgreSQL but the ephemeral store is in-process (memory://): run one replica only, or set ephemeral.url to a Redis every replica shares"
                    .to_string(),
            );
        }
        found
    }

    /// Checks what types alone cannot: URLs, addresses, the RP ID and lifetimes.
    /// Every rule a config must meet, section by section; the first broken one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        self.validate_stores()?;
        self.validate_ranges()?;
        self.validate_declared()?;
        self.alerts.validate()?;
        self.audit.validate()?;
        self.outbound.validate(&[
            ("alerts.webhook_url", self.alerts.webhook_url.as_ref()),
            (
                "audit.siem_webhook_url",
                self.audit.siem_webhook_url.as_ref(),
            ),
        ])?;
        self.oidc.validate().map_err(ConfigError::Invalid)?;
        self.saml.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The listener, trusted ranges, the public URL and the WebAuthn RP ID under it.
    fn validate_server(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.server.bind.parse::<SocketAddr>().is_err() {
            return invalid(format!(
                "server.bind `{}` is not an address like 127.0.0.1:8080",
                self.server.bind
            ));
        }
        for (key, list) in [
            ("trusted_proxies", &self.server.trusted_proxies),
            ("metrics_allow", &self.server.metrics_allow),
        ] {
            if let Some(p) = list.iter().find(|p| parse_cidr(p).is_none()) {
                return invalid(format!(
                    "server.{key}: `{p}` is not an address or CIDR range"
                ));
            }
        }
        let url = self.public_url()?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if url.scheme() != "https" && !is_loopback_host(&host) {
            return invalid(format!(
                "server.public_url `{}` must use https (plain http is only for localhost)",
                self.server.public_url
            ));
        }
        let rp_id = self.rp_id()?;
        if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
            return invalid(format!(
                "webauthn.rp_id `{rp_id}` must equal the host of server.public_url (`{host}`) or be a parent domain of it"
            ));
        }
        Ok(())
    }

    /// The database and ephemeral store URLs and their limits.
    fn validate_stores(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let db = self.database.url.expose_secret();
        if !(db.starts_with("sqlite://")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return invalid(
                "database.url must start with sqlite://, postgres:// or postgresql://".into(),
            );
        }
        if !(1..=60_000).contains(&self.database.acquire_timeout_ms) {
            return invalid(
                "database.acquire_timeout_ms must be between 1 and 60000 (default 1000)".into(),
            );
        }
        if self.database.sqlite_log_limit_mib == 0 {
            return invalid(
                "database.sqlite_log_limit_mib must be at least 1 (default 256)".into(),
            );
        }
        let eph = self.ephemeral.url.expose_secret();
        if !(eph == "memory://" || eph.starts_with("redis://") || eph.starts_with("rediss://")) {
            return invalid("ephemeral.url must be memory:// or start with redis://".into());
        }
        Ok(())
    }

    /// Lifetimes and rate limits within their bounds.
    fn validate_ranges(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        for (name, value, min, max) in [
            (
                "webauthn.challenge_ttl_secs",
                self.webauthn.challenge_ttl_secs,
                30,
                900,
            ),
            (
                "session.absolute_ttl_secs",
                self.session.absolute_ttl_secs,
                60,
                7 * 24 * 3600,
            ),
            (
                "session.idle_ttl_secs",
                self.session.idle_ttl_secs,
                60,
                7 * 24 * 3600,
            ),
            (
                "session.anonymous_ttl_secs",
                self.session.anonymous_ttl_secs,
                60,
                3600,
            ),
            ("session.step_up_secs", self.session.step_up_secs, 30, 3600),
            (
                "enrolment.invitation_ttl_secs",
                self.enrolment.invitation_ttl_secs,
                300,
                14 * 24 * 3600,
            ),
            (
                "enrolment.bootstrap_ttl_secs",
                self.enrolment.bootstrap_ttl_secs,
                60,
                24 * 3600,
            ),
            (
                "enrolment.recovery_request_ttl_secs",
                self.enrolment.recovery_request_ttl_secs,
                600,
                7 * 24 * 3600,
            ),
            (
                "enrolment.recovery_link_ttl_secs",
                self.enrolment.recovery_link_ttl_secs,
                300,
                24 * 3600,
            ),
            (
                "rate_limit.ceremonies_per_minute",
                self.rate_limit.ceremonies_per_minute,
                1,
                1_000_000,
            ),
            (
                "rate_limit.authorization_requests_per_minute",
                self.rate_limit.authorization_requests_per_minute,
                1,
                1_000_000,
            ),
            (
                "rate_limit.compliance_reports_per_minute",
                self.rate_limit.compliance_reports_per_minute,
                1,
                10_000,
            ),
            (
                "rate_limit.refusal_events_per_minute",
                self.rate_limit.refusal_events_per_minute,
                1,
                10_000,
            ),
        ] {
            if value < min || value > max {
                return invalid(format!("{name} = {value} is outside {min}..={max}"));
            }
        }
        Ok(())
    }

    /// What the file declares: workspaces, policy, cookie name, extra models.
    fn validate_declared(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let mut seen = std::collections::HashSet::new();
        for w in &self.workspaces {
            if !crate::service::workspaces::valid_id(&w.id) || !seen.insert(w.id.as_str()) {
                return invalid(format!(
                    "workspaces: `{}` must be a unique id of letters, digits, - or _",
                    w.id
                ));
            }
            if w.external_id.trim().is_empty() {
                return invalid(format!("workspaces: `{}` needs an external_id", w.id));
            }
        }
        if self.policy.min_keys == 0 {
            return invalid("policy.min_keys must be at least 1".into());
        }
        let cookie = &self.session.cookie_name;
        if cookie.is_empty()
            || !cookie
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return invalid("session.cookie_name must be ASCII letters, digits or _".into());
        }
        for m in &self.attestation.extra_models {
            if m.aaguid.parse::<crate::webauthn::Aaguid>().is_err() {
                return invalid(format!(
                    "attestation.extra_models: `{}` is not an AAGUID",
                    m.aaguid
                ));
            }
        }
        Ok(())
    }

    pub fn public_url(&self) -> Result<Url, ConfigError> {
        let url = Url::parse(&self.server.public_url).map_err(|e| {
            ConfigError::Invalid(format!(
                "server.public_url `{}`: {e}",
                self.server.public_url
            ))
        })?;
        if url.host_str().is_none() || !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid(format!(
                "server.public_url `{}` must be an http(s) URL with a host",
                self.server.public_url
            )));
        }
        Ok(url)
    }

    /// The exact WebAuthn origin (`scheme://host[:port]`) browsers report.
    pub fn origin(&self) -> Result<String, ConfigError> {
        Ok(self
            .public_url()?
            .origin()
            .ascii_serialization()
            .trim_end_matches('/')
            .to_string())
    }

    pub fn rp_id(&self) -> Result<String, ConfigError> {
        match &self.webauthn.rp_id {
            Some(id) => Ok(id.to_ascii_lowercase()),
            None => Ok(self
                .public_url()?
                .host_str()
                .unwrap_or_default()
                .to_ascii_lowercase()),
        }
    }

    /// Cookies are `Secure` everywhere except plain-http localhost development.
    /// Asked for every cookie set, so it reads the scheme without parsing the URL.
    pub fn cookies_secure(&self) -> bool {
        let url = self
            .server
            .public_url
            .trim_start_matches(|c: char| c <= ' ');
        !url.get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("http:"))
    }

    /// The session cookie's name as sent: with `__Host-` ahead of it when cookies are
    /// `Secure`, so the browser keeps it to this host (a sibling subdomain cannot plant or
    /// overwrite it). The CSRF cookie's name is this with `_csrf` after it.
    pub fn session_cookie_name(&self) -> String {
        if self.cookies_secure() {
            format!("__Host-{}", self.session.cookie_name)
        } else {
            self.session.cookie_name.clone()
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// `10.0.0.0/8`, `2001:db8::/32` or a single address (a full-length range).
pub fn parse_cidr(text: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: std::net::IpAddr = addr.trim().parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.trim().parse::<u8>().ok().filter(|l| *l <= max)?,
        None => max,
    };
    Some((addr, len))
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.ends_with(".localhost")
}

/// Sets `a.b.c` from `KEYGATE__A__B__C`. The value is read as a TOML value when it
/// parses as one (numbers, booleans, arrays), and as a plain string otherwise.
fn overlay_env(
    tree: &mut toml::Table,
    name: &str,
    path: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(ConfigError::Env {
            name: name.into(),
            message: "empty key segment".into(),
        });
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let (last, parents) = keys.split_last().ok_or_else(|| ConfigError::Env {
        name: name.into(),
        message: "no key".into(),
    })?;
    let mut table = tree;
    for key in parents {
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            name: name.into(),
            message: format!("`{key}` is not a section"),
        })?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        Config::load(None, env(&[])).expect("defaults validate");
    }

    #[test]
    fn env_overrides_and_types() {
        let c = Config::load(
            None,
            env(&[
                ("KEYGATE__SESSION__IDLE_TTL_SECS", "120"),
                ("KEYGATE__ORGANISATION__NAME", "Acme Corp"),
                ("KEYGATE__POLICY__FIPS_ONLY", "true"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.session.idle_ttl_secs, 120);
        assert_eq!(c.organisation.name, "Acme Corp");
        assert!(c.policy.fips_only);
    }

    #[test]
    fn recovery_lifetimes_are_bounded() {
        let c = Config::default();
        assert_eq!(c.enrolment.recovery_request_ttl_secs, 24 * 3600);
        assert_eq!(c.enrolment.recovery_link_ttl_secs, 3600);
        for (name, value) in [
            ("KEYGATE__ENROLMENT__RECOVERY_LINK_TTL_SECS", "60"),
            ("KEYGATE__ENROLMENT__RECOVERY_LINK_TTL_SECS", "172800"),
            ("KEYGATE__ENROLMENT__RECOVERY_REQUEST_TTL_SECS", "60"),
        ] {
            let err = Config::load(None, env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains("recovery_"), "{err}");
        }
    }

    #[test]
    fn compliance_report_limit_is_read_and_bounded() {
        assert_eq!(
            Config::default().rate_limit.compliance_reports_per_minute,
            6
        );
        let key = "KEYGATE__RATE_LIMIT__COMPLIANCE_REPORTS_PER_MINUTE";
        let c = Config::load(None, env(&[(key, "30")])).unwrap();
        assert_eq!(c.rate_limit.compliance_reports_per_minute, 30);
        for value in ["0", "10001"] {
            let err = Config::load(None, env(&[(key, value)])).unwrap_err();
            assert!(
                err.to_string().contains("compliance_reports_per_minute"),
                "{err}"
            );
        }
    }

    #[test]
    fn sqlite_log_limit_is_read_and_zero_refused() {
        let c = Config::load(
            None,
            env(&[("KEYGATE__DATABASE__SQLITE_LOG_LIMIT_MIB", "64")]),
        )
        .unwrap();
        assert_eq!(c.database.sqlite_log_limit_mib, 64);
        assert_eq!(Config::default().database.sqlite_log_limit_mib, 256);
        let err = Config::load(
            None,
            env(&[("KEYGATE__DATABASE__SQLITE_LOG_LIMIT_MIB", "0")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sqlite_log_limit_mib"), "{err}");
    }

    #[test]
    fn acquire_timeout_is_read_and_bounded() {
        assert_eq!(Config::default().database.acquire_timeout_ms, 1000);
        let c = Config::load(
            None,
            env(&[("KEYGATE__DATABASE__ACQUIRE_TIMEOUT_MS", "250")]),
        )
        .unwrap();
        assert_eq!(c.database.acquire_timeout_ms, 250);
        for bad in ["0", "60001"] {
            let err = Config::load(None, env(&[("KEYGATE__DATABASE__ACQUIRE_TIMEOUT_MS", bad)]))
                .unwrap_err();
            assert!(
                err.to_string().contains("acquire_timeout_ms"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::load(None, env(&[("KEYGATE__SESSION__IDLE_TTL", "5")])).unwrap_err();
        assert!(err.to_string().contains("idle_ttl"), "{err}");
    }

    #[test]
    fn http_outside_localhost_is_refused() {
        let err = Config::load(
            None,
            env(&[("KEYGATE__SERVER__PUBLIC_URL", "http://sso.example.com")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }

    #[test]
    fn rp_id_must_cover_the_host() {
        let err = Config::load(
            None,
            env(&[
                ("KEYGATE__SERVER__PUBLIC_URL", "https://sso.example.com"),
                ("KEYGATE__WEBAUTHN__RP_ID", "example.org"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("rp_id"), "{err}");
        let ok = Config::load(
            None,
            env(&[
                ("KEYGATE__SERVER__PUBLIC_URL", "https://sso.example.com"),
                ("KEYGATE__WEBAUTHN__RP_ID", "example.com"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.origin().unwrap(), "https://sso.example.com");
        assert!(ok.cookies_secure());
        assert_eq!(ok.session_cookie_name(), "__Host-kg_session");
        let dev = Config::load(None, env(&[])).unwrap();
        assert_eq!(
            dev.session_cookie_name(),
            "kg_session",
            "plain-http localhost"
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let c = Config::load(
            None,
            env(&[(
                "KEYGATE__DATABASE__URL",
                "postgres://kg:hunter2@db.internal/kg",
            )]),
        )
        .unwrap();
        assert!(!c.to_redacted_toml().contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_database_scheme_is_refused() {
        let err =
            Config::load(None, env(&[("KEYGATE__DATABASE__URL", "postgress://x/y")])).unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
    }

    #[test]
    fn alerts_are_off_by_default_and_checked_when_on() {
        assert!(!Config::default().alerts.enabled());
        let refused = |pairs: &[(&str, &str)], needle: &str| {
            let err = Config::load(None, env(pairs)).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("s3cret-s3cret-s3cret"), "{err}");
        };
        let url = (
            "KEYGATE__ALERTS__WEBHOOK_URL",
            "https://hooks.example.com/kg",
        );
        let secret = ("KEYGATE__ALERTS__WEBHOOK_SECRET", "s3cret-s3cret-s3cret");
        refused(&[url], "signing key");
        refused(
            &[
                (
                    "KEYGATE__ALERTS__WEBHOOK_URL",
                    "http://hooks.example.com/kg",
                ),
                secret,
            ],
            "https",
        );
        refused(
            &[
                ("KEYGATE__ALERTS__WEBHOOK_URL", "ftp://hooks.example.com/kg"),
                secret,
            ],
            "http(s)",
        );
        refused(&[secret], "webhook_url is not");
        refused(
            &[url, ("KEYGATE__ALERTS__WEBHOOK_SECRET", "short")],
            "at least 16",
        );
        refused(
            &[url, secret, ("KEYGATE__ALERTS__ATTEMPTS", "0")],
            "alerts.attempts",
        );
        refused(
            &[url, secret, ("KEYGATE__ALERTS__TIMEOUT_MS", "10")],
            "alerts.timeout_ms",
        );
        refused(
            &[("KEYGATE__ALERTS__SMTP_URL", "smtp://mail.example.com")],
            "tls=required",
        );
        refused(
            &[("KEYGATE__ALERTS__SMTP_URL", "smtps://mail.example.com")],
            "email_from",
        );
        let ok = Config::load(
            None,
            env(&[
                url,
                secret,
                (
                    "KEYGATE__ALERTS__SMTP_URL",
                    "smtps://kg:hunter2@mail.example.com",
                ),
                ("KEYGATE__ALERTS__EMAIL_FROM", "keygate <kg@example.com>"),
            ]),
        )
        .unwrap();
        assert!(ok.alerts.enabled());
        let shown = format!("{}{:?}", ok.to_redacted_toml(), ok);
        for hidden in ["s3cret", "hunter2", "hooks.example.com"] {
            assert!(!shown.contains(hidden), "{hidden} shown: {shown}");
        }
        // Plain http and smtp are for receivers on this machine; a webhook at a loopback
        // address also needs the address allowed (SSRF, `crate::outbound`).
        let local = [
            ("KEYGATE__ALERTS__WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            secret,
            ("KEYGATE__ALERTS__SMTP_URL", "smtp://localhost:2525"),
            ("KEYGATE__ALERTS__EMAIL_FROM", "kg@localhost"),
        ];
        refused(&local, "loopback");
        let mut allowed = local.to_vec();
        allowed.push((
            "KEYGATE__OUTBOUND__ALLOW_PRIVATE_RANGES",
            "[\"127.0.0.1/32\"]",
        ));
        Config::load(None, env(&allowed)).unwrap();
    }

    #[test]
    fn postgres_with_an_in_process_store_is_warned_about() {
        let pg = [("KEYGATE__DATABASE__URL", "postgres://kg@db.internal/kg")];
        let c = Config::load(None, env(&pg)).unwrap();
        assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
        assert!(c.warnings()[0].contains("memory://"));
        let shared = [
            pg[0],
            ("KEYGATE__EPHEMERAL__URL", "redis://cache.internal:6379"),
        ];
        assert!(Config::load(None, env(&shared))
            .unwrap()
            .warnings()
            .is_empty());
        assert!(
            Config::load(None, env(&[])).unwrap().warnings().is_empty(),
            "dev default"
        );
    }

    #[test]
    fn webhook_secrets_written_in_the_file_are_refused() {
        let dir = std::env::temp_dir().join(format!("kg-inline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keygate.toml");
        for (toml, named) in [
            (
                "[alerts]\nwebhook_url = \"https://hooks.example.com/kg\"\nwebhook_secret = \"inline-secret-0123456789\"\n",
                "alerts.webhook_secret",
            ),
            (
                "[audit]\nsiem_webhook_url = \"https://siem.example.com/in\"\nsiem_webhook_secret = \"inline-secret-0123456789\"\n",
                "audit.siem_webhook_secret",
            ),
        ] {
            std::fs::write(&path, toml).unwrap();
            let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
            assert!(err.contains(named) && err.contains("_file"), "{err}");
            assert!(!err.contains("inline-secret"), "the secret is not echoed: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn passwords_in_urls_written_in_the_file_are_refused() {
        let dir = std::env::temp_dir().join(format!("kg-url-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keygate.toml");
        for (toml, named) in [
            (
                "[database]\nurl = \"postgres://keygate:hunter2-pw@db.internal/keygate\"\n",
                "database.url",
            ),
            (
                "[database]\nurl = \"postgres://db.internal/keygate?user=k&password=hunter2-pw\"\n",
                "database.url",
            ),
            (
                "[ephemeral]\nurl = \"redis://:hunter2-pw@cache.internal:6379\"\n",
                "ephemeral.url",
            ),
            (
                "[alerts]\nsmtp_url = \"smtps://mailer:hunter2-pw@mail.example.com\"\n",
                "alerts.smtp_url",
            ),
            (
                "[audit]\nsiem_webhook_url = \"https://kg:hunter2-pw@siem.example.com/in\"\n",
                "audit.siem_webhook_url",
            ),
        ] {
            std::fs::write(&path, toml).unwrap();
            let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
            assert!(err.contains(named) && err.contains("KEYGATE__"), "{err}");
            assert!(
                !err.contains("hunter2"),
                "the password is not echoed: {err}"
            );
        }
        // Without a password the file may name them; with one, the environment may.
        std::fs::write(
            &path,
            "[database]\nurl = \"postgres://keygate@db.internal/keygate\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            env(&[(
                "KEYGATE__EPHEMERAL__URL",
                "redis://:hunter2-pw@cache.internal:6379",
            )]),
        )
        .unwrap();
        assert_eq!(
            c.database.url.expose_secret(),
            "postgres://keygate@db.internal/keygate"
        );
        assert!(
            carries_password("redis://:pw@[::1:6379"),
            "unparsable, still seen"
        );
        assert!(!carries_password("sqlite://keygate.db"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn webhook_secret_from_a_file() {
        let dir = std::env::temp_dir().join(format!("kg-alerts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "file-secret-0123456789\n").unwrap();
        let c = Config::load(
            None,
            env(&[
                (
                    "KEYGATE__ALERTS__WEBHOOK_URL",
                    "https://hooks.example.com/kg",
                ),
                (
                    "KEYGATE__ALERTS__WEBHOOK_SECRET_FILE",
                    path.to_str().unwrap(),
                ),
            ]),
        )
        .unwrap();
        let secret = c.alerts.webhook_secret().unwrap().unwrap();
        assert_eq!(secret.expose_secret(), "file-secret-0123456789");
        std::fs::write(&path, "short\n").unwrap();
        let err = c.alerts.webhook_secret().unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod readme {
    use super::Config;

    /// The README's configuration block is the defaults, key for key.
    #[test]
    fn readme_example_matches_the_defaults() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("## Configuration")
            .nth(1)
            .expect("README has a Configuration section");
        let block = section
            .split("```toml")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml block");
        let documented: Config = toml::from_str(block).expect("the README block parses");
        assert_eq!(
            documented.to_redacted_toml(),
            Config::default().to_redacted_toml()
        );
    }
}
