//! The integration stream: `team.integrationLogs`, which has no time filter, no cursor, no ids
//! and an undocumented order (Q33–Q38).
//!
//! A walk reads pages `1..pages` with `count` entries each. Entries are identified by a hash of
//! their canonical JSON (`date` and `service_id` normalised to strings, keys sorted), which is also
//! the record id. The checkpoint holds a watermark `W` (the newest `date` delivered) and the
//! hashes delivered within [`OVERLAP`] seconds of it, so an entry Slack writes a little out of
//! order (older than one already delivered) is still collected: an entry is new when its date is
//! at least `W - OVERLAP` and its hash unknown.
//!
//! A walk in progress remembers the page to continue at and what it delivered. New entries only
//! ever push older ones to later pages, so continuing at a page number can show an entry twice
//! (skipped by hash) but never skip one. While every page has come newest first, what a walk
//! delivered is the date range `[B, T]` (its oldest and newest dates) and only the hashes at `B`
//! and within the overlap of `T` are kept; the walk stops early at a page entirely older than
//! `W - OVERLAP`. When the data shows another order, the walk keeps every hash and reads to the
//! last page. Entries written more than `OVERLAP` seconds out of order can be missed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::config::Config;
use crate::fetch::Fetcher;
use crate::record::{fnv1a64, RecordWriter};
use crate::slack_error::SlackError;
use crate::url::with_query;
use crate::walk::{failed, fetch_end, StreamIo, WalkEnd, WalkStats};
use crate::web_api::parse_envelope;

pub const SOURCE: &str = "team.integrationLogs";
/// Slack's classic paging cap (Q38: assumed as for accessLogs).
const MAX_PAGE: u32 = 100;
/// Hashes kept by a walk whose order is unknown; beyond this the checkpoint would outgrow
/// portable key-value limits (400 KB).
const MAX_TRACKED: usize = 15_000;
/// How far out of date order Slack may write entries and still have them collected.
pub const OVERLAP: i64 = 300;

/// How far past the pass's clock an entry's `date` may be and still move the watermark.
pub const MAX_FUTURE_SKEW: i64 = 3600;

pub fn checkpoint_key(team_id: Option<&str>) -> String {
    format!(
        "slack-logs/v1/integration/{}/checkpoint",
        team_id.unwrap_or("org")
    )
}

/// The durable state of the integration stream for one workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationCheckpoint {
    pub v: u32,
    /// The newest date delivered.
    pub watermark: i64,
    /// Where the stream started: nothing older is ever collected.
    pub start: i64,
    /// Hashes delivered at dates within `OVERLAP` of the watermark.
    #[serde(default)]
    pub recent: BTreeMap<i64, BTreeSet<String>>,
    /// Set once the data showed entries not sorted newest first: no early stop from then on.
    #[serde(default)]
    pub unsorted: bool,
    #[serde(default)]
    pub walk: Option<WalkProgress>,
}

/// A walk that a pass left unfinished.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkProgress {
    /// The page to read next.
    pub next_page: u32,
    /// The newest and oldest dates delivered by this walk.
    pub newest: Option<i64>,
    pub oldest: Option<i64>,
    /// Delivered hashes by date: only at `newest` and `oldest` while the order holds.
    pub delivered: BTreeMap<i64, BTreeSet<String>>,
}

impl Checkpoint for IntegrationCheckpoint {
    const VERSION: u32 = 1;

    fn watermark(&self) -> i64 {
        self.watermark
    }
}

impl IntegrationCheckpoint {
    /// From `backfill_start_time`, else from now (no history).
    pub fn initial(config: &Config, now: i64) -> IntegrationCheckpoint {
        let start = config.backfill_start_time.unwrap_or(now);
        IntegrationCheckpoint {
            v: <IntegrationCheckpoint as Checkpoint>::VERSION,
            watermark: start,
            start,
            recent: BTreeMap::new(),
            unsorted: false,
            walk: None,
        }
    }

