//! Browser sessions, kept in the ephemeral store under the digest of the cookie value.
//!
//! A browser gets an anonymous session when it starts a ceremony (it carries the CSRF
//! token and binds challenges to this browser). Signing in or enrolling a first key
//! rotates the session to a new token bound to the member.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::{NewAuditEvent, Outcome};
use crate::ephemeral::{Entry, Then};
use crate::error::{Error, Result};
use crate::service::{alerts, limits, refusals, tokens, Actor};
use crate::state::AppState;
use crate::storage::{SessionRecord, SessionScope};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionData {
    /// Stable id of this session (not the cookie value), used to bind ceremonies.
    pub id: String,
    pub csrf: String,
    pub user_id: Option<String>,
    pub role: Option<String>,
    pub created_at: i64,
    pub authenticated_at: Option<i64>,
    /// Absolute end of the session.
    pub expires_at: i64,
    pub last_seen: i64,
    /// The key whose touch signed this session in (`None` for enrolment and anonymous
    /// sessions); what OpenID Connect tokens say about the sign-in comes from it.
    #[serde(default)]
    pub key_id: Option<String>,
    /// Whether that touch verified the user (PIN or fingerprint).
    #[serde(default)]
    pub user_verified: bool,
}

/// A loaded session and the cookie token it was found under.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub data: SessionData,
}

impl Session {
    pub fn user_id(&self) -> Option<&str> {
        self.data.user_id.as_deref()
    }

    pub fn is_admin(&self) -> bool {
        self.data.user_id.is_some() && self.data.role.as_deref() == Some("admin")
    }

    /// Checks a submitted CSRF token against this session's, in constant time.
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<()> {
        match submitted {
            Some(s) if tokens::same_secret(s, &self.data.csrf) => Ok(()),
            _ => Err(Error::Csrf {
                user: self.data.user_id.clone(),
            }),
        }
    }
}

fn key(token: &str) -> String {
    format!("sess:{}", tokens::digest_hex(token.as_bytes()))
}

fn ttl_for(state: &AppState, data: &SessionData) -> u64 {
    let now = state.now();
    let cfg = &state.config.session;
    let cap = if data.user_id.is_some() {
        cfg.idle_ttl_secs
    } else {
        cfg.anonymous_ttl_secs
    };
    let remaining = (data.expires_at - now).max(1) as u64;
    remaining.min(cap)
}

/// A session as the store keeps it: its key, its body and its time to live.
pub(crate) struct Stored {
    pub key: String,
    pub body: Vec<u8>,
    pub ttl: Duration,
}

impl Stored {
    pub fn of(state: &AppState, session: &Session) -> Result<Stored> {
        Ok(Stored {
            key: key(&session.token),
            body: serde_json::to_vec(&session.data).map_err(|e| Error::Internal(e.to_string()))?,
            ttl: Duration::from_secs(ttl_for(state, &session.data)),
        })
    }

    pub fn entry(&self) -> Entry<'_> {
        Entry {
            key: &self.key,
            value: &self.body,
            ttl: self.ttl,
        }
    }
}

async fn save(state: &AppState, session: &Session) -> Result<()> {
    let stored = Stored::of(state, session)?;
    state
        .ephemeral
        .set_ex(&stored.key, &stored.body, stored.ttl)
        .await?;
    Ok(())
}

/// Loads the session for a cookie value; `None` when unknown, expired or idle too long.
pub async fn load(state: &AppState, token: &str) -> Result<Option<Session>> {
    if token.len() > 128 {
        return Ok(None);
    }
    let Some(raw) = state.ephemeral.get(&key(token)).await? else {
        return Ok(None);
    };
    let Ok(mut data) = serde_json::from_slice::<SessionData>(&raw) else {
        return Ok(None);
    };
    let now = state.now();
    if data.expires_at <= now {
        state.ephemeral.delete(&key(token)).await?;
        return Ok(None);
    }
    // Refresh the idle timer at most once a minute, to keep reads cheap.
    let refresh = now - data.last_seen >= 60;
    if refresh {
        data.last_seen = now;
    }
    let session = Session {
        token: token.to_string(),
        data,
    };
    if refresh {
        save(state, &session).await?;
    }
    Ok(Some(session))
}

