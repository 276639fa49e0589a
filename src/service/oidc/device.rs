//! The device authorization grant (RFC 8628), member side: a client asks for a device
//! code and a user code; a signed-in member enters the user code at `/device`, sees what
//! is asked and approves with a fresh, user-verified key touch whose challenge is the
//! digest of exactly that approval ([`Approval`]), or denies with one click. The token
//! endpoint's side (polling) is `token/device.rs`.
//!
//! Everything pending lives in the ephemeral store (memory or Redis), so any replica can
//! answer any step:
//!
//! | key | value |
//! | --- | --- |
//! | `device:req:{digest}` | the request ([`DeviceRequest`]), until a grace period past its expiry (so a late poll hears `expired_token`) |
//! | `device:uc:{user code}` | the device code's digest; taken by the one decision (approve or deny) |
//! | `device:poll:{digest}` | the polling state ([`Polling`]) |
//! | `device:denied:{digest}` | the member said no |
//! | `device:approved:{digest}` | the approved grant, taken (once) by the poll that gets the tokens |
//! | `device:used:{digest}` | left by that take: the device code was used |
//! | `device:park:{id}` | a user code waiting while the member signs in |

use serde::{Deserialize, Serialize};

use super::token::authenticate;
use super::{audit, clients, Failure};
use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::oidc::assurance::{self, SignInFacts, Verification};
use crate::oidc::device::{self, Approval};
use crate::oidc::scope::{self, Scopes};
use crate::oidc::token_request::UntrustedTokenRequest;
use crate::oidc::tokens::{Grant, KeyEvidence, UserClaims};
use crate::oidc::OidcError;
use crate::service::ceremony::{self, Ceremony};
use crate::service::session::Session;
use crate::service::{limits, refusals, tokens, Actor};
use crate::state::AppState;
use crate::storage::{OidcClient, UserStatus};
use crate::webauthn::{verify_assertion, AssertionInput, CoseKey};

/// How long a request is kept past its expiry, so that polls then hear `expired_token`.
const EXPIRED_GRACE_SECS: u64 = 600;

pub(crate) fn request_key(digest: &str) -> String {
    format!("device:req:{digest}")
}
pub(crate) fn user_code_key(code: &str) -> String {
    format!("device:uc:{code}")
}
pub(crate) fn poll_key(digest: &str) -> String {
    format!("device:poll:{digest}")
}
pub(crate) fn denied_key(digest: &str) -> String {
    format!("device:denied:{digest}")
}
pub(crate) fn approved_key(digest: &str) -> String {
    format!("device:approved:{digest}")
}
pub(crate) fn used_key(digest: &str) -> String {
    format!("device:used:{digest}")
}
fn park_key(id: &str) -> String {
    format!("device:park:{id}")
}

/// A pending device authorization request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DeviceRequest {
    pub client_id: String,
    pub user_code: String,
    pub scopes: Scopes,
    pub resource: Option<String>,
    /// Seconds the access token will live (what the member approves).
    pub lifetime_secs: u64,
    pub nonce: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub interval: u64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl DeviceRequest {
    pub(crate) fn approval(&self) -> Approval {
        Approval {
            client_id: self.client_id.clone(),
            user_code: self.user_code.clone(),
            scopes: self.scopes.clone(),
            resource: self.resource.clone(),
            lifetime_secs: self.lifetime_secs,
            nonce: self.nonce.clone(),
        }
    }
}

/// What an approval leaves for the poll that collects the tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Approved {
    pub grant_id: String,
    pub user_id: String,
    pub session_id: String,
    pub key_id: String,
    pub grant: Grant,
    /// Hex SHA-256 of the canonical approval the touch signed.
    pub approval_digest: String,
}

