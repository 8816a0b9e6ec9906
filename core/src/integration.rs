//! The integration stream: `team.integrationLogs`, which has no time filter, no cursor, no ids
//! and an undocumented order (Q33–Q38).
//!
//! A walk reads pages `1..pages` with `count` entries each. An entry's record id is a SHA-256
//! content id ([`content_id`]) over its workspace and its canonical JSON (`date` and `service_id`
//! normalised to strings, keys sorted). Slack can log byte-identical entries (a script that
//! re-adds an app twice in one second): the n-th copy (n ≥ 1) gets its own id ([`copy_id`]), so
//! each is a record. The checkpoint holds a watermark `W` (the newest `date` delivered) and, for
//! the dates within [`OVERLAP`] seconds of it, how many copies of each entry were delivered, by
//! entry key (the first 64 bits of its id). An entry is new when its date is at least
//! `W - OVERLAP` and the walk sees more copies of it than were delivered, so an entry Slack
//! writes a little out of order (older than one already delivered) is still collected, and a
//! walk that delivered two copies and later sees three delivers exactly the third.
//!
//! A walk in progress remembers the page to continue at and how many copies of each entry it has
//! seen. New entries only ever push older ones to later pages, so continuing at a page number can
//! show an entry again, but never skip one. Whether an entry at the top of a page was shown again
//! or is another copy of it is told by the pages' `paging.total`: unchanged, nothing moved; grown
//! by `d`, at most the first `d` entries are ones shown before. When such an entry is one the walk
//! has seen, the previous page is read once more to measure how far its entries moved; when that
//! cannot tell (the listing changed again, or the page is all copies), the walk counts no more
//! copies there than it can prove, so it never invents a record, and notes the entry as unsure:
//! later walks read down to it, whatever its date, and deliver a missing copy as soon as one
//! counts it for sure (they give up a day below the watermark).
//!
//! While every page has come newest first, what a walk delivered is the date range `[B, T]` (its
//! oldest and newest dates) and only the counts at `B`, within the overlap of `T` and of the page
//! read last (the next page may show its entries again, and may be the one that shows the order
//! broken, after which the range vouches for nothing) are kept; the walk stops early at a page entirely older than `W - OVERLAP` (and than any unsure entry), once
//! some page has shown dates falling. When the data shows another order, the walk keeps every
//! count and reads to the last page. Entries written more than
//! `OVERLAP` seconds out of order can be missed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::config::Config;
use crate::env::MAX_VALUE_BYTES;
use crate::fetch::Fetcher;
use crate::record::{content_id, RecordWriter};
use crate::slack_error::SlackError;
use crate::url::with_query;
use crate::walk::{failed, fetch_end, StreamIo, WalkEnd, WalkStats};
use crate::web_api::parse_envelope;

pub const SOURCE: &str = "team.integrationLogs";
/// Slack's classic paging cap (Q38: assumed as for accessLogs).
const MAX_PAGE: u32 = 100;
/// How far out of date order Slack may write entries and still have them collected.
pub const OVERLAP: i64 = 300;

/// How far past the pass's clock an entry's `date` may be and still move the watermark.
pub const MAX_FUTURE_SKEW: i64 = 3600;

/// How far below the watermark entries whose copies are unsure are still counted again. A walk
/// counts them for sure whenever the listing holds still while it crosses them, so this only
/// bounds how deep walks read for an answer that is not coming (a Slack that sends no
/// `paging.total`).
const UNSURE_HORIZON: i64 = 86_400;

/// Where the integration checkpoint of a workspace (or of an org-wide walk, `None`) lives.
pub fn checkpoint_key(team_id: Option<&str>) -> String {
    crate::keys::checkpoint_key(crate::Stream::Integration, team_id)
}

/// Copies of entries by date: date → entry key ([`IntegrationEntry::key`]) → how many.
pub type Copies = BTreeMap<i64, BTreeMap<String, u32>>;

