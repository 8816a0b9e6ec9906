//! Cursors: padded base64 of a small JSON position plus an issue time.
//!
//! The audit cursor holds only a timestamp (`before_ts`) and the issue time, so it
//! cannot remember `oldest` (Q3). The accessLogs cursor holds a keyset position.
//! Issue times are microseconds since the simulator started, strictly increasing, so
//! `expire_all` can invalidate exactly the cursors issued so far.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::lock;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditPosition {
    pub before_ts: i64,
    pub issued: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessPosition {
    pub before_key: i64,
    pub before_row: u64,
    pub issued: u64,
}

pub(crate) struct CursorClock {
    started: Instant,
    last_issued: Mutex<u64>,
    /// Cursors issued at or before this are invalid.
    invalid_through: AtomicU64,
}

pub(crate) enum CursorError {
    Malformed,
    Expired,
}

impl CursorClock {
    pub(crate) fn new() -> CursorClock {
        CursorClock {
            started: Instant::now(),
            last_issued: Mutex::new(0),
            invalid_through: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    pub(crate) fn issue(&self) -> u64 {
        let mut last = lock(&self.last_issued);
        *last = (*last + 1).max(self.now_us());
        *last
    }

    pub(crate) fn expire_all(&self) {
        let last = *lock(&self.last_issued);
        self.invalid_through.fetch_max(last, Ordering::SeqCst);
    }

    pub(crate) fn check(&self, issued: u64, ttl: Duration) -> Result<(), CursorError> {
        let now = self.now_us();
        if issued <= self.invalid_through.load(Ordering::SeqCst) || issued > now + 1 {
            return Err(CursorError::Expired);
        }
        if now - issued.min(now) > ttl.as_micros() as u64 {
            return Err(CursorError::Expired);
        }
        Ok(())
    }

    pub(crate) fn encode<T: Serialize>(&self, position: &T) -> String {
        let json = serde_json::to_vec(position).unwrap_or_default();
        STANDARD.encode(&json)
    }

    pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        cursor: &str,
    ) -> Result<T, CursorError> {
        let bytes = STANDARD
            .decode(cursor.trim())
            .map_err(|_| CursorError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|_| CursorError::Malformed)
    }
}
