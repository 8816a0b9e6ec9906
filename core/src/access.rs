//! The access stream: `team.accessLogs`, mutable aggregates per user + IP + user agent
//! (Q21–Q32).
//!
//! A row has `date_first`, `date_last` and `count`; `date_last` and `count` change whenever the
//! combination is used again. The API has only an upper bound, `before` (inclusive), pages newest
//! first, and does not say whether it sorts by `date_first` or `date_last` (Q23).
//!
//! **What is emitted.** A *walk* reads every row up to a bound `B` fixed when it starts (one
//! second behind now: the current second is not over, and a row touched in it could otherwise
//! land at `date_last = B` above the rows already read). When it completes, the watermark `W`
//! becomes `B`. In `activity` mode a walk emits the rows with `date_last > W`, as they are when
//! read. That includes rows updated during the walk (`date_last > B`): leaving them to the next
//! walk would starve a combination used more often than a walk takes to reach it, since it would
//! be past `before` every time. Their state keys go to the next walk
//! ([`AccessCheckpoint::ahead`]), which skips those states if unchanged, so nothing repeats
//! (beyond [`MAX_AHEAD`] such rows in one walk, the rest wait for the next walk). In `new-only`
//! mode a walk emits the combinations with `W < date_first <= B`, also when they were updated
//! during the walk, since the next walk would no longer count them as new. The record id is a
//! hash of `user_id, ip, user_agent, date_first, date_last` ([`record_id`]): a row whose
//! `date_last` moved is a new record, the same state seen twice is the same record.
//!
//! **Resuming without a cursor.** Cursors expire (Q6), so after every page the sink accepted the
//! checkpoint records the walk's *position*, which does not depend on the sort order: the lowest
//! `date_first` and the lowest `date_last` among the rows considered so far, each with the keys of
//! the rows delivered at exactly that value. A row is already delivered when it is *covered* for
//! both fields: for each, its value is above the lowest, or equal to it and its key is listed.
//! Every delivered row stays covered (the lowest values only fall, and a row equal to one is
//! listed). A row not yet read comes after all rows read in Slack's order, so under that order's
//! key it is at or below the lowest value and, unless it repeats a delivered key, not covered.
//! This holds whichever field Slack sorts by, so no row is lost or repeated even before the order
//! is known. A resumed walk asks again with `before` lowered to the position (`date_first` or
//! `date_last` by the known order, the higher of the two while unknown: it is at or above the next
//! unread row under either order), which skips what was read without reading it again.
//! Delivered keys are state hashes in `activity` mode and combination hashes (no `date_last`) in
//! `new-only` mode, where an updated row must still count as delivered.
//!
//! **Stopping early.** Under `date_last` order, once a row has `date_last <= W` every later row
//! does too: both modes can stop there (`date_first <= date_last`). Under `date_first` order,
//! once a row has `date_first <= W` no later combination is new: `new-only` can stop there, but
//! `activity` cannot, since an old combination can have a fresh `date_last` anywhere; it reads to
//! the end. `new-only` may stop at `date_last <= W` under either order. With
//! `access_sort_key = auto` the order is learnt from the data: two consecutive rows where
//! `date_last` rises prove Slack does not sort by `date_last`, where `date_first` rises, not by
//! `date_first`. What is proven is kept in the checkpoint; until then no stop is taken that one
//! of the orders would make unsafe, and a long walk goes on in the next pass. Rows that contradict
//! a proven order (or both orders) stop the stream with advice rather than risk losing rows. A
//! configured `date_first` / `date_last` is trusted and not checked.
//!
//! **Paging.** Cursor mode (`limit`) by default, with the walk's `before` on every request. When
//! Slack refuses the `limit` (`invalid_limit`), classic `count`/`page` paging; there `before` is
//! lowered to the position after every page that moved it (keyset paging through `before`, as
//! Slack's "time travel" advice suggests), so rows that leave the result set mid-walk cannot
//! shift an unread row onto a page already read (Q25), and the 100-page cap (Q21) only matters
//! for more than 100 pages of rows sharing one second. Page numbers are used only within such a
//! tie, and a change of `paging.total` between them (rows left) re-reads from page 1. An HTTP 500
//! or `fatal_error` in classic mode switches back to cursor mode with a smaller `limit`, as Slack
//! advises.
//!
//! Assumed, not documented: `before` filters on the field Slack sorts by (what the time-travel
//! advice implies), and `date_first <= date_last`.
//!
//! Known limits. If Slack filters `before` on `date_last`, a row used again during a walk drops out
//! of that walk's listing: in `new-only` mode a combination first seen shortly before the walk and
//! used again before the walk reached it is then missed, and in `activity` mode a combination used
//! every second or so is only delivered once it rests. Under `date_first` order, `activity` reads
//! every row on every walk. Rows Slack records late (after their second passed) are not collected.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::config::{format_rfc3339, AccessMode, AccessSortKey, Config};
use crate::fetch::{FetchError, Fetcher, MIN_REQUEST_BUDGET};
use crate::record::{fnv1a64, RecordWriter};
use crate::slack_error::{describe_body, SlackError};
use crate::url::with_query;
use crate::walk::{fetch_end, StreamIo, WalkEnd, WalkStats};
use crate::web_api::{parse_envelope, Paging};

