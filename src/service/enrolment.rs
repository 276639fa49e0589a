//! Attested key enrolment (SPEC C1, C2): begin → the browser's key → finish.
//!
//! `begin` stores a single-use challenge bound to the browser session that asked;
//! `finish` takes it (read-and-delete), verifies the attestation, applies policy and, only
//! when everything passes, writes the member, the key with its evidence and the audit
//! event in one transaction. A refusal writes an audit event and nothing else.

use serde::{Deserialize, Serialize};

use crate::attestation::{policy, AttestationKind, ExistingKey, KeyFacts, TrustResult};
use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::service::ceremony::{self, Ceremony};
use crate::service::session::{self, Session};
use crate::service::{admins, invitations, limits, refusals, tokens, workspaces, Actor};
use crate::state::AppState;
use crate::storage::{InvitationKind, NewCredential, NewUser, Role, StorageError, UserStatus};
use crate::webauthn::{verify_registration, RegistrationInput};

/// What the browser asks to enrol for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeginRequest {
    /// The invitation token from the link; absent when a signed-in member adds a key.
    pub token: Option<String>,
    /// Only for the bootstrap link, where the first admin names themselves.
    pub email: Option<String>,
    pub display_name: Option<String>,
}

/// The browser's `PublicKeyCredential` from `navigator.credentials.create()`, as JSON.
#[derive(Debug, Deserialize)]
pub struct RegistrationResponse {
    pub id: String,
    #[serde(rename = "rawId")]
    pub raw_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub response: AttestationResponse,
}

#[derive(Debug, Deserialize)]
pub struct AttestationResponse {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(rename = "attestationObject")]
    pub attestation_object: String,
    #[serde(default)]
    pub transports: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    #[serde(default)]
    pub nickname: String,
    pub credential: RegistrationResponse,
}

/// Kept in the ephemeral store between begin and finish, under the digest of the session's
/// cookie value (see `ceremony`).
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    challenge: String,
    user_id: String,
    email: String,
    display_name: String,
    role: String,
    /// Set when this enrolment creates the member from an invitation.
    invitation_id: Option<String>,
    /// The signed-in member adding a key, when there is no invitation.
    existing_member: bool,
    /// This enrolment uses the first admin's bootstrap link.
    #[serde(default)]
    bootstrap: bool,
    /// The approved recovery request whose link this is: the key joins the existing
    /// member named by `user_id`.
    #[serde(default)]
    recovery_id: Option<String>,
    expires_at: i64,
}

#[derive(Debug, Serialize)]
pub struct Enrolled {
    pub user_id: String,
    pub role: String,
    pub key_id: String,
    pub model: Option<String>,
    pub fips: bool,
    pub phishing_resistant: bool,
    pub user_verified: bool,
    /// True when this enrolment created the member (the session must be signed in).
    pub new_member: bool,
    /// True when a recovery link enrolled this key for an existing member.
    pub recovered: bool,
}

/// Starts a registration ceremony; returns `PublicKeyCredentialCreationOptions` JSON.
/// Counts against the enrolment rate limit of the actor's address. Every refusal is
/// audited: the link's own by `invitations` (`invitation.refused`), the others here as
/// `enrolment.refused` (within the per-address limit of [`refusals::record`]).
pub async fn begin(
    state: &AppState,
    ceremony: &Ceremony,
    actor: &Actor,
    req: BeginRequest,
) -> Result<serde_json::Value> {
    let ip = actor.ip.as_deref().unwrap_or_default();
    if let Err(err) = limits::check(state, "enrol", ip).await {
        return refused_at_begin(state, actor, None, err).await;
    }
    let inv = match &req.token {
        Some(token) => Some(invitations::find_usable(state, actor, token).await?),
        None => None,
    };
    let inv_id = inv.as_ref().map(|i| i.id.clone());
    match options(state, ceremony, req, inv).await {
        Ok(options) => Ok(options),
        Err(err) => refused_at_begin(state, actor, inv_id.as_deref(), err).await,
    }
}

/// Audits a refusal at `begin` (not a failure of ours) and returns it.
async fn refused_at_begin(
    state: &AppState,
    actor: &Actor,
    invitation: Option<&str>,
    err: Error,
) -> Result<serde_json::Value> {
    if refusals::is_refusal(&err) {
        let details = serde_json::json!({ "step": "begin", "invitation": invitation });
        let event = refusals::event(actor, "enrolment.refused", &actor.id, &err, details);
        refusals::record(state, actor, event).await?;
    }
    Err(err)
}

