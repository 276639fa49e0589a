//! Single sign-on: receive an `AuthnRequest` (or an IdP-initiated start), make sure a
//! fresh-enough key touch stands behind the browser's session, force the SP's workspace,
//! decide the authentication context, and answer with a signed response.
//!
//! Anything wrong with the request itself (malformed, unknown SP, bad or missing signature,
//! wrong ACS URL, replayed, stale) is shown on a page: keygate never posts to an ACS URL it
//! could not trust. Once the request is trusted, refusals go to the SP as SAML statuses
//! (`NoAuthnContext`, `RequestDenied`, `NoPassive`, `InvalidNameIDPolicy`). Every request
//! accepted or refused and every assertion issued is audited.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::registry::{self, RegisteredSp};
use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::saml::context::{self, Proof};
use crate::saml::request::{self, AuthnRequest, Checks, Received, Trust};
use crate::saml::response::{self, Attribute, NameId, Protection, Status};
use crate::saml::sp::{AttributeSource, NameIdFormat, ServiceProvider};
use crate::saml::{encrypt, status, SamlError, BINDING_POST};
use crate::service::limits;
use crate::service::session::Session;
use crate::service::tokens;
use crate::state::AppState;
use crate::storage::UserStatus;

/// The auto-submitting form that carries a response to the SP.
#[derive(Debug)]
pub struct PostForm {
    pub action: String,
    pub saml_response: String,
    pub relay_state: Option<String>,
    /// The refusal the response carries to the SP (its second-level status, as a metrics
    /// reason from a fixed set), or `None` for a success.
    pub refusal: Option<&'static str>,
}

/// What the browser gets.
#[derive(Debug)]
pub enum Next {
    Post(PostForm),
    /// To the sign-in page; it comes back to `/saml/continue?id=…` after the touch.
    Redirect(String),
    Show(SamlError),
}

/// A trusted request waiting for (or acting on) a key touch.
#[derive(Serialize, Deserialize)]
struct Pending {
    sp: String,
    /// `None` for IdP-initiated sign-ins.
    request: Option<AuthnRequest>,
    acs_url: String,
    relay_state: Option<String>,
    received_at: i64,
    /// Set when the browser was sent to touch its key for this request: only then can a
    /// `ForceAuthn` request be answered (a touch made before the request never counts).
    #[serde(default)]
    touch_asked: bool,
}

fn pending_key(id: &str) -> String {
    format!("saml:pending:{id}")
}

fn refused(
    sp: Option<&str>,
    error: &SamlError,
    details: serde_json::Value,
    ip: &Option<String>,
) -> NewAuditEvent {
    let mut d = details;
    d["ip"] = serde_json::json!(ip);
    d["message"] = serde_json::json!(error.to_string());
    NewAuditEvent {
        actor: "anonymous".into(),
        action: "saml.request_refused".into(),
        subject: sp
            .map(|s| format!("saml_sp:{s}"))
            .unwrap_or_else(|| "saml_sp:unknown".into()),
        outcome: Outcome::Refused,
        reason: Some(error.code().into()),
        details: d,
    }
}

async fn audit(state: &AppState, event: NewAuditEvent) -> Result<()> {
    crate::service::audit(state, event).await?;
    Ok(())
}

async fn show(
    state: &AppState,
    sp: Option<&str>,
    error: SamlError,
    details: serde_json::Value,
    ip: &Option<String>,
) -> Result<Next> {
    audit(state, refused(sp, &error, details, ip)).await?;
    Ok(Next::Show(error))
}