/// The `source` of access records.
pub const SOURCE: &str = "team.accessLogs";
const STREAM: &str = "access";
/// A walk's bound stays this far behind now: the current second is not over yet.
pub const SETTLE_SECONDS: i64 = 1;
/// `invalid_cursor` restarts in one pass before the stream gives up.
const MAX_CURSOR_RESTARTS: u32 = 5;
/// Retries of a `ratelimited` / `fatal_error` that came in an HTTP 200 body (the fetcher retries
/// only on the HTTP status).
const MAX_SOFT_RETRIES: u32 = 3;
/// Classic re-reads from page 1 after `paging.total` changed, per listing, before paging on.
const MAX_SHIFT_RESTARTS: u32 = 10;
/// Keys (u64, at most 21 bytes of JSON each) a checkpoint may hold: about 210 KB, below portable
/// key-value limits (400 KB). Beyond it (thousands of rows in one second) a walk does not save
/// mid-walk until the tie is passed; a pass ending there repeats those pages next time.
const MAX_CHECKPOINT_KEYS: usize = 10_000;
/// Rows a walk delivers past its `before` (updated during the walk) and hands to the next walk
/// as already delivered; beyond this they are left to the next walk instead.
pub const MAX_AHEAD: usize = 3_000;
/// The largest cursor `limit` tried after classic paging failed (Slack recommends 100–200).
const FALLBACK_LIMIT: u32 = 100;

/// Where the access checkpoint of a workspace (or of an org-wide walk, `None`) lives.
pub fn checkpoint_key(team_id: Option<&str>) -> String {
    format!(
        "slack-logs/v1/access/{}/checkpoint",
        team_id.unwrap_or("org")
    )
}

/// The record id of a row state: FNV-1a 64 (see [`fnv1a64`]) over `user_id`, `ip` (null hashes
/// as empty), `user_agent`, and `date_first` and `date_last` as decimal strings; 16 hex digits.
pub fn record_id(
    user_id: &str,
    ip: Option<&str>,
    user_agent: &str,
    date_first: i64,
    date_last: i64,
) -> String {
    format!(
        "{:016x}",
        state_hash(user_id, ip, user_agent, date_first, date_last)
    )
}

fn state_hash(
    user_id: &str,
    ip: Option<&str>,
    user_agent: &str,
    date_first: i64,
    date_last: i64,
) -> u64 {
    fnv1a64(&[
        user_id.as_bytes(),
        ip.unwrap_or("").as_bytes(),
        user_agent.as_bytes(),
        date_first.to_string().as_bytes(),
        date_last.to_string().as_bytes(),
    ])
}

/// Which field Slack sorts by (newest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    DateFirst,
    DateLast,
}

impl SortOrder {
    fn name(self) -> &'static str {
        match self {
            SortOrder::DateFirst => "date_first",
            SortOrder::DateLast => "date_last",
        }
    }
}

/// The order named by `access_sort_key`, which is trusted; `None` for `auto`.
fn configured_order(config: &Config) -> Option<SortOrder> {
    match config.access_sort_key {
        AccessSortKey::Auto => None,
        AccessSortKey::DateFirst => Some(SortOrder::DateFirst),
        AccessSortKey::DateLast => Some(SortOrder::DateLast),
    }
}

/// `access_mode`, as a walk records it: a walk keeps the mode it started with, since the keys
/// at its position depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WalkMode {
    Activity,
    NewOnly,
}

impl From<AccessMode> for WalkMode {
    fn from(m: AccessMode) -> Self {
        match m {
            AccessMode::Activity => WalkMode::Activity,
            AccessMode::NewOnly => WalkMode::NewOnly,
        }
    }
}

/// The durable state of the access stream for one workspace (or the org).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessCheckpoint {
    pub v: u32,
    /// Every row with `date_last <= watermark` (activity; `date_first` in new-only) has been
    /// considered, from the stream's start on.
    pub watermark: i64,
    /// The sort order the data proved (`access_sort_key = auto`), kept for later walks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<SortOrder>,
    /// The walk in progress, if a pass stopped inside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<AccessWalk>,
    /// Activity: state keys the last completed walk delivered although their `date_last` was past
    /// its `before`. The walk after it skips these states; they are at most `before` for it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub ahead: BTreeSet<u64>,
}

