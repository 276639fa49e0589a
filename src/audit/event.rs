//! The shapes of audit events: what a caller asks to record, and what was stored.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action was carried out.
    Success,
    /// The action was refused by policy or by a check (e.g. an unattested key).
    Refused,
    /// The action failed for a reason outside policy (malformed input, an outage).
    Failure,
}

impl Outcome {
    /// The text stored in the `outcome` column and hashed into the chain.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Failure => "failure",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `success`, `refused`, `failure`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit outcome {0:?}")]
pub struct ParseOutcomeError(pub String);

impl FromStr for Outcome {
    type Err = ParseOutcomeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(Outcome::Success),
            "refused" => Ok(Outcome::Refused),
            "failure" => Ok(Outcome::Failure),
            other => Err(ParseOutcomeError(other.to_owned())),
        }
    }
}

/// An event a caller wants recorded. The append assigns `seq`, `id`, the time (unless
/// given) and the hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// Who acted: a user id, `system`, a client id, …
    pub actor: String,
    /// Dotted action name, e.g. `enrolment.refused`, `signin.success`.
    pub action: String,
    /// What the action was about: a user id, a credential id, an invitation id, …
    pub subject: String,
    pub outcome: Outcome,
    /// A short human-readable reason, mostly for refusals and failures.
    pub reason: Option<String>,
    /// Structured details (policy decision, client, scopes, …).
    pub details: serde_json::Value,
}

impl NewAuditEvent {
    /// An event with no reason and empty details; see the `with_*` helpers.
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        NewAuditEvent {
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            outcome,
            reason: None,
            details: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// One stored audit event, exactly as persisted.
///
/// Every text field is kept as stored (not re-parsed) because the chain hash covers the
/// stored bytes: `outcome` is the stored text and `details` the stored JSON text. Use
/// [`AuditRecord::outcome`] and [`AuditRecord::details_value`] for typed views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain: 1, 2, 3, … without gaps.
    pub seq: i64,
    /// Unique event id (UUID text).
    pub id: String,
    /// Unix seconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// `success`, `refused` or `failure` as stored.
    #[serde(rename = "outcome")]
    pub outcome_text: String,
    pub reason: Option<String>,
    /// The details JSON text exactly as stored and hashed.
    #[serde(rename = "details")]
    pub details_json: String,
    /// Hash of the previous record ([`crate::audit::GENESIS`] for seq 1).
    pub prev_hash: String,
    /// [`crate::audit::link_hash`] of this record.
    pub hash: String,
}

impl AuditRecord {
    /// The typed outcome, or `None` if the stored text is not a known outcome.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome_text.parse().ok()
    }

    /// The details parsed as JSON (`Null` if the stored text is not valid JSON).
    pub fn details_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.details_json).unwrap_or(serde_json::Value::Null)
    }
}
