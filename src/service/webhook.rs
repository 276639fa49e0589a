//! Outgoing webhooks, shared by new-session alerts and audit streaming: one HTTP client
//! per receiver (bounded timeout, no redirects, no proxy, only addresses the
//! [`OutboundPolicy`] allows), optional HMAC signatures, and bounded retries with backoff
//! on the blocking pool.
//!
//! A signed body carries `X-Keygate-Signature: t=<unix seconds>,v1=<hex>`, the hex being
//! HMAC-SHA-256 under the receiver's key of `"<t>.<body>"` (the exact bytes sent); each
//! attempt is signed afresh. Failure reasons never carry the URL (it may hold a token).

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::outbound::OutboundPolicy;
use crate::state::Clock;

/// The header carrying the webhook signature.
pub const SIGNATURE_HEADER: &str = "X-Keygate-Signature";
/// The header naming what the body is (`session.created`, `audit.event`).
pub const EVENT_HEADER: &str = "X-Keygate-Event";

/// How often to try and how long to wait between tries.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    /// Before the second attempt; each later wait is four times the one before.
    pub backoff: Duration,
}

/// Why one attempt failed, in words fit for the audit chain.
#[derive(Debug)]
pub struct Failed {
    pub reason: String,
    /// Retrying cannot help (e.g. the mail server refused the recipient for good).
    pub permanent: bool,
}

impl Failed {
    pub fn retry(reason: impl Into<String>) -> Self {
        Failed {
            reason: reason.into(),
            permanent: false,
        }
    }
}

/// Runs `attempt` on the blocking pool up to `retry.attempts` times, waiting `backoff`,
/// then four times as long, between tries. `Ok(attempts used)` or the last failure.
pub async fn with_retries<F>(retry: Retry, attempt: F) -> Result<u32, (u32, Failed)>
where
    F: Fn() -> Result<(), Failed> + Send + Sync + 'static,
{
    let attempt = Arc::new(attempt);
    let mut wait = retry.backoff;
    let mut n = 0;
    loop {
        n += 1;
        let job = attempt.clone();
        let outcome = tokio::task::spawn_blocking(move || job())
            .await
            .unwrap_or_else(|_| Err(Failed::retry("the delivery task stopped")));
        match outcome {
            Ok(()) => return Ok(n),
            Err(f) if f.permanent || n >= retry.attempts.max(1) => return Err((n, f)),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(4);
            }
        }
    }
}

/// `t=<t>,v1=<hex HMAC-SHA-256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// The host of `url` (the only part of a receiver's URL that may be logged or audited).
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// One receiver of JSON POSTs.
pub struct WebhookSender {
    url: SecretString,
    host: String,
    /// Signs bodies when set.
    secret: Option<SecretString>,
    agent: ureq::Agent,
}

impl WebhookSender {
    /// A receiver at `url`; each attempt is bounded by `timeout` and connects only to
    /// addresses `policy` allows.
    pub fn new(
        url: SecretString,
        secret: Option<SecretString>,
        timeout: Duration,
        policy: OutboundPolicy,
    ) -> Self {
        WebhookSender {
            host: host_of(url.expose_secret()),
            url,
            secret,
            agent: http_agent(timeout, policy),
        }
    }

    /// The receiver's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// One attempt: POSTs `body` as JSON; only a 2xx answer delivers.
    pub fn post(&self, clock: &dyn Clock, event: &str, body: &[u8]) -> Result<(), Failed> {
        let mut request = self
            .agent
            .post(self.url.expose_secret())
            .header("Content-Type", "application/json")
            .header(EVENT_HEADER, event);
        if let Some(secret) = &self.secret {
            let signed = signature(secret.expose_secret().as_bytes(), clock.unix(), body);
            request = request.header(SIGNATURE_HEADER, &signed);
        }
        match request.send(body) {
            Ok(res) if res.status().is_success() => Ok(()),
            Ok(res) => Err(Failed::retry(format!(
                "the receiver answered HTTP {}",
                res.status().as_u16()
            ))),
            Err(ureq::Error::Io(io)) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                // The receiver's address is not allowed: trying again cannot help.
                Err(Failed {
                    reason: format!("refused destination: {io}"),
                    permanent: true,
                })
            }
            Err(e) => Err(Failed::retry(http_reason(&e))),
        }
    }

    /// POSTs `body` with bounded retries, off the async threads.
    pub async fn send(
        self: &Arc<Self>,
        retry: Retry,
        clock: Arc<dyn Clock>,
        event: &'static str,
        body: Vec<u8>,
    ) -> Result<u32, (u32, Failed)> {
        let me = self.clone();
        with_retries(retry, move || me.post(clock.as_ref(), event, &body)).await
    }
}

/// Resolves a receiver's name, then refuses the lot when any address it resolved to is
/// one the policy does not allow (a name that mixes a public and a private address is
/// refused, not trimmed). Literal addresses go through here too.
#[derive(Debug)]
struct GuardedResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    policy: OutboundPolicy,
}

impl ureq::unversioned::resolver::Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.inner.resolve(uri, config, timeout)?;
        for addr in addrs.iter() {
            if let Err(refused) = self.policy.check(addr.ip()) {
                tracing::warn!(
                    webhook.host = uri.host().unwrap_or_default(),
                    outbound.refused = %refused.ip,
                    outbound.kind = refused.kind,
                    "webhook destination refused"
                );
                return Err(ureq::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    refused.to_string(),
                )));
            }
        }
        Ok(addrs)
    }
}

/// The HTTP client for a webhook: one attempt bounded by `timeout`, no redirects (a
/// signed body goes only where it was configured to), no proxy from the environment (the
/// address check must see the receiver itself), only addresses `policy` allows, the
/// system's trust store.
fn http_agent(timeout: Duration, policy: OutboundPolicy) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(None)
        .user_agent(concat!("keygate/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        GuardedResolver {
            inner: ureq::unversioned::resolver::DefaultResolver::default(),
            policy,
        },
    )
}

/// A short reason for a failed request that cannot carry the URL or its token.
fn http_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "no answer within the timeout".into(),
        ureq::Error::Io(io) => format!("connection: {}", io.kind()),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Tls(m) => format!("TLS: {m}"),
        ureq::Error::Protocol(_) => "the receiver did not answer in HTTP/1.1".into(),
        _ => "the request failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // Independent check: HMAC-SHA-256("secret", "1700000000.{}") computed by hand
        // with ring's one-shot API.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret");
        let expected = hex::encode(ring::hmac::sign(&key, b"1700000000.{}").as_ref());
        assert_eq!(
            signature(b"secret", 1_700_000_000, b"{}"),
            format!("t=1700000000,v1={expected}")
        );
    }
}
