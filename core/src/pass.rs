//! One pass over the configured streams: for each stream and workspace, load the checkpoint,
//! walk, deliver, save the status, report. A failure in one does not stop the others.

use std::cell::RefCell;
use std::time::Duration;

use crate::access::{self, AccessCheckpoint};
use crate::audit::{self, AuditCheckpoint};
use crate::checkpoint::Checkpoint;
use crate::config::{format_rfc3339, Config};
use crate::env::{Env, KvStore, Transport};
use crate::fetch::{Deadline, FetchStats, Fetcher, Pacer};
use crate::integration::{self, IntegrationCheckpoint};
use crate::lease::{self, Lease, LeaseError, LeaseKeeper, LeasedClock, SharedStore};
use crate::status::{self, StoredStatus, StreamStatus};
use crate::synthetic::{AccessApiModel, AuditApiModel, IntegrationApiModel, SyntheticEvents};
use crate::url::with_query;
use crate::walk::{failed, fetch_end, StreamIo, WalkEnd, WalkStats};
use crate::web_api::parse_envelope;
use crate::Stream;

/// Options for one pass (the WIT `run-options`).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Streams to run; empty means the configured `streams`.
    pub streams: Vec<String>,
    pub max_run_seconds: Option<u32>,
}

/// How a stream's pass ended (the WIT `outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    CaughtUp,
    BudgetExhausted,
    Failed,
    NotAvailable,
    /// Another pass holds the walk's lease; this pass left the walk to it.
    HeldElsewhere,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::CaughtUp => "caught-up",
            Outcome::BudgetExhausted => "budget-exhausted",
            Outcome::Failed => "failed",
            Outcome::NotAvailable => "not-available",
            Outcome::HeldElsewhere => "held-elsewhere",
        }
    }
}

/// One stream's part of a pass, for one workspace or the org (the WIT `stream-report`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamReport {
    pub stream: String,
    pub team_id: Option<String>,
    pub outcome: Outcome,
    pub records: u64,
    pub pages: u32,
    pub requests: u32,
    pub retries: u32,
    pub watermark: Option<i64>,
    pub lag_seconds: Option<i64>,
    pub message: Option<String>,
    pub error_code: Option<String>,
    /// Audit: events the look-back re-scan found (indexed late by Slack); part of `records`.
    pub late_events: u64,
}

impl StreamReport {
    fn new(stream: &str, team_id: Option<&str>) -> StreamReport {
        StreamReport {
            stream: stream.to_string(),
            team_id: team_id.map(String::from),
            outcome: Outcome::Failed,
            records: 0,
            pages: 0,
            requests: 0,
            retries: 0,
            watermark: None,
            lag_seconds: None,
            message: None,
            error_code: None,
            late_events: 0,
        }
    }

    fn failed(stream: &str, team_id: Option<&str>, code: &str, message: String) -> StreamReport {
        StreamReport {
            error_code: Some(code.into()),
            message: Some(message),
            ..StreamReport::new(stream, team_id)
        }
    }
}

/// The result of a pass (the WIT `pass-report`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassReport {
    pub started_at: i64,
    pub duration_ms: u64,
    pub streams: Vec<StreamReport>,
}

impl PassReport {
    /// A pass that could not start: every stream it would have run failed with `message`.
    pub fn not_started(
        options: &RunOptions,
        started_at: i64,
        code: &str,
        message: &str,
    ) -> PassReport {
        let names: Vec<String> = if options.streams.is_empty() {
            Stream::ALL.iter().map(|s| s.name().to_string()).collect()
        } else {
            options.streams.clone()
        };
        PassReport {
            started_at,
            duration_ms: 0,
            streams: names
                .iter()
                .map(|n| StreamReport::failed(n, None, code, message.to_string()))
                .collect(),
        }
    }

    pub fn any_failed(&self) -> bool {
        self.streams.iter().any(|s| s.outcome == Outcome::Failed)
    }
}

/// One walk to run in a pass: a stream, for one workspace (`None`: the org, or a workspace token).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unit {
    stream: Stream,
    team_id: Option<String>,
}

