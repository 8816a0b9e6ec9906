//! A lease per walk (stream × workspace) in the key-value store, so two passes running at once
//! (a slow pass and the next cron tick, two replicas, two hosts on one Redis) do not both emit.
//!
//! Hosted Spin platforms offer `get` and `set` only, no compare-and-swap, so the lease is claimed
//! the way a fast mutex without atomics is: read; if free or expired, write our owner id; wait
//! `settle`; read again, and only if our id is still there is the lease ours. A rival who read
//! "free" before our write writes after it, within its own read→write gap; if `settle` is longer
//! than that gap, we see its id and back off while it proceeds (the last writer wins, and only
//! it). Once held, the lease is checked before every sink write and renewed after every
//! checkpoint, and taken over by others only after `expires`.
//!
//! What it cannot prevent, stated in README "Guarantees and limits": a pass stalled for longer
//! than the lease's lifetime between its check and its sink write (a frozen VM), clocks that
//! disagree by more than the margin, and a store slower than `settle` between a read and a write.

use std::hash::BuildHasher;

use serde::{Deserialize, Serialize};

use crate::env::{KvStore, StoreError};
use crate::Stream;

/// `slack-logs/v1/<stream>/<team id, or org>/lease`, beside the checkpoint.
pub fn lease_key(stream: Stream, team_id: Option<&str>) -> String {
    format!(
        "slack-logs/v1/{}/{}/lease",
        stream.name(),
        team_id.unwrap_or("org")
    )
}

/// Whether `key` is a walk's lease (as [`lease_key`] makes them). A host that knows no other pass
/// can be live on its store (it holds an exclusive OS lock on a local state file) clears these
/// before a pass, so a crashed pass's lease does not hold the next one back until it expires.
pub fn is_lease_key(key: &str) -> bool {
    let Some(rest) = key.strip_prefix("slack-logs/v1/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    matches!(parts.as_slice(), [stream, team, "lease"] if Stream::parse(stream).is_some() && !team.is_empty())
}

/// A random id for one pass: two passes never share it.
pub fn new_owner_id(now: i64) -> String {
    // std seeds `RandomState` from the OS (under WASI: `wasi:random`), so this is random per call.
    let a = std::collections::hash_map::RandomState::new().hash_one(now);
    let b = std::collections::hash_map::RandomState::new().hash_one(a);
    format!("pass-{a:016x}{b:016x}")
}

/// The stored value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub owner: String,
    /// Unix seconds after which anyone may take the lease; 0 when released.
    pub expires: i64,
}

/// Why a lease is not (or no longer) ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseError {
    /// Another pass holds it until `expires`.
    Held {
        owner: String,
        expires: i64,
    },
    Store(StoreError),
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseError::Held { owner, expires } => write!(
                f,
                "another pass ({owner}) holds this stream's lease until {}; this pass left the stream to it",
                crate::config::format_rfc3339(*expires)
            ),
            LeaseError::Store(e) => write!(f, "{e} (while checking the stream's lease)"),
        }
    }
}

/// Our claim on one walk's lease.
#[derive(Clone, Debug)]
pub struct Lease {
    pub key: String,
    pub owner: String,
    /// How long a claim or renewal lasts, in seconds.
    pub ttl: i64,
}

