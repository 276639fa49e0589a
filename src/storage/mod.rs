//! Storage: one schema, two databases (SQLite embedded default, PostgreSQL in
//! production), behind plain Rust types.
//!
//! - The backend is chosen by the URL scheme: `postgres://` / `postgresql://` or
//!   `sqlite://path/to/file.db` (`sqlite:///absolute/path.db`). Any other scheme is an
//!   error, so a typo never creates an empty database.
//! - Sync diesel over an r2d2 pool; async callers go through [`Storage::run`], which
//!   uses tokio's blocking pool.
//! - Writes that belong together go through [`Storage::transaction`]: the closure gets a
//!   [`Tx`] with every repository method, so callers compose writes atomically without
//!   importing diesel. On SQLite the transaction is `BEGIN IMMEDIATE` (writers queue on
//!   `busy_timeout` instead of failing on lock upgrade).
//! - Only this module imports diesel.

mod audit_log;
mod batched_reads;
mod census;
mod client_cache;
mod credentials;
mod error;
mod group_commit;
mod ids;
mod invitations;
mod models;
mod oidc;
mod prepared;
mod recovery;
mod saml;
mod schema;
mod sessions;
mod settings;
mod signins;
mod users;
mod worker;
mod workspaces;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{self, ManageConnection, Pool, R2D2Connection};
use diesel::{Connection, PgConnection, QueryResult, RunQueryDsl, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub use crate::audit::AuditRecord;
pub use error::StorageError;
pub use ids::{hash_token, new_id, ordered_id, unix_millis, unix_now};
pub use models::{
    AuditQuery, Credential, Invitation, InvitationFilter, InvitationKind, InvitationState,
    NewCredential, NewInvitation, NewUser, Role, SignInKey, UnknownValue, User, UserStatus,
    UserWithKeys,
};
pub use oidc::{OidcClient, OidcGrant, RefreshTokenRecord};
pub use recovery::RecoveryRequest;
pub use saml::SamlSpRecord;
pub use sessions::{SessionRecord, SessionScope};
pub use signins::{SignInTicket, SignInWrite};
pub use workspaces::Workspace;

use error::db_err;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Serialises `migrate()` across replicas on PostgreSQL (`pg_advisory_lock` key).
const MIGRATION_LOCK_KEY: i64 = 0x6b65_7967_6174_6501;

/// SQLite settings applied to every pooled connection. `busy_timeout` comes first so
/// that switching to WAL waits for other connections instead of failing.
/// `wal_autocheckpoint = 0`: a server's checkpoints run on their own thread
/// ([`start_checkpointer`]), not inside whichever commit crosses the threshold (a
/// checkpoint syncs the files: milliseconds a commit would otherwise wait).
/// `journal_size_limit`: a log that a burst grew past 64 MiB is cut back when it restarts.
/// `page_size = 1024` takes effect only in a new database, before its first table (an
/// existing one keeps its page size): the hot writes (a sign-in's key and session rows, an
/// exchange's grant, their audit events) each change a leaf of an index keyed by member,
/// and every changed page is written whole to the log at commit; 1 KiB pages write a
/// quarter of what 4 KiB pages did (docs/benchmarks.md, docs/decisions.md).
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; \
     PRAGMA page_size = 1024; \
     PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; \
     PRAGMA wal_autocheckpoint = 0; \
     PRAGMA journal_size_limit = 67108864; \
     PRAGMA foreign_keys = ON;";

/// How often the checkpointer copies the write-ahead log into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// A log longer than this (bytes of pages; a log frame holds one page) is made to restart,
/// writers held back for the moment that takes ([`start_checkpointer`]);
/// `database.sqlite_log_limit_mib` sets it.
const DEFAULT_LOG_LIMIT_BYTES: u64 = 256 << 20;

const DEFAULT_POOL_POSTGRES: u32 = 8;
const DEFAULT_POOL_SQLITE: u32 = 4;
/// How long the last clone's drain waits for connections still checked out, and a caller
/// of [`Storage::connect`] (the command-line tools) for a pooled connection; the server's
/// wait is `database.acquire_timeout_ms` ([`Storage::connect_with`]).
const POOL_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database connection of either backend. Queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which database a [`Storage`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where to connect, parsed from the URL.
#[derive(Clone)]
enum Target {
    Postgres(String),
    Sqlite(String),
}

impl Target {
    fn parse(url: &str) -> Result<Self, StorageError> {
        let url = url.trim();
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("postgres" | "postgresql") => Ok(Target::Postgres(url.to_owned())),
            Some("sqlite") => {
                let path = &url["sqlite://".len()..];
                if path.is_empty() || path.contains(":memory:") {
                    // Every pooled connection would get its own empty in-memory database.
                    return Err(StorageError::Backend(
                        "sqlite URL needs a file path (sqlite://path/to/keygate.db)".into(),
                    ));
                }
                Ok(Target::Sqlite(path.to_owned()))
            }
            Some(other) => Err(StorageError::Backend(format!(
                "unsupported database URL scheme {other:?} (use postgres://, postgresql:// or sqlite://)"
            ))),
            None => Err(StorageError::Backend(
                "database URL has no scheme (use postgres://, postgresql:// or sqlite://)".into(),
            )),
        }
    }

    fn backend(&self) -> Backend {
        match self {
            Target::Postgres(_) => Backend::Postgres,
            Target::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// Opens connections of the backend named by the URL, never guessing another one
/// (diesel's own `MultiConnection::establish` would try each backend in turn), and counts
/// them ([`census`]).
struct Manager {
    target: Target,
    census: Arc<census::Census>,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        let _opening = self.census.opening();
        let mut conn = match &self.target {
            Target::Postgres(url) => PgConnection::establish(url).map(DbConnection::Pg),
            Target::Sqlite(path) => SqliteConnection::establish(path).map(DbConnection::Sqlite),
        }
        .map_err(r2d2::Error::ConnectionError)?;
        if let DbConnection::Sqlite(sqlite) = &mut conn {
            sqlite
                .batch_execute(SQLITE_PRAGMAS)
                .map_err(r2d2::Error::QueryError)?;
        }
        self.census.opened();
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    /// Once the storage is going away, every connection given back is closed.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        self.census.closing() || conn.is_broken()
    }
}

/// The storage handle: a bounded connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    pool: Pool<Manager>,
    backend: Backend,
    /// SQLite: held by this process's writing transactions, so they queue here instead of
    /// sleeping in SQLite's busy handler.
    write_gate: Arc<Mutex<()>>,
    /// Audited writes of concurrent requests committed together ([`Storage::audited`]).
    group: Arc<group_commit::GroupCommit>,
    /// PostgreSQL: the sign-in's key lookups and the OIDC client lookups, batched.
    key_lookups: Arc<batched_reads::BatchedReads<batched_reads::SignInKeys>>,
    client_lookups: Arc<batched_reads::BatchedReads<batched_reads::OidcClients>>,
    /// OIDC clients read a moment ago ([`client_cache`]).
    clients: Arc<client_cache::ClientCache>,
    /// SQLite: log frames past which the checkpointer restarts the log.
    log_limit_bytes: Arc<AtomicU64>,
    /// SQLite: the checkpointer ([`start_checkpointer`]), stopped with the last clone.
    _checkpointer: Arc<worker::Worker<()>>,
    /// Closes every connection as the last clone goes, once the threads above are joined:
    /// keep it the last field.
    _drain: Arc<census::Drain>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.backend)
            .field("pool", &self.pool.state())
            .finish()
    }
}

