//! Short-lived state (ceremony challenges, sessions, replay caches, rate limits,
//! device codes) behind one small trait, with an in-process implementation (the
//! embedded default) and a Redis one (scale-out). Both pass the same contract suite
//! (`tests/it/ephemeral.rs`).
//!
//! Values are opaque bytes; every entry has a time to live. `take` is the single-use
//! read (ceremony state must never be read twice); `set_nx_ex` is the replay cache;
//! `counted` the fixed-window rate limits, which, when none is exceeded, write, take, or
//! take leaving marks behind (a used code's marker) in the same step: one trip to Redis
//! where a request would otherwise wait on two or three.

mod memory;
mod redis_store;

use std::sync::Arc;
use std::time::Duration;

pub use memory::MemoryStore;
pub use redis_store::RedisStore;

/// What went wrong with the ephemeral store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EphemeralError {
    /// The store cannot be reached (Redis down, timeout).
    #[error("ephemeral store unavailable: {0}")]
    Unavailable(String),
    /// A zero time to live was asked for (an entry that would never be visible).
    #[error("time to live must be at least one millisecond")]
    InvalidTtl,
    /// The URL does not name a supported store.
    #[error("invalid ephemeral store URL: {0}")]
    InvalidUrl(String),
    /// Any other failure (e.g. counting a key that holds no counter).
    #[error("ephemeral store error: {0}")]
    Backend(String),
}

/// Short-lived key → bytes storage with expiry.
#[async_trait::async_trait]
pub trait EphemeralStore: Send + Sync + 'static {
    /// Stores `value` under `key` for `ttl`, replacing any previous value.
    async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError>;

    /// Stores `value` only if `key` holds nothing: `true` if stored, `false` if the
    /// key was already there (a replay).
    async fn set_nx_ex(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, EphemeralError>;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError>;

    /// Reads and deletes in one step: of concurrent takes of one key, exactly one
    /// gets the value.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError>;

    async fn delete(&self, key: &str) -> Result<(), EphemeralError>;

    /// In one step: adds one to each limit's counter, then, if no counter went past its
    /// limit's `max`, does `then`. Past a limit nothing else is done and the answer is
    /// [`Counted::Limited`]; every counter has counted all the same (a refused attempt
    /// counts too). A counter is created with its limit's window as its time to live;
    /// later counts keep that expiry (a fixed window). It is stored as the count in
    /// decimal text: counting a key that holds anything else is an error.
    async fn counted(&self, limits: &[Limit], then: Then<'_>) -> Result<Counted, EphemeralError>;

    /// Checks that the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), EphemeralError>;

    /// The store an HTTP worker uses, made on the worker's thread: the same entries,
    /// reached in the way that suits one thread (for Redis, a connection of the worker's
    /// own, opened on its first use). `None`: this store serves every thread as it is.
    fn for_worker(&self) -> Option<Arc<dyn EphemeralStore>> {
        None
    }
}

/// A fixed-window rate limit: at most `max` counts at `key` in one `window` (the counter's
/// time to live from its first count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub key: String,
    pub window: Duration,
    pub max: u64,
}

/// A value to store, with its time to live.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub ttl: Duration,
}

/// What [`EphemeralStore::counted`] does once every limit allowed it.
#[derive(Clone, Copy, Debug)]
pub enum Then<'a> {
    /// Nothing more: the limits only.
    Nothing,
    /// Delete the keys `delete`, then store each of `set` (replacing what was there).
    Write {
        delete: &'a [&'a str],
        set: &'a [Entry<'a>],
    },
    /// [`EphemeralStore::take`] `key`.
    Take(&'a str),
    /// [`EphemeralStore::take`] `key`, leaving marks behind in the same step: the value
    /// must have been stored as [`with_marks`] (one line per mark ahead of the body). If
    /// it is there, it is deleted, line `i` is stored under `marks[i]` (key, time to
    /// live), and the body is what was taken. A value stored without as many marks is
    /// taken and reported as absent, so nothing is ever half-marked; no mark is written
    /// for an absent value.
    TakeMarking {
        key: &'a str,
        marks: &'a [(&'a str, Duration)],
    },
}

/// The answer of [`EphemeralStore::counted`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counted {
    /// A limit was exceeded; nothing but the counters was touched.
    Limited,
    /// Done: the value taken (`Take`, `TakeMarking`; `None` when absent), else `None`.
    Done(Option<Vec<u8>>),
}

