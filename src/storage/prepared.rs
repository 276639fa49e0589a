//! The `UPDATE`s every sign-in and every audited write run, as statements each connection
//! prepares once.
//!
//! Diesel never keeps an `UPDATE` in its prepared-statement cache (its SQL may vary with
//! the changeset), so SQLite would parse these and PostgreSQL parse and plan them on every
//! call. Each type below has one fixed SQL text and a static query id: the cache keeps it
//! per connection. Inserts need no such help when their values are a tuple of `eq`s
//! (every column bound, `NULL` included); see `sessions.rs` and `oidc.rs`.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel::{PgConnection, QueryResult, RunQueryDsl, SqliteConnection};

/// Stores a key's new signature counter and last use, when the key is not revoked and
/// the counter went up (or the key has no counter: 0 stays 0).
pub(super) struct UpdateSignCount<'a> {
    pub id: &'a str,
    pub sign_count: i64,
    pub at: i64,
}

impl<DB> QueryFragment<DB> for UpdateSignCount<'_>
where
    DB: Backend,
    i64: ToSql<BigInt, DB>,
    str: ToSql<Text, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE credentials SET sign_count = ");
        out.push_bind_param::<BigInt, _>(&self.sign_count)?;
        out.push_sql(", last_used_at = ");
        out.push_bind_param::<BigInt, _>(&self.at)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Text, _>(self.id)?;
        out.push_sql(" AND revoked_at IS NULL AND (sign_count < ");
        out.push_bind_param::<BigInt, _>(&self.sign_count)?;
        out.push_sql(" OR (sign_count = 0 AND ");
        out.push_bind_param::<BigInt, _>(&self.sign_count)?;
        out.push_sql(" = 0))");
        Ok(())
    }
}

impl QueryId for UpdateSignCount<'_> {
    type QueryId = UpdateSignCount<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// Reserves `n` sequence numbers on the audit head (locking its row until commit) and
/// returns the last one with the hash the new events chain onto.
#[derive(QueryId)]
pub(super) struct ReserveAuditSeq {
    pub head_id: i32,
    pub n: i64,
}

impl<DB> QueryFragment<DB> for ReserveAuditSeq
where
    DB: Backend,
    i64: ToSql<BigInt, DB>,
    i32: ToSql<Integer, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE audit_head SET seq = seq + ");
        out.push_bind_param::<BigInt, _>(&self.n)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Integer, _>(&self.head_id)?;
        out.push_sql(" RETURNING seq, hash");
        Ok(())
    }
}

impl Query for ReserveAuditSeq {
    type SqlType = (BigInt, Text);
}

impl<Conn> RunQueryDsl<Conn> for ReserveAuditSeq {}

/// Moves the audit head's hash to the last event appended.
pub(super) struct MoveAuditHead<'a> {
    pub head_id: i32,
    pub hash: &'a str,
}

impl<DB> QueryFragment<DB> for MoveAuditHead<'_>
where
    DB: Backend,
    i32: ToSql<Integer, DB>,
    str: ToSql<Text, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE audit_head SET hash = ");
        out.push_bind_param::<Text, _>(self.hash)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Integer, _>(&self.head_id)?;
        Ok(())
    }
}

impl QueryId for MoveAuditHead<'_> {
    type QueryId = MoveAuditHead<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// Runs one of the statements above on either backend's connection.
pub(super) fn execute<Q>(conn: &mut super::DbConnection, query: Q) -> QueryResult<usize>
where
    Q: ExecuteDsl<SqliteConnection> + ExecuteDsl<PgConnection>,
{
    match conn {
        super::DbConnection::Sqlite(c) => ExecuteDsl::execute(query, c),
        super::DbConnection::Pg(c) => ExecuteDsl::execute(query, c),
    }
}

/// Runs [`ReserveAuditSeq`]; `None` when the head row is missing.
pub(super) fn reserve_audit_seq(
    conn: &mut super::DbConnection,
    query: ReserveAuditSeq,
) -> QueryResult<Option<(i64, String)>> {
    use diesel::OptionalExtension;
    match conn {
        super::DbConnection::Sqlite(c) => query.get_result(c).optional(),
        super::DbConnection::Pg(c) => query.get_result(c).optional(),
    }
}