impl Storage {
    /// Connects to the database named by `url` with a pool of at most `pool_size`
    /// connections (default 8 on PostgreSQL, where each batched-lookup thread holds one more
    /// of its own, and 4 on SQLite, where the committer does). Fails if no connection can
    /// be opened within a few seconds. Does not run migrations ([`Storage::migrate`]).
    pub fn connect(url: &str, pool_size: Option<u32>) -> Result<Storage, StorageError> {
        Storage::connect_with(url, pool_size, POOL_CHECKOUT_TIMEOUT)
    }

    /// [`Storage::connect`], where a caller waits at most `acquire_timeout` for a pooled
    /// connection before [`StorageError::Unavailable`] (`database.acquire_timeout_ms`):
    /// while the database is down, requests fail fast instead of queueing.
    pub fn connect_with(
        url: &str,
        pool_size: Option<u32>,
        acquire_timeout: Duration,
    ) -> Result<Storage, StorageError> {
        let acquire_timeout = acquire_timeout.max(Duration::from_millis(1));
        let target = Target::parse(url)?;
        let backend = target.backend();
        let max_size = pool_size
            .unwrap_or(match backend {
                Backend::Postgres => DEFAULT_POOL_POSTGRES,
                Backend::Sqlite => DEFAULT_POOL_SQLITE,
            })
            .max(1);
        // Connections kept by threads of their own: SQLite's committer ([`group_commit`]),
        // PostgreSQL's two batched-lookup threads ([`batched_reads`]).
        let max_size = match backend {
            Backend::Postgres => max_size + 2,
            Backend::Sqlite => max_size + 1,
        };
        let census = Arc::new(census::Census::default());
        let pool = Pool::builder()
            .max_size(max_size)
            // No background refills: r2d2 tops up `min_idle` on its own threads, and a
            // process that exits while one of them is still opening a libpq (TLS)
            // connection crashes in OpenSSL's exit handlers. Idle connections are still
            // kept for reuse until `idle_timeout`.
            .min_idle(Some(0))
            .connection_timeout(acquire_timeout)
            // `has_broken` catches dead connections on return; skipping a round trip
            // per checkout matters on the sign-in path.
            .test_on_check_out(false)
            .connection_customizer(Box::new(census::CountCloses(census.clone())))
            .build(Manager {
                target,
                census: census.clone(),
            })
            .map_err(|err| {
                StorageError::Unavailable(format!(
                    "cannot connect to the {} database: {err}",
                    backend.as_str()
                ))
            })?;
        let write_gate = Arc::new(Mutex::new(()));
        let group = Arc::new(group_commit::GroupCommit::new(
            pool.clone(),
            backend,
            write_gate.clone(),
        ));
        let key_lookups = Arc::new(batched_reads::BatchedReads::new(pool.clone()));
        let client_lookups = Arc::new(batched_reads::BatchedReads::new(pool.clone()));
        let log_limit_bytes = Arc::new(AtomicU64::new(DEFAULT_LOG_LIMIT_BYTES));
        let checkpointer = Arc::new(worker::Worker::new());
        if backend == Backend::Sqlite {
            start_checkpointer(
                &checkpointer,
                pool.clone(),
                write_gate.clone(),
                log_limit_bytes.clone(),
            );
        }
        let drain = Arc::new(census::Drain {
            pool: pool.clone(),
            census,
            patience: POOL_CHECKOUT_TIMEOUT,
        });
        Ok(Storage {
            pool,
            backend,
            write_gate,
            group,
            key_lookups,
            client_lookups,
            clients: Arc::new(client_cache::ClientCache::new()),
            log_limit_bytes,
            _checkpointer: checkpointer,
            _drain: drain,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>, StorageError> {
        self.pool
            .get()
            .map_err(|err| StorageError::Unavailable(format!("no database connection: {err}")))
    }

    /// Applies pending migrations of this backend and returns the names applied (e.g.
    /// `2026-11-25-000001_initial`); an up-to-date database returns an empty list.
    /// Concurrent callers (several replicas, or `keygate migrate` beside a server) wait
    /// for each other: an advisory lock on PostgreSQL, the write lock on SQLite.
    pub fn migrate(&self) -> Result<Vec<String>, StorageError> {
        let mut conn = self.conn()?;
        match &mut *conn {
            DbConnection::Sqlite(sqlite) => {
                // Hold the write lock throughout, so a concurrent `migrate()` waits and
                // then finds nothing pending (each migration runs in a savepoint).
                AnsiTransactionManager::begin_transaction_sql(&mut *sqlite, "BEGIN IMMEDIATE")
                    .map_err(db_err)?;
                match apply_migrations(&mut *sqlite, SQLITE_MIGRATIONS) {
                    Ok(applied) => {
                        AnsiTransactionManager::commit_transaction(&mut *sqlite).map_err(db_err)?;
                        Ok(applied)
                    }
                    Err(err) => {
                        let _ = AnsiTransactionManager::rollback_transaction(&mut *sqlite);
                        Err(err)
                    }
                }
            }
            DbConnection::Pg(pg) => {
                pg.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                    .map_err(db_err)?;
                let applied = apply_migrations(pg, POSTGRES_MIGRATIONS);
                let unlocked = pg
                    .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                    .map_err(db_err);
                let applied = applied?;
                unlocked?;
                Ok(applied)
            }
        }
    }

    /// Names of the embedded migrations not yet applied to this database.
    /// `keygate serve` refuses to start while this is not empty.
    pub fn pending_migrations(&self) -> Result<Vec<String>, StorageError> {
        fn names<C>(conn: &mut C, source: EmbeddedMigrations) -> Result<Vec<String>, StorageError>
        where
            C: MigrationHarness<C::Backend> + Connection,
            EmbeddedMigrations: diesel::migration::MigrationSource<C::Backend>,
        {
            let pending = conn
                .pending_migrations(source)
                .map_err(|err| StorageError::Backend(format!("migrations: {err}")))?;
            Ok(pending.iter().map(|m| m.name().to_string()).collect())
        }
        let mut conn = self.conn()?;
        match &mut *conn {
            DbConnection::Sqlite(sqlite) => names(sqlite, SQLITE_MIGRATIONS),
            DbConnection::Pg(pg) => names(pg, POSTGRES_MIGRATIONS),
        }
    }

    /// Names of the migrations embedded for `backend`, in order.
    pub fn migration_names(backend: Backend) -> Result<Vec<String>, StorageError> {
        fn names<DB: diesel::backend::Backend>(
            source: EmbeddedMigrations,
        ) -> Result<Vec<String>, StorageError> {
            let migrations = diesel::migration::MigrationSource::<DB>::migrations(&source)
                .map_err(|err| StorageError::Backend(format!("embedded migrations: {err}")))?;
            Ok(migrations.iter().map(|m| m.name().to_string()).collect())
        }
        match backend {
            Backend::Sqlite => names::<diesel::sqlite::Sqlite>(SQLITE_MIGRATIONS),
            Backend::Postgres => names::<diesel::pg::Pg>(POSTGRES_MIGRATIONS),
        }
    }

    /// Checks that a connection can be had and answers (for `/readyz`).
    pub fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.conn()?;
        conn.ping().map_err(db_err)
    }

    /// Runs `f` in one database transaction: committed if `f` returns `Ok`, rolled
    /// back if it returns `Err` (or the commit fails). Do not call other `Storage`
    /// methods inside `f` (they take another connection); use the [`Tx`] methods.
    pub fn transaction<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, StorageError>,
    {
        let mut conn = self.conn()?;
        let _gate = (self.backend == Backend::Sqlite).then(|| {
            self.write_gate
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        });
        in_transaction(&mut conn, f)
    }

    /// Runs `f` in a transaction shared with other callers' audited writes (group commit,
    /// see `group_commit.rs`) and waits for the commit. Audit events go in with
    /// [`Tx::queue_audit`]. `f` may run twice (after a rollback, when another job of its
    /// batch failed), so it must only touch the database.
    pub async fn audited<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.group.submit(
            f,
            Box::new(move |outcome| {
                let _ = tx.send(outcome.map(|(value, _)| value));
            }),
        );
        rx.await
            .map_err(|_| StorageError::Unavailable("the audit committer has stopped".into()))?
    }

    /// [`Storage::audited`] for blocking callers; also returns the audit records `f` queued.
    pub fn audited_blocking<T, F>(&self, f: F) -> Result<(T, Vec<AuditRecord>), StorageError>
    where
        F: FnMut(&mut Tx<'_>) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.group.submit(
            f,
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        );
        rx.recv()
            .map_err(|_| StorageError::Unavailable("the audit committer has stopped".into()))?
    }

