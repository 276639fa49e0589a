//! Plain model structs: what callers read and write. Times are unix seconds, ids are
//! UUID text, JSON is kept as text (callers own its shape), binary is `Vec<u8>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::schema::credentials;

/// A text that is not one of an enum's values (e.g. a role other than `admin` or
/// `member`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

impl UnknownValue {
    fn new(kind: &'static str, value: &str) -> Self {
        UnknownValue {
            kind,
            value: value.to_owned(),
        }
    }
}

/// What a user may do in keygate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(UnknownValue::new("role", other)),
        }
    }
}

/// Whether a user may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UserStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(UserStatus::Active),
            "disabled" => Ok(UserStatus::Disabled),
            other => Err(UnknownValue::new("user status", other)),
        }
    }
}

/// Why an invitation link exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationKind {
    /// The first admin's one-time link printed at start-up.
    Bootstrap,
    /// An admin invited someone to enrol.
    Invite,
    /// Two-admin approved recovery for a member who lost every key.
    Recovery,
}

impl InvitationKind {
    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationKind::Bootstrap => "bootstrap",
            InvitationKind::Invite => "invite",
            InvitationKind::Recovery => "recovery",
        }
    }
}

impl fmt::Display for InvitationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InvitationKind {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bootstrap" => Ok(InvitationKind::Bootstrap),
            "invite" => Ok(InvitationKind::Invite),
            "recovery" => Ok(InvitationKind::Recovery),
            other => Err(UnknownValue::new("invitation kind", other)),
        }
    }
}

/// A user as stored. E-mail addresses are stored trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: i64,
    /// When the admin role took effect; `None` for members, and for an admin whose role
    /// was set without a recorded grant (such an admin approves nothing).
    #[serde(default)]
    pub admin_since: Option<i64>,
    /// Who made this user admin: the actor that created the invitation they joined
    /// through (`user:<id>`, `cli`, or `system` for the bootstrap link).
    #[serde(default)]
    pub admin_granted_by: Option<String>,
    /// The second admin (`user:<id>`) who approved that invitation, when one had to.
    #[serde(default)]
    pub admin_approved_by: Option<String>,
}

impl User {
    /// Whether the admin identified by `actor` (`user:<id>`) made this user admin, by
    /// creating or by approving their admin invitation.
    pub fn made_admin_by(&self, actor: &str) -> bool {
        self.admin_granted_by.as_deref() == Some(actor)
            || self.admin_approved_by.as_deref() == Some(actor)
    }
}

/// A user to create; new users are active. The caller picks the id (it is also the
/// WebAuthn user handle, needed before the row exists); [`crate::storage::new_id`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: i64,
}

/// A user with the number of active (not revoked) keys, for lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserWithKeys {
    pub user: User,
    pub active_keys: i64,
}

/// An enrolled credential (a hardware key) with the evidence of its enrolment.
///
/// Field order matches the `credentials` table (it is read by position).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, diesel::Queryable)]
pub struct Credential {
    pub id: String,
    pub user_id: String,
    /// The WebAuthn credential id.
    pub credential_id: Vec<u8>,
    pub public_key_cose: Vec<u8>,
    /// COSE algorithm identifier (e.g. -7 for ES256).
    pub alg: i64,
    pub sign_count: i64,
    pub aaguid: String,
    pub model: Option<String>,
    pub fips: bool,
    pub firmware: Option<String>,
    /// Attestation statement format (`packed`, `fido-u2f`, `none`, …).
    pub fmt: String,
    pub attestation_kind: String,
    pub trust_anchor: Option<String>,
    pub trust_anchor_sha256: Option<String>,
    pub leaf_sha256: Option<String>,
    /// JSON array of base64 DER certificates, leaf first.
    pub chain_json: String,
    pub attestation_object: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub phishing_resistant: bool,
    pub policy_version: i64,
    /// The policy decision at enrolment, as JSON.
    pub decision_json: String,
    pub nickname: String,
    pub enrolled_at: i64,
    pub enrolled_by: String,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub last_used_at: Option<i64>,
}