    /// Whether an entry was delivered, by the watermark or by the walk in progress.
    fn delivered(&self, walk: &WalkProgress, date: i64, hash: &str) -> bool {
        if date < self.start || date < self.watermark - OVERLAP {
            return true;
        }
        let known =
            |m: &BTreeMap<i64, BTreeSet<String>>| m.get(&date).is_some_and(|s| s.contains(hash));
        if known(&self.recent) || known(&walk.delivered) {
            return true;
        }
        // While sorted, everything between the walk's oldest date and the overlap below its
        // newest was delivered (hashes are kept for the rest).
        !self.unsorted
            && matches!((walk.oldest, walk.newest), (Some(o), Some(n)) if o < date && date < n - OVERLAP)
    }
}

/// One integration log entry: its raw bytes, date and content hash.
#[derive(Debug)]
pub struct IntegrationEntry<'a> {
    pub raw: &'a RawValue,
    pub date: i64,
    pub hash: String,
}

/// A parsed page.
#[derive(Debug)]
pub struct IntegrationPage<'a> {
    pub entries: Vec<IntegrationEntry<'a>>,
    /// `paging.pages`, when Slack sent it.
    pub pages: Option<u32>,
}

/// Parses a 2xx `team.integrationLogs` body.
pub fn parse_page<'a>(
    body: &'a [u8],
    team_id: Option<&str>,
) -> Result<IntegrationPage<'a>, SlackError> {
    let envelope = parse_envelope(body)?;
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(borrow, default)]
        logs: Option<Vec<&'a RawValue>>,
    }
    let wire: Wire<'_> = serde_json::from_slice(body).map_err(|e| SlackError::Malformed {
        status: 200,
        detail: format!("`logs` is not a list of entries: {e}"),
    })?;
    let Some(raw) = wire.logs else {
        return Err(SlackError::Malformed {
            status: 200,
            detail: "an `ok` body without `logs`".into(),
        });
    };
    let mut entries = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let (date, hash) = canonical(r.get(), team_id).map_err(|detail| SlackError::Malformed {
            status: 200,
            detail: format!("integration log entry {i}: {detail}"),
        })?;
        entries.push(IntegrationEntry { raw: r, date, hash });
    }
    Ok(IntegrationPage {
        entries,
        pages: envelope.paging.map(|p| p.pages),
    })
}

/// The entry's date and its record id: a hash of the workspace and the entry's canonical form
/// (sorted keys; `date`, `service_id` and `app_id` as strings, since Slack sends them either way,
/// Q34). The workspace is part of it because two workspaces can log identical entries.
pub fn canonical(raw: &str, team_id: Option<&str>) -> Result<(i64, String), String> {
    let mut v: serde_json::Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let obj = v.as_object_mut().ok_or("not a JSON object")?;
    let date = match obj.get("date") {
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("`date` {s:?} is not unix seconds"))?,
        Some(serde_json::Value::Number(n)) => {
            n.as_i64().ok_or("`date` is not whole unix seconds")?
        }
        _ => return Err("no `date` (string or integer)".into()),
    };
    for key in ["date", "service_id", "app_id"] {
        if let Some(serde_json::Value::Number(n)) = obj.get(key) {
            let s = n.to_string();
            obj.insert(key.to_string(), serde_json::Value::String(s));
        }
    }
    // serde_json's map is ordered by key, so this serialisation is canonical.
    let text = serde_json::to_string(&v).map_err(|e| e.to_string())?;
    Ok((
        date,
        format!(
            "{:016x}",
            fnv1a64(&[team_id.unwrap_or("").as_bytes(), text.as_bytes()])
        ),
    ))
}

fn page_url(config: &Config, team_id: Option<&str>, page: u32) -> String {
    let count = config.integration_page_size.to_string();
    let page = page.to_string();
    let mut params: Vec<(&str, &str)> = vec![("count", &count), ("page", &page)];
    if let Some(t) = team_id {
        params.push(("team_id", t));
    }
    with_query(
        &format!("{}/team.integrationLogs", config.slack_api_base),
        &params,
    )
}

