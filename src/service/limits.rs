//! Rate limits kept in the ephemeral store, so they hold across replicas. A limit is
//! counted on its own ([`check`]) or with the store write or take of the request it
//! guards ([`counted`]): one trip to the store instead of two.

use std::time::Duration;

use crate::ephemeral::{Counted, Limit, Then};
use crate::error::{Error, Result};
use crate::state::AppState;

/// The window of every limit: a minute, and a second for clocks that disagree.
const WINDOW: Duration = Duration::from_secs(61);

/// Counts one attempt of `action` from `who` (a client address, or an account) in the
/// current minute; refuses past the limit. IPv6 clients count per /64, which is what one
/// subscriber usually holds.
pub async fn check(state: &AppState, action: &str, who: &str) -> Result<()> {
    count(state, &[ceremony(state, action, who)]).await
}

/// The ceremony limit ([`check`]) of `action` from `who`, to count with a write.
pub fn ceremony(state: &AppState, action: &str, who: &str) -> Limit {
    limit(
        state,
        action,
        who,
        state.config.rate_limit.ceremonies_per_minute,
    )
}

/// Counts one sign-in request from an application (OIDC authorization, SAML single
/// sign-on, IdP-initiated sign-in) from `ip`; refuses past
/// `rate_limit.authorization_requests_per_minute`. Checked before anything else is done:
/// each such request may store a pending request in the shared store, or write an audit
/// event, and all of them come from callers nobody has identified yet.
pub async fn authorization(state: &AppState, ip: Option<&str>) -> Result<()> {
    check_at(
        state,
        "authorize",
        ip.unwrap_or_default(),
        state.config.rate_limit.authorization_requests_per_minute,
    )
    .await
}

/// [`check`] with its own limit per minute (e.g. the OIDC token endpoint's).
pub async fn check_at(state: &AppState, action: &str, who: &str, max: u64) -> Result<()> {
    count(state, &[limit(state, action, who, max)]).await
}

/// The counter of `action` by `who` in the current minute, allowing `max`.
pub fn limit(state: &AppState, action: &str, who: &str, max: u64) -> Limit {
    let minute = state.now() / 60;
    let who = match who.parse::<std::net::Ipv6Addr>() {
        Ok(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        _ => who.to_string(),
    };
    Limit {
        key: format!("rl:{action}:{who}:{minute}"),
        window: WINDOW,
        max,
    }
}

/// Counts `limits` alone, in one step; past one, [`Error::RateLimited`].
pub async fn count(state: &AppState, limits: &[Limit]) -> Result<()> {
    counted(state, limits, Then::Nothing).await.map(|_| ())
}

/// Counts `limits` and, when none is exceeded, does `then`, in one step; past a limit,
/// [`Error::RateLimited`] and nothing else done. Returns what `then` took.
pub async fn counted(
    state: &AppState,
    limits: &[Limit],
    then: Then<'_>,
) -> Result<Option<Vec<u8>>> {
    match state.ephemeral.counted(limits, then).await? {
        Counted::Done(taken) => Ok(taken),
        Counted::Limited => Err(Error::RateLimited {
            retry_after: retry_after(state.now()),
        }),
    }
}

/// Seconds until the next minute starts, when every counter starts again (at least 1).
pub fn retry_after(now: i64) -> u64 {
    (60 - now.rem_euclid(60)).unsigned_abs()
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_is_the_rest_of_the_minute() {
        assert_eq!(super::retry_after(120), 60);
        assert_eq!(super::retry_after(121), 59);
        assert_eq!(super::retry_after(179), 1);
    }
}