/// `GET /saml/sso` (HTTP-Redirect) and `POST /saml/sso` (HTTP-POST).
pub async fn receive(
    state: &AppState,
    session: Option<&Session>,
    received: std::result::Result<Received, SamlError>,
    ip: Option<String>,
) -> Result<Next> {
    limits::authorization(state, ip.as_deref()).await?;
    let received = match received {
        Ok(r) => r,
        Err(e) => return show(state, None, e, serde_json::json!({}), &ip).await,
    };
    let binding = received.binding.as_str();
    let peek = match received.peek() {
        Ok(p) => p,
        Err(e) => {
            return show(
                state,
                None,
                e,
                serde_json::json!({ "binding": binding }),
                &ip,
            )
            .await
        }
    };
    let Some(registered) = registry::find_enabled(state, &peek.issuer).await? else {
        let details = serde_json::json!({ "binding": binding, "issuer": peek.issuer.chars().take(256).collect::<String>() });
        return show(state, None, SamlError::UnknownSp, details, &ip).await;
    };
    let sp = &registered.sp;
    let entity = sp.entity_id.as_str();
    let details = |extra: serde_json::Value| {
        let mut d = serde_json::json!({ "binding": binding, "request_id": peek.id.chars().take(256).collect::<String>() });
        if let (Some(d), Some(e)) = (d.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        d
    };
    let certs = match sp.peer_certs() {
        Ok(c) => c,
        Err(e) => return show(state, Some(entity), e, details(serde_json::json!({})), &ip).await,
    };
    let idp = &state.saml;
    let checks = Checks {
        now: state.clock.now(),
        skew_secs: idp.skew_secs,
        max_age_secs: idp.max_age_secs,
        destinations: &idp.destinations,
    };
    let trust = Trust {
        certs: &certs,
        require_signed: sp.require_signed_requests,
    };
    let request = match received.verify(&trust, &checks) {
        Ok(r) => r,
        Err(e) => return show(state, Some(entity), e, details(serde_json::json!({})), &ip).await,
    };
    let acs_url = match sp.acs_for(request.acs_url.as_deref(), request.acs_index) {
        Ok(u) => u.to_string(),
        Err(e) => {
            let asked = request
                .acs_url
                .clone()
                .map(|u| u.chars().take(512).collect::<String>());
            return show(
                state,
                Some(entity),
                e,
                details(serde_json::json!({ "acs_url": asked })),
                &ip,
            )
            .await;
        }
    };
    if request
        .protocol_binding
        .as_deref()
        .is_some_and(|b| b != BINDING_POST)
    {
        let e = SamlError::Malformed(
            "keygate answers only over HTTP-POST; the request asks for another response binding"
                .into(),
        );
        return show(state, Some(entity), e, details(serde_json::json!({})), &ip).await;
    }
    // Replay: an SP's request ID is accepted once, for as long as the request could be valid.
    let replay_ttl =
        std::time::Duration::from_secs((idp.max_age_secs + 2 * idp.skew_secs + 60) as u64);
    let seen_key = format!(
        "saml:seen:{}",
        hex::encode(&state.keyed_digest(format!("{entity}\n{}", request.id).as_bytes())[..16])
    );
    if !state
        .ephemeral
        .set_nx_ex(&seen_key, b"1", replay_ttl)
        .await?
    {
        return show(
            state,
            Some(entity),
            SamlError::Replay,
            details(serde_json::json!({})),
            &ip,
        )
        .await;
    }
    audit(
        state,
        NewAuditEvent {
            actor: "anonymous".into(),
            action: "saml.request_accepted".into(),
            subject: format!("saml_sp:{entity}"),
            outcome: Outcome::Success,
            reason: None,
            details: details(serde_json::json!({
                "signed": request.signed,
                "force_authn": request.force_authn,
                "is_passive": request.is_passive,
                "requested_context": request.requested_context,
                "ip": ip,
            })),
        },
    )
    .await?;
    let pending = Pending {
        sp: entity.to_string(),
        request: Some(request),
        acs_url,
        relay_state: received.relay_state.clone(),
        received_at: state.now(),
        touch_asked: false,
    };
    decide(state, session, &registered, pending, ip).await
}

/// What `/saml/idp-initiated` asks for: the SP's entity ID and the RelayState to send it.
pub struct IdpInitiated {
    pub sp: String,
    pub relay_state: Option<String>,
}

/// Reads `/saml/idp-initiated`'s raw query. Percent-escapes that decode to something
/// other than UTF-8 are refused rather than replaced: the RelayState goes on to the SP.
pub fn from_idp_initiated(raw_query: &str) -> std::result::Result<IdpInitiated, SamlError> {
    let decode = crate::saml::request::decode_component;
    let mut asked = IdpInitiated {
        sp: String::new(),
        relay_state: None,
    };
    for pair in raw_query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(name)?.as_str() {
            "sp" => asked.sp = decode(value)?,
            "RelayState" => asked.relay_state = Some(decode(value)?),
            _ => {}
        }
    }
    Ok(asked)
}