impl Credential {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// A credential to store, with an id picked by the caller
/// ([`crate::storage::new_id`]). It starts neither revoked nor used.
/// What a sign-in reads of a key ([`super::Tx::sign_in_key`]).
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = super::schema::credentials)]
pub struct SignInKey {
    pub id: String,
    pub public_key_cose: Vec<u8>,
    pub sign_count: i64,
    pub aaguid: String,
    pub model: Option<String>,
    pub backup_eligible: bool,
    pub phishing_resistant: bool,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, diesel::Insertable)]
#[diesel(table_name = credentials)]
pub struct NewCredential {
    pub id: String,
    pub user_id: String,
    pub credential_id: Vec<u8>,
    pub public_key_cose: Vec<u8>,
    pub alg: i64,
    pub sign_count: i64,
    pub aaguid: String,
    pub model: Option<String>,
    pub fips: bool,
    pub firmware: Option<String>,
    pub fmt: String,
    pub attestation_kind: String,
    pub trust_anchor: Option<String>,
    pub trust_anchor_sha256: Option<String>,
    pub leaf_sha256: Option<String>,
    pub chain_json: String,
    pub attestation_object: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub phishing_resistant: bool,
    pub policy_version: i64,
    pub decision_json: String,
    pub nickname: String,
    pub enrolled_at: i64,
    pub enrolled_by: String,
}

/// An invitation link as stored. The token itself is never stored, only its hash
/// (see [`crate::storage::hash_token`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: String,
    pub token_hash: String,
    pub kind: InvitationKind,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub used_by: Option<String>,
    pub revoked_at: Option<i64>,
    /// The second admin (`user:<id>`) who approved an admin invitation, and when.
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub approved_at: Option<i64>,
}

/// Where an invitation stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationState {
    Pending,
    Used,
    Revoked,
    Expired,
}

impl Invitation {
    /// An invitation that grants the admin role and no second admin approved yet: usable
    /// only while the organisation has fewer than two admins.
    pub fn grants_admin_unapproved(&self) -> bool {
        self.kind == InvitationKind::Invite
            && self.role == Role::Admin
            && self.approved_by.is_none()
    }

    /// The state at `now` (unix seconds): used and revoked win over expired.
    pub fn state(&self, now: i64) -> InvitationState {
        if self.used_at.is_some() {
            InvitationState::Used
        } else if self.revoked_at.is_some() {
            InvitationState::Revoked
        } else if self.expires_at <= now {
            InvitationState::Expired
        } else {
            InvitationState::Pending
        }
    }
}

/// An invitation to create, with an id picked by the caller
/// ([`crate::storage::new_id`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInvitation {
    pub id: String,
    /// Hex SHA-256 of the token ([`crate::storage::hash_token`]).
    pub token_hash: String,
    pub kind: InvitationKind,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Which invitations to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationFilter {
    All,
    /// Not used, not revoked, not expired.
    Pending,
    Used,
    /// Not used, not revoked, past its expiry.
    Expired,
    Revoked,
}

/// Filters and paging for the audit viewer. All filters are optional and combine
/// with AND; `cursor` is the last seq of the previous page (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Events at or after this time (unix seconds).
    pub from: Option<i64>,
    /// Events before this time (unix seconds, exclusive).
    pub to: Option<i64>,
    pub actor: Option<String>,
    /// Exact action, e.g. `enrolment.refused`.
    pub action: Option<String>,
    /// Action prefix, e.g. `enrolment.` for every enrolment event.
    pub action_prefix: Option<String>,
    pub subject: Option<String>,
    pub outcome: Option<crate::audit::Outcome>,
    /// Seq of the last event already shown: ascending pages return seq > cursor,
    /// newest-first pages return seq < cursor.
    pub cursor: Option<i64>,
    /// Page size; clamped to 1..=1000 (0 means 100).
    pub limit: u32,
    pub newest_first: bool,
}
