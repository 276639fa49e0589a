//! Key sign-in (SPEC C3): discoverable (no e-mail) or username-first, UV required by
//! policy, revoked keys and disabled members refused, signature-counter regression refused
//! as a possible cloned key. Every outcome lands in the audit chain: a refusal that proves
//! nothing about any account within the per-address limit of [`refusals::record`].

use serde::{Deserialize, Serialize};

use crate::audit::{NewAuditEvent, Outcome};
use crate::error::{Error, Result};
use crate::service::ceremony::{self, Ceremony};
use crate::service::session::{self, Session, SignInContext};
use crate::service::{limits, refusals, tokens, Actor};
use crate::state::AppState;
use crate::storage::{SignInWrite, UserStatus};
use crate::webauthn::{verify_assertion, AssertionInput, CoseKey};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeginRequest {
    /// Username-first: the member's e-mail. Absent: the key names its account.
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AssertionResponse {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(rename = "authenticatorData")]
    pub authenticator_data: String,
    pub signature: String,
    #[serde(rename = "userHandle", default)]
    pub user_handle: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Credential {
    pub id: String,
    #[serde(rename = "rawId")]
    pub raw_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub response: AssertionResponse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    pub credential: Credential,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    challenge: String,
    /// Username-first: only this member's keys may answer.
    user_id: Option<String>,
    expires_at: i64,
}

#[derive(Debug, Serialize)]
pub struct SignedIn {
    pub user_id: String,
    pub role: String,
    pub key_id: String,
    pub user_verified: bool,
}

/// Starts an authentication ceremony; returns `PublicKeyCredentialRequestOptions` JSON.
/// An unknown e-mail gets the same answer as a known one (no account enumeration). A
/// refusal (past a rate limit) is audited as `signin.refused`, within the per-address
/// limit of [`refusals::record`].
pub async fn begin(
    state: &AppState,
    ceremony: &Ceremony,
    ip: &str,
    req: BeginRequest,
) -> Result<serde_json::Value> {
    match options(state, ceremony, ip, req).await {
        Ok(options) => Ok(options),
        Err(err) => {
            let actor = Actor::anonymous(Some(ip.to_string()).filter(|ip| !ip.is_empty()));
            Err(unproven(state, &actor, err, serde_json::json!({ "step": "begin" })).await)
        }
    }
}

/// Audits a refusal that proves nothing about any account (`signin.refused`, on the
/// caller, within the per-address limit of [`refusals::record`]) and returns it; a
/// failure of ours is returned as it is, unaudited.
async fn unproven(
    state: &AppState,
    actor: &Actor,
    err: Error,
    details: serde_json::Value,
) -> Error {
    if refusals::is_refusal(&err) {
        let event = refusals::event(actor, "signin.refused", &actor.id, &err, details);
        if let Err(failed) = refusals::record(state, actor, event).await {
            return failed;
        }
    }
    err
}

async fn options(
    state: &AppState,
    ceremony: &Ceremony,
    ip: &str,
    req: BeginRequest,
) -> Result<serde_json::Value> {
    let ttl = state.config.webauthn.challenge_ttl_secs;
    let email = req
        .email
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty());
    let per_address = limits::ceremony(state, "signin", ip);
    // Counted with the challenge's write, or, before an account lookup, ahead of it.
    let mut counted_with_challenge = Vec::new();
    let (user_id, allow) = match email {
        Some(email) => {
            // Per account too, so one address cannot be hammered from many clients.
            let per_account = limits::ceremony(
                state,
                "signin-account",
                &tokens::digest_hex(email.as_bytes()),
            );
            limits::count(state, &[per_address, per_account]).await?;
            let lookup = email.clone();
            let found = state
                .storage
                .run(move |s| {
                    let Some(user) = s.user_by_email(&lookup)? else {
                        return Ok(None);
                    };
                    let keys = s.credentials_for_user(&user.id, true)?;
                    Ok(Some((user.id, keys)))
                })
                .await?;
            match found {
                Some((uid, keys)) => {
                    let allow: Vec<serde_json::Value> = keys
                        .iter()
                        .map(|k| serde_json::json!({ "type": "public-key", "id": tokens::b64url(&k.credential_id) }))
                        .collect();
                    (Some(uid), allow)
                }
                // Unknown: decoy credential IDs, stable per address, shaped like real
                // ones, so the answer does not tell whether the account exists.
                None => {
                    let seed = state.keyed_digest(format!("decoy:{email}").as_bytes());
                    let count = 1 + usize::from(seed[0] & 1);
                    let allow = (0..count)
                        .map(|i| {
                            let mut id = state.keyed_digest(&[&seed[..], &[i as u8]].concat());
                            id.extend(state.keyed_digest(&id));
                            serde_json::json!({ "type": "public-key", "id": tokens::b64url(&id) })
                        })
                        .collect();
                    (Some(tokens::new_id()), allow)
                }
            }
        }
        None => {
            counted_with_challenge.push(per_address);
            (None, Vec::new())
        }
    };
    let challenge = tokens::random_bytes(32);
    let pending = Pending {
        challenge: tokens::b64url(&challenge),
        user_id,
        expires_at: state.now() + ttl as i64,
    };
    let options = serde_json::json!({
        "challenge": pending.challenge,
        "rpId": &*state.rp_id,
        "timeout": ttl * 1000,
        "userVerification": if state.policy().require_user_verification { "required" } else { "preferred" },
        "allowCredentials": allow,
    });
    ceremony::remember(
        state,
        "auth",
        ceremony,
        &pending,
        ttl,
        counted_with_challenge,
    )
    .await?;
    Ok(options)
}

