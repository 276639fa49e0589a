//! Workspaces and who belongs to them (SPEC C6).

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::{db_err, StorageError};
use super::schema::{workspace_members, workspaces};
use super::{Storage, Tx};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable, Insertable)]
#[diesel(table_name = workspaces)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    /// The vendor's ID for it, carried in assertions as `workspace_id`.
    pub external_id: String,
    /// `config` (declared in the config file, kept in step at start-up) or `admin`.
    pub source: String,
    pub created_at: i64,
}

impl Tx<'_> {
    pub fn insert_workspace(&mut self, w: &Workspace) -> Result<(), StorageError> {
        diesel::insert_into(workspaces::table)
            .values(w)
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(())
    }

    /// Sets name and external ID of an existing workspace; `false` if there is none.
    pub fn update_workspace(
        &mut self,
        id: &str,
        name: &str,
        external_id: &str,
    ) -> Result<bool, StorageError> {
        let n = diesel::update(workspaces::table.find(id))
            .set((
                workspaces::name.eq(name),
                workspaces::external_id.eq(external_id),
            ))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(n > 0)
    }

    pub fn workspace(&mut self, id: &str) -> Result<Option<Workspace>, StorageError> {
        workspaces::table
            .find(id)
            .first(self.conn)
            .optional()
            .map_err(db_err)
    }

    pub fn list_workspaces(&mut self) -> Result<Vec<Workspace>, StorageError> {
        workspaces::table
            .order(workspaces::name.asc())
            .load(self.conn)
            .map_err(db_err)
    }

    /// Adds a member; `false` if they already belonged.
    pub fn add_workspace_member(
        &mut self,
        workspace_id: &str,
        user_id: &str,
        by: &str,
        at: i64,
    ) -> Result<bool, StorageError> {
        if self.is_workspace_member(workspace_id, user_id)? {
            return Ok(false);
        }
        diesel::insert_into(workspace_members::table)
            .values((
                workspace_members::workspace_id.eq(workspace_id),
                workspace_members::user_id.eq(user_id),
                workspace_members::added_at.eq(at),
                workspace_members::added_by.eq(by),
            ))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(true)
    }

    /// Removes a member; `false` if they did not belong.
    pub fn remove_workspace_member(
        &mut self,
        workspace_id: &str,
        user_id: &str,
    ) -> Result<bool, StorageError> {
        let n = diesel::delete(
            workspace_members::table
                .filter(workspace_members::workspace_id.eq(workspace_id))
                .filter(workspace_members::user_id.eq(user_id)),
        )
        .execute(self.conn)
        .map_err(db_err)?;
        Ok(n > 0)
    }

    pub fn is_workspace_member(
        &mut self,
        workspace_id: &str,
        user_id: &str,
    ) -> Result<bool, StorageError> {
        let n: i64 = workspace_members::table
            .filter(workspace_members::workspace_id.eq(workspace_id))
            .filter(workspace_members::user_id.eq(user_id))
            .count()
            .get_result(self.conn)
            .map_err(db_err)?;
        Ok(n > 0)
    }

    /// The user ids that belong to a workspace.
    pub fn workspace_member_ids(
        &mut self,
        workspace_id: &str,
    ) -> Result<Vec<String>, StorageError> {
        workspace_members::table
            .filter(workspace_members::workspace_id.eq(workspace_id))
            .select(workspace_members::user_id)
            .load(self.conn)
            .map_err(db_err)
    }

    /// The workspaces a user belongs to.
    pub fn workspaces_of(&mut self, user_id: &str) -> Result<Vec<Workspace>, StorageError> {
        workspaces::table
            .inner_join(workspace_members::table)
            .filter(workspace_members::user_id.eq(user_id))
            .select(workspaces::all_columns)
            .order(workspaces::name.asc())
            .load(self.conn)
            .map_err(db_err)
    }
}

impl Storage {
    pub fn list_workspaces(&self) -> Result<Vec<Workspace>, StorageError> {
        self.with_conn(|tx| tx.list_workspaces())
    }

    pub fn workspace(&self, id: &str) -> Result<Option<Workspace>, StorageError> {
        self.with_conn(|tx| tx.workspace(id))
    }

    pub fn is_workspace_member(
        &self,
        workspace_id: &str,
        user_id: &str,
    ) -> Result<bool, StorageError> {
        self.with_conn(|tx| tx.is_workspace_member(workspace_id, user_id))
    }

    pub fn workspaces_of(&self, user_id: &str) -> Result<Vec<Workspace>, StorageError> {
        self.with_conn(|tx| tx.workspaces_of(user_id))
    }

    pub fn workspace_member_ids(&self, workspace_id: &str) -> Result<Vec<String>, StorageError> {
        self.with_conn(|tx| tx.workspace_member_ids(workspace_id))
    }
}
