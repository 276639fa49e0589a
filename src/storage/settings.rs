//! Settings: small key → text values (policy JSON, keys kept by `keygate dev`, …).

use diesel::prelude::*;
use diesel::upsert::excluded;

use super::error::{db_err, StorageError};
use super::schema::settings;
use super::{DbConnection, Storage, Tx};

impl Tx<'_> {
    pub fn get_setting(&mut self, key: &str) -> Result<Option<String>, StorageError> {
        settings::table
            .find(key)
            .select(settings::value)
            .first::<String>(self.conn)
            .optional()
            .map_err(db_err)
    }

    /// Sets a value, replacing any previous one (one upsert statement).
    pub fn put_setting(&mut self, key: &str, value: &str, at: i64) -> Result<(), StorageError> {
        let upsert = diesel::insert_into(settings::table)
            .values((
                settings::key.eq(key),
                settings::value.eq(value),
                settings::updated_at.eq(at),
            ))
            .on_conflict(settings::key)
            .do_update()
            .set((
                settings::value.eq(excluded(settings::value)),
                settings::updated_at.eq(excluded(settings::updated_at)),
            ));
        // Upserts do not compile through MultiConnection; the statement is the same on
        // both backends, only the connection type differs.
        match &mut *self.conn {
            DbConnection::Pg(pg) => upsert.execute(pg),
            DbConnection::Sqlite(sqlite) => upsert.execute(sqlite),
        }
        .map_err(db_err)?;
        Ok(())
    }

    /// Stores `value` unless the key already has one, and returns the stored value either
    /// way: several replicas starting at once agree on one value (first writer wins).
    pub fn setting_or_insert(
        &mut self,
        key: &str,
        value: &str,
        at: i64,
    ) -> Result<String, StorageError> {
        let insert = diesel::insert_into(settings::table)
            .values((
                settings::key.eq(key),
                settings::value.eq(value),
                settings::updated_at.eq(at),
            ))
            .on_conflict_do_nothing();
        match &mut *self.conn {
            DbConnection::Pg(pg) => insert.execute(pg),
            DbConnection::Sqlite(sqlite) => insert.execute(sqlite),
        }
        .map_err(db_err)?;
        self.get_setting(key)?.ok_or(StorageError::NotFound)
    }

    /// Replaces the value only if it still is `expected` (compare-and-swap): `false` when
    /// another writer changed it first.
    pub fn replace_setting(
        &mut self,
        key: &str,
        expected: &str,
        value: &str,
        at: i64,
    ) -> Result<bool, StorageError> {
        let n = diesel::update(
            settings::table
                .find(key)
                .filter(settings::value.eq(expected)),
        )
        .set((settings::value.eq(value), settings::updated_at.eq(at)))
        .execute(self.conn)
        .map_err(db_err)?;
        Ok(n == 1)
    }

    /// Removes a value; `false` if there was none.
    pub fn delete_setting(&mut self, key: &str) -> Result<bool, StorageError> {
        let removed = diesel::delete(settings::table.find(key))
            .execute(self.conn)
            .map_err(db_err)?;
        Ok(removed > 0)
    }
}

/// One-call conveniences; compose several writes with [`Storage::transaction`].
impl Storage {
    pub fn get_setting(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.with_conn(|tx| tx.get_setting(key))
    }

    pub fn setting_or_insert(
        &self,
        key: &str,
        value: &str,
        at: i64,
    ) -> Result<String, StorageError> {
        self.with_conn(|tx| tx.setting_or_insert(key, value, at))
    }

    pub fn put_setting(&self, key: &str, value: &str, at: i64) -> Result<(), StorageError> {
        self.with_conn(|tx| tx.put_setting(key, value, at))
    }

    pub fn delete_setting(&self, key: &str) -> Result<bool, StorageError> {
        self.with_conn(|tx| tx.delete_setting(key))
    }
}