/// The browser finishing a sign-in: its session cookie's value and CSRF header, as sent.
pub struct Browser {
    pub session_token: String,
    pub csrf: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Finishes an authentication ceremony and rotates the browser into a signed-in session
/// (recorded with the key, `ip` and `user_agent`). Counts against the sign-in rate limit
/// of `ip`. The key's counter, the session record and the audit event are written in one
/// transaction (a group commit).
pub async fn finish(
    state: &AppState,
    browser: Browser,
    body: &[u8],
) -> Result<(SignedIn, Session)> {
    let Browser {
        session_token,
        csrf,
        ip,
        user_agent,
    } = browser;
    let actor = Actor {
        id: "anonymous".into(),
        ip,
    };
    // The session and the challenge (with the limit, in one step) at once: the challenge
    // is found by the cookie alone. Past the limit the challenge stays (for its short
    // life) and nothing is verified; without a live session or its CSRF token, nothing is
    // either (the challenge, bound to that cookie, is used up).
    let per_address = [limits::ceremony(
        state,
        "signin",
        actor.ip.as_deref().unwrap_or_default(),
    )];
    let (session, pending) = tokio::join!(
        session::load(state, &session_token),
        ceremony::take::<Pending>(state, "auth", &session_token, &per_address)
    );
    let session = session?.ok_or(Error::Csrf { user: None })?;
    session.check_csrf(csrf.as_deref())?;
    let pending = match pending {
        Ok(pending) => pending,
        Err(err) => {
            return Err(unproven(state, &actor, err, serde_json::json!({ "step": "finish" })).await)
        }
    };
    let outcome = match pending.filter(|p| p.expires_at > state.now()) {
        None => Err((
            Error::gone(
                "challenge_expired",
                "this sign-in attempt expired or was already used; start again",
            ),
            None,
            serde_json::json!({}),
        )),
        Some(pending) => verify(state, &pending, body).await,
    };
    match outcome {
        Ok(proven) => {
            let Proven {
                signed_in,
                sign_count,
                details,
                refusal_details,
            } = proven;
            let subject = format!("user:{}", signed_in.user_id);
            let success = NewAuditEvent {
                actor: subject.clone(),
                action: "signin.success".into(),
                subject: subject.clone(),
                outcome: Outcome::Success,
                reason: None,
                details: serde_json::json!({ "key": details, "ip": actor.ip }),
            };
            let cloned = possible_clone();
            let refused = NewAuditEvent {
                actor: actor.id.clone(),
                action: "signin.refused".into(),
                subject,
                outcome: Outcome::Refused,
                reason: Some(cloned.code().to_string()),
                details: serde_json::json!({ "message": cloned.to_string(), "key": refusal_details, "ip": actor.ip }),
            };
            let fresh = session::prepare(
                state,
                &signed_in.user_id,
                &signed_in.role,
                SignInContext {
                    key_id: Some(signed_in.key_id.clone()),
                    user_verified: signed_in.user_verified,
                    ip: actor.ip.clone(),
                    user_agent,
                },
            );
            let write = SignInWrite {
                key_id: signed_in.key_id.clone(),
                sign_count,
                at: state.now(),
                session: fresh.record.clone(),
                success,
                refused,
            };
            // Live first, recorded second (see `session::NewSession`): the browser's old
            // session ends here even if the record is then refused, which is safe.
            let record = fresh.record.clone();
            let live = session::activate(state, Some(&session), fresh).await?;
            // Refused when the key was revoked meanwhile, or the same counter value was
            // used twice at once.
            let recorded = state
                .storage
                .audited(move |tx| tx.record_sign_in(write.clone()))
                .await
                .map(|ticket| ticket.recorded());
            match recorded {
                Ok(true) => {
                    session::announce(state, &record);
                    Ok((signed_in, live))
                }
                Ok(false) => {
                    session::discard(state, &live).await;
                    Err(cloned)
                }
                Err(e) => {
                    session::discard(state, &live).await;
                    Err(e.into())
                }
            }
        }
        // Nothing proven about any account (no challenge, malformed, unknown key): anyone
        // can cause this, so it is recorded within the per-address limit.
        Err((err, None, mut details)) => {
            if let Some(map) = details.as_object_mut() {
                map.insert("step".into(), "finish".into());
            }
            Err(unproven(state, &actor, err, details).await)
        }
        Err((err, Some(subject), details)) => {
            let event = NewAuditEvent {
                actor: actor.id.clone(),
                action: "signin.refused".into(),
                subject,
                outcome: Outcome::Refused,
                reason: Some(err.code().to_string()),
                details: serde_json::json!({ "message": err.to_string(), "key": details, "ip": actor.ip }),
            };
            let now = state.now();
            state
                .storage
                .run(move |s| s.append_audit(&event, now).map(|_| ()))
                .await?;
            Err(err)
        }
    }
}

/// A refusal: the error, the account it concerns once a key's signature proved it (audited),
/// and details for the audit event.
type Refused = (Error, Option<String>, serde_json::Value);

/// A key proved its member: what to record once its counter is stored.
struct Proven {
    signed_in: SignedIn,
    sign_count: i64,
    /// For the success event.
    details: serde_json::Value,
    /// For a refusal event, should the counter not be stored.
    refusal_details: serde_json::Value,
}

/// The key's signature counter did not go up.
fn possible_clone() -> Error {
    Error::Refused(vec![crate::attestation::Refusal {
        rule: "possible_cloned_key",
        message: "the key's signature counter did not go up: it may have been cloned".into(),
        remedy: "contact your admin; sign in with your backup key meanwhile".into(),
    }])
}

async fn verify(
    state: &AppState,
    pending: &Pending,
    body: &[u8],
) -> std::result::Result<Proven, Refused> {
    let plain = |e: Error| (e, None, serde_json::json!({}));
    let req: FinishRequest = serde_json::from_slice(body).map_err(|e| {
        plain(Error::bad_request(
            "malformed_json",
            format!("the request body is not an assertion response: {e}"),
        ))
    })?;
    let cred = &req.credential;
    let decode = |field: &str, v: &str| {
        tokens::from_b64url(v).ok_or_else(|| {
            plain(Error::bad_request(
                "malformed_base64",
                format!("{field} is not base64url"),
            ))
        })
    };
    let raw_id = decode("rawId", &cred.raw_id)?;
    if cred.kind != "public-key" || tokens::from_b64url(&cred.id).as_deref() != Some(&raw_id[..]) {
        return Err(plain(Error::bad_request(
            "malformed_credential",
            "the credential's id, rawId or type is wrong",
        )));
    }
    let client_data_json = decode("clientDataJSON", &cred.response.client_data_json)?;
    let authenticator_data = decode("authenticatorData", &cred.response.authenticator_data)?;
    let signature = decode("signature", &cred.response.signature)?;
    let user_handle = match &cred.response.user_handle {
        Some(h) if !h.is_empty() => Some(decode("userHandle", h)?),
        _ => None,
    };

    let lookup_id = raw_id.clone();
    let found = state
        .storage
        .sign_in_key(lookup_id)
        .await
        .map_err(|e| plain(e.into()))?;
    // The credential's id, for the audit event (a real one is at most 1023 bytes).
    let named = serde_json::json!({
        "credential_id": (raw_id.len() <= 1023).then(|| tokens::b64url(&raw_id)),
    });
    let unknown = || {
        (
            Error::bad_request("unknown_credential", "this key is not enrolled here"),
            None,
            named.clone(),
        )
    };
    let Some((key, user)) = found else {
        return Err(unknown());
    };
    if pending.user_id.as_deref().is_some_and(|u| u != user.id) {
        return Err(unknown());
    }
    // The signature first: nothing below is said about an account until its key answered.
    let public_key = CoseKey::from_cbor_exact(&key.public_key_cose).map_err(|e| plain(e.into()))?;
    let challenge = tokens::from_b64url(&pending.challenge).unwrap_or_default();
    let verified = verify_assertion(&AssertionInput {
        client_data_json: &client_data_json,
        authenticator_data: &authenticator_data,
        signature: &signature,
        expected_challenge: &challenge,
        expected_origin: &state.origin,
        rp_id: &state.rp_id,
        stored_public_key: &public_key,
        stored_sign_count: u32::try_from(key.sign_count).unwrap_or(u32::MAX),
    });
    let subject = Some(format!("user:{}", user.id));
    let details = serde_json::json!({ "key_id": key.id, "aaguid": key.aaguid, "model": key.model });
    let refuse = |e: Error| (e, subject.clone(), details.clone());
    let verified = match verified {
        Ok(v) => v,
        // The member's real key signed, but for another origin, challenge or RP: what a
        // phishing relay produces. That is worth an audit event on the member.
        Err(e)
            if signed_by(
                &public_key,
                &authenticator_data,
                &client_data_json,
                &signature,
            ) =>
        {
            return Err(refuse(e.into()))
        }
        Err(e) => return Err(plain(e.into())),
    };
    if let Some(handle) = &user_handle {
        if hex::encode(handle) != user.id {
            return Err(refuse(Error::bad_request(
                "user_handle_mismatch",
                "the key answered for another account",
            )));
        }
    }
    if key.revoked_at.is_some() {
        return Err(refuse(Error::Forbidden("this key was revoked")));
    }
    if user.status != UserStatus::Active {
        return Err(refuse(Error::Forbidden("this account is disabled")));
    }
    if verified.flags.backup_eligible != key.backup_eligible {
        return Err(refuse(Error::bad_request(
            "backup_flag_changed",
            "the key reports a different backup eligibility than when it was enrolled",
        )));
    }
    if state.policy().require_user_verification && !verified.flags.user_verified {
        return Err(refuse(Error::Refused(vec![crate::attestation::Refusal {
            rule: "user_verification_required",
            message: "the key did not verify you (PIN or fingerprint)".into(),
            remedy: "use a key with a PIN or fingerprint set, and enter it when asked".into(),
        }])));
    }
    if verified.counter_regressed {
        return Err(refuse(possible_clone()));
    }
    let refusal_details = details.clone();
    let details = serde_json::json!({
        "key_id": key.id, "aaguid": key.aaguid, "model": key.model,
        "user_verified": verified.flags.user_verified,
        "phishing_resistant": key.phishing_resistant && verified.flags.user_verified,
    });
    Ok(Proven {
        signed_in: SignedIn {
            user_id: user.id,
            role: user.role.as_str().into(),
            key_id: key.id,
            user_verified: verified.flags.user_verified,
        },
        sign_count: i64::from(verified.sign_count),
        details,
        refusal_details,
    })
}

/// Whether `signature` is the key's signature over authenticatorData ‖ SHA-256(clientDataJSON),
/// whatever the client data says.
fn signed_by(
    key: &CoseKey,
    authenticator_data: &[u8],
    client_data_json: &[u8],
    signature: &[u8],
) -> bool {
    let mut signed = authenticator_data.to_vec();
    signed
        .extend_from_slice(ring::digest::digest(&ring::digest::SHA256, client_data_json).as_ref());
    key.verify(&signed, signature).is_ok()
}