/// A walk: every row up to `before`, and how far delivery got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessWalk {
    /// The walk's fixed upper bound; the watermark once the walk completes.
    pub before: i64,
    pub mode: WalkMode,
    /// The order proven so far (auto), or remembered from earlier walks. `None`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<SortOrder>,
    /// Classic `count`/`page` paging instead of cursors.
    #[serde(default)]
    pub classic: bool,
    /// A cursor `limit` Slack answered `invalid_limit` to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_limit: Option<u32>,
    #[serde(default)]
    pub position: Position,
    /// Activity: state keys this walk delivered with `date_last > before`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub ahead: BTreeSet<u64>,
}

/// How far a walk got, in a form that does not depend on the sort order (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The lowest `date_first` among the rows considered, and the keys of the rows delivered
    /// with exactly that `date_first`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_first: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub first_keys: BTreeSet<u64>,
    /// The same for `date_last`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_last: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub last_keys: BTreeSet<u64>,
}

impl Position {
    /// Whether a row was already delivered by this walk (true only for rows read before).
    pub fn covers(&self, date_first: i64, date_last: i64, key: u64) -> bool {
        let covered = |lowest: Option<i64>, keys: &BTreeSet<u64>, v: i64| match lowest {
            None => false,
            Some(l) => v > l || (v == l && keys.contains(&key)),
        };
        covered(self.date_first, &self.first_keys, date_first)
            && covered(self.date_last, &self.last_keys, date_last)
    }

    /// Takes one row read after every row considered so far.
    fn advance(&mut self, date_first: i64, date_last: i64, key: u64, delivered: bool) {
        fn one(
            lowest: &mut Option<i64>,
            keys: &mut BTreeSet<u64>,
            v: i64,
            key: u64,
            delivered: bool,
        ) {
            match *lowest {
                Some(l) if v > l => {} // above the lowest: covered by `>` from now on
                Some(l) if v == l => {
                    if delivered {
                        keys.insert(key);
                    }
                }
                _ => {
                    *lowest = Some(v);
                    keys.clear();
                    if delivered {
                        keys.insert(key);
                    }
                }
            }
        }
        one(
            &mut self.date_first,
            &mut self.first_keys,
            date_first,
            key,
            delivered,
        );
        one(
            &mut self.date_last,
            &mut self.last_keys,
            date_last,
            key,
            delivered,
        );
    }

    fn keys(&self) -> usize {
        self.first_keys.len() + self.last_keys.len()
    }
}

impl Checkpoint for AccessCheckpoint {
    const VERSION: u32 = 1;

    fn watermark(&self) -> i64 {
        self.watermark
    }
}

impl AccessCheckpoint {
    /// The state of a stream that never ran: rows from `backfill_start_time` on, else from now
    /// (no history).
    pub fn initial(config: &Config, now: i64) -> AccessCheckpoint {
        // `date_last > W` selects, so W is one second before the first second to collect.
        let watermark = config.backfill_start_time.map_or(now, |t| t - 1);
        AccessCheckpoint {
            v: <AccessCheckpoint as Checkpoint>::VERSION,
            watermark,
            order: None,
            walk: None,
            ahead: BTreeSet::new(),
        }
    }
}

impl AccessWalk {
    fn start(config: &Config, checkpoint: &AccessCheckpoint, before: i64) -> AccessWalk {
        AccessWalk {
            before,
            mode: config.access_mode.into(),
            order: checkpoint.order,
            classic: false,
            refused_limit: None,
            position: Position::default(),
            ahead: BTreeSet::new(),
        }
    }

    /// The `before` to ask with when (re)starting without a cursor: at or above the next unread
    /// row under the order in use, or under either order while it is unknown.
    fn anchor(&self, order: Option<SortOrder>) -> i64 {
        let p = &self.position;
        let at = match (order, p.date_first, p.date_last) {
            (_, None, _) | (_, _, None) => self.before,
            (Some(SortOrder::DateFirst), Some(f), _) => f,
            (Some(SortOrder::DateLast), _, Some(l)) => l,
            (None, Some(f), Some(l)) => f.max(l),
        };
        at.min(self.before)
    }

    /// The cursor `limit`: the configured one, or a smaller one once Slack refused a limit.
    fn cursor_limit(&self, config: &Config) -> u32 {
        match self.refused_limit {
            Some(r) => (r / 2).min(FALLBACK_LIMIT),
            None => config.access_page_size,
        }
    }

