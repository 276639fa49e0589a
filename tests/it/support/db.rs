//! Storage and ephemeral stores for tests, picked from the environment.
//!
//! - `KEYGATE_TEST_DATABASE_URL` (a `postgres://` URL): each test gets a fresh schema
//!   `kg_<random>` in that database (dropped when the test's [`TestDb`] drops);
//!   otherwise each test gets an SQLite file in its own temporary directory.
//! - `KEYGATE_TEST_REDIS_URL`: each test gets a random key prefix on that Redis;
//!   otherwise the in-process store.
//!
//! A URL that is set but unreachable fails the test loudly (it never falls back).

#![allow(dead_code)]

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use keygate::ephemeral::{EphemeralStore, MemoryStore, RedisStore};
use keygate::storage::Storage;
use ring::rand::{SecureRandom, SystemRandom};

pub const DATABASE_URL_VAR: &str = "KEYGATE_TEST_DATABASE_URL";
pub const REDIS_URL_VAR: &str = "KEYGATE_TEST_REDIS_URL";

fn env_url(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// True when running in CI (`CI=true`), where skipping a backend is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

/// `postgres` or `sqlite`: the database backend the storage tests run on.
pub fn backend_name() -> &'static str {
    if env_url(DATABASE_URL_VAR).is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

/// `redis` or `memory`: the ephemeral store [`test_ephemeral`] returns.
pub fn ephemeral_name() -> &'static str {
    if env_url(REDIS_URL_VAR).is_some() {
        "redis"
    } else {
        "memory"
    }
}

/// Lowercase hex of `bytes` random bytes (schema names, key prefixes).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .unwrap_or_else(|_| panic!("system random number generator failed"));
    hex::encode(buf)
}

enum Isolation {
    /// Keeps the SQLite file's directory alive; removed on drop.
    Sqlite(tempfile::TempDir),
    /// The PostgreSQL schema this test owns; dropped on drop.
    Postgres { schema: String },
}

/// A storage handle isolated to one test. Derefs to [`Storage`].
pub struct TestDb {
    pub storage: Storage,
    /// The URL the storage was opened with (its own schema on PostgreSQL).
    pub url: String,
    isolation: Isolation,
}

impl Deref for TestDb {
    type Target = Storage;

    fn deref(&self) -> &Storage {
        &self.storage
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Isolation::Postgres { schema } = &self.isolation {
            if let Some(admin) = ADMIN.get() {
                // Best effort: a leftover schema only costs disk space.
                let _ = admin.debug_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

/// One connection to the PostgreSQL test database, shared by every test, for
/// creating and dropping schemas.
static ADMIN: OnceLock<Storage> = OnceLock::new();

fn admin(base_url: &str) -> &'static Storage {
    ADMIN.get_or_init(|| {
        Storage::connect(base_url, Some(2)).unwrap_or_else(|err| {
            panic!(
                "\n\n*** {DATABASE_URL_VAR} is set but PostgreSQL is unreachable ({err}).{}\n\n",
                if in_ci() {
                    " CI must test on PostgreSQL: start it (see .ci/run)."
                } else {
                    " Start PostgreSQL or unset the variable to test on SQLite."
                }
            )
        })
    })
}

/// URL for `base` with `search_path` set to `schema` for every connection.
fn with_search_path(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-csearch_path%3D{schema}")
}

/// Isolated storage with migrations applied.
pub fn test_storage() -> TestDb {
    test_storage_with_pool(None)
}

/// Isolated storage with migrations applied and a given pool size.
pub fn test_storage_with_pool(pool_size: Option<u32>) -> TestDb {
    let db = test_storage_unmigrated(pool_size);
    db.migrate()
        .unwrap_or_else(|err| panic!("migrations failed on {}: {err}", backend_name()));
    db
}

/// Isolated, empty storage (no migrations run yet).
pub fn test_storage_unmigrated(pool_size: Option<u32>) -> TestDb {
    match env_url(DATABASE_URL_VAR) {
        Some(base_url) => {
            let schema = format!("kg_{}", random_hex(8));
            admin(&base_url)
                .debug_execute(&format!("CREATE SCHEMA {schema}"))
                .unwrap_or_else(|err| panic!("cannot create test schema {schema}: {err}"));
            let url = with_search_path(&base_url, &schema);
            let storage = Storage::connect(&url, pool_size.or(Some(4)))
                .unwrap_or_else(|err| panic!("cannot connect to test schema {schema}: {err}"));
            TestDb {
                storage,
                url,
                isolation: Isolation::Postgres { schema },
            }
        }
        None => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
            let storage = Storage::connect(&url, pool_size)
                .unwrap_or_else(|err| panic!("cannot open test SQLite database: {err}"));
            TestDb {
                storage,
                url,
                isolation: Isolation::Sqlite(dir),
            }
        }
    }
}

/// A key prefix no other test (or deployment) uses.
pub fn test_prefix() -> String {
    format!("kgtest:{}:", random_hex(6))
}

/// The ephemeral store for a test: Redis with a fresh prefix when
/// `KEYGATE_TEST_REDIS_URL` is set, else a new in-process store.
pub async fn test_ephemeral() -> Arc<dyn EphemeralStore> {
    if env_url(REDIS_URL_VAR).is_none() {
        return Arc::new(MemoryStore::new());
    }
    match test_redis().await {
        Some(store) => Arc::new(store),
        None => Arc::new(MemoryStore::new()),
    }
}

/// Redis with a fresh prefix, or `None` (with a note) when `KEYGATE_TEST_REDIS_URL`
/// is not set. Under `CI=true` a missing variable fails instead of skipping.
pub async fn test_redis() -> Option<RedisStore> {
    test_redis_with_prefix(&test_prefix()).await
}

/// Like [`test_redis`] with a chosen prefix.
pub async fn test_redis_with_prefix(prefix: &str) -> Option<RedisStore> {
    let Some(url) = env_url(REDIS_URL_VAR) else {
        assert!(
            !in_ci() || std::env::var("KEYGATE_TEST_EMBEDDED").is_ok(),
            "\n\n*** CI=true but {REDIS_URL_VAR} is not set: the Redis half of the \
             ephemeral contract suite must run in CI.\n\n"
        );
        crate::support::skip::in_other_pass(&format!(
            "{REDIS_URL_VAR} is not set: the Redis half runs in the PostgreSQL + Redis pass"
        ));
        return None;
    };
    match RedisStore::connect(&url, prefix).await {
        Ok(store) => Some(store),
        Err(err) => panic!("\n\n*** {REDIS_URL_VAR} is set but Redis is unreachable ({err}).\n\n"),
    }
}
