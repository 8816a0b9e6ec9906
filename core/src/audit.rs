//! The audit stream: forward windows over Slack's newest-first Audit Logs API.
//!
//! Time is walked forward in closed windows `[W+1, min(W+window, now-lag)]`. Inside a window
//! pages come newest first; `oldest`, `latest`, `limit` and the filters go on every page, since
//! the cursor does not remember them (Q3). After each page reaches the sink, the checkpoint
//! records the *boundary*: the oldest `date_create` delivered and the ids delivered at that
//! second. That is enough to resume inside the window without the cursor (cursors expire, Q6):
//! ask for `[oldest, boundary]` again and skip the ids already delivered at `boundary`.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::config::{format_rfc3339, Config, AUDIT_EPOCH};
use crate::fetch::{FetchError, Fetcher};
use crate::record::RecordWriter;
use crate::slack_error::{describe_body, SlackError};
use crate::url::with_query;
use crate::walk::{failed, fetch_end, StreamIo, WalkEnd, WalkStats};

mod head;

/// Where the audit checkpoint lives in the key-value store.
pub const CHECKPOINT_KEY: &str = "slack-logs/v1/audit/org/checkpoint";
/// The `source` of audit records.
pub const SOURCE: &str = "audit/v1/logs";
/// Slack's limit on `action` names per request (Q18).
pub const MAX_ACTIONS_PER_REQUEST: usize = 30;
/// `invalid_cursor` restarts in one window without progress before the stream gives up.
const MAX_CURSOR_RESTARTS: u32 = 5;

/// The durable state of the audit stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    pub v: u32,
    /// Every event with `date_create <= watermark` is delivered (from the stream's start on).
    pub watermark: i64,
    /// The window being walked, if a pass stopped inside one.
    #[serde(default)]
    pub window: Option<AuditWindow>,
    /// The filters the checkpoint was made with (`action=…&actor=…&entity=…`).
    #[serde(default)]
    pub filters: String,
    /// With more than 30 `audit_actions`, each window is walked once per group of at most 30
    /// (Slack's limit per request); this is the group being walked.
    #[serde(default)]
    pub group: usize,
}

/// A closed window `[oldest, latest]` and how far into it delivery got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditWindow {
    pub oldest: i64,
    pub latest: i64,
    /// Every event in `(boundary, latest]` is delivered; at `boundary`, those in `boundary_ids`.
    #[serde(default)]
    pub boundary: Option<i64>,
    #[serde(default)]
    pub boundary_ids: BTreeSet<String>,
}

impl Checkpoint for AuditCheckpoint {
    const VERSION: u32 = 1;

    fn watermark(&self) -> i64 {
        self.watermark
    }
}

impl AuditCheckpoint {
    /// The state of a stream that never ran: from `backfill_start_time`, else from now (no
    /// history). Slack has nothing before 2018-03-01.
    pub fn initial(config: &Config, now: i64) -> AuditCheckpoint {
        let watermark = match config.backfill_start_time {
            Some(t) => t.max(AUDIT_EPOCH) - 1,
            None => now - config.audit_lag_seconds,
        };
        AuditCheckpoint {
            group: 0,
            v: <AuditCheckpoint as Checkpoint>::VERSION,
            watermark,
            window: None,
            filters: filters_key(config),
        }
    }
}

/// The filters as one string, to notice when they change between passes.
pub fn filters_key(config: &Config) -> String {
    config
        .audit_filters()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The next window after `watermark`, or `None` when the stream is caught up to `now - lag`.
pub fn plan_window(watermark: i64, now: i64, lag: i64, window_seconds: i64) -> Option<AuditWindow> {
    let settled = now - lag;
    if watermark >= settled {
        return None;
    }
    Some(AuditWindow {
        oldest: watermark + 1,
        latest: (watermark + window_seconds).min(settled),
        boundary: None,
        boundary_ids: BTreeSet::new(),
    })
}

/// One audit entry: its raw bytes and the two fields we read.
#[derive(Debug)]
pub struct AuditEntry<'a> {
    pub id: Cow<'a, str>,
    pub date_create: i64,
    pub raw: &'a RawValue,
}

/// One page of `/logs`.
#[derive(Debug)]
pub struct AuditPage<'a> {
    pub entries: Vec<AuditEntry<'a>>,
    /// `None` at the end: `next_cursor` empty, null or absent (Q5).
    pub next_cursor: Option<String>,
}

