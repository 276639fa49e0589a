//! Rate limits kept in the ephemeral store, so they hold across replicas.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::state::AppState;

/// Counts one attempt of `action` from `who` in the current minute; refuses past the limit.
pub async fn check(state: &AppState, action: &str, who: &str) -> Result<()> {
    let limit = state.config.rate_limit.ceremonies_per_minute;
    let minute = state.now() / 60;
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
