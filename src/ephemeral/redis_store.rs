//! The Redis store: a multiplexed, self-reconnecting connection (`ConnectionManager`)
//! per HTTP worker, opened on the worker's first use ([`EphemeralStore::for_worker`]),
//! and one opened at start-up for everything else. A connection's reader and writer run
//! as a task on the runtime that opened it: on the worker's own thread, a command costs
//! its socket calls and no wake-up of another thread (a shared connection cost two per
//! command, there and back, which are dear on a virtual machine). Every key is prefixed
//! so several deployments (or test runs) can share one Redis.
//!
//! Commands: `SET PX` / `SET NX PX`, `GETDEL` (Redis ≥ 6.2) for single-use reads, and
//! a short Lua script for `counted` (counters and their expiries, then a write or a take
//! with its marks, in one step); `counted` without limits is a `MULTI`/`EXEC` write or a
//! `GETDEL`, and only a take leaving marks needs the script. A script's keys must live on one
//! node: keygate talks to one Redis (or a primary with replicas), not a cluster.
//!
//! A connection learns that Redis went away only when a command fails on it (then it
//! reconnects). So that the first command of each worker after a Redis restart does not
//! fail, a command that failed because its connection was dead is sent once more on a
//! fresh one ([`RedisStore::send`]); a timeout is never retried (the command may still run
//! on a live server). Every command here is safe to send twice, with one care: a repeat
//! cannot tell "absent" from "taken (or stored) by the first try, whose answer was lost".
//! So a repeated `take` (`GETDEL`, or a script's take) that finds nothing, and a repeated
//! `SET NX` that finds the key there, are reported unavailable, as the failure itself
//! would have been: a single-use value is never handed out twice, and a lost answer is
//! never mistaken for a replay (docs/decisions.md).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError};

use super::{ttl_millis, Counted, EphemeralError, EphemeralStore, Limit, Then};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// `counted`. KEYS: the limits' counters, then the operation's keys. ARGV[1]: the number of
/// limits; ARGV[2]: the operation; then each limit's window (ms) and maximum; then the
/// operation's arguments:
/// - `write`: KEYS the keys to delete, then those to set; ARGV how many to delete, then
///   each set's value and time to live (ms);
/// - `take`: KEYS the key;
/// - `mark`: KEYS the value, then the marks; ARGV each mark's time to live (ms). The value
///   is deleted, line `i` stored under mark `i`; a value with too few lines is taken and
///   nothing is marked.
///
/// Answers `{0, false}` past a limit, else `{1, taken value or false}`. A counter's expiry
/// is set when it is new (or somehow has none).
const COUNTED_SCRIPT: &str = r"
local function count(key, window)
  local n = redis.call('INCR', key)
  if n == 1 or redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, window)
  end
  return n
end
local limits = tonumber(ARGV[1])
local over = false
for i = 1, limits do
  if count(KEYS[i], ARGV[1 + 2 * i]) > tonumber(ARGV[2 + 2 * i]) then over = true end
end
if over then return {0, false} end
local op, first, arg = ARGV[2], limits + 1, 3 + 2 * limits
if op == 'write' then
  local deletes = tonumber(ARGV[arg])
  for i = first, limits + deletes do redis.call('DEL', KEYS[i]) end
  arg = arg + 1
  for i = first + deletes, #KEYS do
    redis.call('SET', KEYS[i], ARGV[arg], 'PX', ARGV[arg + 1])
    arg = arg + 2
  end
elseif op == 'take' then
  return {1, redis.call('GETDEL', KEYS[first])}
elseif op == 'mark' then
  local value = redis.call('GET', KEYS[first])
  if not value then return {1, false} end
  redis.call('DEL', KEYS[first])
  local lines, at = {}, 1
  for i = first + 1, #KEYS do
    local stop = string.find(value, '\n', at, true)
    if not stop then return {1, false} end
    lines[i] = string.sub(value, at, stop - 1)
    at = stop + 1
  end
  for i = first + 1, #KEYS do
    redis.call('SET', KEYS[i], lines[i], 'PX', ARGV[arg])
    arg = arg + 1
  end
  return {1, string.sub(value, at)}
end
return {1, false}
";

/// Redis-backed [`EphemeralStore`] for scale-out: any replica sees every entry.
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    client: redis::Client,
    prefix: String,
    /// [`COUNTED_SCRIPT`], sent by its SHA-1 (`EVALSHA`; loaded once on `NOSCRIPT`).
    counted: redis::Script,
}

