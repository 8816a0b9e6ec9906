//! The durable status of each stream (last success, last error, totals), kept in the key-value
//! store beside the checkpoint and shown by `/status`, `/metrics` and `slack-logs status`; and
//! the silence alert computed from it. Never a token.

use std::collections::BTreeMap;

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
    /// Lifetime counters and the silence clock, from the stored status.
    #[serde(skip)]
    pub stored: StoredStatus,
    /// Seconds the stream has been silent for, when that is longer than its `max_silence`.
    pub silent_for: Option<i64>,
}

impl StreamStatus {
    /// Healthy unless the silence alert is raised.
    pub fn healthy(&self) -> bool {
        self.silent_for.is_none()
    }
}

/// The part of the status that is stored (the watermark comes from the checkpoint). Fields
/// added after 0.1.0 default, so an older status still loads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStatus {
    pub last_success: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
    pub total_records: u64,
    /// Passes that walked the stream (not those that left it to another pass's lease).
    #[serde(default)]
    pub passes: u64,
    #[serde(default)]
    pub total_pages: u64,
    /// HTTP requests to Slack, retries included.
    #[serde(default)]
    pub total_requests: u64,
    /// Answers that were HTTP 429 or `ratelimited`.
    #[serde(default)]
    pub total_rate_limited: u64,
    /// Failed passes by error code (Slack's, such as `invalid_auth`, or ours, such as `sink_unavailable`).
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// The last pass that delivered at least one record.
    #[serde(default)]
    pub last_record_at: Option<i64>,
    /// The first pass, so silence is measured from somewhere when nothing ever succeeded.
    #[serde(default)]
    pub first_pass_at: Option<i64>,
    /// Whether the silence alert was raised at the end of the last pass (to log when it clears).
    #[serde(default)]
    pub silent: bool,
    /// The last pass in which this walk had its turn (ran, or failed to start); walks whose turn
    /// is longest ago go first (`pass::fair_order`).
    #[serde(default)]
    pub last_turn_at: Option<i64>,
    /// Audit events the look-back re-scan found that Slack had indexed late.
    #[serde(default)]
    pub total_late_events: u64,
}

impl StoredStatus {
    /// A pass that failed with `code`.
    pub fn record_error(&mut self, code: &str, message: &str, now: i64) {
        *self.errors.entry(code.to_string()).or_default() += 1;
        self.last_error = Some(message.to_string());
        self.last_error_at = Some(now);
    }

    /// How long the stream has gone without a record and without a pass that ended well, when
    /// that exceeds `max_silence`; `None` when it has not, when the alert is off, or before the
    /// first pass.
    pub fn silent_for(&self, max_silence: Option<i64>, now: i64) -> Option<i64> {
        let max = max_silence?;
        let since = [self.last_record_at, self.last_success, self.first_pass_at]
            .into_iter()
            .flatten()
            .max()?;
        let quiet = now - since;
        (quiet > max).then_some(quiet)
    }
}

/// The column headings of `slack-logs status` and of the status page (`GET /`), in the order of
/// [`StreamStatus::display_cells`]. One home for the words both show.
pub const STATUS_COLUMNS: [&str; 8] = [
    "STREAM",
    "TEAM",
    "WATERMARK",
    "LAG",
    "LAST SUCCESS",
    "RECORDS",
    "HEALTH",
    "LAST ERROR",
];

/// What both say when no walk has a status (no stream configured yet, or `team_ids = all` before
/// the first pass listed the workspaces).
pub const NO_STREAM_YET: &str = "no stream has run yet";

impl StreamStatus {
    /// The cells a person reads, one per [`STATUS_COLUMNS`]: times in RFC 3339 UTC, the lag in
    /// human units (`1m15s`), late audit events beside the records (so Slack's own lag shows),
    /// `SILENT 3h0m` while the silence alert is raised, and the last error with its time and
    /// the advice the message carries. `-` where there is nothing yet.
    pub fn display_cells(&self) -> [String; 8] {
        let time = |t: Option<i64>| t.map_or("-".to_string(), crate::config::format_rfc3339);
        [
            self.stream.clone(),
            self.team_id.clone().unwrap_or_else(|| "-".into()),
            time(self.watermark),
            self.lag_seconds.map_or("-".into(), human_secs),
            time(self.last_success),
            match self.stored.total_late_events {
                0 => self.total_records.to_string(),
                late => format!("{} ({late} late)", self.total_records),
            },
            match self.silent_for {
                Some(quiet) => format!("SILENT {}", human_secs(quiet)),
                None => "ok".into(),
            },
            match (self.last_error_at, &self.last_error) {
                (Some(at), Some(e)) => format!("{}: {e}", crate::config::format_rfc3339(at)),
                (None, Some(e)) => e.clone(),
                _ => "-".into(),
            },
        ]
    }
}

/// Seconds in the two largest units a person needs: `5s`, `1m15s`, `2h1m`, `1d1h`; negative
/// (a clock behind the watermark) keeps its sign.
pub fn human_secs(s: i64) -> String {
    let sign = if s < 0 { "-" } else { "" };
    // unsigned_abs: i64::MIN has no positive i64.
    let s = s.unsigned_abs();
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let out = if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    };
    format!("{sign}{out}")
}