/// `GET /saml/idp-initiated?sp=<entity ID>[&RelayState=…]`: a sign-in keygate starts for an
/// SP that allows it. An unreadable query is refused and audited, like an unknown SP.
pub async fn idp_initiated(
    state: &AppState,
    session: Option<&Session>,
    asked: std::result::Result<IdpInitiated, SamlError>,
    ip: Option<String>,
) -> Result<Next> {
    limits::authorization(state, ip.as_deref()).await?;
    let IdpInitiated { sp, relay_state } = match asked {
        Ok(a) => a,
        Err(e) => {
            let details = serde_json::json!({ "binding": "idp_initiated" });
            return show(state, None, e, details, &ip).await;
        }
    };
    let entity_id = sp.as_str();
    let registered = match registry::find_enabled(state, entity_id).await? {
        Some(r) if r.sp.idp_initiated => r,
        Some(r) => {
            let e = SamlError::Forbidden(
                "this service provider does not accept IdP-initiated sign-ins",
            );
            return show(
                state,
                Some(&r.sp.entity_id),
                e,
                serde_json::json!({ "binding": "idp_initiated" }),
                &ip,
            )
            .await;
        }
        None => {
            return show(
                state,
                None,
                SamlError::UnknownSp,
                serde_json::json!({ "binding": "idp_initiated" }),
                &ip,
            )
            .await
        }
    };
    if relay_state.as_ref().is_some_and(|r| r.len() > 1024) {
        let e = SamlError::Malformed("RelayState is too long".into());
        return show(state, Some(entity_id), e, serde_json::json!({}), &ip).await;
    }
    let pending = Pending {
        sp: registered.sp.entity_id.clone(),
        request: None,
        acs_url: registered.sp.acs_urls[0].url().to_string(),
        relay_state,
        received_at: state.now(),
        touch_asked: false,
    };
    decide(state, session, &registered, pending, ip).await
}

/// `GET /saml/continue?id=…`, after the key touch.
pub async fn resume(
    state: &AppState,
    session: Option<&Session>,
    id: &str,
    ip: Option<String>,
) -> Result<Next> {
    let Some(pending) = tokens::take_parked::<Pending>(state, id, pending_key).await? else {
        return Ok(Next::Show(SamlError::Malformed(
            tokens::DETOUR_EXPIRED.into(),
        )));
    };
    let Some(registered) = registry::find_enabled(state, &pending.sp).await? else {
        return show(
            state,
            Some(&pending.sp),
            SamlError::UnknownSp,
            serde_json::json!({}),
            &ip,
        )
        .await;
    };
    decide(state, session, &registered, pending, ip).await
}

/// The member behind the session and what their touch proved.
struct Signed {
    user_id: String,
    session_id: String,
    auth_time: i64,
    proof: Proof,
    key: crate::storage::Credential,
}

async fn signed(state: &AppState, session: Option<&Session>) -> Result<Option<Signed>> {
    let Some(s) = session else { return Ok(None) };
    let (Some(user_id), Some(at), Some(key_id)) = (
        s.data.user_id.clone(),
        s.data.authenticated_at,
        s.data.key_id.clone(),
    ) else {
        return Ok(None);
    };
    let Some(key) = state
        .storage
        .run(move |st| st.credential_by_id(&key_id))
        .await?
    else {
        return Ok(None);
    };
    if key.revoked_at.is_some() || key.user_id != user_id {
        return Ok(None);
    }
    Ok(Some(Signed {
        proof: Proof {
            phishing_resistant: key.phishing_resistant && s.data.user_verified,
        },
        user_id,
        session_id: s.data.id.clone(),
        auth_time: at,
        key,
    }))
}