    /// Takes one page; `delivered_before` is what the previous walk delivered ahead of its
    /// `before` ([`AccessCheckpoint::ahead`]). Does not change `self`: the caller commits
    /// `position` and `ahead` only after the sink accepted the emitted rows.
    pub fn absorb(
        &self,
        rows: &[AccessRow<'_>],
        watermark: i64,
        delivered_before: &BTreeSet<u64>,
    ) -> Absorbed {
        let mut out = Absorbed {
            emit: Vec::new(),
            duplicates: 0,
            deferred: 0,
            out_of_window: 0,
            position: self.position.clone(),
            ahead: self.ahead.clone(),
        };
        for (i, r) in rows.iter().enumerate() {
            let key = r.key(self.mode);
            if out.position.covers(r.date_first, r.date_last, key) {
                out.duplicates += 1;
                continue;
            }
            if r.date_first > self.before {
                out.out_of_window += 1;
            }
            let emit = match self.mode {
                WalkMode::Activity if delivered_before.contains(&key) => {
                    out.duplicates += 1;
                    if r.date_last > self.before {
                        // Still past this walk's `before` too (both walks ran in one pass): keep
                        // it known for the next walk, which would otherwise emit it again.
                        out.ahead.insert(key);
                    }
                    false
                }
                WalkMode::Activity if r.date_last > self.before && r.date_first <= self.before => {
                    if out.ahead.len() < MAX_AHEAD {
                        out.ahead.insert(key);
                        true
                    } else {
                        out.deferred += 1;
                        false
                    }
                }
                WalkMode::Activity => r.date_last > watermark && r.date_last <= self.before,
                WalkMode::NewOnly => r.date_first > watermark && r.date_first <= self.before,
            };
            out.position.advance(r.date_first, r.date_last, key, emit);
            if emit {
                out.emit.push(i);
            }
        }
        out
    }
}

/// What one page means for a walk.
#[derive(Debug)]
pub struct Absorbed {
    /// Indices of the rows to emit.
    pub emit: Vec<usize>,
    /// Rows this walk already delivered (a resumed walk, the inclusive boundary).
    pub duplicates: u32,
    /// Rows updated after the walk began (`date_last > before`) left to the next walk, once
    /// [`MAX_AHEAD`] were delivered ahead.
    pub deferred: u32,
    /// Rows first seen after `before`, which Slack should not have sent.
    pub out_of_window: u32,
    /// The walk's position once these rows are delivered.
    pub position: Position,
    /// The walk's `ahead` once these rows are delivered.
    pub ahead: BTreeSet<u64>,
}

/// Whether nothing after `last` (the last row read, in Slack's order) can be emitted.
fn early_stop(
    mode: WalkMode,
    order: Option<SortOrder>,
    last: &AccessRow<'_>,
    watermark: i64,
) -> bool {
    match (mode, order) {
        (WalkMode::Activity, Some(SortOrder::DateLast)) => last.date_last <= watermark,
        // An old combination can have a fresh date_last anywhere in date_first order.
        (WalkMode::Activity, _) => false,
        (WalkMode::NewOnly, Some(SortOrder::DateFirst)) => last.date_first <= watermark,
        // date_first <= date_last: safe under either order.
        (WalkMode::NewOnly, _) => last.date_first.max(last.date_last) <= watermark,
    }
}

/// One `logins` row: the fields the walk reads, and its bytes as received.
#[derive(Debug)]
pub struct AccessRow<'a> {
    pub user_id: Cow<'a, str>,
    pub ip: Option<Cow<'a, str>>,
    pub user_agent: Cow<'a, str>,
    pub date_first: i64,
    pub date_last: i64,
    pub raw: &'a RawValue,
}

impl AccessRow<'_> {
    pub fn record_id(&self) -> String {
        record_id(
            &self.user_id,
            self.ip.as_deref(),
            &self.user_agent,
            self.date_first,
            self.date_last,
        )
    }

    /// What identifies a delivered row at the position: the state in activity mode; the
    /// combination in new-only mode, which delivers a combination once even if it changes.
    fn key(&self, mode: WalkMode) -> u64 {
        match mode {
            WalkMode::Activity => state_hash(
                &self.user_id,
                self.ip.as_deref(),
                &self.user_agent,
                self.date_first,
                self.date_last,
            ),
            WalkMode::NewOnly => fnv1a64(&[
                self.user_id.as_bytes(),
                self.ip.as_deref().unwrap_or("").as_bytes(),
                self.user_agent.as_bytes(),
                self.date_first.to_string().as_bytes(),
            ]),
        }
    }
}

/// One page of `team.accessLogs`.
#[derive(Debug)]
pub struct AccessPage<'a> {
    pub rows: Vec<AccessRow<'a>>,
    pub paging: Option<Paging>,
    /// `None` at the end: `next_cursor` empty, null or absent.
    pub next_cursor: Option<String>,
}