/// Runs one pass. The time budget is shared: each walk gets an equal share of what is left, so a
/// long audit backfill does not starve the other streams; time a walk leaves unused goes on to
/// the next.
pub fn run_pass(config: &Config, env: &mut Env<'_>, options: &RunOptions) -> PassReport {
    let started = env.clock.monotonic();
    let started_at = env.clock.now_unix();
    // The token from the OAuth install when none is configured (a configured one wins). If it
    // cannot be had, every walk fails to start with that reason, counted like any failure.
    let mut resolved = config.clone();
    let token_problem = crate::oauth::resolve_token(&mut resolved, &mut *env.store)
        .err()
        .map(|e| (e.code(), e.to_string()));
    let config = &resolved;
    let budget = Duration::from_secs(u64::from(
        options.max_run_seconds.unwrap_or(config.max_run_seconds),
    ));
    let pass_deadline = Deadline {
        at: started + budget,
    };
    let names: Vec<String> = if options.streams.is_empty() {
        config
            .streams
            .iter()
            .map(|s| s.name().to_string())
            .collect()
    } else {
        options.streams.clone()
    };
    let mut reports = Vec::new();
    let mut units = Vec::new();
    // Listed at most once a pass, for whichever per-workspace streams need it.
    let mut workspaces: Option<Workspaces> = None;
    for name in &names {
        match Stream::parse(name) {
            None => reports.push(StreamReport::failed(
                name,
                None,
                "unknown_stream",
                format!("unknown stream {name:?}; expected audit, access or integration"),
            )),
            Some(Stream::Audit) => units.push(Unit {
                stream: Stream::Audit,
                team_id: None,
            }),
            Some(stream) => {
                match workspaces.get_or_insert_with(|| teams(config, env, pass_deadline)) {
                    Ok(teams) => units.extend(
                        teams
                            .iter()
                            .cloned()
                            .map(|team_id| Unit { stream, team_id }),
                    ),
                    Err((code, message)) => reports.push(StreamReport::failed(
                        stream.name(),
                        None,
                        code,
                        message.clone(),
                    )),
                }
            }
        }
    }
    let units = fair_order(env, units);
    // Now, not `started_at`: listing the workspaces may have taken part of the budget.
    let claim_time = env.clock.now_unix();
    let owner = lease::new_owner_id((env.random)());
    let (units, held) = claim_leases(config, env, units, &owner, claim_time);
    for report in held {
        (env.log)(&progress_line(&report));
        reports.push(report);
    }
    let total = units.len();
    let floor = walk_floor(budget);
    for (i, (unit, lease)) in units.into_iter().enumerate() {
        let remaining = pass_deadline.remaining(env.clock);
        if i > 0 && remaining < floor {
            // Too little left to fetch, deliver and checkpoint a page. The walk is not counted
            // as having had its turn, so it goes first next pass (see `fair_order`).
            lease.release(&mut *env.store);
            let report = StreamReport {
                outcome: Outcome::BudgetExhausted,
                message: Some(
                    "no time left in this pass (max_run_seconds) after the walks before it; it goes first in the next pass"
                        .into(),
                ),
                ..StreamReport::new(unit.stream.name(), unit.team_id.as_deref())
            };
            (env.log)(&progress_line(&report));
            reports.push(report);
            continue;
        }
        let share = (remaining / (total - i) as u32).max(remaining.min(floor));
        let deadline = Deadline {
            at: env.clock.monotonic() + share,
        };
        let report = match &token_problem {
            Some((code, message)) => failed_to_start(
                config,
                env,
                unit.stream,
                unit.team_id.as_deref(),
                started_at,
                code,
                message.clone(),
            ),
            None => run_unit(config, env, &unit, &lease, deadline, started_at),
        };
        lease.release(&mut *env.store);
        (env.log)(&progress_line(&report));
        reports.push(report);
    }
    PassReport {
        started_at,
        duration_ms: (env.clock.monotonic() - started).as_millis() as u64,
        streams: reports,
    }
}

/// The least time a walk is given: a page fetched, delivered and checkpointed — 6 s, or a third
/// of a shorter budget (but never under 3 s).
fn walk_floor(budget: Duration) -> Duration {
    (budget / 3).clamp(Duration::from_secs(3), Duration::from_secs(6))
}

/// Orders the walks by when each last had its turn, longest ago (or never) first, so that when
/// a pass's budget cannot cover every walk (many workspaces, a long backfill) each one still gets
/// a turn within a bounded number of passes. Stable: ties keep the configured order.
fn fair_order(env: &mut Env<'_>, units: Vec<Unit>) -> Vec<Unit> {
    let mut keyed: Vec<(Option<i64>, Unit)> = units
        .into_iter()
        .map(|u| {
            let turn = status::try_load(env.store, u.stream, u.team_id.as_deref())
                .ok()
                .and_then(|s| s.last_turn_at);
            (turn, u)
        })
        .collect();
    keyed.sort_by_key(|(turn, _)| turn.unwrap_or(i64::MIN));
    keyed.into_iter().map(|(_, u)| u).collect()
}

/// Claims every walk's lease at once, so the settle wait is paid once a pass: walks whose lease
/// another pass holds come back as reports, the rest with their lease.
fn claim_leases(
    config: &Config,
    env: &mut Env<'_>,
    units: Vec<Unit>,
    owner: &str,
    now: i64,
) -> (Vec<(Unit, Lease)>, Vec<StreamReport>) {
    // Renewed at each walk's start, each batch, each checkpoint and during waits (LeaseKeeper),
    // so it can be short: a crashed pass holds its walks back for this long at most.
    let ttl = match config.lease_seconds {
        0 => lease::default_ttl(config.request_timeout_seconds),
        s => i64::from(s),
    };
    let mut claimed = Vec::new();
    let mut reports = Vec::new();
    for unit in units {
        let lease = Lease {
            key: crate::keys::walk_key(
                unit.stream,
                unit.team_id.as_deref(),
                crate::keys::WalkLeaf::Lease,
            ),
            owner: owner.to_string(),
            ttl,
        };
        match lease.claim(&mut *env.store, now) {
            Ok(()) => claimed.push((unit, lease)),
            Err(e) => {
                if matches!(e, LeaseError::Store(_)) {
                    // The write may have landed before the error: do not block the walk until expiry.
                    lease.release(&mut *env.store);
                }
                reports.push(lease_report(&unit, e));
            }
        }
    }
    if claimed.is_empty() {
        return (claimed, reports);
    }
    env.clock
        .sleep(Duration::from_millis(u64::from(config.lease_settle_ms)));
    let mut confirmed = Vec::new();
    for (unit, lease) in claimed {
        match lease.confirm(&mut *env.store) {
            Ok(()) => confirmed.push((unit, lease)),
            Err(e) => {
                if matches!(e, LeaseError::Store(_)) {
                    lease.release(&mut *env.store);
                }
                reports.push(lease_report(&unit, e));
            }
        }
    }
    (confirmed, reports)
}