/// `POST /oauth2/device_authorization` (RFC 8628 §3.1–3.2): the JSON answer.
pub async fn authorize_device(
    state: &AppState,
    body: &[u8],
    authorization: Option<&str>,
    ip: Option<String>,
    user_agent: Option<String>,
) -> std::result::Result<Vec<u8>, Failure> {
    limits::count(
        state,
        &[limits::limit(
            state,
            "oidc-device",
            ip.as_deref().unwrap_or_default(),
            state.oidc.token_requests_per_minute,
        )],
    )
    .await?;
    let request = UntrustedTokenRequest::from_form(body, authorization)?;
    let auth = request.client_auth()?;
    let client = authenticate(state, &auth).await?;
    if !client
        .allowed_scopes
        .iter()
        .any(|s| s == scope::DEVICE_GRANT)
    {
        return Err(OidcError::UnauthorizedClient(
            "this client is not registered for the device authorization grant".into(),
        )
        .into());
    }
    if request.param("resource")?.is_some() {
        return Err(OidcError::InvalidRequest(
            "resource is not supported with the device authorization grant".into(),
        )
        .into());
    }
    let allowed = Scopes::from_values(
        client
            .allowed_scopes
            .iter()
            .filter(|s| {
                scope::SUPPORTED.contains(&s.as_str()) && !scope::CLIENT_ONLY.contains(&s.as_str())
            })
            .cloned(),
    );
    let scopes = match request.param("scope")?.map(Scopes::parse).transpose()? {
        Some(s) if !s.is_empty() => s,
        _ => allowed.clone(),
    };
    if !scopes
        .iter()
        .all(|s| allowed.contains(s) || (s == scope::OPENID && scope::SUPPORTED.contains(&s)))
    {
        return Err(OidcError::InvalidScope(
            "a requested scope is not allowed for this client".into(),
        )
        .into());
    }
    let cfg = &state.config.oidc;
    let now = state.now();
    let device_code = format!("kgd_{}", tokens::secret_token());
    let digest = crate::oidc::tokens::digest(&device_code);
    let ttl = std::time::Duration::from_secs(cfg.device_code_ttl_secs);
    let mut user_code = None;
    for _ in 0..5 {
        let Some(code) = device::user_code_from(&tokens::random_bytes(24)) else {
            continue;
        };
        if state
            .ephemeral
            .set_nx_ex(&user_code_key(&code), digest.as_bytes(), ttl)
            .await?
        {
            user_code = Some(code);
            break;
        }
    }
    let Some(user_code) = user_code else {
        return Err(OidcError::ServerError("no free user code; try again".into()).into());
    };
    let pending = DeviceRequest {
        client_id: client.client_id.clone(),
        user_code: user_code.clone(),
        scopes: scopes.clone(),
        resource: None,
        lifetime_secs: state.oidc.settings.access_token_ttl.whole_seconds().max(1) as u64,
        nonce: tokens::secret_token(),
        created_at: now,
        expires_at: now + cfg.device_code_ttl_secs as i64,
        interval: cfg.device_poll_interval_secs,
        ip: ip.clone(),
        user_agent: user_agent.map(|ua| ua.chars().take(256).collect()),
    };
    state
        .ephemeral
        .set_ex(
            &request_key(&digest),
            &to_vec(&pending)?,
            ttl + std::time::Duration::from_secs(EXPIRED_GRACE_SECS),
        )
        .await?;
    let subject = format!("oidc_client:{}", client.client_id);
    audit(
        state,
        NewAuditEvent {
            actor: subject.clone(),
            action: "device.requested".into(),
            subject,
            outcome: Outcome::Success,
            reason: None,
            details: serde_json::json!({
                "client_id": client.client_id,
                "scope": scopes.to_string(),
                "expires_at": pending.expires_at,
                "device_code": digest,
                "ip": ip,
                "user_agent": pending.user_agent,
            }),
        },
    )
    .await?;
    let base = state.oidc.issuer();
    let shown = device::display(&user_code);
    Ok(to_vec(&serde_json::json!({
        "device_code": device_code,
        "user_code": shown,
        "verification_uri": format!("{base}/device"),
        "verification_uri_complete": format!("{base}/device?user_code={shown}"),
        "expires_in": cfg.device_code_ttl_secs,
        "interval": cfg.device_poll_interval_secs,
    }))?)
}

fn to_vec<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(e.to_string()))
}

