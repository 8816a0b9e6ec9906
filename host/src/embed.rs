//! Running the collector inside a program of your own: load the component once, then run passes
//! with a key-value store, a config map and a sink that the program implements. The component
//! does the collecting (Slack's APIs, cursors, checkpoints, record shape) exactly as under Spin
//! or `slack-logs run`; this is the same wasmtime set-up with the program's store and sink in
//! place of SQLite/Redis and stdout/file/HTTP/S3.
//!
//! Not a scheduler: call [`Collector::run_pass`] as often as suits (every minute is typical);
//! each pass resumes from the checkpoints in the store. `host/examples/embed.rs` is a complete
//! program.
//!
//! ```no_run
//! use slack_logs_host::embed::{Batch, Collector, MemoryStore};
//! # async fn run() -> anyhow::Result<()> {
//! let config = [("slack_token", "xoxp-…"), ("streams", "audit")];
//! let sink = |batch: &Batch<'_>| {
//!     print!("{}", String::from_utf8_lossy(batch.ndjson));
//!     Ok(())
//! };
//! let collector = Collector::load(
//!     "slack_logs_collector.wasm".as_ref(),
//!     "/var/cache/slack-logs".as_ref(),
//!     MemoryStore::default(),
//!     config,
//!     sink,
//! )?;
//! let report = collector.run_pass().await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

pub use crate::kv::{MemoryStore, StateStore};
pub use crate::runtime::{Outcome, PassReport, StreamStatus};
pub use crate::sink::{Batch, BatchSink, SinkFailure};

use crate::kv::KvStore;
use crate::runtime::{PassRun, RunOptions, Runtime};
use crate::sink::Sink;

/// The collector component, loaded and linked to a program's store and sink.
pub struct Collector {
    runtime: Runtime,
}

impl Collector {
    /// Loads (compiles, or takes from `cache_dir`) the component at `component`. `config` holds
    /// the settings the README lists (`slack_token`, `streams`, …), as the component reads them
    /// from Spin variables; it checks them on every pass and a mistake fails the pass with a
    /// message naming the key. `cache_dir` is created (mode 0700) if missing and must belong
    /// to this user, writable by nobody else: the native code in it runs as this user.
    pub fn load<K, V>(
        component: &Path,
        cache_dir: &Path,
        store: impl StateStore + 'static,
        config: impl IntoIterator<Item = (K, V)>,
        sink: impl BatchSink + 'static,
    ) -> anyhow::Result<Collector>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let config = config
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let runtime = Runtime::new(
            component,
            cache_dir,
            KvStore::Embedded(Arc::new(store)),
            config,
            Arc::new(Sink::embedded(sink)),
        )?;
        Ok(Collector { runtime })
    }

    /// One pass over the configured streams, within `max_run_seconds`. An `Err` is a fault of the
    /// set-up (the component trapped); what happened to each stream, failures included, is in
    /// the report.
    pub async fn run_pass(&self) -> anyhow::Result<PassReport> {
        let options = RunOptions {
            streams: Vec::new(),
            max_run_seconds: None,
        };
        match self.runtime.run_pass(&options).await? {
            PassRun::Ran(report) => Ok(report),
            // Only a state file is locked between processes; an embedded store is not.
            PassRun::Busy(busy) => anyhow::bail!("{busy}"),
        }
    }

    /// Each stream's checkpoint, lag, totals and last error, as `slack-logs status` shows them.
    pub async fn status(&self) -> anyhow::Result<Vec<StreamStatus>> {
        self.runtime.status().await
    }
}