/// Parses a 2xx body. `ok:false` is the Slack error it names; a body without `logins`, and a row
/// without a string `user_id` or integer `date_first` / `date_last` (or with a non-string `ip` /
/// `user_agent`), are `Malformed`, never panics.
pub fn parse_page(body: &[u8]) -> Result<AccessPage<'_>, SlackError> {
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(borrow, default)]
        logins: Option<Vec<&'a RawValue>>,
    }
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        user_id: Cow<'a, str>,
        #[serde(borrow, default)]
        ip: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        user_agent: Option<Cow<'a, str>>,
        date_first: i64,
        date_last: i64,
    }
    let envelope = parse_envelope(body)?;
    let wire: Wire<'_> = serde_json::from_slice(body).map_err(|e| SlackError::Malformed {
        status: 200,
        detail: format!("{} ({e})", describe_body(body)),
    })?;
    let Some(raw_rows) = wire.logins else {
        return Err(SlackError::Malformed {
            status: 200,
            detail: "an `ok:true` body without `logins`".into(),
        });
    };
    let mut rows = Vec::with_capacity(raw_rows.len());
    for (i, raw) in raw_rows.into_iter().enumerate() {
        // serde also fills a struct from a JSON array (fields by position): a row must be an
        // object, or its record would carry an array as the event (found by tests/fuzz.rs).
        if !raw.get().starts_with('{') {
            return Err(SlackError::Malformed {
                status: 200,
                detail: format!("access log row {i} of the page is not a JSON object"),
            });
        }
        let head: Head<'_> = serde_json::from_str(raw.get()).map_err(|e| SlackError::Malformed {
            status: 200,
            detail: format!(
                "access log row {i} of the page lacks a string `user_id` or an integer `date_first` / `date_last`, \
                 or has a non-string `ip` / `user_agent`: {e}"
            ),
        })?;
        rows.push(AccessRow {
            user_id: head.user_id,
            ip: head.ip,
            user_agent: head.user_agent.unwrap_or(Cow::Borrowed("")),
            date_first: head.date_first,
            date_last: head.date_last,
            raw,
        });
    }
    Ok(AccessPage {
        rows,
        paging: envelope.paging,
        next_cursor: envelope.next_cursor,
    })
}

/// Slack's classic paging caps; smaller in tests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub classic_count: u32,
    pub classic_max_page: u32,
}

impl Limits {
    pub(crate) const SLACK: Limits = Limits {
        classic_count: 1000,
        classic_max_page: 100,
    };
}

/// One read of the result set from an anchor: by cursor, or by classic page number.
struct Listing {
    anchor: i64,
    cursor: Option<String>,
    page: u32,
    /// `paging.total` of the listing's first classic page.
    total: Option<u64>,
    shift_restarts: u32,
    /// The last row of the previous page, to judge the order across pages.
    prev: Option<(i64, i64)>,
}

impl Listing {
    fn from(anchor: i64) -> Listing {
        Listing {
            anchor,
            cursor: None,
            page: 1,
            total: None,
            shift_restarts: 0,
            prev: None,
        }
    }
}

fn page_url(
    config: &Config,
    team_id: Option<&str>,
    walk: &AccessWalk,
    listing: &Listing,
    limits: Limits,
) -> String {
    let before = listing.anchor.to_string();
    let mut params: Vec<(&str, String)> = vec![("before", before)];
    if walk.classic {
        params.push(("count", limits.classic_count.to_string()));
        params.push(("page", listing.page.to_string()));
    } else {
        params.push(("limit", walk.cursor_limit(config).to_string()));
        if let Some(c) = &listing.cursor {
            params.push(("cursor", c.clone()));
        }
    }
    if let Some(t) = team_id {
        params.push(("team_id", t.to_string()));
    }
    let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    with_query(&format!("{}/team.accessLogs", config.slack_api_base), &refs)
}