/// The store's connection: opened at start-up, or by its worker on first use.
#[derive(Clone)]
enum Connection {
    Opened(ConnectionManager),
    OnFirstUse(Arc<tokio::sync::OnceCell<ConnectionManager>>),
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

/// How a command's repeat on a fresh connection ([`RedisStore::send`]) is trusted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Sending it twice does no harm and the repeat's answer is true (`GET`, `SET PX`,
    /// `DEL`, `PING`, a write, counters: a count twice errs towards limiting).
    Safe,
    /// A single-use command (`GETDEL`, a take, `SET NX`): the repeat's empty answer
    /// (nothing taken, nothing stored) may be the lost first try's doing, so it is
    /// reported unavailable; a value taken or a key stored is true.
    UnlessEmpty,
}

/// An answer that can be "empty" in the sense of [`Repeat::UnlessEmpty`].
trait Answer {
    fn is_empty(&self) -> bool {
        false
    }
}

impl Answer for () {}

impl<T> Answer for Option<T> {
    fn is_empty(&self) -> bool {
        self.is_none()
    }
}

impl Answer for (i64, Option<Vec<u8>>) {
    /// A script's answer: past a limit (`0`) is a true answer, else as its taken value.
    fn is_empty(&self) -> bool {
        self.0 == 1 && self.1.is_none()
    }
}

/// The command failed because its connection was dead (it may or may not have reached
/// Redis), not because Redis answered an error or was slow to.
fn dead_connection(err: &RedisError) -> bool {
    (err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal())
        && !err.is_timeout()
}

