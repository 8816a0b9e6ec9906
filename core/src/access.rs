//! The access stream: `team.accessLogs`, mutable aggregates per user + IP + user agent
//! (Q21–Q32).
//!
//! A row has `date_first`, `date_last` and `count`; `date_last` and `count` change whenever the
//! combination is used again. The API pages newest first and has only an upper bound, `before`
//! (inclusive, second-granular). Slack documents neither the field it sorts by (Q23) nor the field
//! `before` compares with, nor what its cursor encodes (a row, or a position number).
//!
//! **What is emitted.** A *walk* covers every row up to a bound `B` fixed when it starts,
//! `access_lag_seconds` behind now (activity Slack records a little late, or a host clock a little
//! ahead, still lands above `B`). When it completes, the watermark `W` becomes `B`. In `activity`
//! mode a walk emits the rows with `date_last > W`, as they are when read. That includes rows
//! updated during the walk (`date_last > B`): leaving them to the next walk would starve a
//! combination used more often than a walk takes to reach it. Their state keys go to the next walk
//! ([`AccessCheckpoint::ahead`]), which skips those states if unchanged, so nothing repeats
//! (beyond [`MAX_AHEAD`] such rows in one walk, the rest wait for the next walk). In `new-only`
//! mode a walk emits the combinations with `W < date_first <= B`, also when they were updated
//! during the walk. The record id is a truncated SHA-256 of `user_id, ip, user_agent, date_first,
//! date_last` ([`record_id`]): a row whose `date_last` moved is a new record, the same state seen
//! twice is the same record, and a user cannot craft a second login with the id of a real one.
//!
//! **The listing a walk reads.** A walk reads Slack's listing *without* `before` (Slack's now),
//! and applies `B` itself. In that listing no row ever leaves: a row used again keeps its place
//! (sorted by `date_first`) or moves to the top (sorted by `date_last`), and new rows enter at the
//! top. So rows only ever enter *ahead* of a walk's place, and the place of an unread row only
//! grows: a cursor that is a position number (an offset) can make the walk read a row twice, never
//! skip one, whichever field Slack sorts by and whichever it filters `before` on. (With `before` in
//! the past and Slack filtering on `date_last`, every row used again during the walk would leave
//! the listing and shift the unread ones past an offset cursor.) Rows read twice are recognised by
//! the position.
//!
//! **The position.** After every page the sink accepted, the checkpoint records the walk's
//! *position*, which does not depend on the sort order: the lowest `date_first` and the lowest
//! `date_last` among the rows considered so far, each with the keys of the rows delivered at
//! exactly that value. A row is already delivered when it is *covered* for both fields: for each,
//! its value is above the lowest, or equal to it and its key is listed. Every delivered row stays
//! covered (the lowest values only fall, and a row equal to one is listed). A row not yet read
//! comes after all rows read in Slack's order, so under that order's key it is at or below the
//! lowest value and, unless it repeats a delivered key, not covered. This holds whichever field
//! Slack sorts by, so no row is lost or repeated even before the order is known. Delivered keys
//! are state keys in `activity` mode and combination keys (no `date_last`) in `new-only` mode,
//! where an updated row must still count as delivered; both are the first 64 bits of the same
//! SHA-256 as the ids. The checkpoint holds the latest [`MAX_TIE_KEYS`] keys at one value and the
//! older ones go to parts in the store ([`tie`]): every value stays bounded (well under the
//! portable 400 KB) however many rows share a second, and no delivered key is forgotten.
//!
//! **Resuming.** The checkpoint also keeps where the walk stands in its listing: the rows served,
//! and Slack's cursor for the next page. A pass (or an `invalid_cursor`) goes on from there with
//! the first of these that Slack allows, so resuming costs about a page, not what was read:
//! 1. the saved cursor. Rows that entered ahead since are read again and skipped (by value, or by
//!    the window of keys inside a tie);
//! 2. classic paging into the same listing: `page` = rows served / 1000 + 1 (up to page 100, so up
//!    to 100,000 rows into a listing), re-reading less than a page plus what entered ahead;
//! 3. a listing with `before` lowered to the position, where that cannot leave out an unread row:
//!    the lowest `date_last` under `date_last` order (every unread row has both fields at or below
//!    it); under `date_first` order (or while the order is unknown: the higher of the two lowest
//!    values) only once the data proved that `before` does not filter on `date_last`: a row with
//!    `date_last > before` came back. Until then the first page of such a listing is a probe, and
//!    a page without that proof is not used; under `date_first` order the probe's `before` is the
//!    `date_first` of the last row read that was used again ([`Position::witness`]), so the page
//!    holds that row if `before` filters on `date_first`. While rows may leave such a listing
//!    (`before` possibly on `date_last`), its cursor is not followed: after every page `before` is
//!    lowered again to the position (keyset paging through `before`), a tie larger than a page is
//!    read with classic page numbers, and when `paging.total` shows rows left, the walk steps back
//!    as many rows before using the page;
//! 4. the listing from its start (rows delivered are skipped by the position).
//!
//! Inside a tie (rows sharing the value the walk stands at) 1 and 2 cost a page. 3 and 4 read the
//! tie from its start and skip every row of it delivered; a pass whose re-read gets no further
//! than the last one ends with `access_tie_stuck` and advice rather than quietly (`reread_once`).
//! Only keys that are lost (a checkpoint of a release that kept just the window, a tie part
//! deleted by hand) make a re-read offer rows again (same ids; the log says so), once per
//! position. Without 1 and 2 (Slack rejects the
//! saved cursor, and classic paging is refused, fails or is past page 100), a walk longer than one
//! pass can read does not finish until passes run closer together than Slack's cursors expire or
//! `max_run_seconds` is raised; the log says so. With cursor paging refused, a listing longer than
//! classic paging reaches (100 pages of 1000) with no lowered `before` proven safe stops the stream
//! with `over_pagination_limit`: it waits, nothing lost, until Slack accepts cursor paging again.
//!
//! **Stopping early.** Under `date_last` order, once a row has `date_last <= W` every later row
//! does too: both modes can stop there (`date_first <= date_last`). Under `date_first` order,
//! once a row has `date_first <= W` no later combination is new: `new-only` can stop there, but
//! `activity` cannot, since an old combination can have a fresh `date_last` anywhere; it reads to
//! the end. `new-only` may stop at `date_last <= W` under either order. With
//! `access_sort_key = auto` the order is learnt from the data: two consecutive rows of one page
//! where `date_last` rises prove Slack does not sort by `date_last`, where `date_first` rises, not
//! by `date_first` (across pages the listing may have changed in between). What is proven is kept
//! in the checkpoint; until then no stop is taken that one of the orders would make unsafe, and a
//! long walk goes on in the next pass. Rows that contradict a proven order (or both orders) stop
//! the stream with advice rather than risk losing rows. A configured `date_first` / `date_last` is
//! trusted and not checked.
//!
//! **Paging.** Cursor mode (`limit`) by default. When Slack refuses the `limit` (`invalid_limit`),
//! classic `count`/`page` paging. An HTTP 500 or `fatal_error` in classic mode switches back to
//! cursor mode with a smaller `limit`, as Slack advises, and classic paging is not used again in
//! that walk.
//!
//! Assumed, not documented: `date_first <= date_last`; rows that share the sort value keep their
//! relative order from one request to the next (any paging by offset needs that).
//!
//! Known limits. Under `date_last` order in `new-only` mode, a combination first seen shortly
//! before a walk and used again before the walk reached it moves ahead of the walk and is missed
//! (its `date_first` is then behind the next walk's watermark). Under `date_first` order,
//! `activity` reads every row on every walk. Activity Slack records more than
//! `access_lag_seconds` late is not collected.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::config::{format_rfc3339, AccessMode, AccessSortKey, Config};
use crate::env::{KvStore, StoreError};
use crate::fetch::{settled, FetchError, Fetcher, MIN_REQUEST_BUDGET};
use crate::record::{content_id, content_key, RecordWriter};
use crate::slack_error::{describe_body, SlackError};
use crate::url::with_query;
use crate::walk::{fetch_end, StreamIo, WalkEnd, WalkStats};
use crate::web_api::{parse_envelope, Paging};