/// Walks until caught up (every row up to this walk's `before` considered), out of budget, or
/// failed. The checkpoint is saved after every page the sink accepted; it never moves past what
/// the sink accepted. A walk left unfinished by an earlier pass is completed first, then a new one
/// up to now is made.
pub fn walk(
    config: &Config,
    team_id: Option<&str>,
    token: &str,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AccessCheckpoint,
    stats: &mut WalkStats,
) -> WalkEnd {
    walk_with(
        config,
        team_id,
        token,
        fetcher,
        io,
        checkpoint,
        stats,
        Limits::SLACK,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn walk_with(
    config: &Config,
    team_id: Option<&str>,
    token: &str,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AccessCheckpoint,
    stats: &mut WalkStats,
    limits: Limits,
) -> WalkEnd {
    let top = fetcher.clock.now_unix() - SETTLE_SECONDS;
    let ctx = Ctx {
        config,
        team_id,
        token,
        limits,
        key: checkpoint_key(team_id),
    };
    loop {
        let walk = match &checkpoint.walk {
            // A walk that cannot move the watermark forward has nothing to collect.
            Some(w) if w.before <= checkpoint.watermark => {
                checkpoint.walk = None;
                continue;
            }
            Some(w) => w.clone(),
            None if top <= checkpoint.watermark => return WalkEnd::CaughtUp,
            None => AccessWalk::start(config, checkpoint, top),
        };
        let before = walk.before;
        if let Err(end) = walk_one(&ctx, fetcher, io, checkpoint, walk, stats) {
            return end;
        }
        if before >= top {
            return WalkEnd::CaughtUp;
        }
    }
}

struct Ctx<'a> {
    config: &'a Config,
    team_id: Option<&'a str>,
    token: &'a str,
    limits: Limits,
    key: String,
}

impl Ctx<'_> {
    fn label(&self) -> String {
        match self.team_id {
            Some(t) => format!("access[{t}]"),
            None => "access".into(),
        }
    }

    /// A Slack error as the walk's end, with what to fix for this method.
    fn slack_failure(&self, e: &SlackError, walk: &AccessWalk, listing: &Listing) -> WalkEnd {
        let mut message = match self.team_id {
            Some(t) => format!("team.accessLogs for workspace {t}: {e}"),
            None => format!("team.accessLogs: {e}"),
        };
        match e.code().as_str() {
            "over_pagination_limit" => message += &format!(
                "; slack-logs asked for {}, within Slack's documented caps (count 1000, page 100, limit under 1000); \
                 Slack's limits may have changed: lower `access_page_size` and report this",
                if walk.classic {
                    format!("count={} page={}", self.limits.classic_count, listing.page)
                } else {
                    format!("limit={}", walk.cursor_limit(self.config))
                }
            ),
            "missing_argument" => message += "; an org-level token needs the workspaces to read listed in `team_ids`",
            "invalid_limit" => message += &format!(
                "; Slack refused cursor paging with limit={} and classic paging failed with server errors; lower `access_page_size`",
                walk.cursor_limit(self.config)
            ),
            _ => {}
        }
        WalkEnd::Failed {
            code: e.code(),
            message,
        }
    }
}

/// What to do after a page.
enum Next {
    Done,
    Cursor(String),
    Page(u32),
    Anchor(i64),
}

/// Why a page could not be used.
enum PageError {
    /// The fetcher gave up (it already retried 429, 5xx and timeouts).
    Fetch(FetchError),
    /// An HTTP 200 whose body is an error or does not parse.
    Body(SlackError),
}