/// What the approval page shows.
#[derive(Clone, Debug, Serialize)]
pub struct Pending {
    pub user_code: String,
    pub client_id: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    pub workspace: Option<String>,
    pub lifetime_secs: u64,
    pub refresh: bool,
    pub requested_at: i64,
    pub expires_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A user code that names no live request.
fn unknown_code() -> Error {
    Error::bad_request(
        "unknown_user_code",
        "this code is unknown, expired or already used: check it, or start again on the device",
    )
}

/// Finds the live request a typed user code names, counting one entry against the
/// address's and the code's limits. A wrong code is audited as `device.refused` within the
/// per-address limit of [`refusals::record`].
async fn find(
    state: &AppState,
    actor: &Actor,
    typed: &str,
) -> Result<(String, DeviceRequest, OidcClient)> {
    let found = find_unaudited(state, actor, typed).await;
    if let Err(err) = &found {
        if refusals::is_refusal(err) {
            let event = refusals::event(
                actor,
                "device.refused",
                &actor.id,
                err,
                serde_json::json!({ "step": "user_code" }),
            );
            refusals::record(state, actor, event).await?;
        }
    }
    found
}

async fn find_unaudited(
    state: &AppState,
    actor: &Actor,
    typed: &str,
) -> Result<(String, DeviceRequest, OidcClient)> {
    let cfg = &state.config.oidc;
    let code = device::normalize(typed);
    let mut counted = vec![limits::limit(
        state,
        "device-entry",
        actor.ip.as_deref().unwrap_or_default(),
        cfg.device_entries_per_minute,
    )];
    if let Some(code) = &code {
        counted.push(limits::limit(
            state,
            "device-code",
            code,
            cfg.device_code_lookups_per_minute,
        ));
    }
    limits::count(state, &counted).await?;
    let code = code.ok_or_else(unknown_code)?;
    let digest = state
        .ephemeral
        .get(&user_code_key(&code))
        .await?
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(unknown_code)?;
    let request: DeviceRequest = state
        .ephemeral
        .get(&request_key(&digest))
        .await?
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .filter(|r: &DeviceRequest| r.expires_at > state.now() && r.user_code == code)
        .ok_or_else(unknown_code)?;
    let client = clients::find_enabled(state, &request.client_id)
        .await?
        .ok_or_else(unknown_code)?;
    Ok((digest, request, client))
}

/// The page's view of the request a user code names.
pub async fn pending(state: &AppState, actor: &Actor, typed: &str) -> Result<Pending> {
    let (_, request, client) = find(state, actor, typed).await?;
    let workspace = match client.workspace_id.clone() {
        Some(w) => state
            .storage
            .read(move |tx| tx.workspace(&w))
            .await?
            .map(|w| w.name),
        None => None,
    };
    Ok(Pending {
        user_code: device::display(&request.user_code),
        client_id: client.client_id.clone(),
        client_name: client.name.clone(),
        scopes: request.scopes.iter().map(str::to_owned).collect(),
        workspace,
        lifetime_secs: request.lifetime_secs,
        refresh: request.scopes.contains(scope::OFFLINE_ACCESS),
        requested_at: request.created_at,
        expires_at: request.expires_at,
        ip: request.ip,
        user_agent: request.user_agent,
    })
}

/// Parks a typed user code while the member signs in; the id for `/?continue=`.
pub async fn park(state: &AppState, typed: &str) -> Result<String> {
    let id = tokens::new_id();
    let code = device::normalize(typed).unwrap_or_default();
    state
        .ephemeral
        .set_ex(
            &park_key(&id),
            code.as_bytes(),
            std::time::Duration::from_secs(state.config.oidc.device_code_ttl_secs),
        )
        .await?;
    Ok(id)
}

/// Takes a parked user code (once): where `/device/continue` sends the browser.
pub async fn unpark(state: &AppState, id: &str) -> Result<Option<String>> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    Ok(state
        .ephemeral
        .take(&park_key(id))
        .await?
        .and_then(|c| String::from_utf8(c).ok())
        .map(|c| device::display(&c)))
}

/// What `begin` leaves for `finish`.
#[derive(Serialize, Deserialize)]
struct Ceremonial {
    user_code: String,
    expires_at: i64,
}

fn signed_in(session: &Session) -> Result<&str> {
    session.user_id().ok_or(Error::Unauthenticated)
}

/// Starts the approval touch: `PublicKeyCredentialRequestOptions` whose challenge is the
/// digest of the canonical approval, for the member's own keys, user verification
/// required.
pub async fn begin(
    state: &AppState,
    session: &Session,
    actor: &Actor,
    typed: &str,
) -> Result<serde_json::Value> {
    let user_id = signed_in(session)?.to_owned();
    let (_, request, _) = find(state, actor, typed).await?;
    let challenge = request.approval().digest();
    let keys = state
        .storage
        .read(move |tx| tx.credentials_for_user(&user_id, true))
        .await?;
    let ttl = state.config.webauthn.challenge_ttl_secs;
    let allow: Vec<serde_json::Value> = keys
        .iter()
        .map(
            |k| serde_json::json!({ "type": "public-key", "id": tokens::b64url(&k.credential_id) }),
        )
        .collect();
    let pending = Ceremonial {
        user_code: request.user_code.clone(),
        expires_at: state.now() + ttl as i64,
    };
    ceremony::remember(
        state,
        "device",
        &Ceremony::within(session.clone()),
        &pending,
        ttl,
        Vec::new(),
    )
    .await?;
    Ok(serde_json::json!({
        "challenge": tokens::b64url(&challenge),
        "rpId": &*state.rp_id,
        "timeout": ttl * 1000,
        "userVerification": "required",
        "allowCredentials": allow,
    }))
}