/// The creation options for a usable invitation `inv`, or for the signed-in member adding
/// a key (a recent touch needed); the ceremony's state is stored.
async fn options(
    state: &AppState,
    ceremony: &Ceremony,
    req: BeginRequest,
    inv: Option<crate::storage::Invitation>,
) -> Result<serde_json::Value> {
    let session = &ceremony.session;
    let now = state.now();
    let ttl = state.config.webauthn.challenge_ttl_secs;
    let (pending, exclude) = match (inv, session.user_id()) {
        (Some(inv), _) => {
            if inv.kind == InvitationKind::Recovery {
                (
                    recovery_pending(state, &inv, &req, now + ttl as i64).await?,
                    Vec::new(),
                )
            } else {
                let (email, display_name) = if inv.kind == InvitationKind::Bootstrap {
                    let email = req.email.as_deref().unwrap_or_default().trim();
                    if !invitations::valid_email(email) {
                        return Err(Error::bad_request(
                            "invalid_email",
                            "enter a valid e-mail address",
                        ));
                    }
                    (
                        email.to_ascii_lowercase(),
                        invitations::clean_name(req.display_name.as_deref().unwrap_or_default())?,
                    )
                } else {
                    (inv.email.clone(), inv.display_name.clone())
                };
                let pending = Pending {
                    challenge: String::new(),
                    user_id: tokens::new_id(),
                    email,
                    display_name: display_name.trim().chars().take(100).collect(),
                    role: inv.role.as_str().into(),
                    bootstrap: inv.kind == InvitationKind::Bootstrap,
                    invitation_id: Some(inv.id),
                    existing_member: false,
                    recovery_id: None,
                    expires_at: now + ttl as i64,
                };
                (pending, Vec::new())
            }
        }
        (None, Some(user_id)) => {
            session::require_recent_touch(state, session)?;
            let uid = user_id.to_string();
            let (user, keys) = state
                .storage
                .run(move |s| {
                    let user = s.user_by_id(&uid)?;
                    let keys = s.credentials_for_user(&uid, true)?;
                    Ok((user, keys))
                })
                .await?;
            let user = user
                .filter(|u| u.status == UserStatus::Active)
                .ok_or(Error::Unauthenticated)?;
            let exclude: Vec<String> = keys
                .iter()
                .map(|k| tokens::b64url(&k.credential_id))
                .collect();
            let pending = Pending {
                challenge: String::new(),
                user_id: user.id,
                email: user.email,
                display_name: user.display_name,
                role: user.role.as_str().into(),
                invitation_id: None,
                existing_member: true,
                bootstrap: false,
                recovery_id: None,
                expires_at: now + ttl as i64,
            };
            (pending, exclude)
        }
        (None, None) => return Err(Error::Unauthenticated),
    };
    let challenge = tokens::random_bytes(32);
    let pending = Pending {
        challenge: tokens::b64url(&challenge),
        ..pending
    };
    let user_handle = hex::decode(&pending.user_id).unwrap_or_default();
    let options = serde_json::json!({
        "rp": { "id": &*state.rp_id, "name": state.config.webauthn.rp_name },
        "user": {
            "id": tokens::b64url(&user_handle),
            "name": pending.email,
            "displayName": if pending.display_name.is_empty() { &pending.email } else { &pending.display_name },
        },
        "challenge": pending.challenge,
        "pubKeyCredParams": [
            { "type": "public-key", "alg": -7 },
            { "type": "public-key", "alg": -8 },
            { "type": "public-key", "alg": -257 },
        ],
        "timeout": ttl * 1000,
        "attestation": "direct",
        "authenticatorSelection": {
            "authenticatorAttachment": "cross-platform",
            "residentKey": "preferred",
            "requireResidentKey": false,
            "userVerification": if state.policy().require_user_verification { "required" } else { "preferred" },
        },
        "excludeCredentials": exclude.iter().map(|id| serde_json::json!({ "type": "public-key", "id": id })).collect::<Vec<_>>(),
        "extensions": { "credProps": true },
    });
    ceremony::remember(state, "reg", ceremony, &pending, ttl, Vec::new()).await?;
    Ok(options)
}

