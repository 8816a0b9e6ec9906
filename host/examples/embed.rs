//! The collector inside a program of your own: an in-memory store, a closure for a sink, two
//! passes. Slack is played by the simulator on loopback, so it runs anywhere:
//!
//!     cargo xtask build && cargo run --release -p slack-logs-host --example embed [COMPONENT]
//!
//! For real use, give `slack_token` (and no `slack_*_base`), a durable [`StateStore`], and a sink
//! that returns only once the records are safe where they go.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use slack_logs_host::embed::{Batch, Collector, MemoryStore};
use slack_sim::{SimConfig, Simulator};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let component = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip2/release/slack_logs_collector.wasm")
        });
    let sim = Simulator::start(SimConfig::default())?;
    let config = [
        ("slack_token", slack_sim::ORG_OWNER_TOKEN.to_string()),
        ("slack_api_base", sim.api_base()),
        ("slack_audit_base", sim.audit_base()),
        ("streams", "audit".to_string()),
        (
            "backfill_start_time",
            sim.config().history_start.to_string(),
        ),
        // The simulator has no rate limits to respect.
        ("audit_requests_per_minute", "0".to_string()),
    ];

    let records = Arc::new(AtomicU64::new(0));
    let counted = records.clone();
    let sink = move |batch: &Batch<'_>| {
        // A real sink writes batch.ndjson somewhere durable before returning Ok.
        counted.fetch_add(u64::from(batch.count), Ordering::Relaxed);
        Ok(())
    };
    let cache = std::env::temp_dir().join("slack-logs-embed-cache");
    let collector = Collector::load(&component, &cache, MemoryStore::default(), config, sink)?;

    for pass in 1..=2 {
        let report = collector.run_pass().await?;
        for s in &report.streams {
            let outcome = slack_logs_host::outcome_name(s.outcome);
            println!(
                "pass {pass}: {} {outcome}: {} records, {} pages",
                s.stream, s.records, s.pages
            );
        }
    }
    let total = records.load(Ordering::Relaxed);
    let truth = sim.audit_truth(i64::MIN, i64::MAX).len() as u64;
    println!("the sink got {total} records; the simulator holds {truth} events");
    // Its history ends ten minutes ago, past the lag: all of it, once (the second pass resumes
    // from the first one's checkpoint).
    anyhow::ensure!(total == truth, "expected each of the {truth} events once");
    Ok(())
}