/// `POST /api/device/approve/finish`: the body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    pub user_code: String,
    pub credential: crate::service::signin::Credential,
}

/// Finishes the approval: the touch must be a user-verified assertion by one of the
/// member's active keys over the digest the server recomputes from the request the
/// browser names. A touch made for another request is refused and audited.
pub async fn finish(
    state: &AppState,
    session: &Session,
    actor: &Actor,
    body: &[u8],
) -> Result<serde_json::Value> {
    let user_id = signed_in(session)?.to_owned();
    let started: Option<Ceremonial> = ceremony::take(state, "device", &session.token, &[]).await?;
    let Some(started) = started.filter(|s| s.expires_at > state.now()) else {
        return Err(Error::gone(
            "challenge_expired",
            "this approval expired or was already answered; start again",
        ));
    };
    let req: FinishRequest = serde_json::from_slice(body).map_err(|e| {
        Error::bad_request(
            "malformed_json",
            format!("the body is not an approval: {e}"),
        )
    })?;
    let (digest, request, client) = find(state, actor, &req.user_code).await?;
    let approval = request.approval();
    let expected = approval.digest();
    let subject = format!("user:{user_id}");
    let refuse = |err: Error, details: serde_json::Value| {
        let mut event = refusals::event(actor, "device.refused", &subject, &err, details);
        event.details["client_id"] = serde_json::json!(client.client_id);
        event.details["approval_digest"] = serde_json::json!(hex::encode(expected));
        event.details["ceremony_for"] = serde_json::json!(device::display(&started.user_code));
        (err, event)
    };
    let verified = verify_touch(state, &user_id, &req.credential, &expected).await;
    let (key, flags_uv, sign_count) = match verified {
        Ok(v) => v,
        Err((err, details)) => {
            let (err, event) = refuse(err, details);
            audit(state, event).await?;
            return Err(err);
        }
    };
    let key_details = serde_json::json!({
        "key_id": key.id,
        "credential_id": tokens::b64url(&key.credential_id),
        "aaguid": key.aaguid,
        "model": key.model,
        "attested": key.phishing_resistant,
        "user_verified": flags_uv,
    });
    let (key_id, at) = (key.id.clone(), state.now());
    let counted = state
        .storage
        .run(move |s| s.update_sign_count_and_last_used(&key_id, sign_count, at))
        .await?;
    if !counted {
        let (err, event) = refuse(
            Error::bad_request(
                "possible_cloned_key",
                "the key's signature counter did not go up: it may have been cloned",
            ),
            key_details,
        );
        audit(state, event).await?;
        return Err(err);
    }
    let facts = SignInFacts {
        attested: key.phishing_resistant,
        verification: Verification::derive(flags_uv, key.model.as_deref()),
    };
    let (user, workspace_id) = match may_approve(state, &client, &user_id, &facts).await? {
        Ok(found) => found,
        Err(message) => {
            let (err, event) = refuse(Error::Forbidden(message), key_details);
            audit(state, event).await?;
            return Err(err);
        }
    };
    // One decision per code, on any replica.
    if state
        .ephemeral
        .take(&user_code_key(&request.user_code))
        .await?
        .is_none()
    {
        return Err(unknown_code());
    }
    let approved = approved_grant(
        state,
        session,
        &client,
        &request,
        &user,
        &key,
        assurance::assurance(&client.required_acr, &facts),
        workspace_id,
        hex::encode(expected),
    );
    let assurance = &approved.grant.assurance;
    let value = crate::ephemeral::with_marks(&[b"1"], &to_vec(&approved)?)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let left = (request.expires_at - state.now()).max(1) as u64 + EXPIRED_GRACE_SECS;
    state
        .ephemeral
        .set_ex(
            &approved_key(&digest),
            &value,
            std::time::Duration::from_secs(left),
        )
        .await?;
    let mut details = key_details;
    details["client_id"] = serde_json::json!(client.client_id);
    details["scope"] = serde_json::json!(request.scopes.to_string());
    details["approval_digest"] = serde_json::json!(approved.approval_digest);
    details["grant"] = serde_json::json!(approved.grant_id);
    details["acr"] = serde_json::json!(assurance.acr);
    details["amr"] = serde_json::json!(assurance.amr);
    details["device_code"] = serde_json::json!(digest);
    details["device_ip"] = serde_json::json!(request.ip);
    details["ip"] = serde_json::json!(actor.ip);
    audit(
        state,
        NewAuditEvent {
            actor: subject.clone(),
            action: "device.approved".into(),
            subject,
            outcome: Outcome::Success,
            reason: None,
            details,
        },
    )
    .await?;
    Ok(serde_json::json!({ "approved": true, "client": client.name }))
}