fn lease_report(unit: &Unit, e: LeaseError) -> StreamReport {
    let (stream, team_id) = (unit.stream.name(), unit.team_id.as_deref());
    match e {
        LeaseError::Held { .. } => StreamReport {
            outcome: Outcome::HeldElsewhere,
            message: Some(e.to_string()),
            ..StreamReport::new(stream, team_id)
        },
        LeaseError::Store(_) => StreamReport::failed(stream, team_id, "store_error", e.to_string()),
    }
}

/// The workspaces a pass walks (`None`: the token's own or the org), or why they could not be
/// listed (error code, message).
type Workspaces = Result<Vec<Option<String>>, (String, String)>;

use crate::keys::WORKSPACES as WORKSPACES_KEY;

/// The workspaces a per-workspace stream walks: `team_ids`, every workspace the org token is
/// approved for (`all`, listed with `auth.teams.list`), or the token's own workspace.
fn teams(config: &Config, env: &mut Env<'_>, deadline: Deadline) -> Workspaces {
    if !config.team_ids.iter().any(|t| t == "all") {
        return Ok(if config.team_ids.is_empty() {
            vec![None]
        } else {
            config.team_ids.iter().cloned().map(Some).collect()
        });
    }
    if config.synthetic_data {
        return Ok(vec![None]);
    }
    let context = "listing the org's workspaces (team_ids = all)";
    let token = config.slack_token.as_deref().ok_or_else(|| {
        (
            "no_token".to_string(),
            format!("{context}: set `slack_token`"),
        )
    })?;
    let mut fetcher = Fetcher {
        transport: &mut *env.transport,
        clock: env.clock,
        deadline,
        request_timeout: Duration::from_secs(u64::from(config.request_timeout_seconds)),
        stats: FetchStats::default(),
        log: env.log,
        pacer: None,
    };
    let fail = |e: WalkEnd| match e {
        WalkEnd::Failed { code, message } => (code, format!("{context}: {message}")),
        WalkEnd::Budget(m) => ("budget_exhausted".to_string(), format!("{context}: {m}")),
        WalkEnd::CaughtUp => ("internal".to_string(), format!("{context}: ended early")),
    };
    #[derive(serde::Deserialize)]
    struct Team {
        id: String,
    }
    #[derive(serde::Deserialize)]
    struct Teams {
        #[serde(default)]
        teams: Vec<Team>,
    }
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![("limit", "200")];
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let url = with_query(
            &format!("{}/auth.teams.list", config.slack_api_base),
            &params,
        );
        let resp = fetcher
            .get(&url, token)
            .map_err(|e| fail(fetch_end(e, "auth.teams.list")))?;
        let envelope = parse_envelope(&resp.body).map_err(|e| fail(failed(&e)))?;
        let page: Teams = serde_json::from_slice(&resp.body).map_err(|e| {
            let detail = format!("auth.teams.list: `teams` is not a list of workspaces: {e}");
            fail(failed(&crate::slack_error::SlackError::Malformed {
                status: 200,
                detail,
            }))
        })?;
        out.extend(page.teams.into_iter().map(|t| t.id));
        match envelope.next_cursor {
            // A cursor that repeats would loop forever.
            Some(c) if cursor.as_deref() != Some(c.as_str()) => cursor = Some(c),
            _ => break,
        }
    }
    if out.is_empty() {
        return Err((
            "no_workspaces".into(),
            format!("{context}: the token is approved for no workspace"),
        ));
    }
    (env.log)(&format!("team_ids = all: {} workspaces", out.len()));
    // Informational (for /status): a failed write does not stop the pass.
    let _ = env.store.set(
        WORKSPACES_KEY,
        &serde_json::to_vec(&out).unwrap_or_default(),
    );
    Ok(out.into_iter().map(Some).collect())
}

/// A stream's first checkpoint "from now" was anchored at our clock's now; when Slack's answers
/// show our clock ahead, that instant lies in Slack's future, and what Slack records until its
/// clock gets there would fall below the watermark unread. Anchors again at Slack's now (only
/// while nothing was delivered from the first anchor, so nothing is offered twice).
fn reanchor_at_slacks_now<C: Checkpoint>(
    io: &mut StreamIo<'_>,
    key: &str,
    checkpoint: &mut C,
    initial: &impl Fn(i64) -> C,
    now: i64,
    slack_clock: Option<crate::fetch::SlackClock>,
) -> Result<(), WalkEnd> {
    let Some(offset) = slack_clock.map(|c| c.offset()) else {
        return Ok(());
    };
    let slack_now = crate::fetch::settled(now, Some(offset), 0);
    let fresh = initial(slack_now);
    if fresh.watermark() >= checkpoint.watermark() {
        return Ok(());
    }
    io.save(key, &fresh.encode())?;
    (io.log)(&format!(
        "this machine's clock runs {} s ahead of Slack's (its Date header): the stream starts after {} by Slack's clock \
         instead; check NTP on this host",
        -offset,
        format_rfc3339(fresh.watermark())
    ));
    *checkpoint = fresh;
    Ok(())
}

