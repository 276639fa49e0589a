//! Members, their keys and their compliance, for the member page and the admin pages.

use std::collections::HashMap;

use serde::Serialize;

use crate::audit::{NewAuditEvent, Outcome};
use crate::compliance::report;
use crate::error::{Error, Result};
use crate::service::compliance::DEFAULT_PERIOD_DAYS;
use crate::service::{session, tokens, Actor};
use crate::state::AppState;
use crate::storage::{Credential, SessionRecord, SessionScope, User, UserStatus};

#[derive(Clone, Debug, Serialize)]
pub struct KeyView {
    pub id: String,
    pub nickname: String,
    pub aaguid: String,
    pub model: Option<String>,
    pub fips: bool,
    pub firmware: Option<String>,
    pub fmt: String,
    pub attestation: String,
    pub trust_anchor: Option<String>,
    pub leaf_sha256: Option<String>,
    pub phishing_resistant: bool,
    pub user_verified: bool,
    pub enrolled_at: i64,
    pub enrolled_by: String,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub credential_id: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemberView {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub status: String,
    pub created_at: i64,
    /// For an admin: since when, who made them admin (the actor that created their
    /// invitation: `user:<id>`, `cli`, or `system` for the bootstrap link) and the second
    /// admin who approved it, if one had to.
    pub admin_since: Option<i64>,
    pub admin_granted_by: Option<String>,
    pub admin_approved_by: Option<String>,
    pub active_keys: usize,
    pub compliant: bool,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemberDetail {
    pub member: MemberView,
    pub keys: Vec<KeyView>,
}

impl From<&Credential> for KeyView {
    fn from(c: &Credential) -> Self {
        KeyView {
            id: c.id.clone(),
            nickname: c.nickname.clone(),
            aaguid: c.aaguid.clone(),
            model: c.model.clone(),
            fips: c.fips,
            firmware: c.firmware.clone(),
            fmt: c.fmt.clone(),
            attestation: c.attestation_kind.clone(),
            trust_anchor: c.trust_anchor.clone(),
            leaf_sha256: c.leaf_sha256.clone(),
            phishing_resistant: c.phishing_resistant,
            user_verified: c.user_verified,
            enrolled_at: c.enrolled_at,
            enrolled_by: c.enrolled_by.clone(),
            revoked_at: c.revoked_at,
            last_used_at: c.last_used_at,
            credential_id: tokens::b64url(&c.credential_id),
        }
    }
}

/// The start of the window in which a member must have signed in phishing-resistantly: the
/// compliance report's default period, so the pages and the export agree.
fn period_from(state: &AppState) -> i64 {
    state
        .now()
        .saturating_sub(i64::from(DEFAULT_PERIOD_DAYS) * 86_400)
}

/// A member's view, judged by the compliance report's rule ([`report::verdict`]) over the
/// default period: active, enough distinct attested keys, a recent phishing-resistant
/// sign-in. `keys` may include revoked ones; `sign_ins` are the member's sessions since
/// [`period_from`].
fn view(
    state: &AppState,
    user: &User,
    keys: &[Credential],
    sign_ins: &[&SessionRecord],
) -> MemberView {
    let active: Vec<&Credential> = keys.iter().filter(|k| k.revoked_at.is_none()).collect();
    let facts: Vec<_> = active
        .iter()
        .map(|k| report::compliance_key(k.phishing_resistant, k.leaf_sha256.as_deref()))
        .collect();
    let last_signin = report::last_phishing_resistant_signin(
        sign_ins
            .iter()
            .map(|s| (s.created_at, s.user_verified, s.key_id.as_deref())),
        |id| keys.iter().any(|k| k.id == id && k.phishing_resistant),
    );
    let (compliant, reasons, _) = report::verdict(
        state.policy(),
        user.status == UserStatus::Active,
        &facts,
        last_signin,
        period_from(state),
        DEFAULT_PERIOD_DAYS,
    );
    MemberView {
        id: user.id.clone(),
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        role: user.role.as_str().into(),
        status: user.status.as_str().into(),
        created_at: user.created_at,
        admin_since: user.admin_since,
        admin_granted_by: user.admin_granted_by.clone(),
        admin_approved_by: user.admin_approved_by.clone(),
        active_keys: active.len(),
        compliant,
        reasons: reasons.into_iter().map(|r| r.message).collect(),
    }
}

/// Every member with their compliance (one consistent read).
pub async fn list(state: &AppState) -> Result<Vec<MemberView>> {
    let since = period_from(state);
    let (users, keys, sessions) = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                Ok((
                    tx.list_users()?,
                    tx.list_credentials()?,
                    tx.all_sessions_since(since)?,
                ))
            })
        })
        .await?;
    // Grouped by member once: a large organisation has many keys and sessions.
    let mut keys_of: HashMap<String, Vec<Credential>> = HashMap::new();
    for k in keys {
        keys_of.entry(k.user_id.clone()).or_default().push(k);
    }
    let mut sessions_of: HashMap<&str, Vec<&SessionRecord>> = HashMap::new();
    for s in &sessions {
        sessions_of.entry(s.user_id.as_str()).or_default().push(s);
    }
    Ok(users
        .iter()
        .map(|u| {
            let u = &u.user;
            let mine = keys_of.get(&u.id).map(Vec::as_slice).unwrap_or_default();
            let signed = sessions_of
                .get(u.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            view(state, u, mine, signed)
        })
        .collect())
}

