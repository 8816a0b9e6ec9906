//! The slack-logs host: runs the collector component in wasmtime, and gives it what Spin would:
//! outgoing HTTP, a key-value store (SQLite or Redis), config (TOML file + `SLACK_LOGS_*`
//! environment) and a sink for the records (stdout, a file, an HTTP endpoint or S3). It schedules
//! passes itself (`run --every`) or serves the component's HTTP routes (`serve`); the `slack-logs`
//! binary is [`main_cli`].
//!
//! For a program of your own that runs the collector with its own store and sink, see
//! [`embed`] and `host/examples/embed.rs`.
//!
//! It is not where collection logic lives: talking to Slack, cursors, checkpoints, config
//! validation and record shape are all the component's, so that it behaves the same under Spin.
//! The host stays a thin embedding.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set by `-v/--verbose`.
static VERBOSE: AtomicBool = AtomicBool::new(false);

pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Operator-facing lines on stderr. stdout is reserved for records and
/// command output (`status`), so it stays machine-readable.
#[macro_export]
macro_rules! log_info {
    ($($t:tt)*) => { eprintln!($($t)*) };
}
#[macro_export]
macro_rules! log_warn {
    ($($t:tt)*) => { eprintln!("warning: {}", format_args!($($t)*)) };
}
#[macro_export]
macro_rules! log_debug {
    ($($t:tt)*) => { if $crate::verbose() { eprintln!("debug: {}", format_args!($($t)*)) } };
}

mod cli;
mod config;
mod demo;
pub mod embed;
pub mod kv;
mod kv_redis;
mod pass_lock;
mod progress;
mod reset;
pub mod runtime;
mod serve;
pub mod sink;

use cli::{Command, Global};
use runtime::{Outcome, PassReport, PassRun, RunOptions, Runtime, StreamStatus};
use sink::{Sink, SinkSpec};

const DEFAULT_STATE: &str = ".slack-logs/state.db";
/// The environment variable that sets the state when `--state` is not given.
pub const STATE_ENV: &str = "SLACK_LOGS_STATE";
const COMPONENT_FILE: &str = "slack_logs_collector.wasm";

/// Where the component is, or an error that says how to get it.
fn resolve_component(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return exists_or_explain(p.to_owned(), "--component or SLACK_LOGS_COMPONENT");
    }
    // target/release/slack-logs -> target/wasm32-wasip2/release/slack_logs_collector.wasm
    let beside_exe = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?.parent()?;
        Some(
            dir.join("wasm32-wasip2")
                .join("release")
                .join(COMPONENT_FILE),
        )
    });
    let candidates: Vec<PathBuf> = beside_exe
        .into_iter()
        .chain([PathBuf::from(COMPONENT_FILE)])
        .collect();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    anyhow::bail!(
        "the collector component was not found (looked at {}).\n\
         Build it with `cargo xtask build` in the slack-logs checkout, or point at it with \
         --component PATH or SLACK_LOGS_COMPONENT",
        looked.join(", ")
    )
}

fn exists_or_explain(p: PathBuf, from: &str) -> anyhow::Result<PathBuf> {
    if p.is_file() {
        Ok(p)
    } else {
        anyhow::bail!(
            "the collector component {} (from {from}) does not exist; build it with `cargo xtask build`",
            p.display()
        )
    }
}

/// Where the state lives: `--state`, else `SLACK_LOGS_STATE` (which keeps a Redis password off
/// the command line, where `ps` would show it), else the default file.
pub fn state_spec(g: &Global) -> Result<kv::StateSpec, kv::KvError> {
    // Read here, not by clap: `demo` uses a throwaway state unless `--state` itself is given.
    let text = match &g.state {
        Some(path) => match path.to_str() {
            Some(t) => t.to_owned(),
            // Not UTF-8, so not a URL: a file name.
            None => return Ok(kv::StateSpec::Sqlite(path.clone())),
        },
        None => match std::env::var(STATE_ENV) {
            Ok(t) if !t.is_empty() => t,
            _ => DEFAULT_STATE.to_owned(),
        },
    };
    kv::StateSpec::parse(&text)
}