/// The watermark of a stored checkpoint of `stream`, when it decodes (for `status` and the host's
/// `reset`, which only report it).
pub fn stored_watermark(stream: Stream, bytes: &[u8]) -> Option<i64> {
    match stream {
        Stream::Audit => AuditCheckpoint::decode(bytes).ok().map(|c| c.watermark),
        Stream::Integration => IntegrationCheckpoint::decode(bytes)
            .ok()
            .map(|c| c.watermark),
        Stream::Access => AccessCheckpoint::decode(bytes).ok().map(|c| c.watermark),
    }
}

/// One line per walk for stderr.
pub fn progress_line(r: &StreamReport) -> String {
    let mut line = r.stream.clone();
    if let Some(t) = &r.team_id {
        line += &format!(" [{t}]");
    }
    line += &format!(
        ": {} — {} records, {} pages, {} requests, {} retries",
        r.outcome.name(),
        r.records,
        r.pages,
        r.requests,
        r.retries
    );
    if let Some(w) = r.watermark {
        line += &format!(", complete up to {}", format_rfc3339(w));
    }
    if let Some(l) = r.lag_seconds {
        line += &format!(" (lag {l} s)");
    }
    if let Some(m) = &r.message {
        line += &format!(": {m}");
    }
    line
}

fn run_unit(
    config: &Config,
    env: &mut Env<'_>,
    unit: &Unit,
    lease: &Lease,
    deadline: Deadline,
    now: i64,
) -> StreamReport {
    let token = match (unit.stream, config.synthetic_data) {
        (Stream::Audit, true) => Some("synthetic".to_string()),
        (Stream::Audit, false) => config.audit_token().map(String::from),
        (_, true) => Some("synthetic".to_string()),
        (_, false) => config.slack_token.clone(),
    };
    let Some(token) = token else {
        let key = if unit.stream == Stream::Audit {
            "`slack_token` (or `audit_token`)"
        } else {
            "`slack_token`"
        };
        return failed_to_start(
            config,
            env,
            unit.stream,
            unit.team_id.as_deref(),
            now,
            "no_token",
            format!(
                "no Slack token configured: set {key} — SLACK_LOGS_SLACK_TOKEN in the host, the slack_token variable under \
                 Spin — or set synthetic_data=true to try the pipeline with made-up records"
            ),
        );
    };
    match unit.stream {
        Stream::Audit => {
            let mut initial_config = config.clone();
            if config.synthetic_data && config.backfill_start_time.is_none() {
                // Made-up data has no history to protect: start an hour back so a first pass shows records.
                initial_config.backfill_start_time = Some(now - 3600);
            }
            let mut synthetic = AuditApiModel::new(SyntheticEvents { mean_gap: 20 });
            synthetic.now = Some(now);
            let use_synthetic = config.synthetic_data;
            walk_unit(
                config,
                env,
                unit,
                lease,
                deadline,
                now,
                config.audit_requests_per_minute,
                |at| AuditCheckpoint::initial(&initial_config, at),
                if use_synthetic {
                    Some(&mut synthetic)
                } else {
                    None
                },
                |fetcher, io, cp: &mut AuditCheckpoint, stats, notes| {
                    let filters = audit::filters_key(config);
                    if cp.filters != filters {
                        notes.push(format!(
                            "audit filters changed from {:?} to {:?}; events before {} were collected with the old filters and are not read again",
                            cp.filters,
                            filters,
                            format_rfc3339(cp.watermark)
                        ));
                    }
                    audit::walk(config, &token, fetcher, io, cp, stats)
                },
            )
        }
        Stream::Integration => {
            let mut synthetic = IntegrationApiModel { now };
            let mut initial_config = config.clone();
            if config.synthetic_data && config.backfill_start_time.is_none() {
                initial_config.backfill_start_time = Some(now - 86_400);
            }
            walk_unit(
                config,
                env,
                unit,
                lease,
                deadline,
                now,
                config.web_requests_per_minute,
                |at| IntegrationCheckpoint::initial(&initial_config, at),
                if config.synthetic_data {
                    Some(&mut synthetic)
                } else {
                    None
                },
                |fetcher, io, cp: &mut IntegrationCheckpoint, stats, _| {
                    integration::walk(
                        config,
                        unit.team_id.as_deref(),
                        &token,
                        fetcher,
                        io,
                        cp,
                        stats,
                    )
                },
            )
        }
        Stream::Access => {
            // Synthetic rows sort as `access_sort_key` says (`date_first` under `auto`).
            let mut synthetic = AccessApiModel {
                now,
                sort_by_date_last: config.access_sort_key == crate::config::AccessSortKey::DateLast,
            };
            let mut initial_config = config.clone();
            if config.synthetic_data && config.backfill_start_time.is_none() {
                initial_config.backfill_start_time = Some(now - 86_400);
            }
            walk_unit(
                config,
                env,
                unit,
                lease,
                deadline,
                now,
                config.web_requests_per_minute,
                |at| AccessCheckpoint::initial(&initial_config, at),
                if config.synthetic_data {
                    Some(&mut synthetic)
                } else {
                    None
                },
                |fetcher, io, cp: &mut AccessCheckpoint, stats, _| {
                    access::walk(
                        config,
                        unit.team_id.as_deref(),
                        &token,
                        fetcher,
                        io,
                        cp,
                        stats,
                    )
                },
            )
        }
    }
}