/// The structured log line for a silence alert raised (or still raised) or cleared.
pub fn silence_line(
    stream: Stream,
    team_id: Option<&str>,
    silent_for: Option<i64>,
    max_silence: i64,
) -> String {
    let event = if silent_for.is_some() {
        "stream_silent"
    } else {
        "stream_silence_cleared"
    };
    let mut line = serde_json::json!({
        "level": if silent_for.is_some() { "warn" } else { "info" },
        "event": event,
        "stream": stream.name(),
        "team_id": team_id,
        "max_silence_seconds": max_silence,
    });
    if let Some(s) = silent_for {
        line["silent_for_seconds"] = s.into();
        line["message"] = format!(
            "no record and no successful pass for {s} s (max_silence {max_silence} s): check the token, the schedule and /status"
        )
        .into();
    }
    line.to_string()
}

/// `slack-logs/v1/<stream>/<team id, or org>/status`, beside the checkpoint.
pub fn status_key(stream: Stream, team_id: Option<&str>) -> String {
    crate::keys::walk_key(stream, team_id, crate::keys::WalkLeaf::Status)
}

/// Reads the stored status for an update: a store error is an error (saving over it would lose
/// the lifetime totals); a value that does not parse counts as empty.
pub fn try_load(
    store: &mut dyn KvStore,
    stream: Stream,
    team_id: Option<&str>,
) -> Result<StoredStatus, crate::env::StoreError> {
    Ok(match store.get(&status_key(stream, team_id))? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        None => StoredStatus::default(),
    })
}

/// Reads the stored status; a missing or unreadable one counts as empty (it is informational).
pub fn load(store: &mut dyn KvStore, stream: Stream, team_id: Option<&str>) -> StoredStatus {
    try_load(store, stream, team_id).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_measured_from_the_last_record_or_good_pass() {
        let mut s = StoredStatus::default();
        assert_eq!(s.silent_for(Some(100), 1000), None, "before the first pass");
        s.first_pass_at = Some(500);
        assert_eq!(s.silent_for(Some(100), 600), None);
        assert_eq!(s.silent_for(Some(100), 601), Some(101));
        assert_eq!(s.silent_for(None, 10_000), None, "alert off");
        s.last_success = Some(900);
        assert_eq!(s.silent_for(Some(100), 1000), None);
        s.last_record_at = Some(950);
        assert_eq!(s.silent_for(Some(100), 1051), Some(101));
    }

    #[test]
    fn an_old_status_still_loads() {
        let old = br#"{"last_success":5,"last_error_at":null,"last_error":null,"total_records":7}"#;
        let s: StoredStatus = serde_json::from_slice(old).unwrap();
        assert_eq!((s.total_records, s.passes, s.errors.len()), (7, 0, 0));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_secs(0), "0s");
        assert_eq!(human_secs(75), "1m15s");
        assert_eq!(human_secs(7260), "2h1m");
        assert_eq!(human_secs(90_000), "1d1h");
        assert_eq!(human_secs(-75), "-1m15s");
        assert!(human_secs(i64::MIN).starts_with('-'));
    }

    #[test]
    fn display_cells_say_what_the_table_says() {
        assert_eq!(
            STATUS_COLUMNS.len(),
            StreamStatus::default().display_cells().len()
        );
        let ok = StreamStatus {
            stream: "audit".into(),
            watermark: Some(1_709_210_096),
            lag_seconds: Some(75),
            last_success: Some(1_709_210_100),
            total_records: 42,
            stored: StoredStatus {
                total_late_events: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            ok.display_cells(),
            [
                "audit",
                "-",
                "2024-02-29T12:34:56Z",
                "1m15s",
                "2024-02-29T12:35:00Z",
                "42 (3 late)",
                "ok",
                "-"
            ]
        );
        let silent = StreamStatus {
            stream: "access".into(),
            team_id: Some("T1".into()),
            last_error_at: Some(1_709_210_000),
            last_error: Some("Slack answered `token_revoked`: issue a new token".into()),
            silent_for: Some(10_800),
            ..Default::default()
        };
        let cells = silent.display_cells();
        assert_eq!(
            (cells[1].as_str(), cells[6].as_str()),
            ("T1", "SILENT 3h0m")
        );
        assert_eq!(
            cells[7],
            "2024-02-29T12:33:20Z: Slack answered `token_revoked`: issue a new token"
        );
        let undated = StreamStatus {
            last_error: Some("bad key".into()),
            ..Default::default()
        };
        assert_eq!(undated.display_cells()[7], "bad key");
    }

    #[test]
    fn silence_lines_are_json() {
        let v: serde_json::Value =
            serde_json::from_str(&silence_line(Stream::Audit, None, Some(90_000), 86_400)).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["silent_for_seconds"].as_i64()),
            (Some("stream_silent"), Some(90_000))
        );
        let v: serde_json::Value =
            serde_json::from_str(&silence_line(Stream::Access, Some("T1"), None, 60)).unwrap();
        assert_eq!(v["event"], "stream_silence_cleared");
    }
}
