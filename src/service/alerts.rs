//! Alerts on every new session: a signed JSON webhook and, where SMTP is configured, an
//! e-mail to the member.
//!
//! Delivery never holds up a sign-in: [`Alerts::session_created`] only takes a permit and
//! spawns a task, which looks up the member and the key, then sends with bounded retries.
//! A final failure is an `alert.failed` audit event (channel, receiver host, attempts and a
//! short reason; never the URL, the key or the body). Past `alerts.max_in_flight` an alert
//! is dropped and audited the same way instead of queued, so a dead receiver cannot pile
//! up tasks or connections.
//!
//! The webhook body is signed: `X-Keygate-Signature: t=<unix seconds>,v1=<hex>` where the
//! hex is HMAC-SHA-256 under the configured key of `"<t>.<body>"` (the exact bytes sent).
//! Each attempt is signed afresh with its own `t`.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::webhook::{host_of, with_retries, Failed, Retry, WebhookSender};
use crate::audit::{NewAuditEvent, Outcome};
use crate::config::{Config, ConfigError};
use crate::state::AppState;
use crate::storage::{Credential, User};

pub use super::webhook::{signature, SIGNATURE_HEADER};
/// The event type of a new session, in the body and in `X-Keygate-Event`.
pub const SESSION_CREATED: &str = "session.created";

/// What a sign-in knows about the session it just created.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub session_id: String,
    pub user_id: String,
    pub key_id: Option<String>,
    pub user_verified: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
}

impl NewSession {
    pub fn of(record: &crate::storage::SessionRecord) -> Self {
        NewSession {
            session_id: record.id.clone(),
            user_id: record.user_id.clone(),
            key_id: record.key_id.clone(),
            user_verified: record.user_verified,
            ip: record.ip.clone(),
            user_agent: record.user_agent.clone(),
            created_at: record.created_at,
        }
    }
}

/// The alert channels, built once from `[alerts]`; cheap to share.
pub struct Alerts {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    webhook: Option<Arc<WebhookSender>>,
    email: Option<Arc<Email>>,
    retry: Retry,
    permits: Arc<Semaphore>,
    /// The runtime `build` ran on: alerts outlive the HTTP worker that signed the member in.
    runtime: tokio::runtime::Handle,
}

struct Email {
    transport: SmtpTransport,
    from: Mailbox,
    host: String,
}

impl Alerts {
    /// Alerts that send nothing.
    pub fn disabled() -> Alerts {
        Alerts { inner: None }
    }