/// Loads (or creates and anchors) the checkpoint, walks, records the status, builds the report.
#[allow(clippy::too_many_arguments)]
fn walk_unit<C: Checkpoint>(
    config: &Config,
    env: &mut Env<'_>,
    unit: &Unit,
    lease: &Lease,
    deadline: Deadline,
    now: i64,
    requests_per_minute: u32,
    initial: impl Fn(i64) -> C,
    transport_override: Option<&mut dyn Transport>,
    walk: impl FnOnce(
        &mut Fetcher<'_>,
        &mut StreamIo<'_>,
        &mut C,
        &mut WalkStats,
        &mut Vec<String>,
    ) -> WalkEnd,
) -> StreamReport {
    let (stream, team_id) = (unit.stream, unit.team_id.as_deref());
    // Earlier walks of this pass took time: the lease must still be ours, and now lasts from here.
    let renewed_at = env.clock.now_unix();
    if let Err(e) = lease.renew(&mut *env.store, renewed_at) {
        return lease_report(unit, e);
    }
    let key = crate::keys::checkpoint_key(stream, team_id);
    // The checkpoint as this walk found it: before each save it must still be there (a pass that
    // stalled past its lease must not set back the checkpoint of the pass that took over).
    let series_key = crate::keys::walk_key(stream, team_id, crate::keys::WalkLeaf::Batches);
    let series: Vec<u8>;
    let found: Vec<u8>;
    // Anchored in this pass at our clock's now (no `backfill_start_time`): moved back to Slack's
    // now below if its first answer shows our clock ahead.
    let mut anchored_by_our_clock = false;
    let cannot_start = |env: &mut Env<'_>, code: &str, message: String| {
        failed_to_start(config, env, stream, team_id, now, code, message)
    };
    let store_failure = |env: &mut Env<'_>, e: crate::env::StoreError| {
        cannot_start(env, "store_error", e.to_string())
    };
    let stored = match env.store.get(&key) {
        Ok(Some(bytes)) => match C::decode(&bytes) {
            Ok(c) => match env.store.get(&series_key) {
                // Absent for walks anchored before batch series existed: their names stay.
                Ok(series) => Some((bytes, c, series.unwrap_or_default())),
                Err(e) => return store_failure(env, e),
            },
            Err(e) => {
                return cannot_start(
                    env,
                    "checkpoint_unreadable",
                    // The operator's way out, under our host; under Spin, deleting the key is the same.
                    format!(
                        "{e} (key {key}); to restart the stream from backfill_start_time (or from now if unset), \
                         run `slack-logs reset {}{} --yes` or delete that key",
                        stream.name(),
                        team_id.map_or(String::new(), |t| format!(" --team {t}"))
                    ),
                );
            }
        },
        Ok(None) => None,
        Err(e) => return store_failure(env, e),
    };
    // Made-up records must never move a real stream's checkpoint, and a real stream must not
    // start from where made-up data left off (it would skip its backfill without a word).
    let stored = match stored {
        Some((_, _, series)) if config.synthetic_data && !lease::is_synthetic_series(&series) => {
            return cannot_start(
                env,
                "state_holds_real_data",
                "synthetic_data is set, but this state store holds a checkpoint not marked as made with synthetic \
                 data (real collection, or synthetic data from a release before they were marked); made-up records \
                 must not move it. Try synthetic data with another state (`--state FILE` in the host, another \
                 key-value store under Spin), or delete this stream's checkpoint if it was synthetic"
                    .into(),
            );
        }
        Some((_, _, series)) if !config.synthetic_data && lease::is_synthetic_series(&series) => {
            // Deleted before the new series is written: a crash in between must not leave the
            // made-up checkpoint under a real series.
            if let Err(e) = env.store.delete(&key) {
                return store_failure(env, e);
            }
            (env.log)(&format!(
                "{}: the checkpoint was made with synthetic_data; real collection starts afresh",
                stream.name()
            ));
            None
        }
        other => other,
    };
    let mut checkpoint = match stored {
        Some((bytes, c, s)) => {
            found = bytes;
            series = s;
            c
        }
        None => {
            let c = initial(now);
            anchored_by_our_clock = config.backfill_start_time.is_none() && !config.synthetic_data;
            found = c.encode();
            // A new series first: batches from this checkpoint on must not take the names of
            // batches an earlier start of the stream delivered (see `lease::new_batch_series`).
            series = lease::new_batch_series((env.random)(), config.synthetic_data);
            // Anchor "from now" at once, or the next pass would start from its own now and skip the gap.
            if let Err(e) = env
                .store
                .set(&series_key, &series)
                .and_then(|()| env.store.set(&key, &found))
            {
                return store_failure(env, e);
            }
            (env.log)(&format!(
                "{}: no checkpoint yet; starting after {}",
                stream.name(),
                format_rfc3339(c.watermark())
            ));
            c
        }
    };
    let start_watermark = checkpoint.watermark();
    let mut stats = WalkStats::default();
    let mut notes = Vec::new();
    let (end, fetch_stats) = {
        let transport: &mut dyn Transport = match transport_override {
            Some(t) => t,
            None => &mut *env.transport,
        };
        // One store for the fetcher's lease renewals during waits and the walk's writes.
        let store: RefCell<&mut dyn KvStore> = RefCell::new(&mut *env.store);
        let keeper = LeaseKeeper::new(lease, &store, env.clock, renewed_at);
        keeper.expect_checkpoint(&key, Some(found));
        keeper.set_batch_series(series);
        let clock = LeasedClock {
            inner: env.clock,
            keeper: &keeper,
        };
        let mut shared = SharedStore(&store);
        let mut fetcher = Fetcher {
            transport,
            clock: &clock,
            deadline,
            request_timeout: Duration::from_secs(u64::from(config.request_timeout_seconds)),
            stats: FetchStats::default(),
            log: env.log,
            pacer: Pacer::per_minute(requests_per_minute),
        };
        let mut io = StreamIo {
            store: &mut shared,
            sink: &mut *env.sink,
            collected_at: now,
            log: env.log,
            lease: Some(&keeper),
        };
        let mut end = walk(
            &mut fetcher,
            &mut io,
            &mut checkpoint,
            &mut stats,
            &mut notes,
        );
        if end == WalkEnd::CaughtUp && fetcher.stats.requests == 0 && !config.synthetic_data {
            // Nothing was due (a first pass "from now", or passes in the same second): ask Slack
            // once anyway, so a revoked token or a missing scope shows now, not when data arrives.
            end = probe(config, unit, &mut fetcher);
        }
        // Whatever the walk's end (a first pass often fails on a missing scope), as long as
        // nothing was delivered from the anchor.
        if anchored_by_our_clock && stats.records == 0 {
            if let Err(e) = reanchor_at_slacks_now(
                &mut io,
                &key,
                &mut checkpoint,
                &initial,
                now,
                fetcher.stats.slack_clock,
            ) {
                if end == WalkEnd::CaughtUp {
                    end = e;
                }
            }
        }
        (end, fetcher.stats)
    };

    let mut report = StreamReport::new(stream.name(), team_id);
    report.records = stats.records;
    report.pages = stats.pages;
    report.requests = fetch_stats.requests;
    report.retries = fetch_stats.retries;
    report.watermark = Some(checkpoint.watermark());
    report.lag_seconds = Some(now - checkpoint.watermark());
    if stats.out_of_window > 0 {
        notes.push(format!(
            "Slack returned {} entries outside the requested range; they were delivered (each once)",
            stats.out_of_window
        ));
    }
    if stats.late > 0 {
        notes.push(format!(
            "{} events Slack indexed late were found by the look-back re-scan and delivered",
            stats.late
        ));
    }
    report.late_events = stats.late;
    // A budget end is progress only if something moved: a stream that spends every pass
    // waiting out 429s or backoffs is not healthy, whatever else it is.
    let progressed = stats.pages > 0 || checkpoint.watermark() > start_watermark;
    let (records, pages, requests, rate_limited, late) = (
        stats.records,
        stats.pages,
        fetch_stats.requests,
        fetch_stats.rate_limited,
        stats.late,
    );
    let (outcome, failure) = match end {
        WalkEnd::CaughtUp => (Outcome::CaughtUp, None),
        WalkEnd::Budget(m) => {
            notes.push(m);
            (Outcome::BudgetExhausted, None)
        }
        WalkEnd::Failed { code, message } if code == crate::walk::LEASE_LOST => {
            // Not an error of the stream: another pass carries on from our checkpoint, and
            // keeps the status (two writers would lose each other's counts).
            notes.insert(0, message);
            report.outcome = Outcome::HeldElsewhere;
            report.message = Some(notes.join("; "));
            return report;
        }
        WalkEnd::Failed { code, message } => {
            notes.insert(0, message.clone());
            report.error_code = Some(code.clone());
            (Outcome::Failed, Some((code, message)))
        }
    };
    report.outcome = outcome;
    let note = update_status(config, env, stream, team_id, now, |stored| {
        stored.total_records += records;
        stored.total_pages += u64::from(pages);
        stored.total_requests += u64::from(requests);
        stored.total_rate_limited += u64::from(rate_limited);
        stored.total_late_events += late;
        if records > 0 {
            stored.last_record_at = Some(now);
        }
        match (outcome, &failure) {
            (_, Some((code, message))) => stored.record_error(code, message, now),
            (Outcome::CaughtUp, _) => {
                stored.last_success = Some(now);
                stored.last_error = None;
                stored.last_error_at = None;
            }
            _ if progressed => stored.last_success = Some(now),
            _ => {}
        }
    });
    notes.extend(note);
    if !notes.is_empty() {
        report.message = Some(notes.join("; "));
    }
    report
}