/// A new anonymous session for a browser starting a ceremony, keeping the CSRF token its
/// page already carries. Not stored yet: the ceremony stores it with its challenge
/// (`ceremony::remember`).
pub fn anonymous(state: &AppState, csrf: &str) -> Session {
    let now = state.now();
    let data = SessionData {
        id: tokens::new_id(),
        csrf: csrf.to_string(),
        user_id: None,
        role: None,
        created_at: now,
        authenticated_at: None,
        expires_at: now + state.config.session.anonymous_ttl_secs as i64,
        last_seen: now,
        key_id: None,
        user_verified: false,
    };
    Session {
        token: tokens::secret_token(),
        data,
    }
}

/// How a session came to be, for the member's session list and the audit chain.
#[derive(Clone, Debug, Default)]
pub struct SignInContext {
    pub key_id: Option<String>,
    pub user_verified: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Binds a member to a fresh session, ending the old one (no session fixation), and
/// records it in the durable session index.
pub async fn sign_in(
    state: &AppState,
    old: Option<&Session>,
    user_id: &str,
    role: &str,
    context: SignInContext,
) -> Result<Session> {
    let fresh = prepare(state, user_id, role, context);
    let record = fresh.record.clone();
    let live = activate(state, old, fresh).await?;
    let written = state
        .storage
        .run({
            let record = record.clone();
            move |s| s.insert_session(&record)
        })
        .await;
    if let Err(e) = written {
        discard(state, &live).await;
        return Err(e.into());
    }
    announce(state, &record);
    Ok(live)
}

/// A signed-in session made but not live yet: [`activate`] it, then write
/// [`NewSession::record`] (e.g. in the transaction that audits the sign-in), then
/// [`announce`] it, or [`discard`] it if the record was not written. Live first: ending a
/// member's sessions reads the records and then deletes what is live, so a session made
/// live after its record was written could outlive an ending that came in between.
pub struct NewSession {
    pub record: SessionRecord,
    token: String,
    data: SessionData,
}

/// Makes the session `sign_in` would, without storing anything.
pub fn prepare(state: &AppState, user_id: &str, role: &str, context: SignInContext) -> NewSession {
    let now = state.now();
    let data = SessionData {
        id: tokens::ordered_id(),
        csrf: tokens::secret_token(),
        user_id: Some(user_id.to_string()),
        role: Some(role.to_string()),
        created_at: now,
        authenticated_at: Some(now),
        expires_at: now + state.config.session.absolute_ttl_secs as i64,
        last_seen: now,
        key_id: context.key_id.clone(),
        user_verified: context.user_verified,
    };
    let token = tokens::secret_token();
    let record = SessionRecord {
        id: data.id.clone(),
        user_id: user_id.to_string(),
        token_hash: tokens::digest_hex(token.as_bytes()),
        key_id: context.key_id,
        user_verified: context.user_verified,
        ip: context.ip,
        user_agent: context.user_agent.map(|ua| ua.chars().take(200).collect()),
        created_at: now,
        expires_at: data.expires_at,
        ended_at: None,
        ended_by: None,
    };
    NewSession {
        record,
        token,
        data,
    }
}

/// Ends the old session (no session fixation) and makes the new one live, in one step;
/// its record is written next (see [`NewSession`]).
pub async fn activate(
    state: &AppState,
    old: Option<&Session>,
    fresh: NewSession,
) -> Result<Session> {
    let NewSession { token, data, .. } = fresh;
    let fresh = Session { token, data };
    // The old session ends and the new one starts in one step.
    let stored = Stored::of(state, &fresh)?;
    let old_key = old.map(|old| key(&old.token));
    let delete: Vec<&str> = old_key.iter().map(String::as_str).collect();
    let write = Then::Write {
        delete: &delete,
        set: &[stored.entry()],
    };
    limits::counted(state, &[], write).await?;
    Ok(fresh)
}

/// Sends the new-session alert, once the session's record is written.
pub fn announce(state: &AppState, record: &SessionRecord) {
    if state.alerts.enabled() {
        state
            .alerts
            .session_created(state, alerts::NewSession::of(record));
    }
}

/// Ends a session made live whose record could not be written (or whose sign-in was
/// refused as it was written). A failure here is logged: the session's token never left
/// the server, and it expires on its own.
pub async fn discard(state: &AppState, live: &Session) {
    if let Err(e) = state.ephemeral.delete(&key(&live.token)).await {
        tracing::warn!(error = %e, "a session whose sign-in was not recorded could not be deleted");
    }
}

/// Who ended a session whose live record had gone from the ephemeral store (idle too
/// long, or lost with a Redis restarted without persistence).
pub const LAPSED: &str = "lapsed";

/// The member's live sessions, newest first. A session the database lists whose live
/// record has gone from the ephemeral store is over (it expired idle, or the store lost it
/// in a restart without persistence): it is recorded as ended by [`LAPSED`] now and not
/// listed. The live record is made before the database record ([`prepare`]), so a session
/// being signed in is never taken for gone. Should the store not answer, the records are
/// listed as they are.
pub async fn list(state: &AppState, user_id: &str) -> Result<Vec<SessionRecord>> {
    let uid = user_id.to_string();
    let now = state.now();
    let mut records = state
        .storage
        .run(move |s| s.live_sessions(&uid, now))
        .await?;
    let mut gone = Vec::new();
    for record in &records {
        match state
            .ephemeral
            .get(&format!("sess:{}", record.token_hash))
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => gone.push(record.id.clone()),
            Err(_) => return Ok(records),
        }
    }
    if gone.is_empty() {
        return Ok(records);
    }
    let (uid, ids) = (user_id.to_string(), gone.clone());
    let ended = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                for id in &ids {
                    tx.end_sessions(&uid, SessionScope::One(id), LAPSED, now)?;
                }
                Ok(())
            })
        })
        .await;
    if let Err(e) = ended {
        tracing::warn!(error = %e, "sessions whose live records had gone could not be recorded as ended");
    }
    records.retain(|r| !gone.contains(&r.id));
    Ok(records)
}

