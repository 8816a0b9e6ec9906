//! Simulator configuration. Every point where Slack's real behaviour is unknown
//! (reference §7, "configurable") is a field here, defaulting to the reference's suggestion.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which `team.accessLogs` field orders rows (Q23) and, unless `access_filter_key` says
/// otherwise, is compared with `before`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessSortKey {
    #[default]
    DateFirst,
    DateLast,
}

/// How the last page of a cursor walk says "no more" (Q5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EndForm {
    /// `"response_metadata": {"next_cursor": ""}`
    #[default]
    EmptyString,
    /// no `response_metadata` at all
    Absent,
}

/// What an org-level token gets from the `team.*` methods without `team_id` (Q31).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OrgWithoutTeamId {
    /// Org-wide data ("Passing no team_id returns complete access data for the org").
    #[default]
    OrgWideData,
    /// `missing_argument` ("required if org token is used").
    MissingArgument,
}

/// What `team.integrationLogs` does with a `change_type` filter outside
/// `added|removed|enabled|disabled|updated`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownChangeType {
    /// `invalid_arguments`
    #[default]
    Reject,
    /// the filter is dropped and everything is returned
    Ignore,
}

/// What `paging.count` holds in `team.integrationLogs` answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IntegrationPagingCount {
    /// the number of logs returned (the integrationLogs docs' wording)
    #[default]
    Returned,
    /// the requested page size (as accessLogs does, Q27)
    PageSize,
}

/// Order of `team.integrationLogs` entries (undocumented, Q33).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IntegrationOrder {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// 2018-03-01T00:00:00Z: "Data is not available prior to March 2018."
pub const AUDIT_EARLIEST: i64 = 1_519_862_400;

#[derive(Clone, Debug)]
pub struct SimConfig {
    /// All generated data (and every id) is deterministic from the seed.
    pub seed: u64,
    /// `None` = the real wall clock; `Some(t)` = a fixed "now". The default history
    /// window follows the wall clock: use [`SimConfig::at`] to place it relative to `t`.
    pub now: Option<i64>,
    /// Size of the generated audit history.
    pub audit_events: usize,
    /// Unix seconds of the oldest generated event (default: wall clock − 2 days).
    pub history_start: i64,
    /// Newest generated event (default: wall clock − 10 minutes).
    pub history_end: i64,
    pub access_rows: usize,
    pub integration_entries: usize,
    /// Enforce the Tier 2 (team.*) and Tier 3 (audit, org-wide) token buckets.
    pub rate_limit: bool,
    pub access_sort_key: AccessSortKey,
    /// Audit `/logs` page size when `limit` is absent or 0 (undocumented in reality).
    pub audit_default_limit: u32,
    /// Cursors older than this answer `invalid_cursor` (all three APIs).
    pub cursor_ttl: Duration,
    /// Put `"ok": true` in audit success bodies (Slack's docs show none, Q19).
    pub audit_success_has_ok: bool,
    pub audit_end_form: EndForm,

    /// Some cursor pages come back with fewer than `limit` entries although more remain
    /// ("you may receive fewer than limit", Q4): audit `/logs` and accessLogs cursor mode.
    pub short_pages: bool,

    // ---- audit API ----
    /// `limit` above this is clamped to it.
    pub audit_max_limit: u32,
    /// Error code (HTTP 400) for a non-integer `oldest`/`latest`/`limit` or a negative `limit`.
    pub audit_bad_number_error: String,
    /// `oldest`/`latest` before this give `invalid_range`.
    pub audit_earliest: i64,
    /// `latest` later than now gives `invalid_range`.
    pub audit_reject_future_latest: bool,
    /// Answers reach this many seconds past the requested range (0: exact): entries up to
    /// `oldest - n` on every page and up to `latest + n` on a first page, as an index whose
    /// time fields disagree with `date_create` would serve them (Q2 says nothing about it).
    pub audit_spill_seconds: i64,