impl Lease {
    fn read(&self, store: &mut dyn KvStore) -> Result<Option<LeaseRecord>, LeaseError> {
        match store.get(&self.key).map_err(LeaseError::Store)? {
            // An unreadable lease (a foreign or torn value) is treated as free: it guards
            // against double emission, and the checkpoint, not the lease, guards against loss.
            Some(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            None => Ok(None),
        }
    }

    fn write(&self, store: &mut dyn KvStore, expires: i64) -> Result<(), LeaseError> {
        let record = LeaseRecord {
            owner: self.owner.clone(),
            expires,
        };
        store
            .set(&self.key, &serde_json::to_vec(&record).unwrap_or_default())
            .map_err(LeaseError::Store)
    }

    /// First step of a claim: writes our id unless another pass holds an unexpired lease.
    pub fn claim(&self, store: &mut dyn KvStore, now: i64) -> Result<(), LeaseError> {
        if let Some(r) = self.read(store)? {
            if r.owner != self.owner && r.expires > now {
                return Err(LeaseError::Held {
                    owner: r.owner,
                    expires: r.expires,
                });
            }
        }
        self.write(store, now + self.ttl)
    }

    /// Second step of a claim (after the settle wait), and the check before each sink write:
    /// the lease still carries our id.
    pub fn confirm(&self, store: &mut dyn KvStore) -> Result<(), LeaseError> {
        match self.read(store)? {
            Some(r) if r.owner == self.owner => Ok(()),
            Some(r) => Err(LeaseError::Held {
                owner: r.owner,
                expires: r.expires,
            }),
            None => Err(LeaseError::Held {
                owner: "nobody (the lease was deleted)".into(),
                expires: 0,
            }),
        }
    }

    /// Extends the lease; fails, without writing, if another pass took it.
    pub fn renew(&self, store: &mut dyn KvStore, now: i64) -> Result<(), LeaseError> {
        self.confirm(store)?;
        self.extend(store, now)
    }

    /// Extends the lease without reading it first: only right after a `confirm`.
    pub fn extend(&self, store: &mut dyn KvStore, now: i64) -> Result<(), LeaseError> {
        self.write(store, now + self.ttl)
    }

    /// Frees the lease at the end of a walk so the next pass need not wait for expiry.
    pub fn release(&self, store: &mut dyn KvStore) {
        if self.confirm(store).is_ok() {
            // Best effort: if it fails the lease simply expires.
            let _ = self.write(store, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MemStore;

    fn lease(owner: &str) -> Lease {
        Lease {
            key: lease_key(Stream::Audit, None),
            owner: owner.into(),
            ttl: 100,
        }
    }

    #[test]
    fn a_held_lease_is_respected_until_it_expires() {
        let mut store = MemStore::default();
        let (a, b) = (lease("a"), lease("b"));
        a.claim(&mut store, 1000).unwrap();
        a.confirm(&mut store).unwrap();
        assert!(matches!(
            b.claim(&mut store, 1050),
            Err(LeaseError::Held { expires: 1100, .. })
        ));
        a.renew(&mut store, 1090).unwrap();
        assert!(b.claim(&mut store, 1150).is_err(), "renewed until 1190");
        // Expired: b takes over, and a notices before its next sink write.
        b.claim(&mut store, 1191).unwrap();
        b.confirm(&mut store).unwrap();
        assert!(a.confirm(&mut store).is_err());
        assert!(a.renew(&mut store, 1192).is_err());
        b.confirm(&mut store).unwrap();
    }

    #[test]
    fn of_two_claims_in_a_race_only_the_last_writer_confirms() {
        let mut store = MemStore::default();
        let (a, b) = (lease("a"), lease("b"));
        // Both read "free", then both write: the settle wait puts both confirms after both writes.
        a.claim(&mut store, 1000).unwrap();
        b.claim(&mut store, 1000).unwrap_err(); // b read after a's write: held.
        let mut store = MemStore::default();
        let rec = |o: &str| {
            serde_json::to_vec(&LeaseRecord {
                owner: o.into(),
                expires: 1100,
            })
            .unwrap()
        };
        store.set(&a.key, &rec("a")).unwrap();
        store.set(&b.key, &rec("b")).unwrap();
        assert!(a.confirm(&mut store).is_err());
        b.confirm(&mut store).unwrap();
    }

    #[test]
    fn release_frees_only_our_own_lease() {
        let mut store = MemStore::default();
        let (a, b) = (lease("a"), lease("b"));
        a.claim(&mut store, 1000).unwrap();
        b.release(&mut store);
        assert!(b.claim(&mut store, 1001).is_err());
        a.release(&mut store);
        b.claim(&mut store, 1001).unwrap();
        // A value that does not parse counts as free.
        store.set(&a.key, b"garbage").unwrap();
        a.claim(&mut store, 1002).unwrap();
    }

    #[test]
    fn lease_keys_are_recognised_and_nothing_else_is() {
        assert!(is_lease_key(&lease_key(Stream::Audit, None)));
        assert!(is_lease_key(&lease_key(Stream::Access, Some("T123"))));
        for other in [
            "slack-logs/v1/audit/org/checkpoint",
            "slack-logs/v1/oauth/token",
            "slack-logs/v1/nope/org/lease",
            "slack-logs/v1/audit/lease",
            "other/v1/audit/org/lease",
        ] {
            assert!(!is_lease_key(other), "{other}");
        }
    }

    #[test]
    fn owner_ids_differ() {
        assert_ne!(new_owner_id(5), new_owner_id(5));
    }
}