/// Ends sessions of `user_id` (one, all, or those a key signed in) and audits it.
/// Returns how many ended.
pub async fn end(
    state: &AppState,
    actor: &Actor,
    user_id: &str,
    scope: SessionScope<'_>,
) -> Result<usize> {
    let now = state.now();
    let (uid, by) = (user_id.to_string(), actor.id.clone());
    let scope_json = match scope {
        SessionScope::One(id) => serde_json::json!({ "session": id }),
        SessionScope::All => serde_json::json!("all"),
        SessionScope::Key(k) => serde_json::json!({ "key_id": k }),
    };
    // The live records go first, all in one step: should that fail, nothing changed and
    // ending them again works; should the database step fail after it, the sessions are
    // over already (they stay listed, and ending them again records it).
    let owned: OwnedScope = scope.into();
    let lookup = (uid.clone(), owned.clone());
    let live: Vec<String> = state
        .storage
        .run(move |s| s.transaction(|tx| tx.live_sessions_in(&lookup.0, lookup.1.as_scope(), now)))
        .await?
        .into_iter()
        .map(|s| s.token_hash)
        .collect();
    forget(state, &live).await?;
    let (actor_id, ip, subject) = (
        actor.id.clone(),
        actor.ip.clone(),
        format!("user:{user_id}"),
    );
    let ended = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let ended = tx.end_sessions(&uid, owned.as_scope(), &by, now)?;
                if !ended.is_empty() {
                    let event = NewAuditEvent {
                        actor: actor_id.clone(),
                        action: "session.ended".into(),
                        subject: subject.clone(),
                        outcome: Outcome::Success,
                        reason: None,
                        details: serde_json::json!({ "scope": scope_json, "count": ended.len(), "ip": ip }),
                    };
                    tx.append_audit(&event, now)?;
                }
                Ok(ended)
            })
        })
        .await?;
    // Sessions that began between the two steps.
    let late: Vec<String> = ended
        .iter()
        .filter(|h| !live.contains(h))
        .cloned()
        .collect();
    forget(state, &late).await?;
    Ok(ended.len())
}