/// Whether `user_id` may approve for `client`, as the authorization endpoint checks it:
/// an active account, a member of the client's workspace, a key that meets the client's
/// required level. `Ok(Err(message))` is a refusal; `Ok(Ok(..))` the member and the
/// workspace's external ID for the tokens.
async fn may_approve(
    state: &AppState,
    client: &OidcClient,
    user_id: &str,
    facts: &SignInFacts,
) -> Result<std::result::Result<(crate::storage::User, Option<String>), &'static str>> {
    let (uid, workspace) = (user_id.to_owned(), client.workspace_id.clone());
    let (user, membership) = state
        .storage
        .read(move |tx| {
            let user = tx.user_by_id(&uid)?;
            let membership = match workspace {
                Some(w) => Some((tx.workspace(&w)?, tx.is_workspace_member(&w, &uid)?)),
                None => None,
            };
            Ok((user, membership))
        })
        .await?;
    let user = user.filter(|u| u.status == UserStatus::Active);
    let refusal: Option<&'static str> = match (&user, &membership) {
        (None, _) => Some("this account is disabled"),
        (Some(_), Some((w, member))) if w.is_none() || !member => {
            Some("you are not a member of the workspace this application is bound to")
        }
        _ if !client.required_acr.is_empty()
            && assurance::satisfy(&client.required_acr, facts).is_none() =>
        {
            Some("the key used cannot meet the authentication level this application requires")
        }
        _ => None,
    };
    Ok(match (user, refusal) {
        (Some(user), None) => Ok((user, membership.and_then(|(w, _)| w).map(|w| w.external_id))),
        (_, refusal) => Err(refusal.unwrap_or("this account is disabled")),
    })
}

/// What the approval hands the polling device: the grant its tokens are issued from,
/// with the touch's assurance and key evidence.
#[allow(clippy::too_many_arguments)]
fn approved_grant(
    state: &AppState,
    session: &Session,
    client: &OidcClient,
    request: &DeviceRequest,
    user: &crate::storage::User,
    key: &crate::storage::Credential,
    assurance: assurance::Assurance,
    workspace_id: Option<String>,
    approval_digest: String,
) -> Approved {
    let grant = Grant {
        client_id: client.client_id.clone(),
        subject: user.id.clone(),
        scopes: request.scopes.clone(),
        nonce: None,
        auth_time: state.now(),
        assurance,
        sid: Some(super::authorize::public_sid(state, &session.data.id)),
        workspace_id,
        id_token_alg: clients::algorithm(client),
        user: UserClaims {
            name: Some(user.display_name.clone()).filter(|n| !n.trim().is_empty()),
            email: Some(user.email.clone()),
            email_verified: true,
        },
        key: Some(KeyEvidence {
            aaguid: key.aaguid.clone(),
            model: key.model.clone(),
            fips: key.fips,
        }),
    };
    Approved {
        grant_id: tokens::ordered_id(),
        user_id: user.id.clone(),
        session_id: session.data.id.clone(),
        key_id: key.id.clone(),
        grant,
        approval_digest,
    }
}

type TouchRefused = (Error, serde_json::Value);