/// Opens the store named by `url`: none or `memory://` → in-process; `redis://` or
/// `rediss://` → Redis with every key prefixed by `prefix`. Any other scheme is an
/// error.
pub async fn connect(
    url: Option<&str>,
    prefix: &str,
) -> Result<Arc<dyn EphemeralStore>, EphemeralError> {
    let url = url.map(str::trim).filter(|u| !u.is_empty());
    match url {
        None => Ok(Arc::new(MemoryStore::new())),
        Some(url) => match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("memory") => Ok(Arc::new(MemoryStore::new())),
            Some("redis" | "rediss") => Ok(Arc::new(RedisStore::connect(url, prefix).await?)),
            Some(other) => Err(EphemeralError::InvalidUrl(format!(
                "unsupported scheme {other:?} (use memory:// or redis://)"
            ))),
            None => Err(EphemeralError::InvalidUrl(
                "no scheme (use memory:// or redis://)".into(),
            )),
        },
    }
}

/// A value for [`Then::TakeMarking`]: each mark on a line of its own, then the
/// body. A mark holding a line break is refused.
pub fn with_marks(marks: &[&[u8]], body: &[u8]) -> Result<Vec<u8>, EphemeralError> {
    if marks.iter().any(|m| m.contains(&b'\n')) {
        return Err(EphemeralError::Backend(
            "a mark must not hold a line break".into(),
        ));
    }
    let mut value =
        Vec::with_capacity(marks.iter().map(|m| m.len() + 1).sum::<usize>() + body.len());
    for mark in marks {
        value.extend_from_slice(mark);
        value.push(b'\n');
    }
    value.extend_from_slice(body);
    Ok(value)
}

/// The first `count` lines of a [`with_marks`] value and its body; `None` when it holds
/// fewer lines.
fn split_marks(value: &[u8], count: usize) -> Option<(Vec<&[u8]>, &[u8])> {
    let mut marks = Vec::with_capacity(count);
    let mut rest = value;
    for _ in 0..count {
        let end = rest.iter().position(|&b| b == b'\n')?;
        marks.push(&rest[..end]);
        rest = &rest[end + 1..];
    }
    Some((marks, rest))
}

/// The longest TTL kept (longer ones are shortened to it): 100 years.
const MAX_TTL_MILLIS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// Whole milliseconds for a TTL, rounded up and capped at [`MAX_TTL_MILLIS`]; zero
/// is refused.
fn ttl_millis(ttl: Duration) -> Result<u64, EphemeralError> {
    if ttl.is_zero() {
        return Err(EphemeralError::InvalidTtl);
    }
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    Ok(u64::try_from(millis)
        .unwrap_or(MAX_TTL_MILLIS)
        .min(MAX_TTL_MILLIS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_milliseconds() {
        assert_eq!(ttl_millis(Duration::ZERO), Err(EphemeralError::InvalidTtl));
        assert_eq!(ttl_millis(Duration::from_nanos(1)), Ok(1));
        assert_eq!(ttl_millis(Duration::from_micros(1500)), Ok(2));
        assert_eq!(ttl_millis(Duration::from_secs(3)), Ok(3000));
        assert_eq!(ttl_millis(Duration::MAX), Ok(MAX_TTL_MILLIS));
    }

    #[test]
    fn marks_split_off_the_front_of_a_value() {
        let value = with_marks(&[b"one", b"", b"three"], b"body\nwith lines").unwrap();
        assert_eq!(value, b"one\n\nthree\nbody\nwith lines");
        let (marks, body) = split_marks(&value, 3).unwrap();
        assert_eq!(marks, [&b"one"[..], b"", b"three"]);
        assert_eq!(body, b"body\nwith lines");
        assert_eq!(split_marks(b"only one\n", 2), None);
        assert_eq!(split_marks(b"no line", 1), None);
        assert_eq!(
            split_marks(b"anything", 0),
            Some((vec![], &b"anything"[..]))
        );
        assert!(matches!(
            with_marks(&[b"two\nlines"], b""),
            Err(EphemeralError::Backend(_))
        ));
    }

    #[tokio::test]
    async fn connect_picks_the_store_by_scheme() {
        assert!(connect(None, "t:").await.is_ok());
        assert!(connect(Some("memory://"), "t:").await.is_ok());
        for bad in ["memcached://x", "localhost:6379", "redis:/x"] {
            assert!(
                matches!(
                    connect(Some(bad), "t:").await,
                    Err(EphemeralError::InvalidUrl(_))
                ),
                "{bad} accepted"
            );
        }
    }
}