/// Parses a 2xx `/logs` body. A body without `entries` (an error in a 200, an HTML page) and an
/// entry without a string `id` or integer `date_create` are errors, never panics.
pub fn parse_page(body: &[u8]) -> Result<AuditPage<'_>, SlackError> {
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(borrow, default)]
        entries: Option<Vec<&'a RawValue>>,
        #[serde(default)]
        response_metadata: Option<crate::web_api::Meta>,
    }
    let wire: Wire<'_> = serde_json::from_slice(body).map_err(|e| SlackError::Malformed {
        status: 200,
        detail: format!("{} ({e})", describe_body(body)),
    })?;
    let Some(raw_entries) = wire.entries else {
        // An error reported with status 200 (`ok:false`) or a body of another shape.
        return Err(match SlackError::from_response(200, None, body) {
            e @ (SlackError::Api { .. }
            | SlackError::InvalidCursor
            | SlackError::RateLimited { .. }
            | SlackError::Server { .. }) => e,
            _ => SlackError::Malformed {
                status: 200,
                detail: "a JSON body without `entries`".into(),
            },
        });
    };
    let mut entries = Vec::with_capacity(raw_entries.len());
    for (i, raw) in raw_entries.into_iter().enumerate() {
        // One pass: the raw value is validated JSON; the scan only picks two top-level keys.
        let head = head::entry_head(raw.get()).map_err(|e| SlackError::Malformed {
            status: 200,
            detail: format!("audit entry {i} of the page has no usable `id` (string) or `date_create` (integer): {e}"),
        })?;
        entries.push(AuditEntry {
            id: head.id,
            date_create: head.date_create,
            raw,
        });
    }
    let next_cursor = wire
        .response_metadata
        .and_then(|m| m.next_cursor)
        .filter(|c| !c.is_empty());
    Ok(AuditPage {
        entries,
        next_cursor,
    })
}

/// What one page means for a window: which entries to emit, and the window's state once they
/// are delivered.
#[derive(Debug)]
pub struct Absorbed {
    pub emit: Vec<usize>,
    /// Entries skipped as already delivered (the inclusive boundary, a repeated page).
    pub duplicates: u32,
    /// Entries outside the window, which Slack should not have sent.
    pub out_of_window: u32,
    pub next: AuditWindow,
}

impl AuditWindow {
    /// The `latest` to send when starting (or restarting) without a cursor.
    pub fn resume_latest(&self) -> i64 {
        self.boundary.unwrap_or(self.latest)
    }