/// The durable state of the integration stream for one workspace.
///
/// Format 2 (this one) counts copies under SHA-256 entry keys. Format 1 kept sets of FNV-1a
/// hashes (`recent`, `walk.delivered`); they are ignored on load, since no new id can match them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationCheckpoint {
    pub v: u32,
    /// The newest date delivered.
    pub watermark: i64,
    /// Where the stream started: nothing older is ever collected.
    pub start: i64,
    /// Copies delivered at dates within `OVERLAP` of the watermark.
    #[serde(default)]
    pub recent_copies: Copies,
    /// Entries a walk could not count for sure (a page boundary fell among their copies while
    /// Slack added entries): the copies delivered, kept whatever their date until a walk counts
    /// them for sure and delivers any copy missed.
    #[serde(default)]
    pub unsure_copies: Copies,
    /// Set once the data showed entries not sorted newest first: no early stop from then on.
    #[serde(default)]
    pub unsorted: bool,
    /// Set once a page showed dates falling (and none so far rising): only then may a walk stop
    /// early. Pages whose entries share one date (copies, bursts) show no order at all, and an
    /// oldest-first listing would otherwise end the walk at its oldest page.
    #[serde(default)]
    pub newest_first: bool,
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
    /// Copies this walk has seen (delivered now or before), by date: only at `newest` and
    /// `oldest` while the order holds.
    #[serde(default)]
    pub seen: Copies,
    /// The entry keys of the page read last, in order, and its `paging.total`: what tells an
    /// entry shown again from another copy of it.
    #[serde(default)]
    pub last_page: Vec<String>,
    #[serde(default)]
    pub last_total: Option<u64>,
    /// How many positions past the end of the last page entries this walk has seen may have been
    /// pushed (by more new entries than a page between two reads); `None`: unknown.
    #[serde(default)]
    pub pushed_past: Option<u64>,
    /// Entries this walk could not count for sure (see `unsure_copies`).
    #[serde(default)]
    pub unsure: BTreeMap<i64, BTreeSet<String>>,
}

impl Checkpoint for IntegrationCheckpoint {
    const VERSION: u32 = 2;

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
            recent_copies: Copies::new(),
            unsure_copies: Copies::new(),
            unsorted: false,
            newest_first: false,
            walk: None,
        }
    }

    /// Whether the entry counts as delivered by its date alone: before the start, below the
    /// watermark's overlap, or (while sorted) inside the walk's delivered range; never while its
    /// copies are unsure.
    fn date_delivered(&self, walk: &WalkProgress, date: i64, key: &str) -> bool {
        if count(&self.unsure_copies, date, key) > 0 {
            return false;
        }
        if date < self.start || date < self.watermark.saturating_sub(OVERLAP) {
            return true;
        }
        // While sorted, everything between the walk's oldest date and the overlap below its
        // newest was delivered (counts are kept for the rest).
        !self.unsorted
            && matches!((walk.oldest, walk.newest), (Some(o), Some(n)) if o < date && date < n.saturating_sub(OVERLAP))
    }

    /// Copies of an entry delivered by earlier walks.
    fn delivered_copies(&self, date: i64, key: &str) -> u32 {
        count(&self.recent_copies, date, key).max(count(&self.unsure_copies, date, key))
    }

    /// Below this every entry counts as delivered, unless its copies are unsure.
    fn floor(&self) -> i64 {
        let overlap = self.watermark.saturating_sub(OVERLAP);
        self.unsure_copies
            .keys()
            .next()
            .map_or(overlap, |d| overlap.min(*d))
    }
}

fn count(copies: &Copies, date: i64, key: &str) -> u32 {
    copies
        .get(&date)
        .and_then(|m| m.get(key))
        .copied()
        .unwrap_or(0)
}

impl WalkProgress {
    fn start() -> WalkProgress {
        WalkProgress {
            next_page: 1,
            pushed_past: Some(0),
            ..WalkProgress::default()
        }
    }
}

/// One integration log entry: its raw bytes, date and record id.
#[derive(Debug)]
pub struct IntegrationEntry<'a> {
    pub raw: &'a RawValue,
    pub date: i64,
    /// The record id of the entry's first copy ([`canonical`]).
    pub id: String,
}

impl IntegrationEntry<'_> {
    /// What a checkpoint counts copies under: the first 64 bits (16 hex digits) of the id,
    /// compact, and still a 2^64 second-preimage search away from a crafted collision.
    pub fn key(&self) -> &str {
        &self.id[..16]
    }
}

/// A parsed page.
#[derive(Debug)]
pub struct IntegrationPage<'a> {
    pub entries: Vec<IntegrationEntry<'a>>,
    /// `paging.pages`, when Slack sent it.
    pub pages: Option<u32>,
    /// `paging.total` (entries in the whole listing), when Slack sent a non-zero one.
    pub total: Option<u64>,
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
        let (date, id) = canonical(r.get(), team_id).map_err(|detail| SlackError::Malformed {
            status: 200,
            detail: format!("integration log entry {i}: {detail}"),
        })?;
        entries.push(IntegrationEntry { raw: r, date, id });
    }
    Ok(IntegrationPage {
        entries,
        pages: envelope.paging.map(|p| p.pages),
        total: envelope.paging.map(|p| p.total).filter(|t| *t > 0),
    })
}