    /// Runs `f` on one connection without a transaction: each statement commits on
    /// its own. Fine for reads and single-statement writes.
    pub fn with_conn<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, StorageError>,
    {
        let mut conn = self.conn()?;
        f(&mut Tx {
            conn: &mut conn,
            in_transaction: false,
            batch: None,
        })
    }

    /// SQLite: the log size (bytes, at least one page) past which writers pause for the
    /// checkpointer to restart the log ([`start_checkpointer`]). No effect on PostgreSQL.
    pub fn set_sqlite_log_limit(&self, bytes: u64) {
        self.log_limit_bytes.store(bytes.max(1), Ordering::Relaxed);
    }

    /// Runs a short read for an async caller, such as a lookup by key. On SQLite, when a
    /// connection is free at once, it runs in place: an indexed read of a file in this
    /// process costs less than the trip to the blocking pool and back (WAL readers never
    /// wait for the writer). Otherwise, and always on PostgreSQL (a network round trip),
    /// it runs on the blocking pool like [`Storage::run`]. `f` must only read.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        if self.backend == Backend::Sqlite {
            if let Some(mut conn) = self.pool.try_get() {
                return f(&mut Tx {
                    conn: &mut conn,
                    in_transaction: false,
                    batch: None,
                });
            }
        }
        self.run(move |s| s.with_conn(f)).await
    }

    /// The key with this WebAuthn credential id, as a sign-in needs it, and its member
    /// ([`Tx::sign_in_key`]). On PostgreSQL concurrent lookups share one query
    /// (`batched_reads`); on SQLite it is read in place when a connection is free.
    pub async fn sign_in_key(
        &self,
        credential_id: Vec<u8>,
    ) -> Result<Option<(SignInKey, User)>, StorageError> {
        match self.backend {
            Backend::Postgres => self.key_lookups.find(credential_id).await,
            Backend::Sqlite => self.read(move |tx| tx.sign_in_key(&credential_id)).await,
        }
    }

    /// The OpenID Connect client with this id ([`Tx::oidc_client`]), for every request at
    /// the protocol endpoints: batched on PostgreSQL, read in place on SQLite, as
    /// [`Storage::sign_in_key`].
    ///
    /// A row read less than a second ago is used again ([`client_cache`]): a change made
    /// through this process is seen at once, one made elsewhere within the second.
    pub async fn find_oidc_client(
        &self,
        client_id: String,
    ) -> Result<Option<OidcClient>, StorageError> {
        let generation = match self.clients.get(&client_id, Instant::now()) {
            client_cache::Cached::Hit(client) => return Ok(Some(*client)),
            client_cache::Cached::Miss(generation) => generation,
        };
        let read_at = Instant::now();
        let found = match self.backend {
            Backend::Postgres => self.client_lookups.find(client_id).await?,
            Backend::Sqlite => self.read(move |tx| tx.oidc_client(&client_id)).await?,
        };
        if let Some(client) = &found {
            self.clients.keep(generation, client, read_at);
        }
        Ok(found)
    }

    /// Forgets the clients read a moment ago: call after a change to any client commits.
    pub fn forget_oidc_clients(&self) {
        self.clients.forget_all();
    }

    /// Runs blocking storage work on tokio's blocking pool, for async callers:
    /// `storage.run(move |s| s.user_by_id(&id)).await`.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&Storage) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let storage = self.clone();
        tokio::task::spawn_blocking(move || f(&storage))
            .await
            .map_err(|err| {
                if err.is_panic() {
                    StorageError::Backend("storage task panicked".into())
                } else {
                    StorageError::Unavailable("storage task cancelled".into())
                }
            })?
    }

    /// Runs raw SQL. For tests (tampering with the audit log, creating schemas) and
    /// operator tooling only; never with input from a request.
    #[doc(hidden)]
    pub fn debug_execute(&self, sql: &str) -> Result<(), StorageError> {
        let mut conn = self.conn()?;
        conn.batch_execute(sql).map_err(db_err)
    }
}

