//! The compliance dashboard (SPEC C11): how many members are compliant, which are not and
//! why, and the keys by model and FIPS status.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::service::members::{self, MemberView};
use crate::state::AppState;

#[derive(Clone, Debug, Serialize)]
pub struct Dashboard {
    pub members: usize,
    pub compliant: usize,
    /// Whole percent, rounded down (0 with no members).
    pub compliant_percent: usize,
    pub non_compliant: Vec<MemberView>,
    /// Active keys per model, most common first.
    pub keys_by_model: Vec<Bar>,
    pub fips_keys: usize,
    pub non_fips_keys: usize,
    pub attested_keys: usize,
    pub active_keys: usize,
}

/// One bar of a chart: a label, a count, and its width in percent of the largest bar.
#[derive(Clone, Debug, Serialize)]
pub struct Bar {
    pub label: String,
    pub count: usize,
    pub width: usize,
}

fn bars(counts: BTreeMap<String, usize>) -> Vec<Bar> {
    let max = counts.values().copied().max().unwrap_or(0).max(1);
    let mut bars: Vec<Bar> = counts
        .into_iter()
        .map(|(label, count)| Bar {
            width: count * 100 / max,
            label,
            count,
        })
        .collect();
    bars.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.label.cmp(&b.label)));
    bars
}

pub async fn build(state: &AppState) -> Result<Dashboard> {
    let members = members::list(state).await?;
    let keys = state.storage.run(|s| s.list_credentials()).await?;
    let active: Vec<_> = keys.iter().filter(|k| k.revoked_at.is_none()).collect();
    let mut by_model = BTreeMap::new();
    for k in &active {
        let label = k
            .model
            .clone()
            .unwrap_or_else(|| format!("Unknown ({})", k.aaguid));
        *by_model.entry(label).or_insert(0) += 1;
    }
    let compliant = members.iter().filter(|m| m.compliant).count();
    Ok(Dashboard {
        compliant_percent: (compliant * 100).checked_div(members.len()).unwrap_or(0),
        members: members.len(),
        compliant,
        non_compliant: members.into_iter().filter(|m| !m.compliant).collect(),
        keys_by_model: bars(by_model),
        fips_keys: active.iter().filter(|k| k.fips).count(),
        non_fips_keys: active.iter().filter(|k| !k.fips).count(),
        attested_keys: active.iter().filter(|k| k.phishing_resistant).count(),
        active_keys: active.len(),
    })
}
