//! The durable status of each stream (last success, last error, totals), kept in the key-value
//! store beside the checkpoint and shown by `/status` and `slack-logs status`. Never a token.

use serde::{Deserialize, Serialize};

use crate::env::KvStore;
use crate::Stream;

/// What `/status` shows for one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Unix seconds up to which the stream is complete.
    pub watermark: Option<i64>,
    pub lag_seconds: Option<i64>,
    pub last_success: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
    pub total_records: u64,
}

/// The part of the status that is stored (the watermark comes from the checkpoint).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStatus {
    pub last_success: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
    pub total_records: u64,
}

/// `slack-logs/v1/<stream>/<team id, or org>/status`, beside the checkpoint.
pub fn status_key(stream: Stream, team_id: Option<&str>) -> String {
    format!(
        "slack-logs/v1/{}/{}/status",
        stream.name(),
        team_id.unwrap_or("org")
    )
}

/// Reads the stored status; a missing or unreadable one counts as empty (it is informational).
pub fn load(store: &mut dyn KvStore, stream: Stream, team_id: Option<&str>) -> StoredStatus {
    match store.get(&status_key(stream, team_id)) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
        _ => StoredStatus::default(),
    }
}

pub fn save(
    store: &mut dyn KvStore,
    stream: Stream,
    team_id: Option<&str>,
    status: &StoredStatus,
) -> Result<(), crate::env::StoreError> {
    store.set(
        &status_key(stream, team_id),
        &serde_json::to_vec(status).unwrap_or_default(),
    )
}
