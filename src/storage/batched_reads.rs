//! Lookups by key on PostgreSQL, batched: every lookup asked for while the previous batch
//! was on its way goes in the next one, as one query (`… = ANY($1)`) on one connection.
//!
//! Under load many requests look up the same kind of row at once (the key a sign-in
//! names, the client at the token endpoint), and each lookup on its own would be a round
//! trip and a statement for PostgreSQL, whose fixed costs outweigh the indexed read
//! itself. Each kind has one thread per [`super::Storage`], started on first use, stopped
//! and joined when the last clone of the storage handle is dropped. SQLite reads in place
//! instead ([`super::Storage::read`]).
//!
//! Each thread keeps a connection of its own (the pool has one more for each), on which
//! PostgreSQL always runs its generic plan of the lookup. Left to choose, it plans a
//! `… = ANY($1)` lookup anew for every batch: a custom plan for the keys at hand looks
//! cheaper than the generic one, which assumes ten keys, so the statement, prepared once,
//! was planned on every call (pg_stat_statements: the planning cost more than the read).
//! Both look up a unique key. The client lookup's generic plan runs as fast as its custom
//! ones; the key lookup's (a join with the member) runs slower, but less so than planning
//! cost (docs/benchmarks.md).

use std::collections::HashMap;
use std::hash::Hash;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{Pool, PooledConnection, R2D2Connection};
use diesel::PgConnection;

use super::error::{db_err, StorageError};
use super::models::{SignInKey, User};
use super::oidc::OidcClient;
use super::schema::{credentials, users};
use super::users::UserRow;
use super::worker::Worker;
use super::{DbConnection, Manager};

/// Most lookups in one query.
const MAX_BATCH: usize = 128;

/// Run once on each lookup thread's own connection (see the module docs).
const GENERIC_PLANS: &str = "SET plan_cache_mode = force_generic_plan";

/// Rows found, each with its key.
type Rows<L> = Vec<(<L as Lookup>::Key, <L as Lookup>::Row)>;

/// One kind of row looked up by key.
pub(super) trait Lookup: Sized + Send + 'static {
    type Key: Eq + Hash + Ord + Send + 'static;
    type Row: Clone + Send + 'static;
    /// The thread's name.
    const THREAD: &'static str;

    /// The rows of those `keys` that exist.
    fn load(conn: &mut PgConnection, keys: &[&Self::Key]) -> Result<Rows<Self>, StorageError>;
}

type Found<L> = Result<Option<<L as Lookup>::Row>, StorageError>;

struct Request<L: Lookup> {
    key: L::Key,
    reply: tokio::sync::oneshot::Sender<Found<L>>,
}

pub(super) struct BatchedReads<L: Lookup> {
    worker: Worker<Request<L>>,
    pool: Pool<Manager>,
}

impl<L: Lookup> BatchedReads<L> {
    pub(super) fn new(pool: Pool<Manager>) -> Self {
        BatchedReads {
            worker: Worker::new(),
            pool,
        }
    }

    /// The row with this key, if there is one.
    pub(super) async fn find(&self, key: L::Key) -> Found<L> {
        let stopped = || StorageError::Unavailable(format!("{} has stopped", L::THREAD));
        let (reply, answered) = tokio::sync::oneshot::channel();
        let pool = &self.pool;
        let sent = self
            .worker
            .start_batching(L::THREAD, MAX_BATCH, || {
                let pool = pool.clone();
                let mut held = None;
                move |batch| answer::<L>(&pool, &mut held, batch)
            })
            .send(Request { key, reply });
        if sent.is_err() {
            return Err(stopped());
        }
        answered.await.map_err(|_| stopped())?
    }
}

/// The connection the lookup thread keeps (`held`), or a new one from the pool set to
/// generic plans. One that broke goes back to the pool, which closes it; the setting never
/// reaches a connection the pool hands to anyone else.
fn own_connection(
    pool: &Pool<Manager>,
    held: &mut Option<PooledConnection<Manager>>,
) -> Result<PooledConnection<Manager>, StorageError> {
    if let Some(conn) = held.take() {
        return Ok(conn);
    }
    let mut conn = pool
        .get()
        .map_err(|err| StorageError::Unavailable(format!("no database connection: {err}")))?;
    // A `SET` that failed changed nothing; one whose answer was lost broke the
    // connection, which the pool then closes.
    if let DbConnection::Pg(pg) = &mut *conn {
        pg.batch_execute(GENERIC_PLANS).map_err(db_err)?;
    }
    Ok(conn)
}

fn answer<L: Lookup>(
    pool: &Pool<Manager>,
    held: &mut Option<PooledConnection<Manager>>,
    batch: Vec<Request<L>>,
) {
    let mut keys: Vec<&L::Key> = batch.iter().map(|r| &r.key).collect();
    keys.sort_unstable();
    keys.dedup();
    // A kept connection may have died while idle (the database restarted): the lookup is a
    // read, so it is asked once more on a fresh connection rather than failing the batch.
    let mut attempt = || {
        let reused = held.is_some();
        let mut broke = false;
        let rows = own_connection(pool, held).and_then(|mut conn| {
            let rows = match &mut *conn {
                DbConnection::Pg(pg) => L::load(pg, &keys),
                DbConnection::Sqlite(_) => Err(StorageError::Backend(
                    "batched lookups are for PostgreSQL".into(),
                )),
            };
            broke = conn.is_broken();
            if !broke {
                *held = Some(conn);
            }
            rows
        });
        (rows, reused && broke)
    };
    let found = match attempt() {
        (Err(_), true) => attempt().0,
        (rows, _) => rows,
    }
    .map(|rows| rows.into_iter().collect::<HashMap<_, _>>());
    match found {
        Ok(found) => {
            for request in batch {
                // A key asked for twice in one batch is answered twice.
                let _ = request.reply.send(Ok(found.get(&request.key).cloned()));
            }
        }
        Err(err) => {
            for request in batch {
                let _ = request.reply.send(Err(err.clone()));
            }
        }
    }
}

/// The key a sign-in names (by WebAuthn credential id) and its member
/// ([`super::Tx::sign_in_key`]).
pub(super) struct SignInKeys;

impl Lookup for SignInKeys {
    type Key = Vec<u8>;
    type Row = (SignInKey, User);
    const THREAD: &'static str = "keygate-key-lookup";

    fn load(conn: &mut PgConnection, keys: &[&Vec<u8>]) -> Result<Rows<Self>, StorageError> {
        let ids: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let rows = credentials::table
            .inner_join(users::table)
            .filter(credentials::credential_id.eq_any(ids))
            .select((
                credentials::credential_id,
                SignInKey::as_select(),
                users::all_columns,
            ))
            .load::<(Vec<u8>, SignInKey, UserRow)>(conn)
            .map_err(db_err)?;
        rows.into_iter()
            .map(|(id, key, user)| Ok((id, (key, User::try_from(user)?))))
            .collect()
    }
}

/// An OpenID Connect client by its id ([`super::Tx::oidc_client`]).
pub(super) struct OidcClients;

impl Lookup for OidcClients {
    type Key = String;
    type Row = OidcClient;
    const THREAD: &'static str = "keygate-client-lookup";

    fn load(conn: &mut PgConnection, keys: &[&String]) -> Result<Rows<Self>, StorageError> {
        super::oidc::clients_by_id(conn, keys)
    }
}
