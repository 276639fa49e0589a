//! Rate limits kept in the ephemeral store, so they hold across replicas.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::state::AppState;

/// Counts one attempt of `action` from `who` (a client address, or an account) in the
/// current minute; refuses past the limit. IPv6 clients count per /64, which is what one
/// subscriber usually holds.
pub async fn check(state: &AppState, action: &str, who: &str) -> Result<()> {
    check_at(
        state,
        action,
        who,
        state.config.rate_limit.ceremonies_per_minute,
    )
    .await
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
pub async fn check_at(state: &AppState, action: &str, who: &str, limit: u64) -> Result<()> {
    let minute = state.now() / 60;
    let who = match who.parse::<std::net::Ipv6Addr>() {
        Ok(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        _ => who.to_string(),
    };
    let key = format!("rl:{action}:{who}:{minute}");
    let count = state
        .ephemeral
        .incr_ex(&key, Duration::from_secs(61))
        .await?;
    if count > limit {
        return Err(Error::RateLimited);
    }
    Ok(())
}
