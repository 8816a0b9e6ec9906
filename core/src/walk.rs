//! What every stream's walk shares: where records and checkpoints go, how a walk ends, and the
//! one rule that makes delivery exactly-once — a checkpoint is saved only after the sink accepted
//! the batch before it.

use crate::env::{KvStore, RecordSink, SinkError};
use crate::fetch::FetchError;
use crate::lease::{ClaimError, LeaseKeeper};
use crate::record::RecordWriter;
use crate::slack_error::SlackError;

/// The store and sink a walk writes to.
pub struct StreamIo<'a> {
    pub store: &'a mut dyn KvStore,
    pub sink: &'a mut dyn RecordSink,
    /// Unix seconds of the pass, stamped on every record as `collected_at`.
    pub collected_at: i64,
    pub log: &'a dyn Fn(&str),
    /// The walk's hold on its state: the lease, checked before every sink write and renewed
    /// after every checkpoint, and the checkpoint it must find before it saves the next one;
    /// `None` in tests that exercise a walk alone.
    pub lease: Option<&'a LeaseKeeper<'a>>,
}

/// The `code` of a walk that stopped because another pass took its lease.
pub const LEASE_LOST: &str = "lease_lost";

fn lease_lost(e: ClaimError) -> WalkEnd {
    WalkEnd::Failed {
        code: match e {
            ClaimError::Lease(crate::lease::LeaseError::Held { .. })
            | ClaimError::CheckpointMoved { .. } => LEASE_LOST.into(),
            ClaimError::Lease(crate::lease::LeaseError::Store(_)) => "store_error".into(),
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
    /// Entries outside the requested range, which Slack should not have sent (delivered).
    pub out_of_window: u64,
    /// Audit events the look-back re-scan found: Slack indexed them after the forward walk
    /// had passed their second.
    pub late: u64,
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
        if let Some(keeper) = self.lease {
            // Another pass may have taken over after our lease expired (we were stalled):
            // then it emits, not us.
            keeper
                .confirm()
                .map_err(|e| lease_lost(ClaimError::Lease(e)))?;
        }
        let n = writer.len();
        let mut batch = writer.take_batch();
        if let Some(keeper) = self.lease {
            batch.key = keeper.next_batch_key();
        }
        self.sink.write(batch).map_err(|e| WalkEnd::Failed {
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

    /// Before writing checkpoint `key`, or state that only it makes count (the audit ledger's
    /// parts): the lease is still ours and the checkpoint is the one this walk last saw. A pass
    /// that took over meanwhile owns them now: writing ours over its newer ones would make it
    /// deliver again what it already had.
    pub fn check_owned(&mut self, key: &str) -> Result<(), WalkEnd> {
        match self.lease {
            Some(keeper) => keeper.before_save(key).map_err(lease_lost),
            None => Ok(()),
        }
    }

    /// Saves a checkpoint; call only after `deliver` succeeded for everything it covers.
    pub fn save(&mut self, key: &str, value: &[u8]) -> Result<(), WalkEnd> {
        self.check_owned(key)?;
        self.save_checked(key, value)
    }

    /// [`StreamIo::save`] right after the caller's own [`StreamIo::check_owned`] of `key`.
    pub fn save_checked(&mut self, key: &str, value: &[u8]) -> Result<(), WalkEnd> {
        self.store.set(key, value).map_err(|e| WalkEnd::Failed {
            code: "store_error".into(),
            message: format!(
                "{e}; records already delivered for this page may be offered again next pass"
            ),
        })?;
        if let Some(keeper) = self.lease {
            keeper
                .after_save(key, value)
                .map_err(|e| lease_lost(ClaimError::Lease(e)))?;
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
