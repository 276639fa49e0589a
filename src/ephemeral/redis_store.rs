//! The Redis store: one multiplexed, self-reconnecting connection
//! (`ConnectionManager`) shared by every worker. Every key is prefixed so several
//! deployments (or test runs) can share one Redis.
//!
//! Commands: `SET PX` / `SET NX PX`, `GETDEL` (Redis ≥ 6.2) for single-use reads, and
//! short Lua scripts for `incr_ex` (the counter and its expiry set atomically) and
//! `take_marking` (the take and its marks in one step). A script's keys must live on one
//! node: keygate talks to one Redis (or a primary with replicas), not a cluster.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError};

use super::{ttl_millis, EphemeralError, EphemeralStore};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// INCR, and set the expiry when the counter is new (or somehow has none).
const INCR_EX_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
";

/// GETDEL, then each mark line of the value under its own key with its own expiry
/// (`take_marking`); a value with too few lines is taken and nothing is marked. KEYS[1]
/// is the value, KEYS[2..] the marks, ARGV[i] mark i's time to live in milliseconds.
const TAKE_MARKING_SCRIPT: &str = r"
local value = redis.call('GET', KEYS[1])
if not value then return false end
redis.call('DEL', KEYS[1])
local lines, at = {}, 1
for i = 2, #KEYS do
  local stop = string.find(value, '\n', at, true)
  if not stop then return false end
  lines[i] = string.sub(value, at, stop - 1)
  at = stop + 1
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], lines[i], 'PX', ARGV[i - 1])
end
return string.sub(value, at)
";

/// Redis-backed [`EphemeralStore`] for scale-out: any replica sees every entry.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    /// [`INCR_EX_SCRIPT`], sent by its SHA-1 (`EVALSHA`; loaded once on `NOSCRIPT`).
    incr_ex: redis::Script,
    /// [`TAKE_MARKING_SCRIPT`], sent the same way.
    take_marking: redis::Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_err(err: RedisError) -> EphemeralError {
    let unavailable = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(err.kind(), ErrorKind::Io);
    if unavailable {
        EphemeralError::Unavailable(err.to_string())
    } else {
        EphemeralError::Backend(err.to_string())
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`); fails if Redis
    /// does not answer within a few seconds. Every key is stored as `prefix + key`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, EphemeralError> {
        let client = redis::Client::open(url)
            .map_err(|err| EphemeralError::InvalidUrl(format!("redis URL: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|err| {
                EphemeralError::Unavailable(format!("cannot connect to Redis: {err}"))
            })?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            incr_ex: redis::Script::new(INCR_EX_SCRIPT),
            take_marking: redis::Script::new(TAKE_MARKING_SCRIPT),
        })
    }

    fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }
}

#[async_trait::async_trait]
impl EphemeralStore for RedisStore {
    async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError> {
        let millis = ttl_millis(ttl)?;
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(millis)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn set_nx_ex(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, EphemeralError> {
        let millis = ttl_millis(ttl)?;
        let mut conn = self.conn.clone();
        let stored: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(stored.is_some())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut conn = self.conn.clone();
        redis::cmd("GETDEL")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn take_marking(
        &self,
        key: &str,
        marks: &[(&str, Duration)],
    ) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut invocation = self.take_marking.key(self.key(key));
        for (mark, ttl) in marks {
            invocation.key(self.key(mark)).arg(ttl_millis(*ttl)?);
        }
        let mut conn = self.conn.clone();
        invocation.invoke_async(&mut conn).await.map_err(redis_err)
    }

    async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn incr_ex(&self, key: &str, ttl: Duration) -> Result<u64, EphemeralError> {
        let millis = ttl_millis(ttl)?;
        let mut conn = self.conn.clone();
        self.incr_ex
            .key(self.key(key))
            .arg(millis)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }
}
