//! Checkpoints as stored in the key-value store: versioned JSON. A checkpoint that does not parse
//! or was written by a newer slack-logs is an error that stops its stream — never a silent reset,
//! which would re-deliver or skip history.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A checkpoint that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointError {
    Corrupt(String),
    NewerVersion(u32),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Corrupt(e) => write!(
                f,
                "the checkpoint does not parse ({e}); it was not overwritten"
            ),
            CheckpointError::NewerVersion(v) => {
                write!(
                    f,
                    "the checkpoint was written by a newer slack-logs (format {v}); upgrade"
                )
            }
        }
    }
}

/// A stream's durable state. Each stream's checkpoint has a field `v` holding its format version.
pub trait Checkpoint: Serialize + DeserializeOwned {
    /// The format this build writes and the newest it reads.
    const VERSION: u32;

    /// Unix seconds up to which the stream is complete.
    fn watermark(&self) -> i64;

    fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            v: u32,
        }
        let corrupt = |e: serde_json::Error| CheckpointError::Corrupt(e.to_string());
        let v: VersionOnly = serde_json::from_slice(bytes).map_err(corrupt)?;
        if v.v > Self::VERSION {
            return Err(CheckpointError::NewerVersion(v.v));
        }
        serde_json::from_slice(bytes).map_err(corrupt)
    }

    fn encode(&self) -> Vec<u8> {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
