//! One pass over the configured streams: load each checkpoint, walk, deliver, report.

use std::time::Duration;

use crate::audit::{self, AuditCheckpoint, AuditIo, WalkEnd, WalkStats};
use crate::config::{format_rfc3339, Config};
use crate::env::{Env, Transport};
use crate::fetch::{Deadline, FetchStats, Fetcher};
use crate::status::{self, StreamStatus};
use crate::synthetic::{AuditApiModel, SyntheticEvents};
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
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::CaughtUp => "caught-up",
            Outcome::BudgetExhausted => "budget-exhausted",
            Outcome::Failed => "failed",
            Outcome::NotAvailable => "not-available",
        }
    }
}

/// One stream's part of a pass (the WIT `stream-report`).
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
}

impl StreamReport {
    fn new(stream: &str) -> StreamReport {
        StreamReport {
            stream: stream.to_string(),
            team_id: None,
            outcome: Outcome::Failed,
            records: 0,
            pages: 0,
            requests: 0,
            retries: 0,
            watermark: None,
            lag_seconds: None,
            message: None,
            error_code: None,
        }
    }

    fn failed(stream: &str, code: &str, message: String) -> StreamReport {
        StreamReport { error_code: Some(code.into()), message: Some(message), ..StreamReport::new(stream) }
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
    pub fn not_started(options: &RunOptions, started_at: i64, code: &str, message: &str) -> PassReport {
        let names: Vec<String> = if options.streams.is_empty() {
            Stream::ALL.iter().map(|s| s.name().to_string()).collect()
        } else {
            options.streams.clone()
        };
        PassReport {
            started_at,
            duration_ms: 0,
            streams: names.iter().map(|n| StreamReport::failed(n, code, message.to_string())).collect(),
        }
    }

    pub fn any_failed(&self) -> bool {
        self.streams.iter().any(|s| s.outcome == Outcome::Failed)
    }
}

/// Runs one pass. Streams run one after another within one time budget; a failing stream does
/// not stop the others.
pub fn run_pass(config: &Config, env: &mut Env<'_>, options: &RunOptions) -> PassReport {
    let started = env.clock.monotonic();
    let started_at = env.clock.now_unix();
    let budget = Duration::from_secs(u64::from(options.max_run_seconds.unwrap_or(config.max_run_seconds)));
    let deadline = Deadline { at: started + budget };
    let mut reports = Vec::new();
    let names: Vec<String> = if options.streams.is_empty() {
        config.streams.iter().map(|s| s.name().to_string()).collect()
    } else {
        options.streams.clone()
    };
    for name in &names {
        let report = match Stream::parse(name) {
            None => StreamReport::failed(
                name,
                "unknown_stream",
                format!("unknown stream {name:?}; expected audit, access or integration"),
            ),
            Some(Stream::Audit) => run_audit(config, env, deadline, started_at),
            Some(s) => StreamReport {
                outcome: Outcome::NotAvailable,
                message: Some(format!(
                    "the {} stream is not available in this version yet; remove it from `streams` to silence this",
                    s.name()
                )),
                ..StreamReport::new(s.name())
            },
        };
        (env.log)(&progress_line(&report));
        reports.push(report);
    }
    PassReport { started_at, duration_ms: (env.clock.monotonic() - started).as_millis() as u64, streams: reports }
}

/// One line per stream for stderr.
pub fn progress_line(r: &StreamReport) -> String {
    let mut line = format!(
        "{}: {} — {} records, {} pages, {} requests, {} retries",
        r.stream,
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

fn run_audit(config: &Config, env: &mut Env<'_>, deadline: Deadline, now: i64) -> StreamReport {
    let stream = Stream::Audit;
    let mut report = StreamReport::new(stream.name());
    let token = match (config.synthetic_data, config.audit_token()) {
        (true, _) => "synthetic".to_string(),
        (false, Some(t)) => t.to_string(),
        (false, None) => {
            return StreamReport::failed(
                stream.name(),
                "no_token",
                "no Slack token configured: set `slack_token` (or `audit_token`) — SLACK_LOGS_SLACK_TOKEN in the host, \
                 the slack_token variable under Spin — or set synthetic_data=true to try the pipeline with made-up records"
                    .into(),
            )
        }
    };
    let mut checkpoint = match env.store.get(audit::CHECKPOINT_KEY) {
        Ok(Some(bytes)) => match AuditCheckpoint::decode(&bytes) {
            Ok(c) => c,
            Err(e) => return StreamReport::failed(stream.name(), "checkpoint_unreadable", e.to_string()),
        },
        Ok(None) => {
            let mut initial_config = config.clone();
            if config.synthetic_data && config.backfill_start_time.is_none() {
                // Made-up data has no history to protect: start an hour back so a first pass shows records.
                initial_config.backfill_start_time = Some(now - 3600);
            }
            let c = AuditCheckpoint::initial(&initial_config, now);
            // Anchor "from now" at once, or the next pass would start from its own now and skip the gap.
            if let Err(e) = env.store.set(audit::CHECKPOINT_KEY, &c.encode()) {
                return StreamReport::failed(stream.name(), "store_error", e.to_string());
            }
            (env.log)(&format!("audit: no checkpoint yet; starting after {}", format_rfc3339(c.watermark)));
            c
        }
        Err(e) => return StreamReport::failed(stream.name(), "store_error", e.to_string()),
    };
    let mut notes = Vec::new();
    let filters = audit::filters_key(config);
    if checkpoint.filters != filters {
        notes.push(format!(
            "audit filters changed from {:?} to {:?}; events before {} were collected with the old filters and are not read again",
            checkpoint.filters,
            filters,
            format_rfc3339(checkpoint.watermark)
        ));
    }
    let mut synthetic = AuditApiModel::new(SyntheticEvents { mean_gap: 20 });
    synthetic.now = Some(now);
    let transport: &mut dyn Transport = if config.synthetic_data { &mut synthetic } else { &mut *env.transport };
    let mut fetcher = Fetcher {
        transport,
        clock: env.clock,
        deadline,
        request_timeout: Duration::from_secs(u64::from(config.request_timeout_seconds)),
        stats: FetchStats::default(),
        log: env.log,
    };
    let mut io = AuditIo { store: &mut *env.store, sink: &mut *env.sink, collected_at: now, log: env.log };
    let mut stats = WalkStats::default();
    let end = audit::walk(config, &token, &mut fetcher, &mut io, &mut checkpoint, &mut stats);

    report.records = stats.records;
    report.pages = stats.pages;
    report.requests = fetcher.stats.requests;
    report.retries = fetcher.stats.retries;
    report.watermark = Some(checkpoint.watermark);
    report.lag_seconds = Some(now - checkpoint.watermark);
    if stats.out_of_window > 0 {
        notes.push(format!("{} entries outside the requested window were ignored", stats.out_of_window));
    }
    let mut stored = status::load(env.store, stream);
    stored.total_records += stats.records;
    match end {
        WalkEnd::CaughtUp => {
            report.outcome = Outcome::CaughtUp;
            stored.last_success = Some(now);
            stored.last_error = None;
            stored.last_error_at = None;
        }
        WalkEnd::Budget(m) => {
            report.outcome = Outcome::BudgetExhausted;
            stored.last_success = Some(now);
            notes.push(m);
        }
        WalkEnd::Failed { code, message } => {
            report.outcome = Outcome::Failed;
            report.error_code = Some(code);
            stored.last_error = Some(message.clone());
            stored.last_error_at = Some(now);
            notes.insert(0, message);
        }
    }
    if let Err(e) = status::save(env.store, stream, &stored) {
        notes.push(format!("could not save the stream status: {e}"));
    }
    if !notes.is_empty() {
        report.message = Some(notes.join("; "));
    }
    report
}

/// Every configured stream's status, for `/status`.
pub fn stream_statuses(config: &Config, store: &mut dyn crate::env::KvStore, now: i64) -> Vec<StreamStatus> {
    config
        .streams
        .iter()
        .map(|&s| {
            let stored = status::load(store, s);
            let watermark = match s {
                Stream::Audit => store
                    .get(audit::CHECKPOINT_KEY)
                    .ok()
                    .flatten()
                    .and_then(|b| AuditCheckpoint::decode(&b).ok())
                    .map(|c| c.watermark),
                _ => None,
            };
            StreamStatus {
                stream: s.name().to_string(),
                team_id: None,
                watermark,
                lag_seconds: watermark.map(|w| now - w),
                last_success: stored.last_success,
                last_error_at: stored.last_error_at,
                last_error: stored.last_error,
                total_records: stored.total_records,
            }
        })
        .collect()
}