/// The `source` of access records.
pub const SOURCE: &str = "team.accessLogs";
const STREAM: &str = "access";
/// `invalid_cursor` restarts in one pass before the stream gives up.
const MAX_CURSOR_RESTARTS: u32 = 5;
/// Retries of a `ratelimited` / `fatal_error` that came in an HTTP 200 body (the fetcher retries
/// only on the HTTP status).
const MAX_SOFT_RETRIES: u32 = 3;
/// Step-backs in one pass after rows left a listing paged by number; then the pass stops there
/// (nothing lost) and the next resumes.
const MAX_STEP_BACKS: u32 = 20;
/// Keys a position keeps per field at its lowest value (the latest delivered). More than a
/// classic page (1000) plus the rows that may enter ahead between passes; with two windows and two
/// [`MAX_AHEAD`] sets of u64 (at most 21 bytes of JSON each) a checkpoint stays under ~215 KB.
pub const MAX_TIE_KEYS: usize = 2_048;
/// Rows a walk delivers past its `before` (updated during the walk) and hands to the next walk
/// as already delivered; beyond this they are left to the next walk instead.
pub const MAX_AHEAD: usize = 3_000;
/// The largest cursor `limit` tried after classic paging failed (Slack recommends 100–200).
const FALLBACK_LIMIT: u32 = 100;
/// A cursor longer than this is used within the pass but not kept in the checkpoint.
const MAX_SAVED_CURSOR: usize = 2_048;

/// Where the access checkpoint of a workspace (or of an org-wide walk, `None`) lives.
pub fn checkpoint_key(team_id: Option<&str>) -> String {
    crate::keys::checkpoint_key(crate::Stream::Access, team_id)
}

/// The record id of a row state: [`content_id`] (128-bit truncated SHA-256 over length-prefixed
/// parts) of `user_id`, `ip` (null as empty), `user_agent`, and `date_first` and `date_last` as
/// decimal strings; 32 hex digits. (Format 1 used FNV-1a, 16 hex digits: README, Records.)
pub fn record_id(
    user_id: &str,
    ip: Option<&str>,
    user_agent: &str,
    date_first: i64,
    date_last: i64,
) -> String {
    let (f, l) = (date_first.to_string(), date_last.to_string());
    content_id(&[
        user_id.as_bytes(),
        ip.unwrap_or("").as_bytes(),
        user_agent.as_bytes(),
        f.as_bytes(),
        l.as_bytes(),
    ])
}

/// The checkpoint key of a row state: the first 64 bits of its record id's digest.
fn state_key(
    user_id: &str,
    ip: Option<&str>,
    user_agent: &str,
    date_first: i64,
    date_last: i64,
) -> u64 {
    let (f, l) = (date_first.to_string(), date_last.to_string());
    content_key(&[
        user_id.as_bytes(),
        ip.unwrap_or("").as_bytes(),
        user_agent.as_bytes(),
        f.as_bytes(),
        l.as_bytes(),
    ])
}

/// The checkpoint key of a combination as first seen (new-only mode): no `date_last`.
fn combination_key(user_id: &str, ip: Option<&str>, user_agent: &str, date_first: i64) -> u64 {
    let f = date_first.to_string();
    content_key(&[
        user_id.as_bytes(),
        ip.unwrap_or("").as_bytes(),
        user_agent.as_bytes(),
        f.as_bytes(),
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

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// Proven by the data: a listing with `before` returned a row with `date_last > before`, so
    /// `before` does not filter on `date_last` and lowering it cannot hide a row used again.
    #[serde(default, skip_serializing_if = "is_false")]
    pub before_spares_date_last: bool,
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
    /// Slack refused cursor paging (`invalid_limit`): new listings are read by classic
    /// `count`/`page`.
    #[serde(default)]
    pub classic: bool,
    /// A cursor `limit` Slack answered `invalid_limit` to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_limit: Option<u32>,
    /// Classic paging answered 500 / `fatal_error` in this walk: not used again.
    #[serde(default, skip_serializing_if = "is_false")]
    pub classic_failed: bool,
    #[serde(default)]
    pub position: Position,
    /// Activity: state keys this walk delivered with `date_last > before`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub ahead: BTreeSet<u64>,
    /// Where the walk stands in the listing it reads.
    #[serde(default)]
    pub listing: Listing,
    /// The position (`date_first`, `date_last`) at which this walk re-read a tie from its start
    /// although it had forgotten keys of it, offering those rows again: done once, never twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reread_at: Option<(i64, i64)>,
    /// Where the last re-read of a tie whose keys are all known began (`date_first`,
    /// `date_last`) and how many of its rows were delivered then: a later re-read there that finds
    /// no more got no further (see [`reread_once`]). Apart from `reread_at`, which counts the one
    /// re-read that may offer rows again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_reread: Option<(i64, i64, u64)>,
    /// The most parts of tie keys this walk stored for a field, deleted when it completes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tie_parts: u64,
}

/// One listing of `team.accessLogs` (one `before`), and where the walk stands in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The `before` sent with every request; `None`: none (Slack's now), the listing no row leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<i64>,
    /// Rows served by this listing so far: at most the place of its next unread row.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub served: u64,
    /// The most rows this listing served before it was re-read from its start: where page
    /// numbers can resume it once they are available again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reached: u64,
    /// Cursor paging: Slack's cursor for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Classic paging: the next page number. `None`: cursor paging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Classic paging of a listing rows may leave: `paging.total` of the last page used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl Listing {
    /// The start of a listing, read by classic pages or by cursor.
    fn start(anchor: Option<i64>, classic: bool) -> Listing {
        Listing {
            anchor,
            served: 0,
            reached: 0,
            cursor: None,
            page: classic.then_some(1),
            total: None,
        }
    }
}

/// The latest keys delivered at one value, oldest first: at most [`MAX_TIE_KEYS`] in a saved
/// checkpoint, older ones in the store ([`tie::Spill`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<u64>", into = "Vec<u64>")]
pub struct KeyWindow {
    order: VecDeque<u64>,
    members: HashSet<u64>,
}

impl KeyWindow {
    pub fn contains(&self, key: u64) -> bool {
        self.members.contains(&key)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Adds a key. The window may grow past [`MAX_TIE_KEYS`] between checkpoints; the oldest keys
    /// move to the store before one is saved ([`Position::spill`]).
    fn push(&mut self, key: u64) {
        if self.members.insert(key) {
            self.order.push_back(key);
        }
    }

    /// The keys beyond the latest [`MAX_TIE_KEYS`], oldest first.
    fn excess(&self) -> Vec<u64> {
        let n = self.order.len().saturating_sub(MAX_TIE_KEYS);
        self.order.iter().take(n).copied().collect()
    }

    /// Forgets the `n` oldest keys (stored elsewhere).
    fn drop_oldest(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(old) = self.order.pop_front() {
                self.members.remove(&old);
            }
        }
    }

    fn clear(&mut self) {
        self.order.clear();
        self.members.clear();
    }
}

impl From<Vec<u64>> for KeyWindow {
    fn from(keys: Vec<u64>) -> KeyWindow {
        let mut w = KeyWindow::default();
        for k in keys {
            w.push(k);
        }
        w
    }
}

impl From<KeyWindow> for Vec<u64> {
    fn from(w: KeyWindow) -> Vec<u64> {
        w.order.into()
    }
}

impl FromIterator<u64> for KeyWindow {
    fn from_iter<I: IntoIterator<Item = u64>>(keys: I) -> KeyWindow {
        KeyWindow::from(keys.into_iter().collect::<Vec<u64>>())
    }
}

/// How far a walk got, in a form that does not depend on the sort order (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The lowest `date_first` among the rows considered, and the keys of the rows delivered
    /// with exactly that `date_first`: the latest [`MAX_TIE_KEYS`] here, older ones in the store
    /// (`first_spill` counts them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_first: Option<i64>,
    #[serde(default, skip_serializing_if = "KeyWindow::is_empty")]
    pub first_keys: KeyWindow,
    #[serde(default, skip_serializing_if = "Spill::is_empty")]
    pub first_spill: Spill,
    /// Rows delivered at exactly `date_first` whose keys are known neither here nor in the store:
    /// left by a release that kept only the window, or in a stored part that went missing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_forgotten: u64,
    /// The same for `date_last`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_last: Option<i64>,
    #[serde(default, skip_serializing_if = "KeyWindow::is_empty")]
    pub last_keys: KeyWindow,
    #[serde(default, skip_serializing_if = "Spill::is_empty")]
    pub last_spill: Spill,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_forgotten: u64,
    /// The `date_first` of the last row considered that was used after it was first seen
    /// (`date_last > date_first`): a listing with `before` at this value holds that row near its
    /// start if `before` filters on `date_first`, and cannot if it filters on `date_last`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<i64>,
}

