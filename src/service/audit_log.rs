//! The audit chain as the operator sees it: verification over the whole chain.

use crate::error::{Error, Result};
use crate::state::AppState;

/// Verifies every event's link and the chain head; a readable verdict or the first break.
pub async fn verify(state: &AppState) -> Result<String> {
    let outcome = state.storage.run(|s| s.verify_audit_chain()).await?;
    match outcome {
        Ok(v) => Ok(format!(
            "audit chain OK: {} events, head {}",
            v.count, v.head_hash
        )),
        Err(b) => Err(Error::Internal(format!("audit chain broken: {b}"))),
    }
}