/// Updates a walk's stored status (counters, outcome) and logs the silence alert; `None`, or a
/// note when the status could not be read or saved. Every walk that ran (or could not start)
/// goes through here, so errors are counted and silence is noticed whatever the path.
fn update_status(
    config: &Config,
    env: &mut Env<'_>,
    stream: Stream,
    team_id: Option<&str>,
    now: i64,
    change: impl FnOnce(&mut StoredStatus),
) -> Option<String> {
    // An unreadable store must not turn lifetime totals into zeros by saving over them.
    let mut stored = match status::try_load(env.store, stream, team_id) {
        Ok(s) => s,
        Err(e) => {
            return Some(format!(
                "could not read the stream status, so it was not updated: {e}"
            ))
        }
    };
    stored.passes += 1;
    stored.first_pass_at.get_or_insert(now);
    stored.last_turn_at = Some(now);
    change(&mut stored);
    if let Some(max) = config.max_silence(stream) {
        let silent_for = stored.silent_for(Some(max), now);
        // Raised: every pass says so, for log-based alerting; cleared: once.
        if silent_for.is_some() || stored.silent {
            (env.log)(&status::silence_line(stream, team_id, silent_for, max));
        }
        stored.silent = silent_for.is_some();
    }
    status::save(env.store, stream, team_id, &stored)
        .err()
        .map(|e| format!("could not save the stream status: {e}"))
}