impl Position {
    /// Whether a row was already delivered by this walk (true only for rows read before).
    pub fn covers(&self, date_first: i64, date_last: i64, key: u64) -> bool {
        let covered = |lowest: Option<i64>, keys: &KeyWindow, spill: &Spill, v: i64| match lowest {
            None => false,
            Some(l) => v > l || (v == l && (keys.contains(key) || spill.contains(key))),
        };
        covered(
            self.date_first,
            &self.first_keys,
            &self.first_spill,
            date_first,
        ) && covered(self.date_last, &self.last_keys, &self.last_spill, date_last)
    }

    /// Takes one row read after every row considered so far.
    fn advance(&mut self, date_first: i64, date_last: i64, key: u64, delivered: bool) {
        if date_last > date_first {
            self.witness = Some(date_first);
        }
        fn one(
            lowest: &mut Option<i64>,
            keys: &mut KeyWindow,
            spill: &mut Spill,
            forgotten: &mut u64,
            v: i64,
            key: u64,
            delivered: bool,
        ) {
            match *lowest {
                Some(l) if v > l => {} // above the lowest: covered by `>` from now on
                Some(l) if v == l => {}
                _ => {
                    // Parts stored for the old value stay until overwritten; they name their
                    // value, so none is taken for this one.
                    *lowest = Some(v);
                    keys.clear();
                    *spill = Spill::default();
                    *forgotten = 0;
                }
            }
            if delivered && *lowest == Some(v) && !spill.contains(key) {
                keys.push(key);
            }
        }
        one(
            &mut self.date_first,
            &mut self.first_keys,
            &mut self.first_spill,
            &mut self.first_forgotten,
            date_first,
            key,
            delivered,
        );
        one(
            &mut self.date_last,
            &mut self.last_keys,
            &mut self.last_spill,
            &mut self.last_forgotten,
            date_last,
            key,
            delivered,
        );
    }

    /// Whether a window holds more keys than a checkpoint keeps inline.
    fn needs_spill(&self) -> bool {
        self.first_keys.len() > MAX_TIE_KEYS || self.last_keys.len() > MAX_TIE_KEYS
    }

    /// Moves each window's keys beyond the latest [`MAX_TIE_KEYS`] into the store; call before
    /// the checkpoint is saved. Returns the parts each field's keys take, for their clean-up.
    fn spill(
        &mut self,
        store: &mut dyn KvStore,
        team_id: Option<&str>,
    ) -> Result<usize, StoreError> {
        let mut parts = 0;
        for (field, value, keys, spill) in [
            (
                TieField::DateFirst,
                self.date_first,
                &mut self.first_keys,
                &mut self.first_spill,
            ),
            (
                TieField::DateLast,
                self.date_last,
                &mut self.last_keys,
                &mut self.last_spill,
            ),
        ] {
            let moved = keys.excess();
            if let (Some(v), false) = (value, moved.is_empty()) {
                let key_of = |part| crate::keys::access_tie_part_key(team_id, field.name(), part);
                spill.store(v, &moved, store, &key_of)?;
                keys.drop_oldest(moved.len());
            }
            parts = parts.max(spill.parts());
        }
        Ok(parts)
    }

    /// Reads back the keys a resumed walk's checkpoint counts in the store. A part lost (deleted
    /// by hand, or of another tie) makes its keys forgotten, as in a checkpoint of a release that
    /// kept only the window: returned as a warning for the log.
    fn load_spill(
        &mut self,
        store: &mut dyn KvStore,
        team_id: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut warnings = Vec::new();
        for (field, value, spill, forgotten) in [
            (
                TieField::DateFirst,
                self.date_first,
                &mut self.first_spill,
                &mut self.first_forgotten,
            ),
            (
                TieField::DateLast,
                self.date_last,
                &mut self.last_spill,
                &mut self.last_forgotten,
            ),
        ] {
            let key_of = |part| crate::keys::access_tie_part_key(team_id, field.name(), part);
            let Some(v) = value else {
                *spill = Spill::default();
                continue;
            };
            match spill.load(v, store, &key_of) {
                Ok(()) => {}
                Err(LoadError::Store(e)) => return Err(e),
                Err(LoadError::Lost {
                    forgotten: n,
                    message,
                }) => {
                    *forgotten = forgotten.saturating_add(n);
                    warnings.push(message);
                }
            }
        }
        Ok(warnings)
    }