/// Finishes a registration ceremony. On success the key and its evidence are stored.
pub async fn finish(
    state: &AppState,
    session: &Session,
    actor_ip: Option<String>,
    body: &[u8],
) -> Result<Enrolled> {
    let actor = match session.user_id() {
        Some(uid) => Actor::user(uid, actor_ip.clone()),
        None => Actor {
            id: "anonymous".into(),
            ip: actor_ip.clone(),
        },
    };
    // Counted with the take, in one step: past the limit the challenge stays.
    let per_address = [limits::ceremony(
        state,
        "enrol",
        actor.ip.as_deref().unwrap_or_default(),
    )];
    let taken = ceremony::take::<Pending>(state, "reg", &session.token, &per_address).await;
    let live = match taken {
        Ok(pending) => pending
            .filter(|p| p.expires_at > state.now())
            .ok_or_else(|| {
                Error::gone(
                    "challenge_expired",
                    "this enrolment attempt expired or was already used; start again",
                )
            }),
        Err(err) => Err(err),
    };
    let pending = match live {
        Ok(pending) => pending,
        // No ceremony to speak of (none begun, used, expired, or past the limit): anyone
        // can cause this, so it is recorded within the per-address limit.
        Err(err) => {
            if refusals::is_refusal(&err) {
                let details = serde_json::json!({ "step": "finish" });
                let event = refusals::event(&actor, "enrolment.refused", &actor.id, &err, details);
                refusals::record(state, &actor, event).await?;
            }
            return Err(err);
        }
    };
    let subject = format!("user:{}", pending.user_id);
    if pending.existing_member {
        // The step-up rule again: the challenge outlives the window by up to its own
        // lifetime, and the session must still be the member's.
        let checked = if session.user_id() == Some(pending.user_id.as_str()) {
            session::require_recent_touch(state, session)
        } else {
            Err(Error::Unauthenticated)
        };
        if let Err(err) = checked {
            let details = serde_json::json!({
                "step": "finish",
                "touched_secs_ago": session.data.authenticated_at.map(|at| state.now() - at),
                "step_up_secs": state.config.session.step_up_secs,
            });
            let event = refusals::event(&actor, "enrolment.refused", &subject, &err, details);
            crate::service::audit(state, event).await?;
            return Err(err);
        }
    }
    let actor = match &pending.invitation_id {
        Some(inv) if !pending.existing_member => Actor {
            id: format!("invitation:{inv}"),
            ip: actor_ip,
        },
        _ => actor,
    };
    let req = match serde_json::from_slice::<FinishRequest>(body) {
        Ok(req) => req,
        Err(e) => {
            let err = Error::bad_request(
                "malformed_json",
                format!("the request body is not a registration response: {e}"),
            );
            refuse(state, &actor, &subject, &err, serde_json::json!({})).await?;
            return Err(err);
        }
    };
    match verify_and_store(state, &actor, &pending, req).await {
        Ok(enrolled) => {
            if enrolled.recovered {
                // Recovery ends every session the member still had, wherever it is.
                session::end(
                    state,
                    &actor,
                    &enrolled.user_id,
                    crate::storage::SessionScope::All,
                )
                .await?;
            }
            if enrolled.new_member {
                workspaces::join_declared(state, &enrolled.user_id, &pending.email).await?;
            }
            Ok(enrolled)
        }
        Err((err, details)) => {
            refuse(state, &actor, &subject, &err, details).await?;
            Err(err)
        }
    }
}

type Refusal = (Error, serde_json::Value);

/// The ceremony state for a recovery link: the member it was approved for, never a new one.
async fn recovery_pending(
    state: &AppState,
    inv: &crate::storage::Invitation,
    req: &BeginRequest,
    expires_at: i64,
) -> Result<Pending> {
    if req.email.is_some() || req.display_name.is_some() {
        return Err(Error::bad_request(
            "unexpected_field",
            "a recovery link enrols a key for an existing member; it takes no e-mail or name",
        ));
    }
    let inv_id = inv.id.clone();
    let found = state
        .storage
        .run(move |s| {
            let Some(r) = s.recovery_request_by_invitation(&inv_id)? else {
                return Ok(None);
            };
            Ok(s.user_by_id(&r.user_id)?.map(|u| (r, u)))
        })
        .await?;
    let Some((request, user)) = found.filter(|(r, u)| {
        r.status == "approved" && u.status == UserStatus::Active && u.email == inv.email
    }) else {
        return Err(Error::gone(
            "invitation_invalid",
            "this enrolment link is not valid; ask your admin for a new one",
        ));
    };
    Ok(Pending {
        challenge: String::new(),
        user_id: user.id,
        email: user.email,
        display_name: user.display_name,
        role: user.role.as_str().into(),
        invitation_id: Some(inv.id.clone()),
        existing_member: false,
        bootstrap: false,
        recovery_id: Some(request.id),
        expires_at,
    })
}

