//! What every stream's walk shares: where records and checkpoints go, how a walk ends, and the
//! one rule that makes delivery exactly-once — a checkpoint is saved only after the sink accepted
//! the batch before it.

use crate::env::{Clock, KvStore, RecordSink, SinkError};
use crate::fetch::FetchError;
use crate::lease::Lease;
use crate::record::RecordWriter;
use crate::slack_error::SlackError;

/// The store and sink a walk writes to.
pub struct StreamIo<'a> {
    pub store: &'a mut dyn KvStore,
    pub sink: &'a mut dyn RecordSink,
    /// Unix seconds of the pass, stamped on every record as `collected_at`.
    pub collected_at: i64,
    pub log: &'a dyn Fn(&str),
    /// The walk's lease, checked before every sink write and renewed after every checkpoint;
    /// `None` in tests that exercise a walk alone.
    pub lease: Option<(&'a Lease, &'a dyn Clock)>,
}

/// The `code` of a walk that stopped because another pass took its lease.
pub const LEASE_LOST: &str = "lease_lost";

fn lease_lost(e: crate::lease::LeaseError) -> WalkEnd {
    WalkEnd::Failed {
        code: match e {
            crate::lease::LeaseError::Held { .. } => LEASE_LOST.into(),
            crate::lease::LeaseError::Store(_) => "store_error".into(),
        },
        message: format!("{e}; stopped here, and the checkpoint holds what the sink accepted"),
    }
}

/// How a walk ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// Nothing more to collect up to the walk's upper bound.
    CaughtUp,
    /// The pass's time budget ran out; the checkpoint holds the position.
    Budget(String),
    Failed {
        code: String,
        message: String,
    },
}

/// Counters of one walk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WalkStats {
    pub records: u64,
    pub pages: u32,
    /// Entries skipped as already delivered.
    pub duplicates: u64,
    /// Entries outside the requested range, which Slack should not have sent.
    pub out_of_window: u64,
}

impl StreamIo<'_> {
    /// Hands the writer's batch to the sink (if it holds anything).
    pub fn deliver(
        &mut self,
        writer: &mut RecordWriter,
        stats: &mut WalkStats,
    ) -> Result<(), WalkEnd> {
        if writer.is_empty() {
            return Ok(());
        }
        if let Some((lease, _)) = self.lease {
            // Another pass may have taken over after our lease expired (we were stalled):
            // then it emits, not us.
            lease.confirm(&mut *self.store).map_err(lease_lost)?;
        }
        let n = writer.len();
        self.sink
            .write(writer.take_batch())
            .map_err(|e| WalkEnd::Failed {
                code: match e {
                    SinkError::Unavailable(_) => "sink_unavailable".into(),
                    SinkError::Rejected(_) => "sink_rejected".into(),
                },
                message: format!(
                    "{e}; the checkpoint was kept, so the next pass offers these records again"
                ),
            })?;
        stats.records += u64::from(n);
        Ok(())
    }

    /// Saves a checkpoint; call only after `deliver` succeeded for everything it covers.
    pub fn save(&mut self, key: &str, value: &[u8]) -> Result<(), WalkEnd> {
        if let Some((lease, _)) = self.lease {
            // A pass that took over meanwhile owns the checkpoint now: writing ours over its
            // newer one would make it deliver again what it already had.
            lease.confirm(&mut *self.store).map_err(lease_lost)?;
        }
        self.store.set(key, value).map_err(|e| WalkEnd::Failed {
            code: "store_error".into(),
            message: format!(
                "{e}; records already delivered for this page may be offered again next pass"
            ),
        })?;
        if let Some((lease, clock)) = self.lease {
            // Confirmed just before the checkpoint write above.
            lease.extend(&mut *self.store, clock.now_unix()).map_err(lease_lost)?;
        }
        Ok(())
    }
}

/// A Slack error as a walk's end.
pub fn failed(e: &SlackError) -> WalkEnd {
    WalkEnd::Failed {
        code: e.code(),
        message: e.to_string(),
    }
}

/// A fetch error as a walk's end. `api` names what could not be reached, for the message.
pub fn fetch_end(e: FetchError, api: &str) -> WalkEnd {
    match e {
        FetchError::Budget(m) => WalkEnd::Budget(m),
        FetchError::Slack(e) => failed(&e),
        FetchError::Transport(e) => WalkEnd::Failed {
            code: "network_error".into(),
            message: format!(
                "could not reach {api}: {e}; check the base URL setting and the network"
            ),
        },
    }
}