/// Walks until the watermark is reached, the last page is read, the budget ends, or an error.
pub fn walk(
    config: &Config,
    team_id: Option<&str>,
    token: &str,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut IntegrationCheckpoint,
    stats: &mut WalkStats,
) -> WalkEnd {
    let key = checkpoint_key(team_id);
    loop {
        let page_no = checkpoint.walk.as_ref().map_or(1, |w| w.next_page);
        let resp = match fetcher.get(&page_url(config, team_id, page_no), token) {
            Ok(r) => r,
            Err(e) => return fetch_end(e, "team.integrationLogs"),
        };
        let page = match parse_page(&resp.body, team_id) {
            Ok(p) => p,
            Err(e) => return failed(&e),
        };
        stats.pages += 1;

        let mut next = checkpoint.clone();
        let mut progress = next.walk.take().unwrap_or(WalkProgress {
            next_page: 1,
            ..WalkProgress::default()
        });
        let mut writer =
            RecordWriter::new("integration", SOURCE, io.collected_at, config.output_format);
        let mut all_older = !page.entries.is_empty();
        let mut previous: Option<i64> = None;
        for e in &page.entries {
            all_older &= e.date < next.watermark - OVERLAP;
            // Order is judged within one response only, over every entry: across pages,
            // entries arriving mid-walk shift pages and look like disorder when they are not.
            if !next.unsorted && previous.is_some_and(|p| e.date > p) {
                next.unsorted = true;
                (io.log)("integration: entries are not sorted newest first; reading every page from now on");
            }
            previous = Some(e.date);
            if next.delivered(&progress, e.date, &e.hash) {
                stats.duplicates += 1;
                continue;
            }
            // Sorted, yet newer than anything this walk read: it arrived after the walk passed
            // page 1 and was pushed down (or the order is about to prove unsorted). Deliver it and
            // keep its hash, but leave the walk's date range alone: widening it would count the
            // unread entries between as delivered.
            let arrival = !next.unsorted && progress.newest.is_some_and(|n| e.date > n);
            // Dated beyond now (a broken clock at Slack, or hostile input): deliver it, but never
            // let it carry the watermark into the future, where every real entry would look old.
            let future = e.date > io.collected_at + MAX_FUTURE_SKEW;
            if future {
                (io.log)(&format!("integration: an entry is dated {} s in the future; delivered, but the watermark ignores it", e.date - io.collected_at));
            }
            let arrival = arrival || future;
            writer.push(&e.hash, team_id, e.date, e.raw.get());
            progress
                .delivered
                .entry(e.date)
                .or_default()
                .insert(e.hash.clone());
            if !arrival {
                progress.newest = Some(progress.newest.map_or(e.date, |n| n.max(e.date)));
                progress.oldest = Some(progress.oldest.map_or(e.date, |o| o.min(e.date)));
            }
        }
        if !next.unsorted {
            // Sorted: only the oldest date and the overlap below the newest need their hashes.
            let (o, n) = (progress.oldest, progress.newest.unwrap_or(i64::MIN));
            progress
                .delivered
                .retain(|d, _| Some(*d) == o || *d >= n.saturating_sub(OVERLAP));
        } else if progress
            .delivered
            .values()
            .map(BTreeSet::len)
            .sum::<usize>()
            > MAX_TRACKED
        {
            return WalkEnd::Failed {
                code: "integration_walk_too_large".into(),
                message: format!(
                    "team.integrationLogs entries are not sorted newest first and this walk delivered more than {MAX_TRACKED} entries, \
                     more than a checkpoint can track; nothing was lost, but the stream cannot go on. Please report this."
                ),
            };
        }
        if let Err(end) = io.deliver(&mut writer, stats) {
            return end;
        }

        let last_page = page.entries.is_empty()
            || page.pages.is_some_and(|p| page_no >= p)
            || page_no >= MAX_PAGE
            || (all_older && !next.unsorted);
        if last_page {
            if page_no >= MAX_PAGE && page.pages.is_some_and(|p| p > MAX_PAGE) {
                (io.log)("integration: Slack serves at most 100 pages; older entries beyond them cannot be read");
            }
            next.watermark = next.watermark.max(progress.newest.unwrap_or(i64::MIN));
            let floor = next.watermark - OVERLAP;
            for (d, hashes) in std::mem::take(&mut progress.delivered) {
                next.recent.entry(d).or_default().extend(hashes);
            }
            next.recent.retain(|d, _| *d >= floor);
            next.walk = None;
        } else {
            progress.next_page = page_no + 1;
            next.walk = Some(progress);
        }
        if let Err(end) = io.save(&key, &next.encode()) {
            return end;
        }
        *checkpoint = next;
        if last_page {
            return WalkEnd::CaughtUp;
        }
    }
}

#[cfg(test)]
mod tests;