/// The entry's date and its record id: a SHA-256 content id over the workspace and the entry's
/// canonical form (sorted keys; `date`, `service_id` and `app_id` as strings, since Slack sends
/// them either way, Q34). The workspace is part of it because two workspaces can log identical
/// entries. This is the id of the entry's first copy; see [`copy_id`] for the others.
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
        content_id(&[team_id.unwrap_or("").as_bytes(), text.as_bytes()]),
    ))
}

/// The record id of copy `copy` of an entry whose first copy has the id `first` (copy 0 is
/// `first` itself): byte-identical entries are separate records. Derived from `first` and the
/// number, so it can never equal another entry's id (those hash a JSON object, not an id).
pub fn copy_id(first: &str, copy: u32) -> String {
    if copy == 0 {
        first.to_string()
    } else {
        content_id(&[first.as_bytes(), copy.to_string().as_bytes()])
    }
}

/// The record ids of a whole listing's entries, with their dates, in order: what the collector
/// delivers for them (the n-th identical copy numbered in order). A ground truth for tests and
/// for tools that check a delivery against what Slack holds.
pub fn listing_ids<'a>(
    entries: impl IntoIterator<Item = &'a str>,
    team_id: Option<&str>,
) -> Result<Vec<(i64, String)>, String> {
    let mut copies: BTreeMap<String, u32> = BTreeMap::new();
    let mut out = Vec::new();
    for raw in entries {
        let (date, first) = canonical(raw, team_id)?;
        let n = copies.entry(first.clone()).or_insert(0);
        out.push((date, copy_id(&first, *n)));
        *n = n.saturating_add(1);
    }
    Ok(out)
}

/// How a page's first entries relate to what the walk saw before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lineup {
    /// The first `n` entries are the previous page's last ones, shown again (pushed down by
    /// entries that arrived in between); the rest the walk has not seen.
    Reshown(usize),
    /// The first `n` entries may be ones the walk saw: of each, it counts no more copies than it
    /// saw or than these `n` show. The rest the walk has not seen.
    Unsure(usize),
}

/// How far from the top of the next page entries the walk saw may reach, from the growth of
/// `paging.total` since the page before (everything Slack added may have gone in above them);
/// `None`: unknown (no total, or it shrank).
fn seen_reach(progress: &WalkProgress, total: Option<u64>) -> Option<u64> {
    if progress.last_page.is_empty() || progress.seen.is_empty() {
        return Some(0);
    }
    let grown = total?.checked_sub(progress.last_total?)?;
    Some(progress.pushed_past?.saturating_add(grown))
}

