//! The `UPDATE`s every sign-in and every audited write run, as statements each connection
//! prepares once.
//!
//! Diesel never keeps an `UPDATE` in its prepared-statement cache (its SQL may vary with
//! the changeset), so SQLite would parse these and PostgreSQL parse and plan them on every
//! call. Each type below has one fixed SQL text and a static query id: the cache keeps it
//! per connection. Inserts need no such help when their values are a tuple of `eq`s
//! (every column bound, `NULL` included); see `sessions.rs` and `oidc.rs`.
//!
//! On PostgreSQL a group commit's many rows go as arrays (`unnest`), one statement of one
//! fixed text whatever their count ([`RecordSignIns`], [`AppendAuditEvents`]): diesel's
//! multi-row insert has a text per row count, which is never cached, so each would be
//! parsed and planned again.

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

/// PostgreSQL: the sign-ins of one group commit in one statement. Each key's counter and
/// last use are stored as [`UpdateSignCount`] would; the session of each sign-in whose key
/// was updated is inserted; the ids of the keys updated are returned. A key may appear
/// only once per statement (the join would update its row once, for one of them).
pub(super) struct RecordSignIns<'a> {
    pub key_ids: &'a [String],
    pub sign_counts: &'a [i64],
    pub ats: &'a [i64],
    pub sessions: &'a super::signins::SessionColumns,
}

impl QueryFragment<diesel::pg::Pg> for RecordSignIns<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Bool, Nullable};
        let s = self.sessions;
        out.push_sql("WITH v AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(self.key_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(self.sign_counts)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(self.ats)?;
        out.push_sql(
            ") AS t(key_id, sign_count, at)), \
             u AS (UPDATE credentials c SET sign_count = v.sign_count, last_used_at = v.at \
             FROM v WHERE c.id = v.key_id AND c.revoked_at IS NULL \
             AND (c.sign_count < v.sign_count OR (c.sign_count = 0 AND v.sign_count = 0)) \
             RETURNING c.id), \
             s AS (INSERT INTO sessions (id, user_id, token_hash, key_id, user_verified, ip, \
             user_agent, created_at, expires_at, ended_at, ended_by) \
             SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&s.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&s.user_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&s.token_hash)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&s.key_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&s.user_verified)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&s.ip)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&s.user_agent)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&s.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&s.expires_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&s.ended_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&s.ended_by)?;
        out.push_sql(
            ") AS n(id, user_id, token_hash, key_id, user_verified, ip, user_agent, \
             created_at, expires_at, ended_at, ended_by) \
             WHERE n.key_id IN (SELECT id FROM u)) \
             SELECT id FROM u",
        );
        Ok(())
    }
}

impl QueryId for RecordSignIns<'_> {
    type QueryId = RecordSignIns<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for RecordSignIns<'_> {
    type SqlType = Text;
}

impl<Conn> RunQueryDsl<Conn> for RecordSignIns<'_> {}

/// The columns of audit events to insert, one array each (PostgreSQL's `unnest`).
#[derive(Default)]
pub(super) struct AuditColumns {
    pub seq: Vec<i64>,
    pub id: Vec<String>,
    pub at: Vec<i64>,
    pub actor: Vec<String>,
    pub action: Vec<String>,
    pub subject: Vec<String>,
    pub outcome: Vec<String>,
    pub reason: Vec<Option<String>>,
    pub details: Vec<String>,
    pub prev_hash: Vec<String>,
    pub hash: Vec<String>,
}

/// PostgreSQL: inserts chained audit events and moves the head to the last one, in one
/// statement of one fixed text (prepared once per connection, whatever the count).
pub(super) struct AppendAuditEvents<'a> {
    pub rows: &'a AuditColumns,
    pub head_id: i32,
    pub head_hash: &'a str,
}

impl QueryFragment<diesel::pg::Pg> for AppendAuditEvents<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Nullable};
        let r = self.rows;
        out.push_sql(
            "WITH ins AS (INSERT INTO audit_events (seq, id, at, actor, action, subject, \
             outcome, reason, details, prev_hash, hash) SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&r.seq)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&r.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&r.at)?;
        for column in [&r.actor, &r.action, &r.subject, &r.outcome] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Text>, _>(column)?;
        }
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&r.reason)?;
        for column in [&r.details, &r.prev_hash, &r.hash] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Text>, _>(column)?;
        }
        out.push_sql(")) UPDATE audit_head SET hash = ");
        out.push_bind_param::<Text, _>(self.head_hash)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Integer, _>(&self.head_id)?;
        Ok(())
    }
}