/// A walk that could not start (no token, unreadable checkpoint, store error): reported, and
/// counted in the stored status like any failed pass.
fn failed_to_start(
    config: &Config,
    env: &mut Env<'_>,
    stream: Stream,
    team_id: Option<&str>,
    now: i64,
    code: &str,
    message: String,
) -> StreamReport {
    let note = update_status(config, env, stream, team_id, now, |s| {
        s.record_error(code, &message, now)
    });
    let mut report = StreamReport::failed(stream.name(), team_id, code, message);
    if let (Some(n), Some(m)) = (note, report.message.as_mut()) {
        *m += &format!("; {n}");
    }
    report
}

/// The smallest request that proves the stream's token, plan and scopes work.
fn probe(config: &Config, unit: &Unit, fetcher: &mut Fetcher<'_>) -> WalkEnd {
    let team: Vec<(&str, &str)> = unit
        .team_id
        .as_deref()
        .map(|t| vec![("team_id", t)])
        .unwrap_or_default();
    let token = match unit.stream {
        Stream::Audit => config.audit_token(),
        _ => config.slack_token.as_deref(),
    }
    .unwrap_or_default();
    let (url, api) = match unit.stream {
        Stream::Audit => {
            // A settled instant long past, not now: a host clock ahead of Slack's would make
            // "now" a future `latest`, which Slack refuses (invalid_range).
            let at = (crate::config::AUDIT_EPOCH + 86_400).to_string();
            let params = [
                ("oldest", at.as_str()),
                ("latest", at.as_str()),
                ("limit", "1"),
            ];
            (
                with_query(&format!("{}/logs", config.slack_audit_base), &params),
                "the audit API",
            )
        }
        Stream::Access => {
            let mut params = vec![("before", "now"), ("limit", "1")];
            params.extend(team);
            (
                with_query(
                    &format!("{}/team.accessLogs", config.slack_api_base),
                    &params,
                ),
                "team.accessLogs",
            )
        }
        Stream::Integration => {
            let mut params = vec![("count", "1"), ("page", "1")];
            params.extend(team);
            (
                with_query(
                    &format!("{}/team.integrationLogs", config.slack_api_base),
                    &params,
                ),
                "team.integrationLogs",
            )
        }
    };
    match fetcher.get(&url, token) {
        Err(e) => fetch_end(e, api),
        Ok(resp) if unit.stream != Stream::Audit => match parse_envelope(&resp.body) {
            Ok(_) => WalkEnd::CaughtUp,
            Err(e) => failed(&e),
        },
        Ok(_) => WalkEnd::CaughtUp,
    }
}