fn walk_one(
    ctx: &Ctx<'_>,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AccessCheckpoint,
    mut walk: AccessWalk,
    stats: &mut WalkStats,
) -> Result<(), WalkEnd> {
    let config = ctx.config;
    let trusted = configured_order(config);
    let order_of = |w: &AccessWalk| trusted.or(w.order);
    let watermark = checkpoint.watermark;
    let mut listing = Listing::from(walk.anchor(order_of(&walk)));
    let (mut restarts, mut soft_retries) = (0, 0);
    let (records_before, mut deferred) = (stats.records, 0u64);
    let mut tie_warned = false;
    // Cursors of the current listing: one that comes back would page in a circle forever.
    let mut cursors_seen = std::collections::HashSet::new();
    loop {
        if listing.cursor.is_none() {
            cursors_seen.clear();
        }
        let url = page_url(config, ctx.team_id, &walk, &listing, ctx.limits);
        let fetched = fetcher.get(&url, ctx.token).map_err(PageError::Fetch);
        let body = match fetched {
            Ok(resp) => resp.body,
            Err(e) => {
                handle_error(
                    ctx,
                    fetcher,
                    io,
                    e,
                    &mut walk,
                    &mut listing,
                    &mut restarts,
                    &mut soft_retries,
                )?;
                continue;
            }
        };
        let page = match parse_page(&body) {
            Ok(p) => p,
            Err(e) => {
                handle_error(
                    ctx,
                    fetcher,
                    io,
                    PageError::Body(e),
                    &mut walk,
                    &mut listing,
                    &mut restarts,
                    &mut soft_retries,
                )?;
                continue;
            }
        };
        stats.pages += 1;
        soft_retries = 0;

        // Classic page numbers shift when rows leave the result set (Q25): re-read from page 1
        // rather than use a page that may have skipped a row.
        if walk.classic {
            let total = page.paging.map(|p| p.total);
            if listing.page > 1
                && total.is_some()
                && total != listing.total
                && listing.shift_restarts < MAX_SHIFT_RESTARTS
            {
                listing = Listing {
                    shift_restarts: listing.shift_restarts + 1,
                    ..Listing::from(listing.anchor)
                };
                continue;
            }
            if listing.page == 1 {
                listing.total = total;
            }
        }

        let absorbed = walk.absorb(&page.rows, watermark, &checkpoint.ahead);
        if trusted.is_none() {
            walk.order = judge_order(walk.order, listing.prev, &page.rows).map_err(|message| {
                WalkEnd::Failed {
                    code: "access_sort_order".into(),
                    message: format!("{}: {message}", ctx.label()),
                }
            })?;
            if walk.order.is_some() && walk.order != checkpoint.order {
                (io.log)(&format!(
                    "{}: the data shows team.accessLogs sorts by {}",
                    ctx.label(),
                    walk.order.map_or("?", SortOrder::name)
                ));
            }
        }
        stats.duplicates += u64::from(absorbed.duplicates);
        stats.out_of_window += u64::from(absorbed.out_of_window);
        deferred += u64::from(absorbed.deferred);

        let mut writer = RecordWriter::new(STREAM, SOURCE, io.collected_at, config.output_format);
        for &i in &absorbed.emit {
            let r = &page.rows[i];
            let time = match walk.mode {
                WalkMode::Activity => r.date_last,
                WalkMode::NewOnly => r.date_first,
            };
            writer.push(&r.record_id(), ctx.team_id, time, r.raw.get());
        }
        io.deliver(&mut writer, stats)?;
        walk.position = absorbed.position;
        walk.ahead = absorbed.ahead;
        if trusted.is_none() {
            checkpoint.order = walk.order;
        }

        let order = order_of(&walk);
        let stop = page
            .rows
            .last()
            .is_some_and(|last| early_stop(walk.mode, order, last, watermark));
        let next = if stop {
            Next::Done
        } else if walk.classic {
            let last_page = page.rows.is_empty()
                || match page.paging {
                    Some(p) => listing.page >= p.pages,
                    None => page.rows.len() < ctx.limits.classic_count as usize,
                };
            let anchor = walk.anchor(order);
            if last_page {
                Next::Done
            } else if anchor < listing.anchor {
                Next::Anchor(anchor)
            } else if listing.page >= ctx.limits.classic_max_page {
                return Err(WalkEnd::Failed {
                    code: "over_pagination_limit".into(),
                    message: format!(
                        "{}: more than {} rows of team.accessLogs sort at {} and classic paging cannot get past them \
                         ({} pages of {}); if Slack accepts cursor paging again this resolves itself, otherwise set \
                         `access_sort_key` to the order Slack uses",
                        ctx.label(),
                        u64::from(ctx.limits.classic_count) * u64::from(ctx.limits.classic_max_page),
                        listing.anchor,
                        ctx.limits.classic_max_page,
                        ctx.limits.classic_count
                    ),
                });
            } else {
                Next::Page(listing.page + 1)
            }
        } else {
            match page.next_cursor {
                Some(c) => Next::Cursor(c),
                None => Next::Done,
            }
        };
        listing.prev = page
            .rows
            .last()
            .map(|r| (r.date_first, r.date_last))
            .or(listing.prev);

        if let Next::Done = next {
            checkpoint.watermark = checkpoint.watermark.max(walk.before);
            checkpoint.walk = None;
            // States delivered ahead of this walk's `before` are at most the next walk's.
            checkpoint.ahead = std::mem::take(&mut walk.ahead);
            io.save(&ctx.key, &checkpoint.encode())?;
            let mut line = format!(
                "{}: walk up to {} complete, {} records",
                ctx.label(),
                format_rfc3339(walk.before),
                stats.records - records_before
            );
            if deferred > 0 {
                line += &format!("; {deferred} rows updated during the walk are left to the next one ({MAX_AHEAD} were delivered ahead)");
            }
            (io.log)(&line);
            return Ok(());
        }
        checkpoint.walk = Some(walk.clone());
        if walk.position.keys() + walk.ahead.len() + checkpoint.ahead.len() <= MAX_CHECKPOINT_KEYS {
            io.save(&ctx.key, &checkpoint.encode())?;
        } else if !tie_warned {
            tie_warned = true;
            (io.log)(&format!(
                "{}: more than {MAX_CHECKPOINT_KEYS} delivered rows share one second; the checkpoint waits until they are passed",
                ctx.label()
            ));
        }
        match next {
            Next::Cursor(c) if !cursors_seen.insert(c.clone()) => {
                return Err(WalkEnd::Failed {
                    code: "cursor_loop".into(),
                    message: format!(
                        "{}: Slack returned a cursor it had already returned in this walk; stopped to avoid paging in a circle. \
                         What was delivered is checkpointed; the next pass resumes from the position without the cursor",
                        ctx.label()
                    ),
                })
            }
            Next::Cursor(c) => listing.cursor = Some(c),
            Next::Page(p) => listing.page = p,
            Next::Anchor(a) => listing = Listing::from(a),
            Next::Done => {}
        }
    }
}