async fn decide(
    state: &AppState,
    session: Option<&Session>,
    registered: &RegisteredSp,
    pending: Pending,
    ip: Option<String>,
) -> Result<Next> {
    let sp = &registered.sp;
    let signed = signed(state, session).await?;
    let force = pending.request.as_ref().is_some_and(|r| r.force_authn);
    let fresh_enough = signed
        .as_ref()
        .is_some_and(|s| !force || (pending.touch_asked && s.auth_time >= pending.received_at));
    if !fresh_enough {
        if pending.request.as_ref().is_some_and(|r| r.is_passive) {
            return answer_status(
                state,
                sp,
                &pending,
                None,
                status::NO_PASSIVE,
                "a key touch is needed and the request forbids asking for one",
                &ip,
            )
            .await;
        }
        let mut pending = pending;
        pending.touch_asked = true;
        let id = tokens::new_id();
        let body = serde_json::to_vec(&pending).map_err(|e| Error::Internal(e.to_string()))?;
        state
            .ephemeral
            .set_ex(&pending_key(&id), &body, state.saml.pending_ttl)
            .await?;
        let why = if force { "prompt_login" } else { "none" };
        return Ok(Next::Redirect(format!(
            "/?continue={id}&via=saml&why={why}"
        )));
    }
    let Some(signed) = signed else {
        return Err(Error::Internal("no session to answer for".into()));
    };
    issue(state, sp, pending, signed, ip).await
}

#[allow(clippy::too_many_arguments)]
async fn answer_status(
    state: &AppState,
    sp: &ServiceProvider,
    pending: &Pending,
    user_id: Option<&str>,
    second: &str,
    message: &str,
    ip: &Option<String>,
) -> Result<Next> {
    let now = state.clock.now();
    let keys = state.saml.keys.get(state).await;
    let in_response_to = pending.request.as_ref().map(|r| r.id.as_str());
    let top = if second == status::REQUEST_DENIED
        || second == status::NO_AUTHN_CONTEXT
        || second == status::NO_PASSIVE
    {
        status::RESPONDER
    } else {
        status::REQUESTER
    };
    let xml = response::failure(
        &state.saml.entity_id,
        &saml_id(),
        now,
        &pending.acs_url,
        in_response_to,
        &Status {
            code: top,
            second: Some(second),
            message: Some(message),
        },
        &keys.current,
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    let actor = user_id
        .map(|u| format!("user:{u}"))
        .unwrap_or_else(|| "anonymous".into());
    audit(
        state,
        NewAuditEvent {
            actor: actor.clone(),
            action: "saml.refused".into(),
            subject: format!("saml_sp:{}", sp.entity_id),
            outcome: Outcome::Refused,
            reason: Some(second.rsplit(':').next().unwrap_or(second).into()),
            details: serde_json::json!({
                "user": actor,
                "request_id": in_response_to,
                "message": message,
                "workspace": sp.workspace,
                "ip": ip,
            }),
        },
    )
    .await?;
    Ok(Next::Post(PostForm {
        action: pending.acs_url.clone(),
        saml_response: response::encode(&xml),
        relay_state: pending.relay_state.clone(),
        refusal: Some(refusal_reason(top, second)),
    }))
}

/// A refusal's status as a metrics reason: the second-level code keygate sends, else the
/// top-level one (a fixed set, so the label stays bounded).
fn refusal_reason(top: &str, second: &str) -> &'static str {
    match second {
        status::NO_AUTHN_CONTEXT => "no_authn_context",
        status::REQUEST_DENIED => "request_denied",
        status::NO_PASSIVE => "no_passive",
        status::INVALID_NAME_ID_POLICY => "invalid_name_id_policy",
        status::UNSUPPORTED_BINDING => "unsupported_binding",
        _ if top == status::RESPONDER => "responder",
        _ => "requester",
    }
}

/// A SAML ID: an NCName (`_` and 32 hex digits).
fn saml_id() -> String {
    format!("_{}", tokens::new_id())
}