/// Every configured walk's status, for `/status`.
pub fn stream_statuses(
    config: &Config,
    store: &mut dyn crate::env::KvStore,
    now: i64,
) -> Vec<StreamStatus> {
    let mut units = Vec::new();
    for &stream in &config.streams {
        match stream {
            Stream::Audit => units.push(Unit {
                stream,
                team_id: None,
            }),
            _ if config.team_ids.iter().any(|t| t == "all") => {
                let listed: Vec<String> = match store.get(WORKSPACES_KEY) {
                    Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
                    _ => Vec::new(),
                };
                units.extend(listed.into_iter().map(|t| Unit {
                    stream,
                    team_id: Some(t),
                }))
            }
            _ if config.team_ids.is_empty() => units.push(Unit {
                stream,
                team_id: None,
            }),
            _ => units.extend(config.team_ids.iter().cloned().map(|t| Unit {
                stream,
                team_id: Some(t),
            })),
        }
    }
    units
        .into_iter()
        .map(|unit| {
            let team_id = unit.team_id.as_deref();
            let stored = status::load(store, unit.stream, team_id);
            let bytes = store
                .get(&crate::keys::checkpoint_key(unit.stream, team_id))
                .ok()
                .flatten();
            let watermark = bytes.and_then(|b| stored_watermark(unit.stream, &b));
            StreamStatus {
                stream: unit.stream.name().to_string(),
                team_id: unit.team_id.clone(),
                watermark,
                lag_seconds: watermark.map(|w| now - w),
                last_success: stored.last_success,
                last_error_at: stored.last_error_at,
                last_error: stored.last_error.clone(),
                total_records: stored.total_records,
                silent_for: stored.silent_for(config.max_silence(unit.stream), now),
                stored,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{HttpResponse, RecordSink, SinkBatch, SinkError, TransportError};
    use crate::testutil::{MemStore, TestClock};

    /// A transport that fails the test: synthetic passes must not call Slack.
    struct NoNetwork;
    impl Transport for NoNetwork {
        fn get(&mut self, url: &str, _: &str, _: Duration) -> Result<HttpResponse, TransportError> {
            panic!("a synthetic pass called {url}");
        }
    }

    /// Keeps every record, per stream.
    #[derive(Default)]
    struct Records(Vec<(String, serde_json::Value)>);
    impl RecordSink for Records {
        fn write(&mut self, batch: SinkBatch) -> Result<(), SinkError> {
            for line in String::from_utf8(batch.ndjson).unwrap().lines() {
                self.0.push((
                    batch.stream.to_string(),
                    serde_json::from_str(line).unwrap(),
                ));
            }
            Ok(())
        }
    }

    /// A state that tried `synthetic_data` and then collects from Slack starts afresh (from
    /// `backfill_start_time`), not from where the made-up data left off; made-up data never moves
    /// a real stream's checkpoint.
    #[test]
    fn synthetic_and_real_collection_never_share_a_checkpoint() {
        use crate::synthetic::{AuditApiModel, EventList, ModelEvent};
        let now = 1_700_000_000;
        let backfill = now - 600;
        let synthetic = Config::from_pairs(&[
            ("synthetic_data", "true"),
            ("streams", "audit"),
            ("lease_settle_ms", "0"),
        ])
        .unwrap();
        let real = Config::from_pairs(&[
            ("slack_token", "xoxp-test"),
            ("streams", "audit"),
            ("lease_settle_ms", "0"),
            ("audit_requests_per_minute", "0"),
            ("backfill_start_time", &backfill.to_string()),
        ])
        .unwrap();
        let mut slack = AuditApiModel::new(EventList(vec![ModelEvent {
            id: "real".into(),
            date_create: backfill + 10,
            action: "user_login".into(),
            json: format!(r#"{{"id":"real","date_create":{}}}"#, backfill + 10),
        }]));
        slack.now = Some(now);
        let (mut store, mut sink, clock) =
            (MemStore::default(), Records::default(), TestClock::new(now));
        let logs = RefCell::new(Vec::new());
        let log = |l: &str| logs.borrow_mut().push(l.to_string());
        let mut pass = |cfg: &Config, t: &mut dyn Transport, store: &mut MemStore| {
            let mut env = Env {
                transport: t,
                store,
                sink: &mut sink,
                clock: &clock,
                log: &log,
                random: &crate::testutil::test_random,
            };
            run_pass(cfg, &mut env, &RunOptions::default())
        };
        let r = pass(&synthetic, &mut NoNetwork, &mut store);
        assert!(r.streams[0].records > 0, "{r:?}");
        let r = pass(&real, &mut slack, &mut store);
        assert_eq!(r.streams[0].outcome, Outcome::CaughtUp, "{r:?}");
        assert_eq!(r.streams[0].records, 1, "from backfill_start_time: {r:?}");
        assert!(
            logs.borrow().iter().any(|l| l.contains("starts afresh")),
            "{:?}",
            logs.borrow()
        );
        let real_checkpoint = store.map[audit::CHECKPOINT_KEY].clone();
        let r = pass(&synthetic, &mut NoNetwork, &mut store);
        assert_eq!(r.streams[0].outcome, Outcome::Failed, "{r:?}");
        assert_eq!(
            r.streams[0].error_code.as_deref(),
            Some("state_holds_real_data")
        );
        assert_eq!(store.map[audit::CHECKPOINT_KEY], real_checkpoint);
    }

    #[test]
    fn synthetic_data_covers_all_three_streams_through_their_cursors() {
        // Synthetic access rows sort as `access_sort_key` says: both of Slack's candidate orders
        // go through the same walk (`auto` learns date_first from the data).
        for sort_key in ["auto", "date_last"] {
            synthetic_passes(sort_key);
        }
    }

    fn synthetic_passes(sort_key: &str) {
        let cfg = Config::from_pairs(&[
            ("synthetic_data", "true"),
            ("lease_settle_ms", "0"),
            ("access_sort_key", sort_key),
        ])
        .unwrap();
        let (mut store, mut sink, clock) = (
            MemStore::default(),
            Records::default(),
            TestClock::new(1_700_000_000),
        );
        let pass = |store: &mut MemStore, sink: &mut Records| {
            let mut env = Env {
                transport: &mut NoNetwork,
                store,
                sink,
                clock: &clock,
                log: &|_| {},
                random: &crate::testutil::test_random,
            };
            run_pass(&cfg, &mut env, &RunOptions::default())
        };
        let r = pass(&mut store, &mut sink);
        for s in &r.streams {
            assert_eq!(s.outcome, Outcome::CaughtUp, "{sort_key}: {r:?}");
            assert!(
                s.records > 0,
                "{sort_key}: {} delivered nothing: {r:?}",
                s.stream
            );
        }
        for (stream, rec) in &sink.0 {
            assert_eq!(rec["event"]["synthetic"], true, "{stream}: {rec}");
        }
        let first: std::collections::BTreeSet<String> = sink
            .0
            .iter()
            .map(|(_, r)| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(first.len(), sink.0.len(), "no repeats");
        // Two hours later: new events and entries, access rows used again (new states) and new
        // combinations; nothing delivered before comes again.
        clock.now.set(1_700_007_200);
        let before = sink.0.len();
        let r = pass(&mut store, &mut sink);
        for s in &r.streams {
            assert_eq!(s.outcome, Outcome::CaughtUp, "{sort_key}: {r:?}");
            assert!(
                s.records > 0,
                "{sort_key}: {} delivered nothing new: {r:?}",
                s.stream
            );
        }
        for (_, rec) in &sink.0[before..] {
            assert!(
                !first.contains(rec["id"].as_str().unwrap()),
                "{sort_key}: repeated: {rec}"
            );
        }
    }
}