/// One member, all their keys (revoked ones too) and their compliance.
pub async fn detail(state: &AppState, user_id: &str) -> Result<MemberDetail> {
    let uid = user_id.to_string();
    let since = period_from(state);
    let (user, keys, sessions) = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                Ok((
                    tx.user_by_id(&uid)?,
                    tx.credentials_for_user(&uid, false)?,
                    tx.sessions_since(&uid, since)?,
                ))
            })
        })
        .await?;
    let user = user.ok_or(Error::NotFound)?;
    let signed: Vec<&SessionRecord> = sessions.iter().collect();
    Ok(MemberDetail {
        member: view(state, &user, &keys, &signed),
        keys: keys.iter().map(KeyView::from).collect(),
    })
}

/// Disables (`enabled: false`) or enables a member: offboarding, as Okta's "deactivate" or
/// Entra ID's "block sign-in". A disabled member cannot sign in, enrol, be recovered, or use
/// what was issued to them (refresh tokens, userinfo, SAML); their keys stay on record.
/// Disabling ends their sessions first, so a failing shared store changes nothing; then the
/// status and the audit event (`member.disabled` / `member.enabled`) commit together. Nobody
/// disables their own account (refused, audited `member.refused`).
pub async fn set_enabled(
    state: &AppState,
    actor: &Actor,
    actor_user_id: &str,
    user_id: &str,
    enabled: bool,
) -> Result<MemberDetail> {
    let now = state.now();
    if !enabled && user_id == actor_user_id {
        let event = NewAuditEvent {
            actor: actor.id.clone(),
            action: "member.refused".into(),
            subject: format!("user:{user_id}"),
            outcome: Outcome::Refused,
            reason: Some("own_account".into()),
            details: serde_json::json!({ "change": "disable", "ip": actor.ip }),
        };
        state
            .storage
            .run(move |s| s.append_audit(&event, now).map(|_| ()))
            .await?;
        return Err(Error::Forbidden("you cannot disable your own account"));
    }
    let uid = user_id.to_string();
    let exists = state.storage.run(move |s| s.user_by_id(&uid)).await?;
    if exists.is_none() {
        return Err(Error::NotFound);
    }
    if !enabled {
        session::end(state, actor, user_id, SessionScope::All).await?;
    }
    let (status, action) = if enabled {
        (UserStatus::Active, "member.enabled")
    } else {
        (UserStatus::Disabled, "member.disabled")
    };
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: action.into(),
        subject: format!("user:{user_id}"),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({ "ip": actor.ip }),
    };
    let uid = user_id.to_string();
    // Already so: nothing to change or audit.
    let found = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let Some(user) = tx.user_by_id(&uid)? else {
                    return Ok(None);
                };
                if user.status != status {
                    tx.set_user_status(&uid, status)?;
                    tx.append_audit(&event, now)?;
                }
                Ok(Some(()))
            })
        })
        .await?;
    found.ok_or(Error::NotFound)?;
    detail(state, user_id).await
}

/// Revokes a key. Members may revoke their own keys; admins any key.
pub async fn revoke_key(
    state: &AppState,
    actor: &Actor,
    actor_user_id: &str,
    actor_is_admin: bool,
    key_id: &str,
) -> Result<()> {
    let now = state.now();
    let key = key_id.to_string();
    let actor_uid = actor_user_id.to_string();
    let actor_id = actor.id.clone();
    let ip = actor.ip.clone();
    let outcome = state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                let Some(cred) = tx.credential_by_id(&key)? else {
                    return Ok(None);
                };
                if !actor_is_admin && cred.user_id != actor_uid {
                    return Ok(None);
                }
                if cred.revoked_at.is_some() {
                    return Ok(Some(cred.user_id));
                }
                tx.revoke_credential(&key, &actor_id, now)?;
                tx.append_audit(
                    &NewAuditEvent {
                        actor: actor_id.clone(),
                        action: "key.revoked".into(),
                        subject: format!("user:{}", cred.user_id),
                        outcome: Outcome::Success,
                        reason: None,
                        details: serde_json::json!({ "key_id": key, "aaguid": cred.aaguid, "model": cred.model, "by_admin": actor_is_admin, "ip": ip }),
                    },
                    now,
                )?;
                Ok(Some(cred.user_id))
            })
        })
        .await?;
    // Sessions the revoked key signed in end with it; revoking it again ends any it still
    // has (should ending them have failed the first time).
    let owner = outcome.ok_or(Error::NotFound)?;
    session::end(state, actor, &owner, SessionScope::Key(key_id)).await?;
    Ok(())
}