/// The directory of the default state file; the compiled-component cache goes there when the
/// state is not a file.
fn default_state_dir() -> PathBuf {
    Path::new(DEFAULT_STATE)
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Everything a command needs: config, KV, sink, and the loaded component.
pub struct Setup {
    pub state: kv::StateSpec,
    pub cache_dir: PathBuf,
    pub config: config::ConfigMap,
    pub sink: Arc<Sink>,
}

impl Setup {
    /// Config and sink first: they fail fast on operator mistakes, before the
    /// (possibly slow) component compile.
    pub fn new(g: &Global, overrides: &[(&str, String)]) -> anyhow::Result<Setup> {
        let mut config = config::load(g.config.as_deref())?;
        for (k, v) in overrides {
            config.insert((*k).to_owned(), v.clone());
        }
        let keys: Vec<&str> = config.keys().map(String::as_str).collect();
        log_debug!("config keys passed to the component: {}", keys.join(", "));
        let spec: SinkSpec = g.sink.as_deref().unwrap_or("stdout").parse()?;
        let token = std::env::var("SLACK_LOGS_SINK_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        // A composed sink component (sinks/http) reads its token from the config store, as under
        // Spin; a `sink_token` in the config file wins over the environment, like any other key.
        if spec == SinkSpec::None {
            if let Some(t) = &token {
                config
                    .entry("sink_token".to_owned())
                    .or_insert_with(|| t.clone());
            }
        }
        let sink = Arc::new(Sink::new(&spec, token)?);
        let state = state_spec(g)?;
        let cache_dir = state.cache_dir(&default_state_dir());
        Ok(Setup {
            state,
            cache_dir,
            config,
            sink,
        })
    }

    pub fn runtime(self, component: &Path) -> anyhow::Result<Runtime> {
        let kv = kv::KvStore::open(&self.state)?;
        log_debug!("state store: {}", kv.describe());
        Runtime::new(component, &self.cache_dir, kv, self.config, self.sink)
    }
}

/// Unix seconds -> `2024-05-01T12:00:00Z`: the core's, as the component writes it.
pub use slack_logs_core::config::format_rfc3339 as rfc3339;

/// `75` -> `1m15s`: the core's, which the status page uses too.
pub use slack_logs_core::status::human_secs;

pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::CaughtUp => "caught-up",
        Outcome::BudgetExhausted => "budget-exhausted",
        Outcome::Failed => "failed",
        Outcome::NotAvailable => "not-available",
        Outcome::HeldElsewhere => "held-elsewhere",
    }
}

/// Totals over the passes of one command.
#[derive(Default)]
pub struct Tally {
    pub passes: u64,
    pub records: u64,
    pub failures: u64,
    pub host_errors: u64,
    /// Passes that did not run because another process was running one on the state file.
    pub skipped: u64,
}

impl Tally {
    /// Adds a pass that ran, or counts and reports one that did not (`number` is its place in
    /// the command's sequence of passes).
    pub fn add_run(&mut self, number: u64, run: &PassRun) {
        match run {
            PassRun::Ran(report) => {
                self.add(report);
                print_report(number, report);
            }
            PassRun::Busy(busy) => {
                self.skipped += 1;
                log_info!(
                    "pass {number}: skipped: {busy}; that pass collects the same streams, and the next pass resumes where it stops"
                );
            }
        }
    }

