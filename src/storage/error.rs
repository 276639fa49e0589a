//! Storage errors. Callers see four cases and no diesel type: a missing row, a
//! conflict with existing data (a unique or reference constraint), an unavailable
//! database (pool exhausted, connection lost, database locked) and anything else.

use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};

/// What went wrong in storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// The write conflicts with existing data. The text is a stable code naming the
    /// constraint, e.g. `users.email`, `credentials.credential_id`, or
    /// `foreign_key` for a reference to a missing row.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached right now (pool timeout, lost connection,
    /// database locked); retrying later may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Any other database failure, or stored data that cannot be read back.
    #[error("storage error: {0}")]
    Backend(String),
}

impl StorageError {
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        StorageError::Backend(format!("unreadable stored value: {what}"))
    }
}

/// Maps a diesel error to a [`StorageError`] (kept out of the public API on purpose:
/// no `From<diesel::Error>` impl).
pub(crate) fn db_err(err: DieselError) -> StorageError {
    match err {
        DieselError::NotFound => StorageError::NotFound,
        DieselError::DatabaseError(kind, info) => database_error(kind, info.as_ref()),
        DieselError::BrokenTransactionManager => {
            StorageError::Unavailable("connection left in a broken transaction state".into())
        }
        other => StorageError::Backend(other.to_string()),
    }
}

fn database_error(
    kind: DatabaseErrorKind,
    info: &(dyn DatabaseErrorInformation + Send + Sync),
) -> StorageError {
    let message = info.message();
    match kind {
        DatabaseErrorKind::UniqueViolation => StorageError::Conflict(conflict_code(info)),
        // SQLite does not say which reference failed, so neither backend does.
        DatabaseErrorKind::ForeignKeyViolation => StorageError::Conflict("foreign_key".into()),
        DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
            StorageError::Unavailable(message.to_owned())
        }
        DatabaseErrorKind::SerializationFailure => StorageError::Unavailable(message.to_owned()),
        _ if is_locked(message) => StorageError::Unavailable(message.to_owned()),
        _ => StorageError::Backend(message.to_owned()),
    }
}

/// SQLite reports a busy/locked database (after `busy_timeout`) with these messages.
fn is_locked(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database table is locked")
}

/// A stable `table.column` code for a violated constraint on either backend.
///
/// PostgreSQL names the constraint (`users_email_key`, our migrations name them
/// explicitly); SQLite names the columns (`UNIQUE constraint failed: users.email`).
fn conflict_code(info: &(dyn DatabaseErrorInformation + Send + Sync)) -> String {
    if let Some(constraint) = info.constraint_name() {
        if let Some(code) = KNOWN_CONSTRAINTS
            .iter()
            .find(|(name, _)| *name == constraint)
            .map(|(_, code)| *code)
        {
            return code.to_owned();
        }
        return constraint.to_owned();
    }
    let message = info.message();
    match message.strip_prefix("UNIQUE constraint failed: ") {
        Some(columns) => columns.trim().to_owned(),
        None => message.to_owned(),
    }
}

const KNOWN_CONSTRAINTS: &[(&str, &str)] = &[
    ("workspaces_pkey", "workspaces.id"),
    ("workspaces_external_id_key", "workspaces.external_id"),
    (
        "workspace_members_pkey",
        "workspace_members.workspace_id, workspace_members.user_id",
    ),
    ("users_pkey", "users.id"),
    ("users_email_key", "users.email"),
    ("credentials_pkey", "credentials.id"),
    ("credentials_credential_id_key", "credentials.credential_id"),
    ("invitations_pkey", "invitations.id"),
    ("invitations_token_hash_key", "invitations.token_hash"),
    ("audit_events_pkey", "audit_events.seq"),
    ("audit_events_id_key", "audit_events.id"),
    ("settings_pkey", "settings.key"),
];