/// Deletes the live records of the sessions whose token digests are `hashes`, in one step.
async fn forget(state: &AppState, hashes: &[String]) -> Result<()> {
    if hashes.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = hashes.iter().map(|h| format!("sess:{h}")).collect();
    let delete: Vec<&str> = keys.iter().map(String::as_str).collect();
    let write = Then::Write {
        delete: &delete,
        set: &[],
    };
    limits::counted(state, &[], write).await?;
    Ok(())
}

/// `SessionScope` with owned ids, to cross into the blocking pool.
#[derive(Clone)]
enum OwnedScope {
    One(String),
    All,
    Key(String),
}

impl From<SessionScope<'_>> for OwnedScope {
    fn from(s: SessionScope<'_>) -> Self {
        match s {
            SessionScope::One(id) => OwnedScope::One(id.into()),
            SessionScope::All => OwnedScope::All,
            SessionScope::Key(k) => OwnedScope::Key(k.into()),
        }
    }
}

impl OwnedScope {
    fn as_scope(&self) -> SessionScope<'_> {
        match self {
            OwnedScope::One(id) => SessionScope::One(id),
            OwnedScope::All => SessionScope::All,
            OwnedScope::Key(k) => SessionScope::Key(k),
        }
    }
}

pub async fn sign_out(state: &AppState, session: &Session) -> Result<()> {
    state.ephemeral.delete(&key(&session.token)).await?;
    if let Some(uid) = session.user_id() {
        let (uid, id, now) = (uid.to_string(), session.data.id.clone(), state.now());
        state
            .storage
            .run(move |s| s.end_sessions(&uid, SessionScope::One(&id), "self", now))
            .await?;
    }
    Ok(())
}

/// The step-up rule, the one place it is written: sensitive actions (adding or revoking
/// keys, admin changes to members and recovery) need a key touch within
/// `session.step_up_secs`, not only a live session: a stolen cookie must not be enough to
/// enrol the thief's own key. Checked when a ceremony that needs it starts, again when it
/// finishes (a challenge outlives the window by up to its own lifetime), and at each
/// sensitive write; [`step_up`] also audits a refusal.
pub fn require_recent_touch(state: &AppState, session: &Session) -> Result<()> {
    let window = state.config.session.step_up_secs as i64;
    match session.data.authenticated_at {
        Some(at) if state.now() - at <= window => Ok(()),
        Some(_) => Err(Error::Reauthenticate),
        None => Err(Error::Unauthenticated),
    }
}

/// [`require_recent_touch`] before the sensitive write `what` (e.g. `key.revoke`); a
/// stale touch is refused and audited as `step_up.refused` (within the per-address limit
/// of [`refusals::record`]: a stolen cookie can ask again and again).
pub async fn step_up(state: &AppState, session: &Session, actor: &Actor, what: &str) -> Result<()> {
    let Err(err) = require_recent_touch(state, session) else {
        return Ok(());
    };
    if matches!(err, Error::Reauthenticate) {
        let age = session.data.authenticated_at.map(|at| state.now() - at);
        let details = serde_json::json!({
            "request": what,
            "touched_secs_ago": age,
            "step_up_secs": state.config.session.step_up_secs,
        });
        let event = refusals::event(actor, "step_up.refused", &actor.id, &err, details);
        refusals::record(state, actor, event).await?;
    }
    Err(err)
}
