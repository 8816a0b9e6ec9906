//! `slack-logs demo`: the newcomer's first command. A local Slack simulator,
//! the real component, all three streams (audit, access, integration), three
//! passes with new data arriving in between, so one sees backfill, incremental
//! collection and the checkpoint at work without a Slack token. It ends with a
//! table per stream and the one command that points it at Slack.

use crate::{print_report, rfc3339, Global, PassReport, Setup, Tally};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The component's audit and access lag in the demo: short, so new data shows up on the next pass.
const LAG_SECONDS: i64 = 5;
const DEMO_PAGE_SIZE: u32 = 5;
const STREAMS: [&str; 3] = ["audit", "access", "integration"];

/// What one stream did over the demo's passes.
#[derive(Clone, Copy, Default)]
struct StreamTotals {
    records: u64,
    pages: u64,
    passes: u64,
    failed: u64,
}

fn add_totals(totals: &mut BTreeMap<String, StreamTotals>, report: &PassReport) {
    for s in &report.streams {
        let t = totals.entry(s.stream.clone()).or_default();
        t.records += s.records;
        t.pages += u64::from(s.pages);
        t.passes += 1;
        t.failed += u64::from(s.error_code.is_some());
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Removes the throwaway state directory when the demo ends, however it ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn demo(g: &Global) -> anyhow::Result<ExitCode> {
    let component = crate::resolve_component(g.component.as_deref())?;

    let sim_config = slack_sim::SimConfig::default();
    let newest = sim_config.history_end;
    let sim = slack_sim::Simulator::start(sim_config)
        .context("cannot start the local Slack simulator")?;
    let backfill = newest - 2 * 3600;

    let mut g = g.clone();
    let temp = match g.state {
        Some(_) => None,
        None => {
            let dir = std::env::temp_dir().join(format!("slack-logs-demo-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            g.state = Some(dir.join("state.db"));
            Some(TempDir(dir))
        }
    };
    let overrides = [
        ("slack_api_base", sim.api_base().to_string()),
        ("slack_audit_base", sim.audit_base().to_string()),
        ("slack_token", slack_sim::ORG_OWNER_TOKEN.to_string()),
        ("streams", STREAMS.join(",")),
        ("backfill_start_time", rfc3339(backfill)),
        ("audit_lag_seconds", LAG_SECONDS.to_string()),
        ("access_lag_seconds", LAG_SECONDS.to_string()),
        // Small pages, so the demo's same-second burst straddles a page edge.
        ("audit_page_size", DEMO_PAGE_SIZE.to_string()),
        ("access_page_size", "50".to_string()),
        ("integration_page_size", "25".to_string()),
        // The simulator does not rate-limit; Slack's pacing would only make the demo slow.
        ("audit_requests_per_minute", "0".to_string()),
        ("web_requests_per_minute", "0".to_string()),
    ];
    let mut setup = Setup::new(&g, &overrides)?;
    if temp.is_some() {
        // Keep the compiled component across demos even though the state is throwaway.
        setup.cache_dir = PathBuf::from(crate::DEFAULT_STATE)
            .parent()
            .map_or_else(|| PathBuf::from("cache"), |p| p.join("cache"));
    }
    let state = setup.state.clone();

    log_info!("slack-logs demo: the collector component against a local Slack simulator");
    log_info!(
        "  simulator    {} (Web API), {} (Audit Logs API)",
        sim.api_base(),
        sim.audit_base()
    );
    log_info!("  component    {}", component.display());
    log_info!(
        "  state        {}{}",
        state,
        if temp.is_some() {
            " (throwaway; keep one with --state PATH)"
        } else {
            ""
        }
    );
    log_info!("  records to   {}", setup.sink.describe());
    log_info!(
        "  settings     streams={}  backfill_start_time={}  audit_lag_seconds={LAG_SECONDS}  audit_page_size={DEMO_PAGE_SIZE}",
        STREAMS.join(","),
        rfc3339(backfill)
    );
    log_info!("");

    let mut rt = setup.runtime(&component)?;
    rt.show_progress();
    let mut tally = Tally::default();
    let mut totals: BTreeMap<String, StreamTotals> = BTreeMap::new();
    let mut watermark = None;
    for pass in 1..=3u64 {
        match pass {
            1 => log_info!(
                "== pass 1: first run, backfills the simulated audit, access and integration logs from {} (2 hours before the newest data)",
                rfc3339(backfill)
            ),
            2 => {
                let now = unix_now();
                let ids = sim.add_audit_events(8, now - 4, now);
                sim.touch_access_rows(5, now - 2);
                sim.add_integration_entries(4, now - 4, now);
                arrive(
                    pass,
                    &format!(
                        "{} new audit events, 5 users signing in again (their access rows change) and 4 app changes arrive",
                        ids.len()
                    ),
                )
                .await;
            }
            _ => {
                let now = unix_now();
                sim.add_audit_burst(now - 1, 12);
                let ids = sim.add_audit_events(3, now - 3, now);
                sim.add_access_rows(3, now - 3, now - 1);
                arrive(
                    pass,
                    &format!(
                        "a burst of 12 audit events in one second, plus {} more (same-second ties are where collectors lose events), \
                         and 3 new user + IP + device combinations arrive",
                        ids.len()
                    ),
                )
                .await;
            }
        }
        let report = match rt.run_pass(&crate::empty_run()).await? {
            crate::PassRun::Ran(report) => report,
            crate::PassRun::Busy(busy) => anyhow::bail!(
                "{busy}; the demo needs the state to itself (leave out --state for a throwaway one)"
            ),
        };
        tally.add(&report);
        add_totals(&mut totals, &report);
        print_report(pass, &report);
        watermark = report
            .streams
            .iter()
            .find(|s| s.stream == "audit")
            .and_then(|s| s.watermark)
            .or(watermark);
        log_info!("");
    }

    log_info!("{}", tally.summary(rt.sink()));
    log_info!("");
    let rows: Vec<[String; 5]> = STREAMS
        .iter()
        .map(|name| {
            let t = totals.get(*name).copied().unwrap_or_default();
            [
                name.to_string(),
                t.records.to_string(),
                t.pages.to_string(),
                format!(
                    "{}{}",
                    t.passes,
                    if t.failed > 0 {
                        format!(" ({} failed)", t.failed)
                    } else {
                        String::new()
                    }
                ),
                rt.sink().describe(),
            ]
        })
        .collect();
    for line in table(
        ["STREAM", "RECORDS", "PAGES", "PASSES", "RECORDS WENT TO"],
        &rows,
    ) {
        log_info!("{line}");
    }
    log_info!("");
    if tally.failures > 0 {
        log_warn!("a stream failed in the demo; the message above says why");
    } else if let Some(w) = watermark {
        // Ground truth from the simulator: what it holds between the backfill start and the watermark.
        let expected = sim.audit_truth(backfill + 1, w).len() as u64;
        let audit = totals.get("audit").map_or(0, |t| t.records);
        if expected == audit {
            log_info!(
                "check: the simulator holds {expected} audit events from {} to {}; all {audit} were delivered, \
                 each pass only what was new (the checkpoint in the state store says where to resume).",
                rfc3339(backfill),
                rfc3339(w),
            );
        } else {
            log_warn!(
                "check: the simulator holds {expected} audit events from {} to {}, but {audit} audit records were delivered",
                rfc3339(backfill),
                rfc3339(w),
            );
        }
        let entries = sim
            .integration_truth()
            .iter()
            .filter(|e| {
                e["date"]
                    .as_str()
                    .and_then(|d| d.parse::<i64>().ok())
                    .is_some_and(|d| d >= backfill)
            })
            .count() as u64;
        let integration = totals.get("integration").map_or(0, |t| t.records);
        if entries == integration {
            log_info!(
                "check: all {entries} integration log entries since {} were delivered once.",
                rfc3339(backfill)
            );
        } else {
            log_warn!("check: the simulator holds {entries} integration log entries since {}, but {integration} were delivered", rfc3339(backfill));
        }
    }
    log_info!(
        "Next, collect from Slack (README: Slack app setup says which token each stream needs):\n\n    \
         SLACK_LOGS_SLACK_TOKEN=xoxp-... slack-logs run --every 5m --sink file:slack-logs.ndjson\n\n\
         `slack-logs --help` lists the rest."
    );
    Ok(tally.exit_code())
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> Vec<String> {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out
}

/// Announce new events, then wait until they are older than the lag.
async fn arrive(pass: u64, what: &str) {
    let wait = LAG_SECONDS + 1;
    log_info!(
        "== pass {pass}: {what}; waiting {wait} s so they are older than the {LAG_SECONDS} s lag"
    );
    tokio::time::sleep(Duration::from_secs(wait as u64)).await;
}