/// Decides what a failed request means: a restart, a paging switch, a wait, or the walk's end.
#[allow(clippy::too_many_arguments)]
fn handle_error(
    ctx: &Ctx<'_>,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    e: PageError,
    walk: &mut AccessWalk,
    listing: &mut Listing,
    restarts: &mut u32,
    soft_retries: &mut u32,
) -> Result<(), WalkEnd> {
    let (e, in_body) = match e {
        PageError::Fetch(FetchError::Slack(e)) => (e, false),
        PageError::Body(e) => (e, true),
        PageError::Fetch(e) => return Err(fetch_end(e, "team.accessLogs (slack_api_base)")),
    };
    let order = configured_order(ctx.config).or(walk.order);
    match &e {
        SlackError::InvalidCursor
            if listing.cursor.is_some() && *restarts < MAX_CURSOR_RESTARTS =>
        {
            // Cursors expire; the position knows where to pick up without one.
            *restarts += 1;
            (io.log)(&format!(
                "{}: cursor rejected (invalid_cursor); resuming the walk from its position",
                ctx.label()
            ));
            *listing = Listing::from(walk.anchor(order));
            Ok(())
        }
        SlackError::Api { code, .. }
            if code == "invalid_limit" && !walk.classic && walk.refused_limit.is_none() =>
        {
            let limit = walk.cursor_limit(ctx.config);
            (io.log)(&format!(
                "{}: Slack refused limit={limit} (invalid_limit); using classic count/page paging",
                ctx.label()
            ));
            walk.classic = true;
            walk.refused_limit = Some(limit);
            *listing = Listing::from(walk.anchor(order));
            Ok(())
        }
        SlackError::Server { .. } if walk.classic && walk.cursor_limit(ctx.config) > 0 => {
            // Slack's advice for 500 / fatal_error on this method: use cursor paging.
            (io.log)(&format!(
                "{}: classic paging failed ({e}); switching to cursor paging with limit={}",
                ctx.label(),
                walk.cursor_limit(ctx.config)
            ));
            walk.classic = false;
            *listing = Listing::from(walk.anchor(order));
            Ok(())
        }
        SlackError::RateLimited { .. } | SlackError::Server { .. }
            if in_body && *soft_retries < MAX_SOFT_RETRIES =>
        {
            // `ratelimited` / `fatal_error` in an HTTP 200 body (Q32): the fetcher retries only
            // on the HTTP status, so wait here the same way.
            let wait = Duration::from_secs(1 << *soft_retries);
            *soft_retries += 1;
            if wait + MIN_REQUEST_BUDGET > fetcher.deadline.remaining(fetcher.clock) {
                return Err(WalkEnd::Budget(format!(
                    "{e}; waiting {} s would outlast the pass's time budget, so the pass stopped here and the next one resumes",
                    wait.as_secs()
                )));
            }
            (io.log)(&format!(
                "{}: retrying in {} s after: {e}",
                ctx.label(),
                wait.as_secs()
            ));
            fetcher.clock.sleep(wait);
            Ok(())
        }
        _ => Err(ctx.slack_failure(&e, walk, listing)),
    }
}

/// Judges the order from consecutive rows (`prev` is the last row of the previous page of the
/// same listing). Returns the order known afterwards, or why the rows fit no order it can trust.
fn judge_order(
    known: Option<SortOrder>,
    prev: Option<(i64, i64)>,
    rows: &[AccessRow<'_>],
) -> Result<Option<SortOrder>, String> {
    let mut last = prev;
    // The first rising pair seen for each field: evidence against sorting by it.
    let (mut first_rises, mut last_rises) = (None, None);
    for r in rows {
        if let Some((f, l)) = last {
            if r.date_first > f && first_rises.is_none() {
                first_rises = Some((f, r.date_first));
            }
            if r.date_last > l && last_rises.is_none() {
                last_rises = Some((l, r.date_last));
            }
        }
        last = Some((r.date_first, r.date_last));
    }
    let advice = "slack-logs cannot tell which rows it already delivered, so the stream stops here (the checkpoint was kept). \
                  Set `access_sort_key` to `date_first` or `date_last` if you know the order Slack uses";
    let out_of = |o: SortOrder, (a, b): (i64, i64)| {
        format!(
            "team.accessLogs returned rows out of {0} order ({0} {a} then {b}), though earlier rows showed it sorts by {0}; {advice}",
            o.name()
        )
    };
    match (known, first_rises, last_rises) {
        (_, Some((a, b)), Some((c, d))) => Err(format!(
            "team.accessLogs returned rows sorted neither by date_first ({a} then {b}) nor by date_last ({c} then {d}); {advice}"
        )),
        (Some(SortOrder::DateFirst), Some(p), None) => Err(out_of(SortOrder::DateFirst, p)),
        (Some(SortOrder::DateLast), None, Some(p)) => Err(out_of(SortOrder::DateLast, p)),
        (None, Some(_), None) => Ok(Some(SortOrder::DateLast)),
        (None, None, Some(_)) => Ok(Some(SortOrder::DateFirst)),
        (k, _, _) => Ok(k),
    }
}

#[cfg(test)]
mod tests;