    /// Rows delivered at the position, as far as the walk knows.
    fn delivered_here(&self) -> u64 {
        let at = |keys: &KeyWindow, spill: &Spill, forgotten: u64| {
            (keys.len() as u64)
                .saturating_add(spill.len() as u64)
                .saturating_add(forgotten)
        };
        at(&self.first_keys, &self.first_spill, self.first_forgotten).max(at(
            &self.last_keys,
            &self.last_spill,
            self.last_forgotten,
        ))
    }

    /// Rows delivered at the position that a re-read of its tie could offer again.
    pub fn forgotten(&self) -> u64 {
        self.first_forgotten.max(self.last_forgotten)
    }
}

impl Checkpoint for AccessCheckpoint {
    /// 2: SHA-256 record ids and keys, bounded key windows, the listing kept for resuming.
    const VERSION: u32 = 2;

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
            before_spares_date_last: false,
            walk: None,
            ahead: BTreeSet::new(),
        }
    }

    /// Brings a checkpoint of an older format to this one; returns what it changed, for the log.
    /// Format 1 keyed delivered rows by FNV-1a, which no key of this version can match: the walk
    /// in progress keeps its bound and position but forgets those keys, so the rows it delivered at
    /// exactly its position, and the rows the last walk delivered ahead, are offered once more,
    /// with their new ids. It also re-reads its listing from the start (format 1 kept none);
    /// rows above the position are recognised and skipped.
    pub fn upgrade(&mut self) -> Option<String> {
        if self.v >= <AccessCheckpoint as Checkpoint>::VERSION {
            return None;
        }
        let from = self.v;
        let mut boundary = 0;
        let mut ahead = self.ahead.len();
        self.ahead.clear();
        if let Some(w) = &mut self.walk {
            let p = &mut w.position;
            boundary = p.first_keys.len().max(p.last_keys.len());
            p.first_keys.clear();
            p.last_keys.clear();
            ahead += w.ahead.len();
            w.ahead.clear();
            w.listing = Listing::start(None, w.classic);
        }
        self.v = <AccessCheckpoint as Checkpoint>::VERSION;
        Some(format!(
            "checkpoint format {from} upgraded to {}: record ids are now SHA-256 (32 hex digits) instead of FNV-1a, \
             so the {boundary} rows delivered at the position of the walk in progress and the {ahead} rows delivered \
             ahead of the last walk are offered once more, with their new ids",
            <AccessCheckpoint as Checkpoint>::VERSION
        ))
    }
}

/// What the walk may do with its current listing (see the module docs, "Resuming").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListingKind {
    /// No row can leave it: follow its cursor, page on by number.
    Stable,
    /// `before` is the lowest `date_last` read, and rows may leave: lower `before` after every
    /// page, read a tie by page numbers checked against `paging.total`.
    Keyset,
    /// `before` lowered under `date_first` (or unknown) order: lossless only if `before` does not
    /// filter on `date_last`, which its first page must prove.
    Probe,
}

