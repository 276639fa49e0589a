//! Registered SAML service providers.

use diesel::prelude::*;

use super::error::{db_err, StorageError};
use super::schema::saml_service_providers as sps;
use super::{Storage, Tx};

/// One row: the registration's JSON (`settings`) plus what the database keeps in columns.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = sps)]
pub struct SamlSpRecord {
    pub entity_id: String,
    pub name: String,
    /// The registration (`saml::sp::ServiceProvider`) as JSON.
    pub settings: String,
    pub workspace_id: Option<String>,
    /// `config` or `admin`.
    pub source: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub disabled_at: Option<i64>,
}

impl Tx<'_> {
    pub fn insert_saml_sp(&mut self, sp: &SamlSpRecord) -> Result<(), StorageError> {
        diesel::insert_into(sps::table)
            .values(sp)
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(())
    }

    /// Replaces name, settings, workspace and source; keeps `created_at` and
    /// `disabled_at`. `false` if there is no such SP.
    pub fn update_saml_sp(&mut self, sp: &SamlSpRecord) -> Result<bool, StorageError> {
        let n = diesel::update(sps::table.find(&sp.entity_id))
            .set((
                sps::name.eq(&sp.name),
                sps::settings.eq(&sp.settings),
                sps::workspace_id.eq(&sp.workspace_id),
                sps::source.eq(&sp.source),
                sps::updated_at.eq(sp.updated_at),
            ))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(n > 0)
    }

    pub fn saml_sp(&mut self, entity_id: &str) -> Result<Option<SamlSpRecord>, StorageError> {
        sps::table
            .find(entity_id)
            .first(self.conn)
            .optional()
            .map_err(db_err)
    }

    pub fn list_saml_sps(&mut self) -> Result<Vec<SamlSpRecord>, StorageError> {
        sps::table
            .order(sps::entity_id.asc())
            .load(self.conn)
            .map_err(db_err)
    }

    /// Sets or clears `disabled_at`; `false` if there is no such SP.
    pub fn set_saml_sp_disabled(
        &mut self,
        entity_id: &str,
        at: Option<i64>,
    ) -> Result<bool, StorageError> {
        let n = diesel::update(sps::table.find(entity_id))
            .set(sps::disabled_at.eq(at))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(n > 0)
    }
}

impl Storage {
    pub fn saml_sp(&self, entity_id: &str) -> Result<Option<SamlSpRecord>, StorageError> {
        self.with_conn(|tx| tx.saml_sp(entity_id))
    }

    pub fn list_saml_sps(&self) -> Result<Vec<SamlSpRecord>, StorageError> {
        self.with_conn(|tx| tx.list_saml_sps())
    }
}