/// Opens a self-reconnecting connection; its tasks run on the calling runtime.
async fn open(client: &redis::Client) -> Result<ConnectionManager, EphemeralError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2);
    ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(|err| EphemeralError::Unavailable(format!("cannot connect to Redis: {err}")))
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`); fails if Redis
    /// does not answer within a few seconds. Every key is stored as `prefix + key`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, EphemeralError> {
        let client = redis::Client::open(url)
            .map_err(|err| EphemeralError::InvalidUrl(format!("redis URL: {err}")))?;
        let conn = open(&client).await?;
        Ok(RedisStore {
            conn: Connection::Opened(conn),
            client,
            prefix: prefix.to_owned(),
            counted: redis::Script::new(COUNTED_SCRIPT),
        })
    }

    /// The connection for a command, opened now if this store's worker has none yet (a
    /// failed opening is tried again by the next command).
    async fn conn(&self) -> Result<ConnectionManager, EphemeralError> {
        match &self.conn {
            Connection::Opened(conn) => Ok(conn.clone()),
            Connection::OnFirstUse(cell) => {
                cell.get_or_try_init(|| open(&self.client)).await.cloned()
            }
        }
    }

    /// [`EphemeralStore::counted`] without limits, in plain commands where no script is
    /// needed: a script call costs Redis ≈ 10 µs more than the commands it runs
    /// (`INFO commandstats`). A write is one `MULTI`/`EXEC` (all or nothing, as the
    /// script). `None`: only the script can do it (a take leaving marks).
    async fn uncounted(&self, then: &Then<'_>) -> Result<Option<Counted>, EphemeralError> {
        match then {
            Then::Nothing => Ok(Some(Counted::Done(None))),
            Then::Take(key) => self.take(key).await.map(|v| Some(Counted::Done(v))),
            Then::Write { delete, set } => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                if !delete.is_empty() {
                    pipe.cmd("DEL")
                        .arg(delete.iter().map(|k| self.key(k)).collect::<Vec<_>>())
                        .ignore();
                }
                for entry in *set {
                    pipe.cmd("SET")
                        .arg(self.key(entry.key))
                        .arg(entry.value)
                        .arg("PX")
                        .arg(ttl_millis(entry.ttl)?)
                        .ignore();
                }
                // Deletes, then sets: the same end state however often it runs.
                self.send("counted", Repeat::Safe, |mut conn| {
                    let pipe = pipe.clone();
                    async move { pipe.query_async::<()>(&mut conn).await }
                })
                .await?;
                Ok(Some(Counted::Done(None)))
            }
            Then::TakeMarking { .. } => Ok(None),
        }
    }

    /// Runs `command` on this store's connection; if it failed because the connection was
    /// dead (closed, reset, refused: not a timeout), runs it once more on the fresh
    /// connection the failure asked for. `repeat` says how far the repeat's answer is
    /// trusted.
    async fn send<T, F, Fut>(
        &self,
        name: &'static str,
        repeat: Repeat,
        command: F,
    ) -> Result<T, EphemeralError>
    where
        T: Answer,
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let timer = crate::metrics::PROCESS.store(name);
        let started = std::time::Instant::now();
        let first = match command(self.conn().await?).await {
            Ok(answer) => {
                if let Some(timer) = timer {
                    timer.observe_duration(started.elapsed());
                }
                return Ok(answer);
            }
            Err(err) if dead_connection(&err) => err,
            Err(err) => return Err(redis_err(err)),
        };
        tracing::debug!(error = %first, "Redis connection lost; the command is sent once more");
        crate::metrics::PROCESS
            .store_retries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let answer = command(self.conn().await?).await.map_err(redis_err)?;
        if repeat == Repeat::UnlessEmpty && answer.is_empty() {
            return Err(EphemeralError::Unavailable(format!(
                "Redis connection lost during a single-use command: {first}"
            )));
        }
        Ok(answer)
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
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("PX").arg(millis);
        self.send("set", Repeat::Safe, |mut conn| {
            let cmd = cmd.clone();
            async move { cmd.query_async::<()>(&mut conn).await }
        })
        .await
    }

    async fn set_nx_ex(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, EphemeralError> {
        let millis = ttl_millis(ttl)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis);
        // Repeated, "already there" may be the first try's own write: not a replay.
        let stored: Option<String> = self
            .send("set_nx", Repeat::UnlessEmpty, |mut conn| {
                let cmd = cmd.clone();
                async move { cmd.query_async::<Option<String>>(&mut conn).await }
            })
            .await?;
        Ok(stored.is_some())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        self.send("get", Repeat::Safe, |mut conn| {
            let cmd = cmd.clone();
            async move { cmd.query_async(&mut conn).await }
        })
        .await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.key(key));
        // Repeated, "absent" may mean the first try took it and its answer was lost.
        self.send("take", Repeat::UnlessEmpty, |mut conn| {
            let cmd = cmd.clone();
            async move { cmd.query_async::<Option<Vec<u8>>>(&mut conn).await }
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(key));
        self.send("delete", Repeat::Safe, |mut conn| {
            let cmd = cmd.clone();
            async move { cmd.query_async::<()>(&mut conn).await }
        })
        .await
    }

    async fn counted(&self, limits: &[Limit], then: Then<'_>) -> Result<Counted, EphemeralError> {
        if limits.is_empty() {
            if let Some(done) = self.uncounted(&then).await? {
                return Ok(done);
            }
        }
        let mut invocation = self.counted.prepare_invoke();
        invocation.arg(limits.len()).arg(match then {
            Then::Nothing => "none",
            Then::Write { .. } => "write",
            Then::Take(_) => "take",
            Then::TakeMarking { .. } => "mark",
        });
        for limit in limits {
            invocation
                .key(self.key(&limit.key))
                .arg(ttl_millis(limit.window)?)
                .arg(limit.max);
        }
        match then {
            Then::Nothing => {}
            Then::Write { delete, set } => {
                invocation.arg(delete.len());
                for key in delete {
                    invocation.key(self.key(key));
                }
                for entry in set {
                    invocation
                        .key(self.key(entry.key))
                        .arg(entry.value)
                        .arg(ttl_millis(entry.ttl)?);
                }
            }
            Then::Take(key) => {
                invocation.key(self.key(key));
            }
            Then::TakeMarking { key, marks } => {
                invocation.key(self.key(key));
                for (mark, ttl) in marks {
                    invocation.key(self.key(mark)).arg(ttl_millis(*ttl)?);
                }
            }
        }
        // Counters counted twice only err towards limiting; a take is as `take`.
        let takes = matches!(then, Then::Take(_) | Then::TakeMarking { .. });
        let repeat = if takes {
            Repeat::UnlessEmpty
        } else {
            Repeat::Safe
        };
        let (done, taken): (i64, Option<Vec<u8>>) = self
            .send("counted", repeat, |mut conn| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(if done == 1 {
            Counted::Done(taken)
        } else {
            Counted::Limited
        })
    }

    async fn ping(&self) -> Result<(), EphemeralError> {
        self.send("ping", Repeat::Safe, |mut conn| async move {
            redis::cmd("PING").query_async::<()>(&mut conn).await
        })
        .await
    }

    fn for_worker(&self) -> Option<Arc<dyn EphemeralStore>> {
        Some(Arc::new(RedisStore {
            conn: Connection::OnFirstUse(Arc::default()),
            client: self.client.clone(),
            prefix: self.prefix.clone(),
            counted: self.counted.clone(),
        }))
    }
}