impl QueryId for AppendAuditEvents<'_> {
    type QueryId = AppendAuditEvents<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Conn> RunQueryDsl<Conn> for AppendAuditEvents<'_> {}

/// The columns of OIDC grants to insert, one array each (PostgreSQL's `unnest`).
#[derive(Default)]
pub(super) struct GrantColumns {
    pub id: Vec<String>,
    pub user_id: Vec<String>,
    pub client_id: Vec<String>,
    pub session_id: Vec<Option<String>>,
    pub key_id: Vec<Option<String>>,
    pub auth_time: Vec<i64>,
    pub acr: Vec<String>,
    pub amr: Vec<String>,
    pub created_at: Vec<i64>,
    pub revoked_at: Vec<Option<i64>>,
    pub revoked_reason: Vec<Option<String>>,
}

/// PostgreSQL: inserts a group commit's OIDC grants in one statement of one fixed text.
pub(super) struct InsertGrants<'a>(pub &'a GrantColumns);

impl QueryFragment<diesel::pg::Pg> for InsertGrants<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Nullable};
        let g = self.0;
        out.push_sql(
            "INSERT INTO oidc_grants (id, user_id, client_id, session_id, key_id, auth_time, \
             acr, amr, created_at, revoked_at, revoked_reason) SELECT * FROM unnest(",
        );
        for column in [&g.id, &g.user_id, &g.client_id] {
            out.push_bind_param::<Array<Text>, _>(column)?;
            out.push_sql(", ");
        }
        for column in [&g.session_id, &g.key_id] {
            out.push_bind_param::<Array<Nullable<Text>>, _>(column)?;
            out.push_sql(", ");
        }
        out.push_bind_param::<Array<BigInt>, _>(&g.auth_time)?;
        for column in [&g.acr, &g.amr] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Text>, _>(column)?;
        }
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&g.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&g.revoked_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&g.revoked_reason)?;
        out.push_sql(")");
        Ok(())
    }
}

impl QueryId for InsertGrants<'_> {
    type QueryId = InsertGrants<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Conn> RunQueryDsl<Conn> for InsertGrants<'_> {}

/// The columns of refresh tokens to insert, one array each (PostgreSQL's `unnest`).
#[derive(Default)]
pub(super) struct RefreshTokenColumns {
    pub digest: Vec<String>,
    pub grant_id: Vec<String>,
    pub client_id: Vec<String>,
    pub user_id: Vec<String>,
    pub scope: Vec<String>,
    pub record: Vec<String>,
    pub created_at: Vec<i64>,
    pub expires_at: Vec<i64>,
    pub used_at: Vec<Option<i64>>,
    pub revoked_at: Vec<Option<i64>>,
}

/// PostgreSQL: inserts a group commit's refresh tokens in one statement of one fixed text.
pub(super) struct InsertRefreshTokens<'a>(pub &'a RefreshTokenColumns);

impl QueryFragment<diesel::pg::Pg> for InsertRefreshTokens<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Nullable};
        let r = self.0;
        out.push_sql(
            "INSERT INTO oidc_refresh_tokens (digest, grant_id, client_id, user_id, scope, \
             record, created_at, expires_at, used_at, revoked_at) SELECT * FROM unnest(",
        );
        for column in [
            &r.digest,
            &r.grant_id,
            &r.client_id,
            &r.user_id,
            &r.scope,
            &r.record,
        ] {
            out.push_bind_param::<Array<Text>, _>(column)?;
            out.push_sql(", ");
        }
        for column in [&r.created_at, &r.expires_at] {
            out.push_bind_param::<Array<BigInt>, _>(column)?;
            out.push_sql(", ");
        }
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&r.used_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&r.revoked_at)?;
        out.push_sql(")");
        Ok(())
    }
}

impl QueryId for InsertRefreshTokens<'_> {
    type QueryId = InsertRefreshTokens<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Conn> RunQueryDsl<Conn> for InsertRefreshTokens<'_> {}