/// How far the previous page's entries moved, from `reread`, a fresh read of that page: the one
/// shift `s` up to `max` (what the listing grew by) at which `reread` is `last` moved down by `s`
/// and `current`, the page after, starts with the `s` entries pushed off `last`. `None` when no
/// shift or several fit (entries arrived inside the page, or it is all copies of one entry), or
/// when `max` allows a shift too large to show in `reread` at all.
fn measure_shift(last: &[String], reread: &[&str], current: &[&str], max: u64) -> Option<usize> {
    let measurable = reread.len().min(last.len());
    if usize::try_from(max).map_or(true, |m| m >= measurable) {
        return None;
    }
    let fits = |s: usize| {
        let kept = reread[s..].iter().zip(last).all(|(a, b)| *a == b);
        let pushed = &last[last.len() - s..];
        kept && current.iter().zip(pushed).all(|(a, b)| *a == b)
    };
    let mut found = None;
    // `max` is below both lengths: something of `last` is compared, and `s` entries were pushed.
    for s in (0..=max as usize).filter(|s| fits(*s)) {
        if found.is_some() {
            return None;
        }
        found = Some(s);
    }
    found
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
    if checkpoint.v < <IntegrationCheckpoint as Checkpoint>::VERSION {
        // Its counts were dropped on load (they were FNV-1a sets); saved as format 2 from here.
        (io.log)(&format!(
            "integration: the checkpoint is of format 1, whose record ids were 16-digit FNV-1a hashes; ids are now \
             32-digit SHA-256 content ids (README: Records). Entries within {OVERLAP} s of the watermark, and those of the \
             walk in progress, are delivered once more, under their new ids"
        ));
        checkpoint.v = <IntegrationCheckpoint as Checkpoint>::VERSION;
    }
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
        let mut progress = next.walk.take().unwrap_or_else(WalkProgress::start);
        // Order is judged within one response only, over every entry: across pages, entries
        // arriving mid-walk shift pages and look like disorder when they are not.
        let rising = page.entries.windows(2).any(|w| w[0].date < w[1].date);
        if !next.unsorted && rising {
            next.unsorted = true;
            (io.log)(
                "integration: entries are not sorted newest first; reading every page from now on",
            );
        }
        next.newest_first |= page.entries.windows(2).any(|w| w[0].date > w[1].date);
        // Unsure copies, older, keep the walk going down to them.
        let floor = next.floor();
        let all_older = !page.entries.is_empty() && page.entries.iter().all(|e| e.date < floor);
        let keys: Vec<&str> = page.entries.iter().map(IntegrationEntry::key).collect();

        let reach = seen_reach(&progress, page.total);
        let unsure = reach.map_or(keys.len(), |r| {
            usize::try_from(r).unwrap_or(usize::MAX).min(keys.len())
        });
        let mut lineup = Lineup::Unsure(unsure);
        let seen_at_top = page.entries[..unsure].iter().any(|e| {
            !next.date_delivered(&progress, e.date, e.key())
                && count(&progress.seen, e.date, e.key()) > 0
        });
        if seen_at_top && page_no > 1 && progress.pushed_past == Some(0) && page.total.is_some() {
            // Shown again, or another copy? Read the previous page again and see how far it moved.
            let before = match fetcher.get(&page_url(config, team_id, page_no - 1), token) {
                Ok(r) => r,
                Err(e) => return fetch_end(e, "team.integrationLogs"),
            };
            let before = match parse_page(&before.body, team_id) {
                Ok(p) => p,
                Err(e) => return failed(&e),
            };
            stats.pages += 1;
            // Only if nothing changed between the two reads do they show one listing.
            if before.total == page.total {
                let reread: Vec<&str> = before.entries.iter().map(IntegrationEntry::key).collect();
                let max = reach.unwrap_or(u64::MAX);
                if let Some(shift) = measure_shift(&progress.last_page, &reread, &keys, max) {
                    lineup = Lineup::Reshown(shift.min(keys.len()));
                }
            }
        }

        let mut writer =
            RecordWriter::new("integration", SOURCE, io.collected_at, config.output_format);
        // Per key, how many copies the unsure entries showed so far.
        let mut shown: BTreeMap<&str, u32> = BTreeMap::new();
        for (i, e) in page.entries.iter().enumerate() {
            if next.date_delivered(&progress, e.date, e.key()) {
                stats.duplicates += 1;
                continue;
            }
            let copy = match lineup {
                Lineup::Reshown(n) if i < n => {
                    stats.duplicates += 1;
                    continue;
                }
                Lineup::Unsure(n) if i < n => {
                    let nth = shown.entry(e.key()).or_insert(0);
                    let copy = *nth;
                    *nth = nth.saturating_add(1);
                    if copy < count(&progress.seen, e.date, e.key()) {
                        // Seen before, or another copy: it cannot tell, so a later walk counts again.
                        progress
                            .unsure
                            .entry(e.date)
                            .or_default()
                            .insert(e.key().to_string());
                        stats.duplicates += 1;
                        continue;
                    }
                    copy
                }
                _ => count(&progress.seen, e.date, e.key()),
            };
            progress
                .seen
                .entry(e.date)
                .or_default()
                .insert(e.key().to_string(), copy.saturating_add(1));
            if copy < next.delivered_copies(e.date, e.key()) {
                stats.duplicates += 1;
                continue;
            }
            // Sorted, yet newer than anything this walk read: it arrived after the walk passed
            // page 1 and was pushed down. Deliver it and count it, but leave the walk's date
            // range alone: widening it would count the unread entries between as delivered.
            let arrival = !next.unsorted && progress.newest.is_some_and(|n| e.date > n);
            // Dated beyond now (a broken clock at Slack, or hostile input): deliver it, but never
            // let it carry the watermark into the future, where every real entry would look old.
            let future = e.date > io.collected_at.saturating_add(MAX_FUTURE_SKEW);
            if future {
                (io.log)(&format!("integration: an entry is dated {} s in the future; delivered, but the watermark ignores it", e.date.saturating_sub(io.collected_at)));
            }
            writer.push(&copy_id(&e.id, copy), team_id, e.date, e.raw.get());
            if !(arrival || future) {
                progress.newest = Some(progress.newest.map_or(e.date, |n| n.max(e.date)));
                progress.oldest = Some(progress.oldest.map_or(e.date, |o| o.min(e.date)));
            }
        }
        if !next.unsorted {
            // Sorted: only the oldest date and the overlap below the newest need their counts,
            // and the dates of this page: the next page may show its entries again, and if that
            // page shows the order broken, the date range no longer vouches for them.
            let (o, n) = (progress.oldest, progress.newest.unwrap_or(i64::MIN));
            let on_page: BTreeSet<i64> = page.entries.iter().map(|e| e.date).collect();
            progress.seen.retain(|d, _| {
                Some(*d) == o
                    || *d >= n.saturating_sub(OVERLAP)
                    || on_page.contains(d)
                    || next.unsure_copies.contains_key(d)
                    || progress.unsure.contains_key(d)
            });
        }

        let last_page = page.entries.is_empty()
            || page.pages.is_some_and(|p| page_no >= p)
            || page_no >= MAX_PAGE
            || (all_older && !next.unsorted && next.newest_first);
        if last_page {
            if page_no >= MAX_PAGE && page.pages.is_some_and(|p| p > MAX_PAGE) {
                (io.log)("integration: Slack serves at most 100 pages; older entries beyond them cannot be read");
            }
            next.watermark = next.watermark.max(progress.newest.unwrap_or(i64::MIN));
            let floor = next.watermark.saturating_sub(OVERLAP);
            let seen = std::mem::take(&mut progress.seen);
            let unsure = std::mem::take(&mut progress.unsure);
            // Copies this walk counted for sure are settled; the rest stay unsure, with what is
            // delivered of them now.
            let counted = |d: &i64, k: &str| {
                count(&seen, *d, k) > 0 && !unsure.get(d).is_some_and(|u| u.contains(k))
            };
            next.unsure_copies.retain(|d, keys| {
                keys.retain(|k, _| !counted(d, k));
                !keys.is_empty()
            });
            for (d, keys) in &unsure {
                for k in keys {
                    let n = count(&seen, *d, k).max(next.delivered_copies(*d, k));
                    next.unsure_copies
                        .entry(*d)
                        .or_default()
                        .insert(k.clone(), n);
                }
            }
            for (d, copies) in seen {
                let delivered = next.recent_copies.entry(d).or_default();
                for (k, n) in copies {
                    let m = delivered.entry(k).or_insert(0);
                    *m = (*m).max(n);
                }
            }
            next.recent_copies.retain(|d, _| *d >= floor);
            let horizon = next.watermark.saturating_sub(UNSURE_HORIZON);
            let given_up: usize = next
                .unsure_copies
                .range(..horizon)
                .map(|(_, k)| k.len())
                .sum();
            if given_up > 0 {
                (io.log)(&format!("integration: {given_up} entries with identical copies could not be counted for sure within a day; a copy of them may be missing"));
                next.unsure_copies.retain(|d, _| *d >= horizon);
            }
            next.walk = None;
        } else {
            // Where entries this walk saw may be now, past the end of this page.
            let len = keys.len() as u64;
            progress.pushed_past = match lineup {
                Lineup::Reshown(shift) => Some((shift as u64).saturating_sub(len)),
                Lineup::Unsure(_) => reach.map(|r| r.saturating_sub(len)),
            };
            progress.next_page = page_no + 1;
            progress.last_page = keys.iter().map(|k| k.to_string()).collect();
            progress.last_total = page.total;
            next.walk = Some(progress);
        }
        let encoded = next.encode();
        if encoded.len() > MAX_VALUE_BYTES {
            return WalkEnd::Failed {
                code: "integration_walk_too_large".into(),
                message: format!(
                    "team.integrationLogs entries are not sorted newest first (or too many share the last {OVERLAP} s), and what this \
                     walk must remember to deliver each entry once is {} bytes, more than a checkpoint may hold ({MAX_VALUE_BYTES}); \
                     nothing was lost, but the stream cannot go on. Please report this.",
                    encoded.len()
                ),
            };
        }
        if let Err(end) = io.deliver(&mut writer, stats) {
            return end;
        }
        if let Err(end) = io.save(&key, &encoded) {
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