    pub fn add(&mut self, report: &PassReport) {
        self.passes += 1;
        for s in &report.streams {
            self.records += s.records;
            if matches!(s.outcome, Outcome::Failed) {
                self.failures += 1;
            }
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        if self.host_errors > 0 {
            ExitCode::from(1)
        } else if self.failures > 0 {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }
    }

    pub fn summary(&self, sink: &Sink) -> String {
        // The host sees no bytes when the component's own sink writes them.
        let to = if sink.is_none() {
            "to the component's own sink".to_owned()
        } else {
            let bytes: u64 = sink.totals().values().map(|t| t.bytes).sum();
            format!("{bytes} bytes to {}", sink.describe())
        };
        let mut line = format!(
            "summary: {} pass{}, {} record{} ({to}), {} stream failure{}",
            self.passes,
            if self.passes == 1 { "" } else { "es" },
            self.records,
            if self.records == 1 { "" } else { "s" },
            self.failures,
            if self.failures == 1 { "" } else { "s" },
        );
        if self.skipped > 0 {
            line.push_str(&format!(
                ", {} skipped (another process was running a pass on the state file)",
                self.skipped
            ));
        }
        if self.host_errors > 0 {
            line.push_str(&format!(", {} host error(s)", self.host_errors));
        }
        line
    }
}

/// One stderr line per stream of a pass.
pub fn print_report(pass: u64, report: &PassReport) {
    log_info!(
        "pass {pass}: {} stream{} in {:.1} s",
        report.streams.len(),
        if report.streams.len() == 1 { "" } else { "s" },
        report.duration_ms as f64 / 1000.0
    );
    if report.streams.is_empty() {
        log_info!("  (no streams ran; check the `streams` setting)");
    }
    for s in &report.streams {
        let name = match &s.team_id {
            Some(t) => format!("{}[{t}]", s.stream),
            None => s.stream.clone(),
        };
        let mut line = format!(
            "  {name:<12} {:<16} records={} pages={} requests={} retries={} watermark={} lag={}",
            outcome_name(s.outcome),
            s.records,
            s.pages,
            s.requests,
            s.retries,
            s.watermark.map_or("-".into(), rfc3339),
            s.lag_seconds.map_or("-".into(), human_secs),
        );
        if let Some(code) = &s.error_code {
            line.push_str(&format!(" error={code}"));
        }
        if let Some(m) = &s.message {
            line.push_str(&format!("\n      {m}"));
        }
        log_info!("{line}");
    }
}

fn empty_run() -> RunOptions {
    RunOptions {
        streams: Vec::new(),
        max_run_seconds: None,
    }
}

/// Ctrl-C: the first asks to stop after the current pass, the second aborts.
fn install_stop_handler() -> Arc<tokio::sync::Notify> {
    static STOP: AtomicBool = AtomicBool::new(false);
    let notify = Arc::new(tokio::sync::Notify::new());
    let n = notify.clone();
    tokio::spawn(async move {
        loop {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            if STOP.swap(true, Ordering::SeqCst) {
                log_warn!(
                    "second Ctrl-C: aborting; the next pass resumes from the last checkpoint"
                );
                std::process::exit(130);
            }
            log_info!("stopping after the current pass (Ctrl-C again to abort now)");
            n.notify_one();
        }
    });
    notify
}

async fn cmd_run(
    g: &Global,
    every: Option<Duration>,
    listen: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let component = resolve_component(g.component.as_deref())?;
    let setup = Setup::new(g, &[])?;
    let mut rt = setup.runtime(&component)?;
    rt.show_progress();
    let rt = Arc::new(rt);
    let mut tally = Tally::default();
    let Some(every) = every else {
        let run = rt.run_pass(&empty_run()).await?;
        tally.add_run(1, &run);
        log_info!("{}", tally.summary(rt.sink()));
        return Ok(tally.exit_code());
    };
    log_info!(
        "a pass every {}; records go to {}; Ctrl-C stops",
        human_secs(every.as_secs() as i64),
        rt.sink().describe()
    );
    if let Some(addr) = listen {
        // Bind now, so a taken port is an error before the first pass, not a log line later.
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}; is another process using it? choose one with --listen ADDR"))?;
        drop(listener);
        let rt = rt.clone();
        tokio::spawn(async move {
            if let Err(e) = serve::serve(rt, addr, serve::Routes::ReadOnly).await {
                log_warn!("the metrics listener stopped: {e:#}");
            }
        });
    }
    let stop = install_stop_handler();
    let stopped = Arc::new(AtomicBool::new(false));
    let s2 = stopped.clone();
    let stop2 = stop.clone();
    tokio::spawn(async move {
        stop2.notified().await;
        s2.store(true, Ordering::SeqCst);
    });
    loop {
        let started = Instant::now();
        match rt.run_pass(&empty_run()).await {
            Ok(run) => tally.add_run(tally.passes + tally.skipped + 1, &run),
            // Keep the schedule going: the next pass resumes from the checkpoints.
            Err(e) => {
                tally.host_errors += 1;
                log_warn!("pass failed: {e:#}");
            }
        }
        if stopped.load(Ordering::SeqCst) {
            break;
        }
        let wait = every.saturating_sub(started.elapsed());
        log_debug!("next pass in {:.1} s", wait.as_secs_f64());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.notified() => break,
        }
        if stopped.load(Ordering::SeqCst) {
            break;
        }
    }
    log_info!("{}", tally.summary(rt.sink()));
    Ok(tally.exit_code())
}

async fn cmd_serve(g: &Global, listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let component = resolve_component(g.component.as_deref())?;
    let rt = Setup::new(g, &[])?.runtime(&component)?;
    serve::serve(Arc::new(rt), listen, serve::Routes::All).await?;
    Ok(ExitCode::SUCCESS)
}

async fn cmd_status(g: &Global, json: bool) -> anyhow::Result<ExitCode> {
    let component = resolve_component(g.component.as_deref())?;
    let rt = Setup::new(g, &[])?.runtime(&component)?;
    let status = rt.status().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
    } else {
        print!("{}", status_table(&status));
    }
    Ok(ExitCode::SUCCESS)
}

fn status_json(status: &[StreamStatus]) -> serde_json::Value {
    status
        .iter()
        .map(|s| {
            serde_json::json!({
                "stream": s.stream,
                "team_id": s.team_id,
                "watermark": s.watermark,
                "watermark_time": s.watermark.map(rfc3339),
                "lag_seconds": s.lag_seconds,
                "last_success": s.last_success,
                "last_success_time": s.last_success.map(rfc3339),
                "last_error_at": s.last_error_at,
                "last_error": s.last_error,
                "total_records": s.total_records,
                "late_events": s.late_events,
                "healthy": s.healthy,
                "silent_for_seconds": s.silent_for_seconds,
            })
        })
        .collect()
}

