//! Users.

use std::collections::HashMap;

use diesel::prelude::*;

use super::error::{db_err, StorageError};
use super::models::{NewUser, Role, User, UserStatus, UserWithKeys};
use super::schema::{credentials, users};
use super::{Storage, Tx};

#[derive(Queryable)]
pub(super) struct UserRow {
    id: String,
    email: String,
    display_name: String,
    role: String,
    status: String,
    created_at: i64,
    admin_since: Option<i64>,
    admin_granted_by: Option<String>,
    admin_approved_by: Option<String>,
}

impl TryFrom<UserRow> for User {
    type Error = StorageError;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        Ok(User {
            role: row.role.parse().map_err(StorageError::corrupt)?,
            status: row.status.parse().map_err(StorageError::corrupt)?,
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            created_at: row.created_at,
            admin_since: row.admin_since,
            admin_granted_by: row.admin_granted_by,
            admin_approved_by: row.admin_approved_by,
        })
    }
}

/// E-mail addresses are compared and stored trimmed and lower-cased.
pub(crate) fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Tx<'_> {
    /// Creates a user. A taken e-mail address is `Conflict("users.email")`, a taken
    /// id `Conflict("users.id")`. An admin is admin from `created_at`; who granted the
    /// role is recorded with [`Tx::record_admin_grant`] in the same transaction.
    pub fn insert_user(&mut self, new: &NewUser) -> Result<User, StorageError> {
        let user = User {
            id: new.id.clone(),
            email: normalize_email(&new.email),
            display_name: new.display_name.clone(),
            role: new.role,
            status: UserStatus::Active,
            created_at: new.created_at,
            admin_since: (new.role == Role::Admin).then_some(new.created_at),
            admin_granted_by: None,
            admin_approved_by: None,
        };
        diesel::insert_into(users::table)
            .values((
                users::id.eq(&user.id),
                users::email.eq(&user.email),
                users::display_name.eq(&user.display_name),
                users::role.eq(user.role.as_str()),
                users::status.eq(user.status.as_str()),
                users::created_at.eq(user.created_at),
                users::admin_since.eq(user.admin_since),
            ))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(user)
    }

    pub fn user_by_id(&mut self, id: &str) -> Result<Option<User>, StorageError> {
        users::table
            .find(id)
            .first::<UserRow>(self.conn)
            .optional()
            .map_err(db_err)?
            .map(User::try_from)
            .transpose()
    }

    pub fn user_by_email(&mut self, email: &str) -> Result<Option<User>, StorageError> {
        users::table
            .filter(users::email.eq(normalize_email(email)))
            .first::<UserRow>(self.conn)
            .optional()
            .map_err(db_err)?
            .map(User::try_from)
            .transpose()
    }

    /// Every user, ordered by e-mail, with their number of active (not revoked) keys.
    pub fn list_users(&mut self) -> Result<Vec<UserWithKeys>, StorageError> {
        let rows = users::table
            .order(users::email.asc())
            .load::<UserRow>(self.conn)
            .map_err(db_err)?;
        let counts: HashMap<String, i64> = credentials::table
            .filter(credentials::revoked_at.is_null())
            .group_by(credentials::user_id)
            .select((credentials::user_id, diesel::dsl::count_star()))
            .load::<(String, i64)>(self.conn)
            .map_err(db_err)?
            .into_iter()
            .collect();
        rows.into_iter()
            .map(|row| {
                let user = User::try_from(row)?;
                let active_keys = counts.get(&user.id).copied().unwrap_or(0);
                Ok(UserWithKeys { user, active_keys })
            })
            .collect()
    }

    /// Number of users (any role or status), e.g. to know whether to bootstrap.
    pub fn count_users(&mut self) -> Result<i64, StorageError> {
        users::table.count().get_result(self.conn).map_err(db_err)
    }

    /// Number of active admins (to refuse disabling or demoting the last one).
    pub fn count_admins(&mut self) -> Result<i64, StorageError> {
        users::table
            .filter(users::role.eq(Role::Admin.as_str()))
            .filter(users::status.eq(UserStatus::Active.as_str()))
            .count()
            .get_result(self.conn)
            .map_err(db_err)
    }

    /// Sets a user's status; `false` if there is no such user.
    pub fn set_user_status(&mut self, id: &str, status: UserStatus) -> Result<bool, StorageError> {
        let changed = diesel::update(users::table.find(id))
            .set(users::status.eq(status.as_str()))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(changed > 0)
    }

    /// Sets a user's role; `false` if there is no such user. A change clears the admin
    /// grant: a role set here has no recorded grant, so such an admin approves nothing
    /// (keygate itself grants the admin role only through an invitation).
    pub fn set_user_role(&mut self, id: &str, role: Role) -> Result<bool, StorageError> {
        let changed = diesel::update(users::table.find(id).filter(users::role.ne(role.as_str())))
            .set((
                users::role.eq(role.as_str()),
                users::admin_since.eq(None::<i64>),
                users::admin_granted_by.eq(None::<String>),
                users::admin_approved_by.eq(None::<String>),
            ))
            .execute(self.conn)
            .map_err(db_err)?;
        if changed > 0 {
            return Ok(true);
        }
        let exists: i64 = users::table
            .find(id)
            .count()
            .get_result(self.conn)
            .map_err(db_err)?;
        Ok(exists > 0)
    }

    /// Records who made admin `id` an admin: the actor that created their invitation and
    /// the second admin who approved it, if any. Only for an admin with no grant recorded
    /// yet (a grant is never rewritten); `false` otherwise.
    pub fn record_admin_grant(
        &mut self,
        id: &str,
        granted_by: &str,
        approved_by: Option<&str>,
    ) -> Result<bool, StorageError> {
        let changed = diesel::update(
            users::table
                .find(id)
                .filter(users::role.eq(Role::Admin.as_str()))
                .filter(users::admin_granted_by.is_null()),
        )
        .set((
            users::admin_granted_by.eq(Some(granted_by)),
            users::admin_approved_by.eq(approved_by),
        ))
        .execute(self.conn)
        .map_err(db_err)?;
        Ok(changed == 1)
    }
}

/// One-call conveniences; compose several writes with [`Storage::transaction`].
impl Storage {
    pub fn insert_user(&self, new: &NewUser) -> Result<User, StorageError> {
        self.with_conn(|tx| tx.insert_user(new))
    }

    pub fn user_by_id(&self, id: &str) -> Result<Option<User>, StorageError> {
        self.with_conn(|tx| tx.user_by_id(id))
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<User>, StorageError> {
        self.with_conn(|tx| tx.user_by_email(email))
    }

    pub fn list_users(&self) -> Result<Vec<UserWithKeys>, StorageError> {
        self.with_conn(|tx| tx.list_users())
    }

    pub fn count_users(&self) -> Result<i64, StorageError> {
        self.with_conn(|tx| tx.count_users())
    }

    pub fn count_admins(&self) -> Result<i64, StorageError> {
        self.with_conn(|tx| tx.count_admins())
    }

    pub fn set_user_status(&self, id: &str, status: UserStatus) -> Result<bool, StorageError> {
        self.with_conn(|tx| tx.set_user_status(id, status))
    }

    pub fn set_user_role(&self, id: &str, role: Role) -> Result<bool, StorageError> {
        self.with_conn(|tx| tx.set_user_role(id, role))
    }
}