/// What `PRAGMA wal_checkpoint` answers.
#[derive(diesel::QueryableByName)]
struct CheckpointOutcome {
    /// Frames in the log.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
}

/// What `PRAGMA page_size` answers.
#[derive(diesel::QueryableByName)]
struct PageSize {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    page_size: i32,
}

/// The bytes of pages in a SQLite log of `frames` frames (one page each).
fn log_bytes(conn: &mut DbConnection, frames: i32) -> QueryResult<u64> {
    let page = match conn {
        DbConnection::Sqlite(c) => {
            diesel::sql_query("PRAGMA page_size")
                .get_result::<PageSize>(c)?
                .page_size
        }
        DbConnection::Pg(_) => 0,
    };
    Ok(u64::try_from(frames).unwrap_or(0) * u64::try_from(page).unwrap_or(0))
}

/// `PRAGMA wal_checkpoint(PASSIVE)`, or `(RESTART)` when `restart`; `Ok(None)` on
/// PostgreSQL.
fn checkpoint(conn: &mut DbConnection, restart: bool) -> QueryResult<Option<CheckpointOutcome>> {
    let sql = if restart {
        "PRAGMA wal_checkpoint(RESTART)"
    } else {
        "PRAGMA wal_checkpoint(PASSIVE)"
    };
    match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(sql)
            .get_result::<CheckpointOutcome>(c)
            .map(Some),
        DbConnection::Pg(_) => Ok(None),
    }
}