fn listing_kind(
    listing: &Listing,
    order: Option<SortOrder>,
    spares_date_last: bool,
) -> ListingKind {
    match listing.anchor {
        None => ListingKind::Stable,
        Some(_) if spares_date_last => ListingKind::Stable,
        Some(_) if order == Some(SortOrder::DateLast) => ListingKind::Keyset,
        Some(_) => ListingKind::Probe,
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
            classic_failed: false,
            position: Position::default(),
            ahead: BTreeSet::new(),
            listing: Listing::start(None, false),
            reread_at: None,
            tie_reread: None,
            tie_parts: 0,
        }
    }

    /// The `before` a listing may be lowered to without leaving out an unread row, under the order
    /// in use (see the module docs; `Probe` listings still need their proof). `None`: nothing read.
    fn anchor(&self, order: Option<SortOrder>) -> Option<i64> {
        let p = &self.position;
        match (order, p.date_first, p.date_last) {
            (_, None, _) | (_, _, None) => None,
            (Some(SortOrder::DateFirst), Some(f), _) => Some(f),
            (Some(SortOrder::DateLast), _, Some(l)) => Some(l),
            (None, Some(f), Some(l)) => Some(f.max(l)),
        }
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
            if self.listing.anchor.is_some_and(|a| r.date_first > a) {
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
    /// Rows this walk already delivered (read again: a resumed listing, the inclusive boundary).
    pub duplicates: u32,
    /// Rows updated after the walk began (`date_last > before`) left to the next walk, once
    /// [`MAX_AHEAD`] were delivered ahead.
    pub deferred: u32,
    /// Rows first seen after the `before` sent, which Slack should not have sent.
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
            WalkMode::Activity => state_key(
                &self.user_id,
                self.ip.as_deref(),
                &self.user_agent,
                self.date_first,
                self.date_last,
            ),
            WalkMode::NewOnly => combination_key(
                &self.user_id,
                self.ip.as_deref(),
                &self.user_agent,
                self.date_first,
            ),
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

fn page_url(config: &Config, team_id: Option<&str>, walk: &AccessWalk, limits: Limits) -> String {
    let listing = &walk.listing;
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(a) = listing.anchor {
        params.push(("before", a.to_string()));
    }
    match listing.page {
        Some(p) => {
            params.push(("count", limits.classic_count.to_string()));
            params.push(("page", p.to_string()));
        }
        None => {
            params.push(("limit", walk.cursor_limit(config).to_string()));
            if let Some(c) = &listing.cursor {
                params.push(("cursor", c.clone()));
            }
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
    // This pass's bound: our clock's now minus the lag, or Slack's once an answer of this pass
    // showed ours ahead (a walk started by our clock is lowered to Slack's after its first
    // answer, see `walk_one`). Fixed for the pass, so walks do not chase the present.
    let now = fetcher.clock.now_unix();
    let top = |fetcher: &Fetcher<'_>| {
        settled(
            now,
            fetcher.stats.slack_clock.map(|c| c.offset()),
            config.access_lag_seconds,
        )
    };
    let ctx = Ctx {
        config,
        team_id,
        token,
        limits,
        key: checkpoint_key(team_id),
    };
    if let Some(note) = checkpoint.upgrade() {
        (io.log)(&format!("{}: {note}", ctx.label()));
    }
    loop {
        let (walk, started_here) = match &checkpoint.walk {
            // A walk that cannot move the watermark forward has nothing to collect.
            Some(w) if w.before <= checkpoint.watermark => {
                checkpoint.walk = None;
                continue;
            }
            Some(w) => {
                let mut w = w.clone();
                match w.position.load_spill(io.store, team_id) {
                    Ok(warnings) => {
                        for warning in warnings {
                            (io.log)(&format!("{}: {warning}", ctx.label()));
                        }
                    }
                    Err(e) => {
                        return WalkEnd::Failed {
                            code: "store_error".into(),
                            message: format!(
                                "{}: reading the keys of rows that share one second: {e}; nothing was delivered",
                                ctx.label()
                            ),
                        }
                    }
                }
                (w, false)
            }
            None if top(fetcher) <= checkpoint.watermark => return WalkEnd::CaughtUp,
            None => (AccessWalk::start(config, checkpoint, top(fetcher)), true),
        };
        if let Err(end) = walk_one(&ctx, fetcher, io, checkpoint, walk, stats) {
            return end;
        }
        // A walk an earlier pass left is followed by one up to this pass's bound; one this pass
        // started ends the pass's part (a second second would cost a whole walk).
        if started_here || checkpoint.watermark >= top(fetcher) {
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

    fn classic_count(&self) -> u64 {
        u64::from(self.limits.classic_count.max(1))
    }

    /// A Slack error as the walk's end, with what to fix for this method.
    fn slack_failure(&self, e: &SlackError, walk: &AccessWalk) -> WalkEnd {
        let mut message = match self.team_id {
            Some(t) => format!("team.accessLogs for workspace {t}: {e}"),
            None => format!("team.accessLogs: {e}"),
        };
        match e.code().as_str() {
            "over_pagination_limit" => message += &format!(
                "; slack-logs asked for {}, within Slack's documented caps (count 1000, page 100, limit under 1000); \
                 Slack's limits may have changed: lower `access_page_size` and report this",
                match walk.listing.page {
                    Some(p) => format!("count={} page={p}", self.limits.classic_count),
                    None => format!("limit={}", walk.cursor_limit(self.config)),
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
    /// A new listing with `before` lowered to the position.
    Anchor(i64),
    /// A tie larger than a page in a listing rows may leave: go on by page number.
    Deeper,
    /// Classic paging reached Slack's page cap in this listing.
    Rebase,
}

/// Why a page could not be used.
enum PageError {
    /// The fetcher gave up (it already retried 429, 5xx and timeouts).
    Fetch(FetchError),
    /// An HTTP 200 whose body is an error or does not parse.
    Body(SlackError),
}

/// What one pass of a walk keeps in memory only.
#[derive(Default)]
struct PassState {
    cursor_restarts: u32,
    soft_retries: u32,
    step_backs: u32,
    /// Classic paging reached Slack's page cap in this pass and the walk moved to a lower `before`.
    rebased: bool,
    /// The listing the walk left to re-read from a lower `before` or from the start, until that
    /// re-read begins (see [`reread_once`]).
    reread_from: Option<Listing>,
    /// Cursors of the current listing: one that comes back would page in a circle forever.
    cursors_seen: HashSet<String>,
    /// A re-read of the tie began where the last one had, with no more of it delivered since:
    /// if the pass ends still there, the walk is stuck.
    stalled: Option<Stall>,
    /// This pass began a re-read of a tie ([`reread_once`]).
    reread_seen: bool,
}

/// A re-read of a tie that began where the last one had ([`reread_once`]).
struct Stall {
    /// [`stall_mark`] then.
    mark: (i64, i64, u64),
    /// The listing the walk stood in before the re-read: where the checkpoint goes back to.
    left: Listing,
    /// Slack's 429s in this pass until then: a pass that then waited on rate limits ran out of
    /// time for another reason.
    rate_limited: u32,
}

/// How [`reopen`] went on.
#[derive(Debug, PartialEq, Eq)]
enum Reopened {
    /// The listing had served nothing: started again as it was.
    Same,
    /// Classic page numbers into the same listing.
    Classic,
    /// A listing with `before` lowered to this value.
    Anchor(i64),
    /// The walk's listing from its start.
    Restart,
}

fn walk_one(
    ctx: &Ctx<'_>,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AccessCheckpoint,
    mut walk: AccessWalk,
    stats: &mut WalkStats,
) -> Result<(), WalkEnd> {
    let mut pass = PassState::default();
    let end = walk_pages(ctx, fetcher, io, checkpoint, &mut walk, stats, &mut pass);
    let (Err(WalkEnd::Budget(_)), Some(stall)) = (&end, pass.stalled.take()) else {
        return end;
    };
    if Some(stall.mark) != stall_mark(&walk.position)
        || fetcher.stats.rate_limited != stall.rate_limited
    {
        return end;
    }
    let (f, l, n) = stall.mark;
    // A re-read of a tie that got no further than the last one, and this pass ended inside it
    // again: without a word every pass would end the same way. The checkpoint goes back to the
    // listing the walk stood in, with classic paging allowed again, so the next pass tries the
    // ways to resume inside the tie first.
    walk.listing = stall.left;
    walk.classic_failed = false;
    save_walk(ctx, io, checkpoint, &mut walk)?;
    Err(WalkEnd::Failed {
        code: "access_tie_stuck".into(),
        message: format!(
            "{}: the walk stands inside rows that share one second (date_first {f}, date_last {l}; {n} of them \
             delivered), Slack rejects its saved cursor and classic paging is unavailable, so each pass re-reads them \
             from their start, skipping those delivered, and this pass got no further than the last. Nothing was lost \
             and nothing is offered again; the next pass tries the saved cursor and classic paging first. Let passes \
             run closer together than Slack's cursors expire, or raise `max_run_seconds`",
            ctx.label(),
        ),
    })
}

/// Where a walk stands inside a tie, for telling a re-read that got further from one that did
/// not.
fn stall_mark(p: &Position) -> Option<(i64, i64, u64)> {
    Some((p.date_first?, p.date_last?, p.delivered_here()))
}

#[allow(clippy::too_many_arguments)]
fn walk_pages(
    ctx: &Ctx<'_>,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AccessCheckpoint,
    walk: &mut AccessWalk,
    stats: &mut WalkStats,
    pass: &mut PassState,
) -> Result<(), WalkEnd> {
    let config = ctx.config;
    let trusted = configured_order(config);
    let watermark = checkpoint.watermark;
    let count = ctx.classic_count();
    let (records_before, mut deferred) = (stats.records, 0u64);
    if walk.listing.served > 0 && walk.listing.cursor.is_none() && walk.listing.page.is_none() {
        reopen(
            ctx,
            io,
            checkpoint,
            walk,
            pass,
            "the last pass left no cursor to resume with",
            true,
        );
    }
    loop {
        let url = page_url(config, ctx.team_id, walk, ctx.limits);
        let body = match fetcher.get(&url, ctx.token) {
            Ok(resp) => resp.body,
            Err(e) => {
                handle_error(
                    ctx,
                    fetcher,
                    io,
                    checkpoint,
                    PageError::Fetch(e),
                    walk,
                    pass,
                )?;
                continue;
            }
        };
        let page = match parse_page(&body) {
            Ok(p) => p,
            Err(e) => {
                handle_error(ctx, fetcher, io, checkpoint, PageError::Body(e), walk, pass)?;
                continue;
            }
        };
        stats.pages += 1;
        pass.soft_retries = 0;
        // Our clock ahead of Slack's: a fresh walk's `before` came from it and may lie in Slack's
        // future, where rows used after this walk would fall below its watermark unread. Nothing
        // of the walk is read yet (its first page was asked without `before`): it ends at Slack's
        // now minus the lag instead, by the `Date` of this answer.
        if walk.listing.served == 0 && walk.position == Position::default() {
            let slack_top = settled(
                fetcher.clock.now_unix(),
                fetcher.stats.slack_clock.map(|c| c.offset()),
                config.access_lag_seconds,
            );
            if walk.before > slack_top {
                if slack_top <= watermark {
                    checkpoint.walk = None;
                    return Ok(());
                }
                walk.before = slack_top;
            }
        }
        let kind = listing_kind(
            &walk.listing,
            trusted.or(walk.order),
            checkpoint.before_spares_date_last,
        );
        let total = page.paging.map(|p| p.total);

        // A listing rows may leave, paged by number: when rows left, unread ones may have moved
        // onto pages already read. Step back as many rows before using a page.
        if let (ListingKind::Keyset, Some(p), Some(was), Some(is)) =
            (kind, walk.listing.page, walk.listing.total, total)
        {
            if is < was && p > 1 {
                if pass.step_backs >= MAX_STEP_BACKS {
                    return Err(WalkEnd::Budget(format!(
                        "rows keep leaving team.accessLogs' listing before={} while the walk pages through rows that share \
                         one second; the pass stopped there (nothing lost) and the next one resumes",
                        walk.listing.anchor.unwrap_or(walk.before)
                    )));
                }
                pass.step_backs += 1;
                let back = u32::try_from((was - is).div_ceil(count)).unwrap_or(u32::MAX);
                let to = p.saturating_sub(back).max(1);
                walk.listing.page = Some(to);
                walk.listing.served = u64::from(to - 1).saturating_mul(count);
                walk.listing.total = Some(is);
                continue;
            }
        }

        // What the page proves about the field `before` filters on.
        let mut spares = checkpoint.before_spares_date_last;
        if let Some(a) = walk.listing.anchor {
            if !spares && page.rows.iter().any(|r| r.date_last > a) {
                spares = true;
                (io.log)(&format!(
                    "{}: the data shows team.accessLogs' `before` does not filter on date_last (a row used after it came back), \
                     so a walk can resume by lowering it",
                    ctx.label()
                ));
            }
        }
        if kind == ListingKind::Probe && !spares {
            // If `before` filters on date_last, this listing lacks unread rows used again since
            // its `before`: nothing of it is used.
            if walk.classic && pass.rebased {
                // Classic paging from the start would meet the page cap again.
                return Err(over_pagination(
                    ctx,
                    walk,
                    "`before` may filter on date_last, and lowering it could then hide rows used again",
                ));
            }
            let why = format!(
                "a listing with before={} showed no row used after it, so `before` may filter on date_last and hide rows \
                 used again",
                walk.listing.anchor.unwrap_or(walk.before)
            );
            restart(ctx, io, walk, pass, &why);
            pass.cursors_seen.clear();
            continue;
        }

        if let Some(left) = pass.reread_from.take() {
            reread_once(
                ctx,
                io,
                checkpoint,
                walk,
                pass,
                left,
                fetcher.stats.rate_limited,
            )?;
        }

        if trusted.is_none() {
            let judged =
                judge_order(walk.order, &page.rows).map_err(|message| WalkEnd::Failed {
                    code: "access_sort_order".into(),
                    message: format!("{}: {message}", ctx.label()),
                })?;
            if judged.is_some() && judged != walk.order && judged != checkpoint.order {
                (io.log)(&format!(
                    "{}: the data shows team.accessLogs sorts by {}",
                    ctx.label(),
                    judged.map_or("?", SortOrder::name)
                ));
            }
            walk.order = judged;
        }

        let absorbed = walk.absorb(&page.rows, watermark, &checkpoint.ahead);
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
        walk.listing.served = walk.listing.served.saturating_add(page.rows.len() as u64);
        if walk.listing.page.is_some() {
            walk.listing.total = total;
        }
        if trusted.is_none() {
            checkpoint.order = walk.order;
        }
        checkpoint.before_spares_date_last = spares;

        let order = trusted.or(walk.order);
        let kind = listing_kind(&walk.listing, order, spares);
        let lower = walk
            .anchor(order)
            .filter(|a| walk.listing.anchor.is_some_and(|x| *a < x));
        let stop = page
            .rows
            .last()
            .is_some_and(|last| early_stop(walk.mode, order, last, watermark));
        let next = if stop {
            Next::Done
        } else if let Some(p) = walk.listing.page {
            let last_page = page.rows.is_empty()
                || match page.paging {
                    Some(paging) => p >= paging.pages,
                    None => page.rows.len() < ctx.limits.classic_count as usize,
                };
            match (last_page, kind, lower) {
                (true, _, _) => Next::Done,
                (false, ListingKind::Keyset, Some(a)) => Next::Anchor(a),
                _ if p >= ctx.limits.classic_max_page => Next::Rebase,
                _ => Next::Page(p + 1),
            }
        } else {
            match (page.next_cursor, kind, lower) {
                (None, _, _) => Next::Done,
                (Some(_), ListingKind::Keyset, Some(a)) => Next::Anchor(a),
                (Some(_), ListingKind::Keyset, None) => Next::Deeper,
                (Some(c), _, _) => Next::Cursor(c),
            }
        };

        if let Next::Done = next {
            checkpoint.watermark = checkpoint.watermark.max(walk.before);
            checkpoint.walk = None;
            // States delivered ahead of this walk's `before` are at most the next walk's.
            checkpoint.ahead = std::mem::take(&mut walk.ahead);
            io.save(&ctx.key, &checkpoint.encode())?;
            delete_tie_parts(ctx, io, walk.tie_parts);
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
        // An end found after the page was delivered: the checkpoint still records the page.
        let mut end = None;
        match next {
            Next::Cursor(c) if !pass.cursors_seen.insert(c.clone()) => {
                walk.listing.cursor = None;
                end = Some(WalkEnd::Failed {
                    code: "cursor_loop".into(),
                    message: format!(
                        "{}: Slack returned a cursor it had already returned in this walk; stopped to avoid paging in a circle. \
                         What was delivered is checkpointed; the next pass resumes from the position without the cursor",
                        ctx.label()
                    ),
                });
            }
            Next::Cursor(c) => walk.listing.cursor = Some(c),
            Next::Page(p) => walk.listing.page = Some(p),
            Next::Anchor(a) => {
                walk.listing = Listing::start(Some(a), walk.classic);
                pass.cursors_seen.clear();
            }
            Next::Deeper if walk.classic_failed => {
                let why = format!(
                    "more rows share before={} than a page holds, rows may leave that listing, and classic paging failed",
                    walk.listing.anchor.unwrap_or(walk.before)
                );
                restart(ctx, io, walk, pass, &why);
                pass.cursors_seen.clear();
            }
            Next::Deeper => {
                // The page that holds the next unread row (one page has been served here).
                let page = (walk.listing.served / count)
                    .saturating_add(1)
                    .min(u64::from(ctx.limits.classic_max_page.max(1)));
                walk.listing.page = Some(u32::try_from(page).unwrap_or(1));
                walk.listing.served = (page - 1).saturating_mul(count);
                walk.listing.cursor = None;
                walk.listing.total = None;
            }
            Next::Rebase => {
                let from = walk.listing.clone();
                match reopen(
                    ctx,
                    io,
                    checkpoint,
                    walk,
                    pass,
                    &format!(
                        "classic paging reached page {}",
                        ctx.limits.classic_max_page
                    ),
                    false,
                ) {
                    Reopened::Anchor(a) if Some(a) != from.anchor => {
                        pass.rebased = true;
                        pass.cursors_seen.clear();
                    }
                    _ => {
                        end = Some(over_pagination(
                            ctx,
                            walk,
                            "the rows read cannot be skipped by lowering `before` without risk of hiding unread ones",
                        ));
                        walk.listing = from;
                        pass.reread_from = None;
                    }
                }
            }
            Next::Done => {}
        }
        save_walk(ctx, io, checkpoint, walk)?;
        if let Some(end) = end {
            return Err(end);
        }
    }
}

/// Saves the checkpoint with `walk` as its walk: tie keys beyond what a checkpoint holds inline
/// go to the store first, and a cursor too long to be worth a checkpoint's space is left out
/// (the next pass resumes without it).
fn save_walk(
    ctx: &Ctx<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AccessCheckpoint,
    walk: &mut AccessWalk,
) -> Result<(), WalkEnd> {
    // The walk saved last shares the stored tie keys; without it the spill extends them in place.
    let previous = checkpoint.walk.take();
    if let Err(e) = spill_ties(ctx, io, walk) {
        checkpoint.walk = previous;
        return Err(e);
    }
    drop(previous);
    let mut saved = walk.clone();
    if saved
        .listing
        .cursor
        .as_ref()
        .is_some_and(|c| c.len() > MAX_SAVED_CURSOR)
    {
        saved.listing.cursor = None;
    }
    checkpoint.walk = Some(saved);
    io.save(&ctx.key, &checkpoint.encode())
}

/// Moves tie keys beyond what a checkpoint holds inline into the store, before the checkpoint
/// that counts them is saved (after the lease is checked: a pass that lost it writes nothing).
fn spill_ties(ctx: &Ctx<'_>, io: &mut StreamIo<'_>, walk: &mut AccessWalk) -> Result<(), WalkEnd> {
    if !walk.position.needs_spill() {
        return Ok(());
    }
    io.check_owned(&ctx.key)?;
    let parts = walk
        .position
        .spill(io.store, ctx.team_id)
        .map_err(|e| WalkEnd::Failed {
            code: "store_error".into(),
            message: format!(
                "{}: storing the keys of rows that share one second: {e}; records already delivered for this page may be \
                 offered again next pass",
                ctx.label()
            ),
        })?;
    walk.tie_parts = walk.tie_parts.max(parts as u64);
    Ok(())
}

/// Deletes the tie parts of a completed walk; best effort (a part left behind names its value and
/// is never taken for another tie, and is overwritten by the next large one).
fn delete_tie_parts(ctx: &Ctx<'_>, io: &mut StreamIo<'_>, parts: u64) {
    for field in [TieField::DateFirst, TieField::DateLast] {
        for part in 0..usize::try_from(parts).unwrap_or(0) {
            let _ = io.store.delete(&crate::keys::access_tie_part_key(
                ctx.team_id,
                field.name(),
                part,
            ));
        }
    }
}

/// The walk's end when classic paging cannot get past Slack's page cap.
fn over_pagination(ctx: &Ctx<'_>, walk: &AccessWalk, why: &str) -> WalkEnd {
    let advice = match configured_order(ctx.config).or(walk.order) {
        None => "; if you know the order Slack uses, set `access_sort_key`",
        Some(_) => "",
    };
    WalkEnd::Failed {
        code: "over_pagination_limit".into(),
        message: format!(
            "{}: classic paging reads at most {} rows of one team.accessLogs listing ({} pages of {}), and this walk \
             cannot go on past them at its position (date_first {}, date_last {}): {why}. Nothing was lost: the stream \
             waits here and goes on once Slack accepts cursor paging (`limit`) again{advice}",
            ctx.label(),
            u64::from(ctx.limits.classic_count) * u64::from(ctx.limits.classic_max_page),
            ctx.limits.classic_max_page,
            ctx.limits.classic_count,
            walk.position.date_first.map_or("-".into(), |v| v.to_string()),
            walk.position.date_last.map_or("-".into(), |v| v.to_string()),
        ),
    }
}

/// Points the walk at another listing to go on from its position, when the current one cannot
/// be continued as it was (see the module docs, "Resuming"); `same_listing`: classic page numbers
/// into the current listing may serve.
fn reopen(
    ctx: &Ctx<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AccessCheckpoint,
    walk: &mut AccessWalk,
    pass: &mut PassState,
    why: &str,
    same_listing: bool,
) -> Reopened {
    let order = configured_order(ctx.config).or(walk.order);
    let current = walk.listing.clone();
    if current.served == 0 && current.reached == 0 {
        walk.listing = Listing::start(current.anchor, walk.classic);
        return Reopened::Same;
    }
    let kind = listing_kind(&current, order, checkpoint.before_spares_date_last);
    if same_listing && kind == ListingKind::Stable && !walk.classic_failed {
        let count = ctx.classic_count();
        let page = (current.served.max(current.reached) / count).saturating_add(1);
        if let Some(page) = u32::try_from(page)
            .ok()
            .filter(|p| *p <= ctx.limits.classic_max_page)
        {
            (io.log)(&format!(
                "{}: {why}; resuming at classic page {page} (count={count}) of the same listing",
                ctx.label()
            ));
            walk.listing = Listing {
                anchor: current.anchor,
                served: u64::from(page - 1) * count,
                reached: current.served.max(current.reached),
                cursor: None,
                page: Some(page),
                total: None,
            };
            return Reopened::Classic;
        }
    }
    let probe = order != Some(SortOrder::DateLast) && !checkpoint.before_spares_date_last;
    let anchor = match (walk.anchor(order), walk.position.witness) {
        // A probe is only of use if its first page can prove `before` spares date_last: lowered
        // to a row that was used again instead (still at or above every unread row's date_first).
        (Some(a), Some(w)) if probe && order == Some(SortOrder::DateFirst) && w >= a => Some(w),
        (a, _) => a,
    };
    match anchor {
        Some(a) => {
            pass.reread_from.get_or_insert(current);
            let mut line = format!(
                "{}: {why}; resuming with before={a}, the walk's position",
                ctx.label()
            );
            line += &forgotten_note(&walk.position);
            (io.log)(&line);
            walk.listing = Listing::start(Some(a), walk.classic);
            Reopened::Anchor(a)
        }
        None => {
            restart(ctx, io, walk, pass, why);
            Reopened::Restart
        }
    }
}

/// Re-reads the walk's listing from its start: no handle inside it is left.
fn restart(
    ctx: &Ctx<'_>,
    io: &mut StreamIo<'_>,
    walk: &mut AccessWalk,
    pass: &mut PassState,
    why: &str,
) {
    pass.reread_from.get_or_insert(walk.listing.clone());
    // The same listing again (no `before`): how far it got stays known, for page numbers later.
    let reached = [Some(&walk.listing), pass.reread_from.as_ref()]
        .into_iter()
        .flatten()
        .filter(|l| l.anchor.is_none())
        .map(|l| l.served.max(l.reached))
        .max()
        .unwrap_or(0);
    let mut line = format!(
        "{}: {why}; re-reading the walk's listing from its start (rows already delivered are skipped)",
        ctx.label()
    );
    line += &forgotten_note(&walk.position);
    line += ". A walk longer than one pass can read then finishes only once passes run closer together than Slack's \
             cursors expire, or `max_run_seconds` is raised";
    (io.log)(&line);
    walk.listing = Listing {
        reached,
        ..Listing::start(None, walk.classic)
    };
}

/// A re-read of the tie at the position from its start (or from a lowered `before`) skips every
/// row of it delivered: their keys are in the checkpoint or in the store ([`tie`]). When it
/// begins where the last re-read began, with no more of the tie delivered since, the pass is
/// marked: ending inside the tie again makes it `access_tie_stuck` ([`walk_one`]) rather than a
/// quiet budget end; every pass still tries.
///
/// Keys that are not known (`forgotten`: a checkpoint of a release that kept only the window, or
/// a stored part that went missing) make a re-read offer those rows again. That is allowed once
/// per position: a second time (the pass could not get through the tie, and still nothing lets
/// the walk resume inside it) stops the stream with advice instead of offering them again and
/// again. The checkpoint then keeps the listing the walk stood in (`left`), so the next pass
/// tries the saved cursor and classic paging again first.
fn reread_once(
    ctx: &Ctx<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AccessCheckpoint,
    walk: &mut AccessWalk,
    pass: &mut PassState,
    left: Listing,
    rate_limited: u32,
) -> Result<(), WalkEnd> {
    let p = &walk.position;
    let (Some(f), Some(l)) = (p.date_first, p.date_last) else {
        return Ok(());
    };
    if p.forgotten() == 0 {
        let known = p.delivered_here();
        // Stuck: an earlier pass re-read this tie (larger than a page) from here too, and no more
        // of it was delivered since. Re-reads within one pass (a cursor rejected twice) do not
        // tell: the pass may still get through.
        let page = u64::from(ctx.config.access_page_size.min(ctx.limits.classic_count));
        if walk
            .tie_reread
            .is_some_and(|(rf, rl, was)| (rf, rl) == (f, l) && known <= was)
            && known >= page
            && !pass.reread_seen
        {
            pass.stalled = Some(Stall {
                mark: (f, l, known),
                left,
                rate_limited,
            });
        }
        pass.reread_seen = true;
        walk.tie_reread = Some((f, l, known));
        return Ok(());
    }
    if walk.reread_at != Some((f, l)) {
        walk.reread_at = Some((f, l));
        return Ok(());
    }
    let mut kept = walk.clone();
    kept.listing = left;
    kept.classic_failed = false;
    save_walk(ctx, io, checkpoint, &mut kept)?;
    Err(WalkEnd::Failed {
        code: "access_tie_stuck".into(),
        message: format!(
            "{}: the walk stands inside rows that share one second (date_first {f}, date_last {l}) and the keys of \
             some delivered ones are not known (a checkpoint of an earlier release, or a stored tie part that went \
             missing); Slack rejects its saved cursor, and classic paging is unavailable, so it can only re-read them \
             from their start; it did so once (offering those again) and that pass could not get through. Nothing was \
             lost and nothing is offered again; the next pass tries classic paging again. Let passes run closer \
             together than Slack's cursors expire, or raise `max_run_seconds`",
            ctx.label(),
        ),
    })
}

fn forgotten_note(p: &Position) -> String {
    match p.forgotten() {
        0 => String::new(),
        n => format!(
            "; the keys of {n} rows delivered at the position's second are not known (a checkpoint of an earlier \
             release, or a stored tie part that went missing), so they may be offered again (same ids), once"
        ),
    }
}

/// Decides what a failed request means: a restart, a paging switch, a wait, or the walk's end.
fn handle_error(
    ctx: &Ctx<'_>,
    fetcher: &mut Fetcher<'_>,
    io: &mut StreamIo<'_>,
    checkpoint: &mut AccessCheckpoint,
    e: PageError,
    walk: &mut AccessWalk,
    pass: &mut PassState,
) -> Result<(), WalkEnd> {
    let (e, in_body) = match e {
        PageError::Fetch(FetchError::Slack(e)) => (e, false),
        PageError::Body(e) => (e, true),
        PageError::Fetch(e) => return Err(fetch_end(e, "team.accessLogs (slack_api_base)")),
    };
    match &e {
        SlackError::InvalidCursor
            if walk.listing.cursor.is_some() && pass.cursor_restarts < MAX_CURSOR_RESTARTS =>
        {
            // Cursors expire; the checkpoint knows other ways to go on.
            pass.cursor_restarts += 1;
            reopen(
                ctx,
                io,
                checkpoint,
                walk,
                pass,
                "cursor rejected (invalid_cursor)",
                true,
            );
            pass.cursors_seen.clear();
            Ok(())
        }
        SlackError::Api { code, .. }
            if code == "invalid_limit"
                && walk.listing.page.is_none()
                && !walk.classic
                && walk.refused_limit.is_none() =>
        {
            let limit = walk.cursor_limit(ctx.config);
            walk.classic = true;
            walk.refused_limit = Some(limit);
            reopen(
                ctx,
                io,
                checkpoint,
                walk,
                pass,
                "cursor paging refused",
                true,
            );
            (io.log)(&format!(
                "{}: Slack refused limit={limit} (invalid_limit); using classic count/page paging",
                ctx.label()
            ));
            pass.cursors_seen.clear();
            Ok(())
        }
        SlackError::Server { .. }
            if walk.listing.page.is_some() && walk.cursor_limit(ctx.config) > 0 =>
        {
            // Slack's advice for 500 / fatal_error on this method: use cursor paging.
            walk.classic = false;
            walk.classic_failed = true;
            let limit = walk.cursor_limit(ctx.config);
            (io.log)(&format!(
                "{}: classic paging failed ({e}); switching to cursor paging with limit={limit}",
                ctx.label()
            ));
            walk.listing.page = None;
            reopen(
                ctx,
                io,
                checkpoint,
                walk,
                pass,
                "classic paging failed",
                false,
            );
            pass.cursors_seen.clear();
            Ok(())
        }
        SlackError::RateLimited { .. } | SlackError::Server { .. }
            if in_body && pass.soft_retries < MAX_SOFT_RETRIES =>
        {
            // `ratelimited` / `fatal_error` in an HTTP 200 body (Q32): the fetcher retries only
            // on the HTTP status, so wait here the same way.
            let wait = Duration::from_secs(1 << pass.soft_retries);
            pass.soft_retries += 1;
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
        _ => Err(ctx.slack_failure(&e, walk)),
    }
}

/// Judges the order from consecutive rows of one page (across pages the listing may have
/// changed: rows read again at a page's start would look out of order). Returns the order known
/// afterwards, or why the rows fit no order it can trust.
fn judge_order(
    known: Option<SortOrder>,
    rows: &[AccessRow<'_>],
) -> Result<Option<SortOrder>, String> {
    // The first rising pair seen for each field: evidence against sorting by it.
    let (mut first_rises, mut last_rises) = (None, None);
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.date_first > a.date_first && first_rises.is_none() {
            first_rises = Some((a.date_first, b.date_first));
        }
        if b.date_last > a.date_last && last_rises.is_none() {
            last_rises = Some((a.date_last, b.date_last));
        }
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

pub mod tie;
use tie::{LoadError, Spill, TieField};