    // ---- Web API (team.*) ----
    /// HTTP status of an injected `fatal_error` (`Fault::FatalError`, `access_classic_fatal_from_page`).
    pub web_fatal_error_status: u16,
    /// End form of an accessLogs cursor walk.
    pub web_end_form: EndForm,
    pub org_without_team_id: OrgWithoutTeamId,
    /// Reject a `token` sent in the query string ("new app" mode, Q40) with `invalid_auth`.
    pub reject_query_token: bool,
    /// Answer `invalid_post_type` to JSON bodies on `team.integrationLogs`.
    pub integration_rejects_json: bool,
    /// Classic paging caps (`over_pagination_limit` above them).
    pub classic_max_count: u32,
    pub classic_max_page: u32,
    /// accessLogs cursor mode: `limit` above this gives `invalid_limit` (docs: "under 1000").
    pub access_max_limit: u32,
    /// accessLogs cursor mode also returns `paging`.
    pub access_cursor_paging: bool,
    /// Classic accessLogs requests for this page or later fail with `fatal_error`
    /// (Slack's "use cursor pagination if you get 500/fatal_error" case).
    pub access_classic_fatal_from_page: Option<u32>,
    /// Which field accessLogs' `before` is compared with; `None`: the sort key (what Slack's
    /// "time travel" advice implies). The other field is the undocumented alternative.
    pub access_filter_key: Option<AccessSortKey>,
    /// accessLogs cursors hold a position number in the listing (an offset) instead of the
    /// last row served, so rows leaving the listing shift the unread ones past the cursor.
    pub access_offset_cursor: bool,
    /// Every this many accessLogs requests (0: never), `access_touch_rows` random rows are used
    /// again at the simulator's now before the answer: rows changing while a walk pages.
    pub access_touch_every: usize,
    pub access_touch_rows: usize,
    /// Apply the classic caps to integrationLogs too (Q38).
    pub integration_caps: bool,
    /// integrationLogs answers `paid_only` on free plans too.
    pub integration_paid_only: bool,
    pub integration_unknown_change_type: UnknownChangeType,
    pub integration_paging_count: IntegrationPagingCount,
    pub integration_order: IntegrationOrder,
    /// Percent of generated integration entries followed by byte-identical copies (one or two,
    /// same second), as a script that re-adds an app twice in a second makes. 0: none.
    pub integration_identical_percent: u32,

    // ---- OAuth install flow (`/oauth/v2/authorize`, `oauth.v2.access`) ----
    /// The simulated app's Client ID and Client Secret.
    pub oauth_client_id: String,
    pub oauth_client_secret: String,

    // ---- rate limits (when `rate_limit` is on) ----
    pub tier2_per_minute: u32,
    /// Bucket size: how many Tier 2 calls may be made back to back.
    pub tier2_burst: u32,
    pub tier3_per_minute: u32,
    pub tier3_burst: u32,
}

pub(crate) fn wall_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        let now = wall_clock();
        SimConfig {
            seed: 1,
            now: None,
            audit_events: 500,
            history_start: now - 2 * 86_400,
            history_end: now - 600,
            access_rows: 300,
            integration_entries: 120,
            rate_limit: false,
            access_sort_key: AccessSortKey::DateFirst,
            audit_default_limit: 100,
            cursor_ttl: Duration::from_secs(300),
            audit_success_has_ok: false,
            audit_end_form: EndForm::EmptyString,
            short_pages: false,
            audit_max_limit: 9999,
            audit_bad_number_error: "invalid_arguments".to_string(),
            audit_earliest: AUDIT_EARLIEST,
            audit_reject_future_latest: true,
            audit_spill_seconds: 0,
            web_fatal_error_status: 500,
            web_end_form: EndForm::EmptyString,
            org_without_team_id: OrgWithoutTeamId::OrgWideData,
            reject_query_token: false,
            integration_rejects_json: true,
            classic_max_count: 1000,
            classic_max_page: 100,
            access_max_limit: 999,
            access_cursor_paging: false,
            access_classic_fatal_from_page: None,
            access_filter_key: None,
            access_offset_cursor: false,
            access_touch_every: 0,
            access_touch_rows: 0,
            integration_caps: true,
            integration_paid_only: false,
            integration_unknown_change_type: UnknownChangeType::Reject,
            integration_paging_count: IntegrationPagingCount::Returned,
            integration_order: IntegrationOrder::NewestFirst,
            integration_identical_percent: 0,
            oauth_client_id: "1000000001.2000000002".to_string(),
            oauth_client_secret: "sim-client-secret-0123456789abcdef".to_string(),
            tier2_per_minute: 20,
            tier2_burst: 5,
            tier3_per_minute: 50,
            tier3_burst: 12,
        }
    }
}

impl SimConfig {
    /// A config with a fixed "now" and the default history window placed
    /// relative to it (`[now − 2 days, now − 10 minutes]`).
    pub fn at(now: i64) -> SimConfig {
        SimConfig {
            now: Some(now),
            history_start: now - 2 * 86_400,
            history_end: now - 600,
            ..SimConfig::default()
        }
    }
}
