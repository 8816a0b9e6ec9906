//! The pure logic of slack-logs: configuration, request planning, page parsing, the cursor
//! state machines, record building and the pass driver.
//!
//! It knows nothing of WIT or WASI. Everything that touches the outside world goes through the
//! small traits in [`env`] (fetch a URL, load/save a checkpoint, write a batch, read the clock),
//! so the same code runs in the component, natively in tests and in the benchmark.
//!
//! It is not the component (see the root crate) and not a Slack client library: it implements
//! only what collecting the three log streams needs.

pub mod access;
pub mod audit;
pub mod checkpoint;
pub mod config;
pub mod env;
pub mod fetch;
pub mod integration;
pub mod key_parts;
pub mod keys;
pub mod lease;
pub mod metrics;
pub mod oauth;
pub mod ocsf;
pub mod pass;
pub mod record;
pub mod slack_error;
pub mod status;
pub mod synthetic;
pub mod url;
pub mod walk;
pub mod web_api;

#[cfg(test)]
pub(crate) mod testutil;

pub use config::Config;
pub use env::{
    Clock, Env, HttpResponse, KvStore, RecordSink, SinkBatch, SinkError, StoreError, Transport,
    TransportError,
};
pub use pass::{
    progress_line, run_pass, stream_statuses, Outcome, PassReport, RunOptions, StreamReport,
};
pub use status::StreamStatus;

/// The streams slack-logs knows, in the order a pass runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Audit,
    Access,
    Integration,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Audit, Stream::Access, Stream::Integration];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Audit => "audit",
            Stream::Access => "access",
            Stream::Integration => "integration",
        }
    }

    pub fn parse(name: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.name() == name)
    }
}