    /// Takes one page. Does not change `self`: the caller commits `next` only after the sink
    /// accepted the emitted entries.
    pub fn absorb(&self, entries: &[AuditEntry<'_>]) -> Absorbed {
        let mut emit = Vec::with_capacity(entries.len());
        let (mut duplicates, mut out_of_window) = (0, 0);
        let mut page_min: Option<i64> = None;
        for (i, e) in entries.iter().enumerate() {
            let t = e.date_create;
            if t < self.oldest || t > self.latest {
                out_of_window += 1;
                continue;
            }
            page_min = Some(page_min.map_or(t, |m| m.min(t)));
            let delivered = match self.boundary {
                Some(b) => t > b || (t == b && self.boundary_ids.contains(e.id.as_ref())),
                None => false,
            };
            if delivered {
                duplicates += 1;
            } else {
                emit.push(i);
            }
        }
        let mut next = self.clone();
        if let Some(m) = page_min {
            match self.boundary {
                Some(b) if m > b => {} // nothing older than what was delivered: no progress
                Some(b) if m == b => {
                    next.boundary_ids
                        .extend(emit.iter().map(|&i| entries[i].id.to_string()));
                }
                _ => {
                    next.boundary = Some(m);
                    next.boundary_ids = emit
                        .iter()
                        .filter(|&&i| entries[i].date_create == m)
                        .map(|&i| entries[i].id.to_string())
                        .collect();
                }
            }
        }
        Absorbed {
            emit,
            duplicates,
            out_of_window,
            next,
        }
    }
}

/// Builds the `/logs` URL for one page.
pub fn page_url(
    config: &Config,
    actions: &str,
    window: &AuditWindow,
    cursor: Option<&str>,
) -> String {
    let oldest = window.oldest.to_string();
    let latest = window.resume_latest().to_string();
    let limit = config.audit_page_size.to_string();
    let mut params: Vec<(&str, &str)> =
        vec![("oldest", &oldest), ("latest", &latest), ("limit", &limit)];
    if !actions.is_empty() {
        params.push(("action", actions));
    }
    if let Some(a) = &config.audit_actor {
        params.push(("actor", a));
    }
    if let Some(e) = &config.audit_entity {
        params.push(("entity", e));
    }
    if let Some(c) = cursor {
        params.push(("cursor", c));
    }
    with_query(&format!("{}/logs", config.slack_audit_base), &params)
}

/// `audit_actions` in groups of at most 30, comma-joined; one empty group when unfiltered.
pub fn action_groups(config: &Config) -> Vec<String> {
    let mut unique: Vec<&str> = Vec::new();
    for a in &config.audit_actions {
        if !unique.contains(&a.as_str()) {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return vec![String::new()];
    }
    unique
        .chunks(MAX_ACTIONS_PER_REQUEST)
        .map(|c| c.join(","))
        .collect()
}

/// Walks windows until caught up, out of budget, or failed. The checkpoint is saved after every
/// page the sink accepted; it never moves past what the sink accepted.
pub fn walk(
    config: &Config,
    token: &str,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AuditCheckpoint,
    stats: &mut WalkStats,
) -> WalkEnd {
    let now = fetcher.clock.now_unix();
    loop {
        let window = match &checkpoint.window {
            Some(w) => w.clone(),
            None => match plan_window(
                checkpoint.watermark,
                now,
                config.audit_lag_seconds,
                config.audit_window_seconds,
            ) {
                Some(w) => w,
                None => return WalkEnd::CaughtUp,
            },
        };
        let groups = action_groups(config);
        // A filter change can leave an index past the new groups: that window is then done.
        let actions = groups.get(checkpoint.group).cloned().unwrap_or_default();
        let last_group = checkpoint.group + 1 >= groups.len();
        if let Err(end) = walk_window(
            config, token, &actions, last_group, fetcher, io, checkpoint, window, stats,
        ) {
            return end;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn walk_window(
    config: &Config,
    token: &str,
    actions: &str,
    last_group: bool,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AuditCheckpoint,
    mut window: AuditWindow,
    stats: &mut WalkStats,
) -> Result<(), WalkEnd> {
    let mut cursor: Option<String> = None;
    let mut restarts = 0;
    let records_before = stats.records;
    // Cursors handed out in this window: one that comes back would page in a circle.
    let mut cursors_seen: HashSet<String> = HashSet::new();
    loop {
        let url = page_url(config, actions, &window, cursor.as_deref());
        let resp = match fetcher.get(&url, token) {
            Ok(r) => r,
            Err(FetchError::Slack(SlackError::InvalidCursor))
                if cursor.is_some() && restarts < MAX_CURSOR_RESTARTS =>
            {
                // Cursors expire; the checkpoint knows where to pick up without one.
                restarts += 1;
                (io.log)("audit: cursor rejected (invalid_cursor); resuming the window from the checkpoint");
                cursor = None;
                continue;
            }
            Err(e) => return Err(fetch_end(e, "the audit API")),
        };
        let page = parse_page(&resp.body).map_err(|e| failed(&e))?;
        stats.pages += 1;
        let absorbed = window.absorb(&page.entries);
        stats.duplicates += u64::from(absorbed.duplicates);
        stats.out_of_window += u64::from(absorbed.out_of_window);
        let mut writer = RecordWriter::new("audit", SOURCE, io.collected_at, config.output_format);
        for &i in &absorbed.emit {
            let e = &page.entries[i];
            writer.push(&e.id, None, e.date_create, e.raw.get());
        }
        io.deliver(&mut writer, stats)?;
        window = absorbed.next;
        let next_cursor = page.next_cursor;
        if next_cursor.is_none() && last_group {
            checkpoint.watermark = window.latest;
            checkpoint.window = None;
            checkpoint.group = 0;
        } else if next_cursor.is_none() {
            // This group drained the window; the next group walks it from the top.
            checkpoint.group += 1;
            checkpoint.window = Some(AuditWindow {
                boundary: None,
                boundary_ids: BTreeSet::new(),
                ..window.clone()
            });
        } else {
            checkpoint.window = Some(window.clone());
        }
        checkpoint.filters = filters_key(config);
        io.save(CHECKPOINT_KEY, &checkpoint.encode())?;
        match next_cursor {
            Some(c) if !cursors_seen.insert(c.clone()) => {
                return Err(WalkEnd::Failed {
                    code: "cursor_loop".into(),
                    message: format!(
                        "Slack returned a cursor it had already returned in this window ({} .. {}); stopped to avoid paging in a \
                         circle. What was delivered is checkpointed; the next pass resumes without the cursor",
                        format_rfc3339(window.oldest),
                        format_rfc3339(window.latest)
                    ),
                });
            }
            Some(c) => cursor = Some(c),
            None => {
                (io.log)(&format!(
                    "audit: window {} .. {} complete, {} records",
                    format_rfc3339(window.oldest),
                    format_rfc3339(window.latest),
                    stats.records - records_before
                ));
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
