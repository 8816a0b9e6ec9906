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

use ledger::{Ledger, LedgerIndex};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::config::{format_rfc3339, Config, AUDIT_EPOCH};
use crate::fetch::{settled, FetchError, Fetcher};
use crate::record::RecordWriter;
use crate::slack_error::{describe_body, SlackError};
use crate::url::with_query;
use crate::walk::{failed, fetch_end, StreamIo, WalkEnd, WalkStats};

mod head;
pub mod ledger;

/// Where the audit checkpoint lives in the key-value store.
pub use crate::keys::AUDIT_CHECKPOINT as CHECKPOINT_KEY;
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
    /// Every event with `date_create <= watermark` is delivered (from the stream's start on),
    /// except the ones Slack indexed late, which the look-back re-scan collects.
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
    /// How far each look-back re-read has got (see [`rescan_ages`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rescanned: Vec<RescanTier>,
    /// The look-back re-read in progress, if a pass stopped inside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescan: Option<Rescan>,
    /// Which ledger parts hold the ids delivered recently (see [`ledger`]).
    #[serde(default)]
    pub ledger: LedgerIndex,
    /// Slack's clock minus ours, in seconds, from the `Date` of its last answer (negative: ours
    /// is ahead). Windows never end past Slack's own now minus the lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset: Option<i64>,
}

/// A look-back re-read in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rescan {
    pub window: AuditWindow,
    #[serde(default)]
    pub group: usize,
    /// The tier it belongs to (its `age`).
    #[serde(default)]
    pub age: i64,
}

/// One look-back re-read: every second up to `done` has been read (by the forward walk or a
/// re-read) at least `age` seconds after it, by Slack's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescanTier {
    pub age: i64,
    pub done: i64,
}

/// A closed window `[oldest, latest]` and how far into it delivery got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditWindow {
    pub oldest: i64,
    pub latest: i64,
    /// Every event in `(boundary, latest]` is delivered; at `boundary` and wherever the ledger
    /// covers, exactly those the ledger holds.
    #[serde(default)]
    pub boundary: Option<i64>,
    /// Format 1 kept the ids delivered at `boundary` here, without bound; they move into the
    /// ledger when such a checkpoint is read, and are never written again.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub boundary_ids: BTreeSet<String>,
    /// Slack's time when this window's first page was asked for: everything in it was read at
    /// least `since - date_create` seconds after its second, so the look-back need not read a
    /// second again at an age it already had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}

impl Checkpoint for AuditCheckpoint {
    /// 2: the ledger (bounded, in parts) replaced `boundary_ids`; look-back re-scan; clock offset.
    const VERSION: u32 = 2;

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
            rescanned: Vec::new(),
            rescan: None,
            // Nothing before the start is delivered, so the ledger is complete from there; the
            // look-back never reaches below it.
            ledger: LedgerIndex {
                complete_from: watermark + 1,
                buckets: Default::default(),
            },
            clock_offset: None,
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
        since: None,
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
    /// Entries to deliver, with their ledger digests.
    pub emit: Vec<(usize, u64)>,
    /// Entries skipped as already delivered (the inclusive boundary, a repeated page).
    pub duplicates: u32,
    /// Emitted entries outside the window, which Slack should not have sent (delivered: they
    /// carry ids, and the ledger keeps them from being delivered twice).
    pub out_of_window: u32,
    pub next: AuditWindow,
}

impl AuditWindow {
    /// The `latest` to send when starting (or restarting) without a cursor.
    pub fn resume_latest(&self) -> i64 {
        self.boundary.unwrap_or(self.latest)
    }