async fn issue(
    state: &AppState,
    sp: &ServiceProvider,
    pending: Pending,
    signed: Signed,
    ip: Option<String>,
) -> Result<Next> {
    let (uid, workspace) = (signed.user_id.clone(), sp.workspace.clone());
    let (user, membership, groups) = state
        .storage
        .run(move |s| {
            let user = s.user_by_id(&uid)?;
            let membership = match workspace {
                Some(w) => Some((s.workspace(&w)?, s.is_workspace_member(&w, &uid)?)),
                None => None,
            };
            let groups = s.workspaces_of(&uid)?;
            Ok((user, membership, groups))
        })
        .await?;
    let uid = Some(signed.user_id.as_str());
    let Some(user) = user.filter(|u| u.status == UserStatus::Active) else {
        return answer_status(
            state,
            sp,
            &pending,
            uid,
            status::REQUEST_DENIED,
            "this account is disabled",
            &ip,
        )
        .await;
    };
    let workspace = match membership {
        None => None,
        Some((Some(w), true)) => Some(w),
        Some(_) => {
            return answer_status(
                state,
                sp,
                &pending,
                uid,
                status::REQUEST_DENIED,
                "the member does not belong to the workspace this service provider is bound to",
                &ip,
            )
            .await;
        }
    };
    if let Some(asked) = pending
        .request
        .as_ref()
        .and_then(|r| r.name_id_format.as_deref())
    {
        let unspecified = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
        if asked != unspecified && asked != sp.name_id_format.urn() {
            return answer_status(
                state,
                sp,
                &pending,
                uid,
                status::INVALID_NAME_ID_POLICY,
                "the requested NameID format is not the one registered for this service provider",
                &ip,
            )
            .await;
        }
    }
    let requested = pending
        .request
        .as_ref()
        .and_then(|r| r.requested_context.as_ref());
    let Some(class_ref) = context::decide(requested, &sp.authn_context, signed.proof) else {
        // Name what was asked and what keygate offers: a library default (e.g. an exact
        // PasswordProtectedTransport) is the usual cause, and the SP's admin fixes it there.
        let offered = context::offered(&sp.authn_context, signed.proof);
        let message = context::unmet_message(requested, &sp.authn_context, &offered);
        tracing::info!(
            saml.sp = %sp.entity_id,
            saml.requested_context = ?requested.map(|r| &r.class_refs),
            saml.offered_contexts = ?offered,
            "SAML request answered NoAuthnContext"
        );
        return answer_status(
            state,
            sp,
            &pending,
            uid,
            status::NO_AUTHN_CONTEXT,
            &message,
            &ip,
        )
        .await;
    };

    let name_id_value = match sp.name_id_format {
        NameIdFormat::Email | NameIdFormat::Unspecified => user.email.clone(),
        NameIdFormat::Persistent => hex::encode(
            &state.keyed_digest(format!("saml-nameid\n{}\n{}", sp.entity_id, user.id).as_bytes())
                [..16],
        ),
    };
    let mut attributes = Vec::new();
    for (source, name) in &sp.attributes {
        let values: Vec<String> = match source {
            AttributeSource::Email => vec![user.email.clone()],
            AttributeSource::Name => vec![user.display_name.clone()]
                .into_iter()
                .filter(|n| !n.trim().is_empty())
                .collect(),
            AttributeSource::Groups => groups.iter().map(|g| g.external_id.clone()).collect(),
            AttributeSource::WorkspaceId => {
                workspace.iter().map(|w| w.external_id.clone()).collect()
            }
            AttributeSource::KeyModel => signed.key.model.iter().cloned().collect(),
            AttributeSource::KeyFips => vec![signed.key.fips.to_string()],
            AttributeSource::KeyAaguid => vec![signed.key.aaguid.clone()],
        };
        if !values.is_empty() {
            attributes.push(Attribute {
                name: name.clone(),
                values,
            });
        }
    }

    let idp = &state.saml;
    let now = state.clock.now();
    let auth_instant = OffsetDateTime::from_unix_timestamp(signed.auth_time).unwrap_or(now);
    let assertion_id = saml_id();
    let response_id = saml_id();
    let session_index = crate::service::oidc::authorize::public_sid(state, &signed.session_id);
    let in_response_to = pending.request.as_ref().map(|r| r.id.clone());
    let recipient = sp
        .encryption_cert
        .as_deref()
        .map(encrypt::RecipientKey::from_cert)
        .transpose()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let keys = idp.keys.get(state).await;
    let assertion = response::Assertion {
        issuer: &idp.entity_id,
        assertion_id: &assertion_id,
        issue_instant: now,
        audience: &sp.entity_id,
        destination: &pending.acs_url,
        in_response_to: in_response_to.as_deref(),
        name_id: NameId {
            format: sp.name_id_format.urn(),
            value: &name_id_value,
            sp_name_qualifier: (sp.name_id_format == NameIdFormat::Persistent)
                .then_some(sp.entity_id.as_str()),
        },
        not_on_or_after: now + idp.assertion_ttl,
        not_before: now - time::Duration::seconds(idp.skew_secs),
        authn_instant: auth_instant,
        session_index: &session_index,
        session_not_on_or_after: None,
        authn_context: &class_ref,
        attributes: &attributes,
    };
    let xml = response::success(
        &assertion,
        &response_id,
        &Protection {
            key: &keys.current,
            sign_response: sp.sign_response,
            encrypt_for: recipient.as_ref(),
        },
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    audit(
        state,
        NewAuditEvent {
            actor: format!("user:{}", user.id),
            action: "saml.assertion_issued".into(),
            subject: format!("saml_sp:{}", sp.entity_id),
            outcome: Outcome::Success,
            reason: None,
            details: serde_json::json!({
                "user": user.id,
                "assertion_id": assertion_id,
                "in_response_to": in_response_to,
                "authn_context": class_ref,
                "workspace": workspace.as_ref().map(|w| &w.external_id),
                "key": signed.key.id,
                "encrypted": recipient.is_some(),
                "idp_initiated": pending.request.is_none(),
                "ip": ip,
            }),
        },
    )
    .await?;
    Ok(Next::Post(PostForm {
        action: pending.acs_url,
        saml_response: response::encode(&xml),
        relay_state: pending.relay_state,
        refusal: None,
    }))
}

/// Decodes a request from the redirect binding's raw query.
pub fn from_redirect(raw_query: &str) -> std::result::Result<Received, SamlError> {
    request::from_redirect(raw_query)
}

/// Decodes a request from the POST binding's raw form body: `SAMLRequest` once, an
/// optional `RelayState` once, each decoding to UTF-8 (a form that repeats either, or does
/// not decode, is malformed).
pub fn from_post_form(body: &[u8]) -> std::result::Result<Received, SamlError> {
    let decode = crate::saml::request::decode_component;
    let text = std::str::from_utf8(body)
        .map_err(|_| SamlError::Malformed("the form is not UTF-8 text".into()))?;
    let (mut saml_request, mut relay_state) = (None, None);
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match decode(name)?.as_str() {
            "SAMLRequest" => &mut saml_request,
            "RelayState" => &mut relay_state,
            _ => continue,
        };
        if slot.replace(decode(value)?).is_some() {
            return Err(SamlError::Malformed("a form field is repeated".into()));
        }
    }
    from_post(saml_request.as_deref(), relay_state)
}

/// Decodes a request from the POST binding's form.
pub fn from_post(
    saml_request: Option<&str>,
    relay_state: Option<String>,
) -> std::result::Result<Received, SamlError> {
    match saml_request {
        Some(r) => request::from_post(r, relay_state),
        None => Err(SamlError::Malformed("SAMLRequest is missing".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idp_initiated_query_decodes_or_is_refused() {
        let asked =
            from_idp_initiated("sp=https%3A%2F%2Fsp.example%2F&RelayState=a+b%2Fc&x=%FF").unwrap();
        assert_eq!(asked.sp, "https://sp.example/");
        assert_eq!(asked.relay_state.as_deref(), Some("a b/c"));
        assert!(from_idp_initiated("").unwrap().relay_state.is_none());
        for bad in ["sp=%FF", "RelayState=%C3%28", "%FF=1"] {
            assert!(
                matches!(from_idp_initiated(bad), Err(SamlError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