/// Checkpoints the SQLite write-ahead log every [`CHECKPOINT_EVERY`] while the storage
/// handle lives. `PASSIVE` neither waits for nor blocks readers and writers, but it leaves
/// restarting the log to the next writer, which restarts it only when the log is copied in
/// full and no reader is on it at that moment. Under steady reads and writes that seldom
/// happens, and the log grew with every commit (gigabytes in seconds under load). So once
/// its pages take more than `limit_bytes`, a `RESTART` checkpoint follows, holding `write_gate`:
/// it copies the frames committed meanwhile, waits for readers still on the log (they take
/// microseconds), and the next write starts the log from its beginning.
fn start_checkpointer(
    worker: &worker::Worker<()>,
    pool: Pool<Manager>,
    write_gate: Arc<Mutex<()>>,
    limit_bytes: Arc<AtomicU64>,
) {
    worker.start("keygate-sqlite-checkpoint", move || {
        // Nothing is ever sent: the wait ends early only when the storage handle is dropped.
        move |stop: std::sync::mpsc::Receiver<()>| {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stop.recv_timeout(CHECKPOINT_EVERY)
            {
                let Ok(mut conn) = pool.get() else { continue };
                let outcome = checkpoint(&mut conn, false).and_then(|first| match first {
                    Some(f)
                        if log_bytes(&mut conn, f.log)? > limit_bytes.load(Ordering::Relaxed) =>
                    {
                        let _writers_wait = write_gate
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                        checkpoint(&mut conn, true).map(|_| ())
                    }
                    _ => Ok(()),
                });
                if let Err(err) = outcome {
                    tracing::warn!(error = %err, "SQLite checkpoint failed");
                }
            }
        }
    });
}