    /// Takes one page. Does not change `self` or the ledger: the caller commits `next` and
    /// records the emitted entries only after the sink accepted them.
    ///
    /// `record_from`: from this `date_create` up, every delivered id is (or will be) in the
    /// ledger, so there the ledger decides what was delivered; below it, inside the window and
    /// above the boundary, the walk's order does (Slack pages newest first).
    pub fn absorb(
        &self,
        entries: &[AuditEntry<'_>],
        ledger: &Ledger,
        record_from: i64,
    ) -> Absorbed {
        let mut emit = Vec::with_capacity(entries.len());
        let (mut duplicates, mut out_of_window) = (0, 0);
        let mut page_min: Option<i64> = None;
        // A page that lists one id twice delivers it once.
        let mut on_page: HashSet<u64> = HashSet::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let t = e.date_create;
            let d = ledger::digest(&e.id);
            let in_window = t >= self.oldest && t <= self.latest;
            if in_window {
                page_min = Some(page_min.map_or(t, |m| m.min(t)));
            }
            let by_order = in_window && t < record_from && self.boundary.is_some_and(|b| t > b);
            if by_order || ledger.contains(t, d) || !on_page.insert(d) {
                duplicates += 1;
                continue;
            }
            if !in_window {
                out_of_window += 1;
            }
            emit.push((i, d));
        }
        let mut next = self.clone();
        next.boundary_ids.clear();
        if let Some(m) = page_min {
            if self.boundary.is_none_or(|b| m < b) {
                next.boundary = Some(m);
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

/// Age at which every second is read a first time again (or at `audit_lookback_seconds`, when
/// that is shorter): most of what Slack indexes late shows up within minutes.
pub const FIRST_RESCAN_AGE: i64 = 300;

/// The ages at which the look-back reads each second again: 5 minutes and
/// `audit_lookback_seconds` after it. Re-reading only the seconds that reached an age since the
/// last pass costs each pass two short walks over what is new, not a walk over the whole span:
/// an event is read at most three times however often passes run.
pub fn rescan_ages(lookback: i64) -> Vec<i64> {
    if lookback <= 0 {
        return Vec::new();
    }
    let first = FIRST_RESCAN_AGE.min(lookback);
    if first == lookback {
        vec![lookback]
    } else {
        vec![first, lookback]
    }
}

/// The tiers for `ages`, keeping what the checkpoint knows of each. A new tier starts where
/// seconds are still younger than its age (what is older was read at that age already, or is
/// beyond the look-back), never below where the ledger is complete.
pub fn sync_tiers(
    tiers: &[RescanTier],
    ages: &[i64],
    watermark: i64,
    slack_now: i64,
    complete_from: i64,
) -> Vec<RescanTier> {
    ages.iter()
        .map(|&age| {
            tiers
                .iter()
                .copied()
                .find(|t| t.age == age)
                .unwrap_or(RescanTier {
                    age,
                    done: watermark
                        .min(slack_now.saturating_sub(age))
                        .max(complete_from.saturating_sub(1)),
                })
        })
        .collect()
}

/// The re-read due for `tier` at Slack's `slack_now`: the seconds that reached its age since it
/// last ran, `[done + 1, min(watermark, slack_now - age)]`, never below where the ledger is
/// complete (the stream's start, or where an upgrade or the cap left it).
pub fn plan_rescan(
    tier: &RescanTier,
    watermark: i64,
    slack_now: i64,
    complete_from: i64,
) -> Option<AuditWindow> {
    let oldest = tier.done.saturating_add(1).max(complete_from);
    let latest = watermark.min(slack_now.saturating_sub(tier.age));
    (oldest <= latest).then(|| AuditWindow {
        oldest,
        latest,
        boundary: None,
        boundary_ids: BTreeSet::new(),
        since: None,
    })
}

/// A forward window `[oldest, latest]` drained, first asked for at Slack's `read_at`: each tier
/// that had read up to it counts the seconds that were already `age` old then as read.
fn advance_tiers(tiers: &mut [RescanTier], window: &AuditWindow, read_at: i64) {
    for t in tiers {
        if t.done >= window.oldest.saturating_sub(1) {
            t.done = t.done.max(window.latest.min(read_at.saturating_sub(t.age)));
        }
    }
}

/// Which walk a window belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The forward walk: a drained window moves the watermark.
    Forward,
    /// A look-back re-read of the tier of this age: what it finds was indexed late.
    Rescan(i64),
}

/// Moves a format-1 checkpoint to format 2: its boundary ids go to the ledger, which is complete
/// only above what format 1 delivered (so the look-back does not deliver that again).
fn upgrade(checkpoint: &mut AuditCheckpoint, ledger: &mut Ledger, log: &dyn Fn(&str)) {
    if checkpoint.v >= 2 {
        return;
    }
    let top = checkpoint
        .window
        .as_ref()
        .map_or(checkpoint.watermark, |w| w.latest.max(checkpoint.watermark));
    ledger.complete_from = top.saturating_add(1);
    if let Some(w) = checkpoint.window.as_mut() {
        if let Some(b) = w.boundary {
            for id in std::mem::take(&mut w.boundary_ids) {
                ledger.insert(b, ledger::digest(&id));
            }
        }
    }
    checkpoint.v = <AuditCheckpoint as Checkpoint>::VERSION;
    log(&format!(
        "audit: checkpoint upgraded to format 2; the look-back re-scan starts above {}",
        format_rfc3339(top)
    ));
}

/// Walks until caught up, out of budget, or failed: first the look-back (a re-read a pass left
/// unfinished, then each tier's seconds that reached its age since the last pass, see
/// [`rescan_ages`]), then forward windows up to Slack's now minus the lag. The checkpoint (and the ledger before
/// it) is saved after every page the sink accepted; it never moves past what the sink accepted.
pub fn walk(
    config: &Config,
    token: &str,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AuditCheckpoint,
    stats: &mut WalkStats,
) -> WalkEnd {
    let mut ledger = match Ledger::load(&mut *io.store, &checkpoint.ledger) {
        Ok((l, warnings)) => {
            for w in warnings {
                (io.log)(&format!("audit: {w}"));
            }
            l
        }
        Err(e) => {
            return WalkEnd::Failed {
                code: "store_error".into(),
                message: format!(
                "{e} (reading the audit ledger); nothing was delivered, the next pass tries again"
            ),
            }
        }
    };
    upgrade(checkpoint, &mut ledger, io.log);
    let mut walker = Walker {
        config,
        token,
        ledger,
    };
    // First the look-back: a re-read a pass left unfinished (the span's ledger buckets are kept
    // only until it is done), then each tier's seconds that reached its age since the last pass.
    // Each is short (what is new since the last pass), so the forward walk after them is not
    // starved however busy the org.
    let slack_now = settled(fetcher.clock.now_unix(), checkpoint.clock_offset, 0);
    let planned_with = checkpoint.clock_offset;
    checkpoint.rescanned = sync_tiers(
        &checkpoint.rescanned,
        &rescan_ages(config.audit_lookback_seconds),
        checkpoint.watermark,
        slack_now,
        walker.ledger.complete_from,
    );
    if let Some(r) = checkpoint.rescan.clone() {
        if let Err(end) = walker.window(
            Kind::Rescan(r.age),
            fetcher,
            io,
            checkpoint,
            r.window,
            r.group,
            stats,
        ) {
            return end;
        }
    }
    if let Err(end) = walker.rescan_due(fetcher, io, checkpoint, slack_now, stats) {
        return end;
    }
    let now = fetcher.clock.now_unix();
    let mut refreshed = false;
    loop {
        let (window, group) = match &checkpoint.window {
            Some(w) => (w.clone(), checkpoint.group),
            None => {
                let until = settled(now, checkpoint.clock_offset, config.audit_lag_seconds);
                match plan_window(checkpoint.watermark, until, 0, config.audit_window_seconds) {
                    Some(w) => (w, 0),
                    // Nothing due by an offset an earlier pass saw: Slack's clock may have caught
                    // up since (or jumped). Without a fresh Date the stream would wait on the old
                    // offset for ever; one small request tells.
                    None if !refreshed
                        && fetcher.stats.slack_clock.is_none()
                        && checkpoint.clock_offset.is_some_and(|o| o < -1) =>
                    {
                        refreshed = true;
                        if let Err(end) = refresh_clock(config, token, fetcher, checkpoint) {
                            return end;
                        }
                        continue;
                    }
                    None => break,
                }
            }
        };
        if let Err(end) =
            walker.window(Kind::Forward, fetcher, io, checkpoint, window, group, stats)
        {
            return end;
        }
    }
    // The look-back above was planned by the offset an earlier pass saw; this pass's answers
    // give Slack's clock as it is now. If that moved by more than a `Date` header's rounding
    // (an NTP step on either side), seconds reached their age that the first plan did not see:
    // read them now rather than a pass later.
    let moved = match (planned_with, checkpoint.clock_offset) {
        (Some(a), Some(b)) => a.abs_diff(b) > 2,
        (None, Some(b)) => b.abs() > 2,
        _ => false,
    };
    if moved {
        let slack_now = settled(fetcher.clock.now_unix(), checkpoint.clock_offset, 0);
        if let Err(end) = walker.rescan_due(fetcher, io, checkpoint, slack_now, stats) {
            return end;
        }
    }
    if let Some(off) = checkpoint.clock_offset.filter(|o| *o <= -2) {
        (io.log)(&format!(
            "audit: this machine's clock runs {} s ahead of Slack's (its Date header); windows end by Slack's clock — \
             check NTP on this host",
            -off
        ));
    }
    WalkEnd::CaughtUp
}

struct Walker<'c> {
    config: &'c Config,
    token: &'c str,
    ledger: Ledger,
}

impl Walker<'_> {
    /// Re-reads, for each look-back tier, the seconds that reached its age by Slack's `slack_now`
    /// since it last ran (nothing when none did).
    fn rescan_due(
        &mut self,
        fetcher: &mut Fetcher<'_>,
        io: &mut StreamIo<'_>,
        checkpoint: &mut AuditCheckpoint,
        slack_now: i64,
        stats: &mut WalkStats,
    ) -> Result<(), WalkEnd> {
        for tier in checkpoint.rescanned.clone() {
            if let Some(w) = plan_rescan(
                &tier,
                checkpoint.watermark,
                slack_now,
                self.ledger.complete_from,
            ) {
                self.window(Kind::Rescan(tier.age), fetcher, io, checkpoint, w, 0, stats)?;
            }
        }
        Ok(())
    }

    /// Walks one window (one action group of it) to its end.
    #[allow(clippy::too_many_arguments)]
    fn window(
        &mut self,
        kind: Kind,
        fetcher: &mut Fetcher<'_>,
        io: &mut StreamIo<'_>,
        checkpoint: &mut AuditCheckpoint,
        mut window: AuditWindow,
        group: usize,
        stats: &mut WalkStats,
    ) -> Result<(), WalkEnd> {
        let config = self.config;
        let groups = action_groups(config);
        // A filter change can leave an index past the new groups: that window is then done.
        let actions = groups.get(group).cloned().unwrap_or_default();
        let last_group = group + 1 >= groups.len();
        let lookback = config.audit_lookback_seconds;
        let mut cursor: Option<String> = None;
        let mut restarts = 0;
        let mut clamped = false;
        let records_before = stats.records;
        // Cursors handed out in this window: one that comes back would page in a circle.
        let mut cursors_seen: HashSet<String> = HashSet::new();
        loop {
            let url = page_url(config, &actions, &window, cursor.as_deref());
            let asked_at = fetcher.clock.now_unix();
            let answer = fetcher.get(&url, self.token);
            if let Some(c) = fetcher.stats.slack_clock {
                checkpoint.clock_offset = Some(c.offset());
            }
            if answer.is_ok()
                && window.since.is_none()
                && window.boundary.is_none()
                && cursor.is_none()
                && group == 0
            {
                // When the request left, by Slack's clock as this answer shows it (a first pass
                // knows no offset before it): the page was read at that instant or later.
                window.since = Some(settled(asked_at, checkpoint.clock_offset, 0));
            }
            // A window reaching past Slack's own now (our clock is ahead): end it where Slack's
            // now minus the lag is, before anything in it counts as delivered.
            let slack_settled = settled(
                fetcher.clock.now_unix(),
                checkpoint.clock_offset,
                config.audit_lag_seconds,
            );
            let fresh = window.boundary.is_none() && cursor.is_none();
            let shorten =
                kind == Kind::Forward && fresh && !clamped && window.latest > slack_settled;
            let resp = match answer {
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
                Err(FetchError::Slack(SlackError::Api { ref code, .. }))
                    if code == "invalid_range" && shorten =>
                {
                    // Slack refused a `latest` in its future: ask again with the window shortened.
                    clamped = true;
                    if !shorten_window(&mut window, slack_settled, checkpoint, io.log) {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(fetch_end(e, "the audit API")),
            };
            if shorten {
                clamped = true;
                if !shorten_window(&mut window, slack_settled, checkpoint, io.log) {
                    // Nothing of the window is settled at Slack yet: deliver nothing now.
                    return Ok(());
                }
            }
            let page = parse_page(&resp.body).map_err(|e| failed(&e))?;
            stats.pages += 1;
            // Ids below `record_from` need not be kept: this window reads those seconds at an
            // age past every tier's, so no re-read will meet them again. That holds for the
            // window's own seconds only: while a tier still owes seconds below the window (it
            // has not re-read up to `oldest - 1`), the ledger must stay complete down there, so
            // the window keeps every id of its own and of any second below it Slack sends.
            let tiers_reach_window = checkpoint
                .rescanned
                .iter()
                .all(|t| t.done >= window.oldest.saturating_sub(1));
            let record_from = if kind == Kind::Forward && !tiers_reach_window {
                window.oldest.min(window.latest.saturating_sub(lookback))
            } else {
                window.latest.saturating_sub(lookback)
            };
            if kind == Kind::Forward && record_from > window.oldest {
                // Ids this window delivers below `record_from` are not kept: from here on the
                // ledger is complete only above it.
                self.ledger.complete_from = self.ledger.complete_from.max(record_from);
            }
            let absorbed = window.absorb(&page.entries, &self.ledger, record_from);
            stats.duplicates += u64::from(absorbed.duplicates);
            stats.out_of_window += u64::from(absorbed.out_of_window);
            let mut writer =
                RecordWriter::new("audit", SOURCE, io.collected_at, config.output_format);
            for &(i, _) in &absorbed.emit {
                let e = &page.entries[i];
                writer.push(&e.id, None, e.date_create, e.raw.get());
            }
            io.deliver(&mut writer, stats)?;
            window = absorbed.next;
            // Delivered: what a resume or the look-back could see again goes into the ledger.
            let boundary = window.boundary;
            for &(i, d) in &absorbed.emit {
                let t = page.entries[i].date_create;
                if t >= record_from || Some(t) == boundary || t > window.latest {
                    self.ledger.insert(t, d);
                }
                if matches!(kind, Kind::Rescan(_)) && t >= window.oldest && t <= window.latest {
                    stats.late += 1;
                }
            }
            let next_cursor = page.next_cursor;
            let drained = next_cursor.is_none();
            match kind {
                Kind::Forward if drained && last_group => {
                    // A window planned by an older format has no `since`; it was planned at
                    // least the lag after its `latest`.
                    let read_at = window
                        .since
                        .unwrap_or_else(|| window.latest.saturating_add(config.audit_lag_seconds));
                    advance_tiers(&mut checkpoint.rescanned, &window, read_at);
                    checkpoint.watermark = window.latest;
                    checkpoint.window = None;
                    checkpoint.group = 0;
                }
                Kind::Forward if drained => {
                    // This group drained the window; the next group walks it from the top.
                    checkpoint.group += 1;
                    checkpoint.window = Some(AuditWindow {
                        boundary: None,
                        ..window.clone()
                    });
                }
                Kind::Forward => checkpoint.window = Some(window.clone()),
                Kind::Rescan(age) if drained && last_group => {
                    for t in checkpoint.rescanned.iter_mut().filter(|t| t.age == age) {
                        t.done = t.done.max(window.latest);
                    }
                    checkpoint.rescan = None;
                }
                Kind::Rescan(age) if drained => {
                    checkpoint.rescan = Some(Rescan {
                        window: AuditWindow {
                            boundary: None,
                            ..window.clone()
                        },
                        group: group + 1,
                        age,
                    })
                }
                Kind::Rescan(age) => {
                    checkpoint.rescan = Some(Rescan {
                        window: window.clone(),
                        group,
                        age,
                    })
                }
            }
            self.commit(io, checkpoint, &window)?;
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
                    let what = match kind {
                        Kind::Forward => "window",
                        Kind::Rescan(_) => "look-back re-read",
                    };
                    (io.log)(&format!(
                        "audit: {what} {} .. {} complete, {} records",
                        format_rfc3339(window.oldest),
                        format_rfc3339(window.latest),
                        stats.records - records_before
                    ));
                    // A forward window's next group (or the next window) is the caller's loop.
                    return Ok(());
                }
            }
        }
    }

    /// Saves what a delivered page changed: the ledger's parts first, then the checkpoint that
    /// counts them, then drops the parts no longer needed.
    fn commit(
        &mut self,
        io: &mut StreamIo<'_>,
        checkpoint: &mut AuditCheckpoint,
        window: &AuditWindow,
    ) -> Result<(), WalkEnd> {
        // Keep what the look-back will read again (above the slowest tier) and a resume (the
        // boundary) needs.
        let mut keep_from = checkpoint
            .rescanned
            .iter()
            .map(|t| t.done.saturating_add(1))
            .min()
            .unwrap_or(checkpoint.watermark.saturating_add(1));
        if let Some(r) = &checkpoint.rescan {
            keep_from = keep_from.min(r.window.oldest);
        }
        let keep = checkpoint
            .window
            .as_ref()
            .and_then(|w| w.boundary)
            .or(window.boundary);
        self.ledger.prune_below(keep_from, keep);
        if let Some(from) = self.ledger.enforce_cap(keep) {
            (io.log)(&format!(
                "audit: more than {} recent ids to keep; the look-back re-scan now starts at {} (events Slack indexes later \
                 than that below it are not collected)",
                ledger::MAX_DIGESTS,
                format_rfc3339(from)
            ));
        }
        // The parts are written before the checkpoint that counts them: check first that this
        // walk still owns both, so a pass that stalled past its lease leaves the new holder's
        // parts alone (one check for both writes).
        io.check_owned(CHECKPOINT_KEY)?;
        self.ledger
            .write_parts(&mut *io.store)
            .map_err(|e| WalkEnd::Failed {
                code: "store_error".into(),
                message: format!(
                    "{e}; records already delivered for this page may be offered again next pass"
                ),
            })?;
        checkpoint.ledger = self.ledger.index();
        checkpoint.filters = filters_key(self.config);
        io.save_checked(CHECKPOINT_KEY, &checkpoint.encode())?;
        self.ledger.delete_dropped(&mut *io.store);
        Ok(())
    }
}

/// Asks Slack for a settled instant long past (nothing to deliver) to read its clock from the
/// answer's `Date`: the offset this stream plans with then is today's, not an old pass's.
fn refresh_clock(
    config: &Config,
    token: &str,
    fetcher: &mut Fetcher<'_>,
    checkpoint: &mut AuditCheckpoint,
) -> Result<(), WalkEnd> {
    let at = (AUDIT_EPOCH + 86_400).to_string();
    let url = with_query(
        &format!("{}/logs", config.slack_audit_base),
        &[
            ("oldest", at.as_str()),
            ("latest", at.as_str()),
            ("limit", "1"),
        ],
    );
    fetcher
        .get(&url, token)
        .map_err(|e| fetch_end(e, "the audit API"))?;
    checkpoint.clock_offset = fetcher.stats.slack_clock.map(|c| c.offset());
    Ok(())
}

/// Ends a fresh window at `slack_settled` (Slack's now minus the lag, when our clock runs
/// ahead of Slack's). `false` when nothing of it is settled yet: the window is dropped unwalked,
/// and planned again by a later pass.
fn shorten_window(
    window: &mut AuditWindow,
    slack_settled: i64,
    checkpoint: &mut AuditCheckpoint,
    log: &dyn Fn(&str),
) -> bool {
    log(&format!(
        "audit: this machine's clock is {} s ahead of Slack's (its Date header); the window ends at {} instead of {}",
        -checkpoint.clock_offset.unwrap_or(0),
        format_rfc3339(slack_settled),
        format_rfc3339(window.latest)
    ));
    if slack_settled < window.oldest {
        checkpoint.window = None;
        checkpoint.group = 0;
        return false;
    }
    window.latest = slack_settled;
    true
}

#[cfg(test)]
mod tests;
