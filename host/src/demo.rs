//! `slack-logs demo`: the newcomer's first command. A local Slack simulator,
//! the real component, three passes with new events arriving in between, so
//! one sees backfill, incremental collection and the checkpoint at work
//! without a Slack token.

use crate::{print_report, rfc3339, Global, Setup, Tally};
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The component's audit lag in the demo: short, so new events show up on the next pass.
const LAG_SECONDS: i64 = 5;
const DEMO_PAGE_SIZE: u32 = 5;

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
        ("streams", "audit".to_string()),
        ("backfill_start_time", rfc3339(backfill)),
        ("audit_lag_seconds", LAG_SECONDS.to_string()),
        // Small pages, so the demo's same-second burst straddles a page edge.
        ("audit_page_size", DEMO_PAGE_SIZE.to_string()),
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
        "  settings     streams=audit  backfill_start_time={}  audit_lag_seconds={LAG_SECONDS}  audit_page_size={DEMO_PAGE_SIZE}",
        rfc3339(backfill)
    );
    log_info!("");

    let rt = setup.runtime(&component)?;
    let mut tally = Tally::default();
    let mut watermark = None;
    for pass in 1..=3u64 {
        match pass {
            1 => log_info!(
                "== pass 1: first run, backfills the simulated audit log from {} (2 hours before its newest event)",
                rfc3339(backfill)
            ),
            2 => {
                let now = unix_now();
                let ids = sim.add_audit_events(8, now - 4, now);
                arrive(pass, &format!("{} new audit events arrive in the simulator", ids.len())).await;
            }
            _ => {
                let now = unix_now();
                sim.add_audit_burst(now - 1, 12);
                let ids = sim.add_audit_events(3, now - 3, now);
                arrive(
                    pass,
                    &format!(
                        "a burst of 12 events in one second, plus {} more, arrive (same-second ties are where collectors lose events)",
                        ids.len()
                    ),
                )
                .await;
            }
        }
        let report = rt.run_pass(&crate::empty_run()).await?;
        tally.add(&report);
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
    if tally.failures > 0 {
        log_warn!("a stream failed in the demo; the message above says why");
    } else if let Some(w) = watermark {
        // Ground truth from the simulator: what it holds between the backfill start and the watermark.
        let expected = sim.audit_truth(backfill + 1, w).len() as u64;
        if expected == tally.records {
            log_info!(
                "check: the simulator holds {expected} audit events from {} to {}; all {} were delivered, \
                 each pass only what was new (the checkpoint in the state store says where to resume).",
                rfc3339(backfill),
                rfc3339(w),
                tally.records
            );
        } else {
            log_warn!(
                "check: the simulator holds {expected} audit events from {} to {}, but {} records were delivered",
                rfc3339(backfill),
                rfc3339(w),
                tally.records
            );
        }
    }
    log_info!(
        "Next: put `slack_token` in the environment (SLACK_LOGS_SLACK_TOKEN=xoxp-...) and run \
         `slack-logs run --every 5m --sink file:audit.ndjson`. `slack-logs --help` lists the rest."
    );
    Ok(tally.exit_code())
}

/// Announce new events, then wait until they are older than the lag.
async fn arrive(pass: u64, what: &str) {
    let wait = LAG_SECONDS + 1;
    log_info!(
        "== pass {pass}: {what}; waiting {wait} s so they are older than the {LAG_SECONDS} s lag"
    );
    tokio::time::sleep(Duration::from_secs(wait as u64)).await;
}