fn apply_migrations<C>(
    conn: &mut C,
    source: EmbeddedMigrations,
) -> Result<Vec<String>, StorageError>
where
    C: MigrationHarness<C::Backend> + Connection,
    EmbeddedMigrations: diesel::migration::MigrationSource<C::Backend>,
{
    let migration_err = |err: Box<dyn std::error::Error + Send + Sync>| {
        StorageError::Backend(format!("migration failed: {err}"))
    };
    let pending = conn.pending_migrations(source).map_err(migration_err)?;
    let mut applied = Vec::with_capacity(pending.len());
    for migration in &pending {
        conn.run_migration(migration.as_ref())
            .map_err(migration_err)?;
        applied.push(migration.name().to_string());
    }
    Ok(applied)
}

fn in_transaction<T, F>(conn: &mut DbConnection, f: F) -> Result<T, StorageError>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T, StorageError>,
{
    match conn {
        DbConnection::Sqlite(sqlite) => {
            AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")
        }
        DbConnection::Pg(pg) => AnsiTransactionManager::begin_transaction(pg),
    }
    .map_err(db_err)?;
    let outcome = f(&mut Tx {
        conn,
        in_transaction: true,
        batch: None,
    });
    match outcome {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)
                .map_err(db_err)?;
            Ok(value)
        }
        Err(err) => {
            // A failed rollback leaves the connection marked broken; the pool then
            // discards it. The caller's error is the one worth reporting.
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
            Err(err)
        }
    }
}