async fn verify_and_store(
    state: &AppState,
    actor: &Actor,
    pending: &Pending,
    req: FinishRequest,
) -> std::result::Result<Enrolled, Refusal> {
    let plain = |e: Error| (e, serde_json::json!({}));
    let cred = &req.credential;
    if cred.kind != "public-key" {
        return Err(plain(Error::bad_request(
            "malformed_credential",
            "credential type must be public-key",
        )));
    }
    let decode = |field: &str, v: &str| {
        tokens::from_b64url(v).ok_or_else(|| {
            plain(Error::bad_request(
                "malformed_base64",
                format!("{field} is not base64url"),
            ))
        })
    };
    let client_data_json = decode("clientDataJSON", &cred.response.client_data_json)?;
    let attestation_object = decode("attestationObject", &cred.response.attestation_object)?;
    let raw_id = decode("rawId", &cred.raw_id)?;
    if tokens::from_b64url(&cred.id).as_deref() != Some(raw_id.as_slice()) {
        return Err(plain(Error::bad_request(
            "malformed_credential",
            "id and rawId differ",
        )));
    }
    let nickname: String = req.nickname.trim().chars().take(64).collect();
    if nickname.chars().any(char::is_control) {
        return Err(plain(Error::bad_request(
            "invalid_nickname",
            "the key name must be printable text",
        )));
    }
    let challenge = tokens::from_b64url(&pending.challenge).unwrap_or_default();
    let input = RegistrationInput {
        client_data_json: &client_data_json,
        attestation_object: &attestation_object,
        expected_challenge: &challenge,
        expected_origin: &state.origin,
        rp_id: &state.rp_id,
    };
    let verified = verify_registration(&input, &state.verifier, state.clock.now())
        .map_err(|e| plain(Error::Webauthn(e)))?;
    if verified.credential_id != raw_id {
        return Err(plain(Error::bad_request(
            "malformed_credential",
            "rawId differs from the credential in authenticator data",
        )));
    }
    let evidence = &verified.evidence;
    let facts_json = evidence_json(&verified);

    // Policy: against this member's active keys and every credential ever stored.
    let uid = pending.user_id.clone();
    let cred_id = verified.credential_id.clone();
    let (existing, duplicate) = state
        .storage
        .run(move |s| {
            let existing = s.credentials_for_user(&uid, true)?;
            let duplicate = s.credential_by_credential_id(&cred_id)?.is_some();
            Ok((existing, duplicate))
        })
        .await
        .map_err(|e| plain(e.into()))?;
    let member_keys: Vec<ExistingKey> = existing
        .iter()
        .map(|k| ExistingKey {
            credential_id: k.credential_id.clone(),
            leaf_sha256: k
                .leaf_sha256
                .as_deref()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|v| v.try_into().ok()),
            aaguid: k.aaguid.parse().unwrap_or_default(),
        })
        .collect();
    let facts = KeyFacts {
        flags: &verified.flags,
        credential_id: &verified.credential_id,
        evidence,
    };
    let decision = policy::evaluate(state.policy(), &facts, &member_keys, duplicate);
    if !decision.accepted {
        return Err((Error::Refused(decision.refusals), facts_json));
    }

    let now = state.now();
    let key_id = tokens::new_id();
    let (trust_anchor, trust_anchor_sha256) = match &evidence.trust {
        TrustResult::Trusted {
            anchor_name,
            anchor_sha256,
            ..
        } => (Some(anchor_name.clone()), Some(hex::encode(anchor_sha256))),
        _ => (None, None),
    };
    let device = evidence.device.as_ref();
    let credential = NewCredential {
        id: key_id.clone(),
        user_id: pending.user_id.clone(),
        credential_id: verified.credential_id.clone(),
        public_key_cose: verified.public_key_cose.clone(),
        alg: verified.alg,
        sign_count: i64::from(verified.sign_count),
        aaguid: evidence.aaguid.to_string(),
        model: device.map(|d| d.model.clone()),
        fips: device.is_some_and(|d| d.fips),
        firmware: evidence.firmware.clone(),
        fmt: evidence.fmt.clone(),
        attestation_kind: kind_name(&evidence.kind).into(),
        trust_anchor,
        trust_anchor_sha256,
        leaf_sha256: evidence.leaf_sha256.map(hex::encode),
        chain_json: serde_json::to_string(
            &evidence
                .chain
                .iter()
                .map(|c| tokens::b64url(c))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_else(|_| "[]".into()),
        attestation_object: attestation_object.clone(),
        client_data_json: client_data_json.clone(),
        user_verified: verified.flags.user_verified,
        backup_eligible: verified.flags.backup_eligible,
        phishing_resistant: decision.phishing_resistant,
        policy_version: i64::from(decision.policy_version),
        decision_json: serde_json::to_string(&serde_json::json!({
            "accepted": true,
            "phishing_resistant": decision.phishing_resistant,
            "policy_version": decision.policy_version,
        }))
        .unwrap_or_default(),
        nickname: if nickname.is_empty() {
            device
                .map(|d| d.model.clone())
                .unwrap_or_else(|| "Security key".into())
        } else {
            nickname
        },
        enrolled_at: now,
        enrolled_by: actor.id.clone(),
    };
    let recovery_id = pending.recovery_id.clone();
    let new_user = pending.invitation_id.as_ref().and_then(|_| {
        (!pending.existing_member && recovery_id.is_none()).then(|| NewUser {
            id: pending.user_id.clone(),
            email: pending.email.clone(),
            display_name: pending.display_name.clone(),
            role: pending.role.parse().unwrap_or(Role::Member),
            created_at: now,
        })
    });
    let invitation_id = pending.invitation_id.clone();
    let bootstrap = pending.bootstrap;
    let granted_to = actor.clone();
    let distinct_keys = state.policy().distinct_physical_keys;
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "enrolment.accepted".into(),
        subject: format!("user:{}", pending.user_id),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({
            "key_id": key_id,
            "evidence": facts_json,
            "decision": { "accepted": true, "phishing_resistant": decision.phishing_resistant, "policy_version": decision.policy_version },
            "new_member": new_user.is_some(),
            "recovery": recovery_id,
            "ip": actor.ip,
        }),
    };
    let completed = recovery_id.as_ref().map(|rid| NewAuditEvent {
        actor: actor.id.clone(),
        action: "recovery.completed".into(),
        subject: format!("user:{}", pending.user_id),
        outcome: Outcome::Success,
        reason: None,
        details: serde_json::json!({ "request": rid, "key_id": key_id, "ip": actor.ip }),
    });
    let enrolled = Enrolled {
        user_id: pending.user_id.clone(),
        role: pending.role.clone(),
        key_id,
        model: credential.model.clone(),
        fips: credential.fips,
        phishing_resistant: decision.phishing_resistant,
        user_verified: verified.flags.user_verified,
        new_member: new_user.is_some(),
        recovered: recovery_id.is_some(),
    };
    state
        .storage
        .run(move |s| {
            s.transaction(|tx| {
                if let Some(user) = &new_user {
                    let inv = invitation_id.as_deref().unwrap_or_default();
                    if bootstrap && tx.count_admins()? > 0 {
                        return Err(StorageError::Conflict("invitation_closed".into()));
                    }
                    // Counted before this member: an unapproved admin link dies at two.
                    let grant = admins::grant_of(tx, inv)?;
                    if !tx.mark_invitation_used(inv, &user.id, now)? {
                        return Err(StorageError::Conflict("invitation_used".into()));
                    }
                    tx.insert_user(user)?;
                    if let Some(grant) = &grant {
                        admins::record(tx, &user.id, grant, &granted_to, now)?;
                    }
                    if user.role == Role::Admin {
                        // Any admin closes every bootstrap link still open.
                        tx.revoke_pending_invitations(InvitationKind::Bootstrap, now)?;
                    }
                }
                if let Some(rid) = &recovery_id {
                    let inv = invitation_id.as_deref().unwrap_or_default();
                    if !tx.mark_invitation_used(inv, &credential.user_id, now)?
                        || !tx.complete_recovery_request(rid, now)?
                    {
                        return Err(StorageError::Conflict("invitation_used".into()));
                    }
                }
                // Policy ran outside this transaction; the physical-key rule is checked
                // again here so two parallel enrolments of one key cannot both pass.
                if distinct_keys {
                    if let Some(leaf) = &credential.leaf_sha256 {
                        let mine = tx.credentials_for_user(&credential.user_id, true)?;
                        if mine.iter().any(|k| k.leaf_sha256.as_ref() == Some(leaf)) {
                            return Err(StorageError::Conflict("same_physical_key".into()));
                        }
                    }
                }
                tx.insert_credential(&credential)?;
                tx.append_audit(&event, now)?;
                if let Some(completed) = &completed {
                    tx.append_audit(completed, now)?;
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| match e {
            StorageError::Conflict(what) => plain(conflict(&what)),
            other => plain(other.into()),
        })?;
    Ok(enrolled)
}

fn conflict(what: &str) -> Error {
    if what == "invitation_awaiting_approval" {
        invitations::awaiting_approval()
    } else if what == "invitation_closed" {
        Error::gone(
            "invitation_invalid",
            "this enrolment link is not valid; ask your admin for a new one",
        )
    } else if what == "same_physical_key" {
        Error::Conflict {
            code: "same_physical_key",
            message: "this physical key is already enrolled for you; use a different key".into(),
        }
    } else if what.contains("invitation") {
        Error::gone(
            "invitation_used",
            "this enrolment link was already used; ask your admin for a new one",
        )
    } else if what.contains("email") {
        Error::Conflict {
            code: "email_taken",
            message: "a member with this e-mail address already exists".into(),
        }
    } else {
        Error::Conflict {
            code: "duplicate_credential",
            message: "this key is already enrolled".into(),
        }
    }
}

fn kind_name(kind: &AttestationKind) -> &'static str {
    match kind {
        AttestationKind::Basic => "basic",
        AttestationKind::SelfAttestation => "self",
        AttestationKind::None => "none",
    }
}

/// The facts of a verified registration, for the audit event (no raw blobs).
fn evidence_json(v: &crate::webauthn::VerifiedRegistration) -> serde_json::Value {
    let e = &v.evidence;
    let trust = match &e.trust {
        TrustResult::Trusted {
            anchor_name,
            anchor_sha256,
            ..
        } => {
            serde_json::json!({ "trusted": true, "anchor": anchor_name, "anchor_sha256": hex::encode(anchor_sha256) })
        }
        TrustResult::Untrusted { code, reason } => {
            serde_json::json!({ "trusted": false, "code": code, "reason": reason })
        }
        TrustResult::NotApplicable => {
            serde_json::json!({ "trusted": false, "code": "not_attested" })
        }
    };
    serde_json::json!({
        "fmt": e.fmt,
        "attestation": kind_name(&e.kind),
        "aaguid": e.aaguid.to_string(),
        "model": e.device.as_ref().map(|d| d.model.clone()),
        "model_source": e.model_source,
        "fips": e.device.as_ref().is_some_and(|d| d.fips),
        "firmware": e.firmware,
        "leaf_sha256": e.leaf_sha256.map(hex::encode),
        "trust": trust,
        "user_verified": v.flags.user_verified,
        "backup_eligible": v.flags.backup_eligible,
        "credential_id": tokens::b64url(&v.credential_id),
    })
}

async fn refuse(
    state: &AppState,
    actor: &Actor,
    subject: &str,
    err: &Error,
    evidence: serde_json::Value,
) -> Result<()> {
    let refusals = match err {
        Error::Refused(r) => r
            .iter()
            .map(|r| serde_json::json!({ "rule": r.rule, "message": r.message }))
            .collect(),
        _ => Vec::new(),
    };
    let event = NewAuditEvent {
        actor: actor.id.clone(),
        action: "enrolment.refused".into(),
        subject: subject.to_string(),
        outcome: Outcome::Refused,
        reason: Some(err.code().to_string()),
        details: serde_json::json!({
            "message": err.to_string(),
            "refusals": refusals,
            "evidence": evidence,
            "ip": actor.ip,
        }),
    };
    let now = state.now();
    state
        .storage
        .run(move |s| s.append_audit(&event, now).map(|_| ()))
        .await?;
    Ok(())
}