/// Verifies the approval touch: a credential of `user_id`'s, active, signing `expected`
/// with user verification. Returns the key, the UV flag and the new counter.
async fn verify_touch(
    state: &AppState,
    user_id: &str,
    cred: &crate::service::signin::Credential,
    expected: &[u8],
) -> std::result::Result<(crate::storage::Credential, bool, i64), TouchRefused> {
    let plain = |e: Error| (e, serde_json::json!({}));
    let decode = |field: &str, v: &str| {
        tokens::from_b64url(v).ok_or_else(|| {
            plain(Error::bad_request(
                "malformed_base64",
                format!("{field} is not base64url"),
            ))
        })
    };
    let raw_id = decode("rawId", &cred.raw_id)?;
    let client_data_json = decode("clientDataJSON", &cred.response.client_data_json)?;
    let authenticator_data = decode("authenticatorData", &cred.response.authenticator_data)?;
    let signature = decode("signature", &cred.response.signature)?;
    let lookup = raw_id.clone();
    let key = state
        .storage
        .read(move |tx| tx.credential_by_credential_id(&lookup))
        .await
        .map_err(|e| plain(e.into()))?
        .filter(|k| k.user_id == user_id && k.revoked_at.is_none())
        .ok_or_else(|| {
            plain(Error::bad_request(
                "unknown_credential",
                "this key is not one of your active keys",
            ))
        })?;
    let details = serde_json::json!({
        "key_id": key.id,
        "credential_id": tokens::b64url(&key.credential_id),
        "aaguid": key.aaguid,
        "model": key.model,
        "attested": key.phishing_resistant,
    });
    let public_key = CoseKey::from_cbor_exact(&key.public_key_cose)
        .map_err(|e| (Error::from(e), details.clone()))?;
    let verified = verify_assertion(&AssertionInput {
        client_data_json: &client_data_json,
        authenticator_data: &authenticator_data,
        signature: &signature,
        expected_challenge: expected,
        expected_origin: &state.origin,
        rp_id: &state.rp_id,
        stored_public_key: &public_key,
        stored_sign_count: u32::try_from(key.sign_count).unwrap_or(u32::MAX),
    })
    .map_err(|e| {
        let code = e.code();
        let err = if code == "challenge_mismatch" {
            Error::bad_request(
                "approval_mismatch",
                "this touch was made for another request, not the one named",
            )
        } else {
            Error::from(e)
        };
        (err, details.clone())
    })?;
    if !verified.flags.user_verified {
        return Err((
            Error::bad_request(
                "user_verification_required",
                "approving needs your key's PIN or fingerprint",
            ),
            details,
        ));
    }
    if verified.counter_regressed {
        return Err((
            Error::bad_request(
                "possible_cloned_key",
                "the key's signature counter did not go up: it may have been cloned",
            ),
            details,
        ));
    }
    Ok((key, true, i64::from(verified.sign_count)))
}

/// `POST /device/deny` (CSRF-checked by the handler): final for that code.
pub async fn deny(state: &AppState, session: &Session, actor: &Actor, typed: &str) -> Result<()> {
    let user_id = signed_in(session)?.to_owned();
    let (digest, request, client) = find(state, actor, typed).await?;
    if state
        .ephemeral
        .take(&user_code_key(&request.user_code))
        .await?
        .is_none()
    {
        return Err(unknown_code());
    }
    let left = (request.expires_at - state.now()).max(1) as u64 + EXPIRED_GRACE_SECS;
    state
        .ephemeral
        .set_ex(
            &denied_key(&digest),
            b"1",
            std::time::Duration::from_secs(left),
        )
        .await?;
    let key_id = session.data.key_id.clone();
    let key = match key_id {
        Some(k) => {
            state
                .storage
                .read(move |tx| tx.credential_by_id(&k))
                .await?
        }
        None => None,
    };
    let subject = format!("user:{user_id}");
    audit(
        state,
        NewAuditEvent {
            actor: subject.clone(),
            action: "device.denied".into(),
            subject,
            outcome: Outcome::Success,
            reason: None,
            details: serde_json::json!({
                "client_id": client.client_id,
                "scope": request.scopes.to_string(),
                "approval_digest": hex::encode(request.approval().digest()),
                "device_code": digest,
                "device_ip": request.ip,
                "key_id": key.as_ref().map(|k| k.id.clone()),
                "credential_id": key.as_ref().map(|k| tokens::b64url(&k.credential_id)),
                "aaguid": key.as_ref().map(|k| k.aaguid.clone()),
                "model": key.as_ref().and_then(|k| k.model.clone()),
                "attested": key.as_ref().map(|k| k.phishing_resistant),
                "ip": actor.ip,
            }),
        },
    )
    .await?;
    Ok(())
}