/// One connection, inside a transaction ([`Storage::transaction`]) or not
/// ([`Storage::with_conn`]). The repository methods live in the area files
/// (`users.rs`, `credentials.rs`, `invitations.rs`, `settings.rs`, `audit_log.rs`).
pub struct Tx<'c> {
    conn: &'c mut DbConnection,
    in_transaction: bool,
    /// Inside a group commit: what waits for the end of the batch.
    batch: Option<group_commit::Batch>,
}

impl Tx<'_> {
    pub fn backend(&self) -> Backend {
        match self.conn {
            DbConnection::Pg(_) => Backend::Postgres,
            DbConnection::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Runs `f` in a transaction: this one if already in one, else a new one.
    fn atomically<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if self.in_transaction {
            f(self)
        } else {
            in_transaction(self.conn, f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_schemes() {
        assert!(matches!(
            Target::parse("postgres://u@h/db"),
            Ok(Target::Postgres(_))
        ));
        assert!(matches!(
            Target::parse("postgresql://u@h/db"),
            Ok(Target::Postgres(_))
        ));
        match Target::parse("sqlite://data/keygate.db") {
            Ok(Target::Sqlite(path)) => assert_eq!(path, "data/keygate.db"),
            _ => panic!("sqlite URL not parsed"),
        }
        match Target::parse("sqlite:///var/lib/keygate.db") {
            Ok(Target::Sqlite(path)) => assert_eq!(path, "/var/lib/keygate.db"),
            _ => panic!("absolute sqlite URL not parsed"),
        }
        for bad in [
            "postgress://u@h/db",
            "mysql://x",
            "keygate.db",
            "sqlite://",
            "sqlite://:memory:",
            "",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} accepted");
        }
        let Err(StorageError::Backend(message)) = Target::parse("postgress://u:secret@h/db") else {
            panic!("typo accepted");
        };
        assert!(message.contains("\"postgress\""), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn both_backends_embed_the_same_migrations() {
        let sqlite = Storage::migration_names(Backend::Sqlite).unwrap();
        let postgres = Storage::migration_names(Backend::Postgres).unwrap();
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
    }
}