    /// Builds the configured channels; must run inside the Tokio runtime that will carry
    /// the deliveries.
    pub fn new(config: &Config) -> Result<Alerts, ConfigError> {
        let cfg = &config.alerts;
        if !cfg.enabled() {
            return Ok(Alerts::disabled());
        }
        let invalid = |m: String| ConfigError::Invalid(m);
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let webhook = match &cfg.webhook_url {
            None => None,
            Some(url) => {
                let secret = cfg
                    .webhook_secret()?
                    .ok_or_else(|| invalid("alerts.webhook_url needs a signing key".into()))?;
                Some(Arc::new(WebhookSender::new(
                    url.clone(),
                    Some(secret),
                    timeout,
                    config.outbound.policy()?,
                )))
            }
        };
        let email = match &cfg.smtp_url {
            None => None,
            Some(url) => {
                let from: Mailbox = cfg
                    .email_from
                    .as_deref()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| invalid(format!("alerts.email_from: {e}")))?;
                let mut builder = SmtpTransport::from_url(url.expose_secret())
                    .map_err(|_| invalid("alerts.smtp_url cannot be used for SMTP".into()))?
                    .timeout(Some(timeout));
                let has_name = url::Url::parse(url.expose_secret())
                    .map(|u| u.path().len() > 1)
                    .unwrap_or(false);
                if !has_name {
                    // Greet with the gateway's own name rather than `localhost`.
                    if let Some(name) = config.public_url()?.host_str() {
                        builder = builder.hello_name(ClientId::Domain(name.to_string()));
                    }
                }
                Some(Arc::new(Email {
                    transport: builder.build(),
                    from,
                    host: host_of(url.expose_secret()),
                }))
            }
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| invalid("alerts need a running Tokio runtime".into()))?;
        Ok(Alerts {
            inner: Some(Arc::new(Inner {
                webhook,
                email,
                retry: Retry {
                    attempts: cfg.attempts,
                    backoff: Duration::from_millis(cfg.backoff_ms),
                },
                permits: Arc::new(Semaphore::new(cfg.max_in_flight)),
                runtime,
            })),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Sends the alerts for a new session in the background and returns at once.
    pub fn session_created(&self, state: &AppState, session: NewSession) {
        let Some(inner) = &self.inner else { return };
        let state = state.clone();
        match inner.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let delivery = deliver(inner.clone(), state, session, permit);
                inner.runtime.spawn(delivery);
            }
            Err(_) => {
                tracing::warn!(
                    session = %session.session_id,
                    "alert dropped: alerts.max_in_flight deliveries are already under way"
                );
                let channels: Vec<(&'static str, String)> = inner.channels().collect();
                inner.runtime.spawn(async move {
                    for (channel, host) in channels {
                        let reason = "dropped: too many alerts in flight";
                        audit_failure(&state, &session, None, channel, &host, 0, reason).await;
                    }
                });
            }
        }
    }
}

impl Inner {
    fn channels(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        let webhook = self
            .webhook
            .as_ref()
            .map(|w| ("webhook", w.host().to_string()));
        let email = self.email.as_ref().map(|e| ("email", e.host.clone()));
        webhook.into_iter().chain(email)
    }
}

/// The webhook body for a new session.
fn payload(
    state: &AppState,
    alert_id: &str,
    session: &NewSession,
    user: &User,
    key: Option<&Credential>,
) -> serde_json::Value {
    let time = time::OffsetDateTime::from_unix_timestamp(session.created_at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    json!({
        "event": SESSION_CREATED,
        "id": alert_id,
        "time": time,
        "organisation": state.config.organisation.name,
        "member": { "id": user.id, "email": user.email },
        "session": {
            "id": session.session_id,
            "user_verified": session.user_verified,
            "ip": session.ip,
            "user_agent": session.user_agent,
        },
        "key": key.map(|k| json!({ "id": k.id, "model": k.model, "aaguid": k.aaguid })),
    })
}

fn email_text(state: &AppState, payload: &serde_json::Value, user: &User) -> String {
    let or_unknown = |v: &serde_json::Value| v.as_str().unwrap_or("unknown").to_string();
    let key = &payload["key"];
    let key = match key["model"].as_str() {
        Some(model) => model.to_string(),
        None if key.is_object() => "an uncatalogued security key".to_string(),
        None => "a security key".to_string(),
    };
    format!(
        "Hello {name},\n\n\
         a new session was started for {email} at {org}.\n\n\
         When:    {time}\n\
         Key:     {key}\n\
         Address: {ip}\n\
         Browser: {ua}\n\n\
         If this was not you, sign out everywhere at\n\
         {link}\n\
         and tell your administrator.\n",
        name = user.display_name,
        email = user.email,
        org = state.config.organisation.name,
        time = or_unknown(&payload["time"]),
        ip = or_unknown(&payload["session"]["ip"]),
        ua = or_unknown(&payload["session"]["user_agent"]),
        link = state.link("/me"),
    )
}

async fn deliver(
    inner: Arc<Inner>,
    state: AppState,
    session: NewSession,
    _permit: OwnedSemaphorePermit,
) {
    let (uid, kid) = (session.user_id.clone(), session.key_id.clone());
    let found = state
        .storage
        .run(move |s| {
            let user = s.user_by_id(&uid)?;
            let key = match kid {
                Some(k) => s.credential_by_id(&k)?,
                None => None,
            };
            Ok((user, key))
        })
        .await;
    let (user, key) = match found {
        Ok((Some(user), key)) => (user, key),
        Ok((None, _)) => {
            tracing::warn!(session = %session.session_id, "alert skipped: the member is gone");
            return;
        }
        Err(e) => {
            for (channel, host) in inner.channels() {
                let reason = format!("member lookup failed: {e}");
                audit_failure(&state, &session, None, channel, &host, 0, &reason).await;
            }
            return;
        }
    };
    let alert_id = crate::service::tokens::new_id();
    let body = payload(&state, &alert_id, &session, &user, key.as_ref());
    let webhook = async {
        if let Some(hook) = &inner.webhook {
            let bytes = body.to_string().into_bytes();
            let outcome = hook
                .send(inner.retry, state.clock.clone(), SESSION_CREATED, bytes)
                .await;
            report(&state, &session, &alert_id, "webhook", hook.host(), outcome).await;
        }
    };
    let email = async {
        if let Some(mail) = &inner.email {
            let outcome = match message(&state, mail, &body, &user) {
                Ok(msg) => {
                    let mail = mail.clone();
                    with_retries(inner.retry, move || send_mail(&mail, &msg)).await
                }
                Err(reason) => Err((0, Failed::retry(reason))),
            };
            report(&state, &session, &alert_id, "email", &mail.host, outcome).await;
        }
    };
    tokio::join!(webhook, email);
}

fn message(
    state: &AppState,
    mail: &Email,
    payload: &serde_json::Value,
    user: &User,
) -> Result<Message, String> {
    let address = user
        .email
        .parse()
        .map_err(|_| "the member's address cannot be mailed".to_string())?;
    Message::builder()
        .from(mail.from.clone())
        .to(Mailbox::new(Some(user.display_name.clone()), address))
        .subject(format!("New sign-in to {}", state.config.organisation.name))
        .header(ContentType::TEXT_PLAIN)
        .body(email_text(state, payload, user))
        .map_err(|e| format!("the message cannot be built: {e}"))
}

fn send_mail(mail: &Email, msg: &Message) -> Result<(), Failed> {
    match mail.transport.send(msg) {
        Ok(_) => Ok(()),
        Err(e) => {
            let reason = match e.status() {
                Some(code) => format!("the mail server answered {code}"),
                None if e.is_timeout() => "no answer within alerts.timeout_ms".into(),
                None if e.is_tls() => "TLS failed".into(),
                None => "the mail server could not be reached".into(),
            };
            Err(Failed {
                reason,
                permanent: e.is_permanent(),
            })
        }
    }
}

async fn report(
    state: &AppState,
    session: &NewSession,
    alert_id: &str,
    channel: &'static str,
    host: &str,
    outcome: Result<u32, (u32, Failed)>,
) {
    match outcome {
        Ok(attempts) => tracing::info!(
            alert = alert_id,
            session = %session.session_id,
            channel,
            attempts,
            "alert sent"
        ),
        Err((attempts, failed)) => {
            tracing::warn!(
                alert = alert_id,
                session = %session.session_id,
                channel,
                attempts,
                reason = %failed.reason,
                "alert failed"
            );
            let reason = &failed.reason;
            audit_failure(
                state,
                session,
                Some(alert_id),
                channel,
                host,
                attempts,
                reason,
            )
            .await;
        }
    }
}

/// The `alert.failed` event: who it was about, the channel and the receiver's host; never
/// the URL, the key or the body.
async fn audit_failure(
    state: &AppState,
    session: &NewSession,
    alert_id: Option<&str>,
    channel: &str,
    host: &str,
    attempts: u32,
    reason: &str,
) {
    let event = NewAuditEvent {
        actor: "system".into(),
        action: "alert.failed".into(),
        subject: format!("user:{}", session.user_id),
        outcome: Outcome::Failure,
        reason: Some(reason.to_string()),
        details: json!({
            "channel": channel,
            "host": host,
            "attempts": attempts,
            "session_id": session.session_id,
            "alert_id": alert_id,
        }),
    };
    let now = state.now();
    if let Err(e) = state
        .storage
        .run(move |s| s.append_audit(&event, now).map(|_| ()))
        .await
    {
        tracing::error!(error = %e, "cannot audit a failed alert");
    }
}