/// The words come from the core (`StreamStatus::display_cells`), which the status page (`GET /`)
/// shows too; this only lays them out in columns.
fn status_table(status: &[StreamStatus]) -> String {
    use slack_logs_core::status::{NO_STREAM_YET, STATUS_COLUMNS};
    if status.is_empty() {
        return format!("{NO_STREAM_YET} (run `slack-logs run` first)\n");
    }
    let header = STATUS_COLUMNS;
    let rows: Vec<[String; 8]> = status
        .iter()
        .map(|s| core_status(s).display_cells())
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// The component's status (WIT) as the core's, for its display words. `healthy` is the silence
/// alert not being raised, so `silent_for` is kept only while it is.
fn core_status(s: &StreamStatus) -> slack_logs_core::StreamStatus {
    slack_logs_core::StreamStatus {
        stream: s.stream.clone(),
        team_id: s.team_id.clone(),
        watermark: s.watermark,
        lag_seconds: s.lag_seconds,
        last_success: s.last_success,
        last_error_at: s.last_error_at,
        last_error: s.last_error.clone(),
        total_records: s.total_records,
        stored: slack_logs_core::status::StoredStatus {
            total_late_events: s.late_events,
            ..Default::default()
        },
        silent_for: if s.healthy {
            None
        } else {
            s.silent_for_seconds
        },
    }
}

/// The `slack-logs` command line: parses the arguments and runs the command.
pub fn main_cli() -> ExitCode {
    let (global, command) = match cli::parse(std::env::args_os()) {
        Ok(x) => x,
        Err(e) => {
            // --help and --version print and exit 0; a mistake prints what is wrong (with a
            // suggestion where clap has one) and exits 1, a host-level error like any other.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    VERBOSE.store(global.verbose, Ordering::Relaxed);
    match command {
        Command::Help => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Command::Completions(shell) => {
            cli::print_completions(shell);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match command {
            Command::Run { every, listen } => cmd_run(&global, every, listen).await,
            Command::Serve { listen } => cmd_serve(&global, listen).await,
            Command::Status { json } => cmd_status(&global, json).await,
            // Needs neither the component nor a sink: it edits the state store directly.
            Command::Reset(request) => reset::cmd_reset(&global, &request),
            Command::Demo => demo::demo(&global).await,
            Command::Help | Command::Completions(_) => unreachable!("handled above"),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formatting() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_519_862_400), "2018-03-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(human_secs(5), "5s");
        assert_eq!(human_secs(75), "1m15s");
        assert_eq!(human_secs(7260), "2h1m");
        assert_eq!(human_secs(90_000), "1d1h");
    }

    #[test]
    fn status_table_words() {
        assert_eq!(
            status_table(&[]),
            "no stream has run yet (run `slack-logs run` first)\n"
        );
        let row = |stream: &str, team: Option<&str>| StreamStatus {
            stream: stream.into(),
            team_id: team.map(Into::into),
            watermark: None,
            lag_seconds: None,
            last_success: None,
            last_error_at: None,
            last_error: None,
            total_records: 0,
            late_events: 0,
            healthy: true,
            silent_for_seconds: None,
        };
        let audit = StreamStatus {
            watermark: Some(1_709_210_096),
            lag_seconds: Some(75),
            last_success: Some(1_709_210_100),
            total_records: 42,
            late_events: 3,
            ..row("audit", None)
        };
        let access = StreamStatus {
            last_error_at: Some(1_709_210_000),
            last_error: Some("Slack answered `token_revoked`: issue a new token".into()),
            healthy: false,
            silent_for_seconds: Some(10_800),
            ..row("access", Some("T1"))
        };
        let config = StreamStatus {
            last_error: Some("bad key".into()),
            healthy: false,
            ..row("config", None)
        };
        assert_eq!(
            status_table(&[audit, access, config]),
            "STREAM  TEAM  WATERMARK             LAG    LAST SUCCESS          RECORDS      HEALTH       LAST ERROR\n\
             audit   -     2024-02-29T12:34:56Z  1m15s  2024-02-29T12:35:00Z  42 (3 late)  ok           -\n\
             access  T1    -                     -      -                     0            SILENT 3h0m  2024-02-29T12:33:20Z: Slack answered `token_revoked`: issue a new token\n\
             config  -     -                     -      -                     0            ok           bad key\n"
        );
    }

    #[test]
    fn missing_component_says_how_to_build() {
        let e = resolve_component(Some(Path::new("/nonexistent/x.wasm"))).unwrap_err();
        assert!(e.to_string().contains("cargo xtask build"), "{e}");
    }
}
