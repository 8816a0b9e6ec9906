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

use std::cell::{Cell, RefCell};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::env::{Clock, KvStore, StoreError};
use crate::keys::WalkLeaf;

/// The lease lifetime when `lease_seconds` is 0: long enough for one request (the longest gap
/// between two renewals, since waits renew as they go) plus a margin, and never under 30 s, so a
/// crashed pass holds its walks back for half a minute at most.
pub fn default_ttl(request_timeout_seconds: u32) -> i64 {
    (i64::from(request_timeout_seconds) + 10).max(30)
}

/// Whether `key` is a walk's lease. A host that knows no other pass can be live on its store (it
/// holds an exclusive OS lock on a local state file) clears these before a pass, so a crashed
/// pass's lease does not hold the next one back until it expires.
pub fn is_lease_key(key: &str) -> bool {
    crate::keys::parse_walk_key(key).is_some_and(|(_, _, leaf)| leaf == WalkLeaf::Lease)
}

/// The owner id of one pass, from 16 random bytes (the component takes them from `wasi:random`):
/// two passes never share it, and nobody can predict it to forge a lease.
pub fn new_owner_id(random: [u8; 16]) -> String {
    format!("pass-{}", hex(&random))
}

/// Marks the batch series of a walk anchored with `synthetic_data`, so that real collection
/// never continues from its checkpoint, nor made-up data from a real one.
const SYNTHETIC_SERIES: &str = "synthetic-";

/// A new batch series from 16 random bytes: written under the walk's
/// [`WalkLeaf::Batches`](crate::keys::WalkLeaf) key when its first checkpoint is anchored (again
/// after a reset), and part of every batch key. Without it a stream restarted from the same
/// `backfill_start_time` would give its first batches the names the first run's had, and a sink
/// that names objects by batch key (S3) would overwrite records delivered long ago.
pub fn new_batch_series(random: [u8; 16], synthetic: bool) -> Vec<u8> {
    let prefix = if synthetic { SYNTHETIC_SERIES } else { "" };
    format!("{prefix}{}", hex(&random)).into_bytes()
}

/// Whether a batch series was made for `synthetic_data`.
pub fn is_synthetic_series(series: &[u8]) -> bool {
    series.starts_with(SYNTHETIC_SERIES.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// The store a walk shares between its fetcher (which renews the lease while it waits) and its
/// writes (records, checkpoints): one store, borrowed for one call at a time.
pub struct SharedStore<'a>(pub &'a RefCell<&'a mut dyn KvStore>);

impl KvStore for SharedStore<'_> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.borrow_mut().get(key)
    }
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.0.borrow_mut().set(key, value)
    }
    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.0.borrow_mut().delete(key)
    }
}

/// Why a walk may no longer write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimError {
    Lease(LeaseError),
    /// The checkpoint in the store is not the one this walk read or last wrote: another pass
    /// wrote it meanwhile (this one stalled past its lease), so ours would set it back.
    CheckpointMoved {
        key: String,
    },
}

impl std::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimError::Lease(e) => e.fmt(f),
            ClaimError::CheckpointMoved { key } => write!(
                f,
                "another pass wrote this walk's checkpoint ({key}) since this pass read it (this pass was stalled past its \
                 lease); this pass did not overwrite it and left the walk to the other"
            ),
        }
    }
}

/// A walk's hold on its state while it runs: the lease (renewed once a third of its lifetime has
/// passed, at each record batch, each checkpoint and during every wait) and the checkpoint this
/// walk last read or wrote, which must still be in the store when it saves the next one.
pub struct LeaseKeeper<'a> {
    lease: &'a Lease,
    store: &'a RefCell<&'a mut dyn KvStore>,
    clock: &'a dyn Clock,
    renewed_at: Cell<i64>,
    /// Set when a renewal during a wait found the lease gone; the next write stops the walk.
    lost: RefCell<Option<LeaseError>>,
    expected: RefCell<Option<(String, Option<Vec<u8>>)>>,
    /// Batches handed to the sink since the last checkpoint (one, for every stream today).
    batches_since_save: Cell<u32>,
    /// The walk's batch series (see [`new_batch_series`]); empty for walks anchored before it
    /// existed, whose batch keys stay as they were.
    series: RefCell<Vec<u8>>,
}

impl<'a> LeaseKeeper<'a> {
    /// `renewed_at`: when the lease was last written by us.
    pub fn new(
        lease: &'a Lease,
        store: &'a RefCell<&'a mut dyn KvStore>,
        clock: &'a dyn Clock,
        renewed_at: i64,
    ) -> Self {
        LeaseKeeper {
            lease,
            store,
            clock,
            renewed_at: Cell::new(renewed_at),
            lost: RefCell::new(None),
            expected: RefCell::new(None),
            batches_since_save: Cell::new(0),
            series: RefCell::new(Vec::new()),
        }
    }

    /// The walk's batch series, as stored under its [`WalkLeaf::Batches`] key.
    pub fn set_batch_series(&self, series: Vec<u8>) {
        *self.series.borrow_mut() = series;
    }

    /// The key of the next sink batch: a digest of the walk's batch series, the checkpoint the
    /// batch resumes from (its key and bytes) and how many batches went out since it was written.
    /// A batch offered again after a crash resumes from the same checkpoint, so it gets the same
    /// key; a restarted stream has another series, so its batches never take an old batch's key.
    pub fn next_batch_key(&self) -> String {
        let n = self.batches_since_save.get();
        self.batches_since_save.set(n.saturating_add(1));
        let expected = self.expected.borrow();
        let (key, bytes) = match &*expected {
            Some((k, b)) => (k.as_str(), b.as_deref().unwrap_or_default()),
            None => ("", &[][..]),
        };
        let series = self.series.borrow();
        let n = n.to_le_bytes();
        if series.is_empty() {
            crate::record::content_id(&[b"batch", key.as_bytes(), bytes, &n])
        } else {
            crate::record::content_id(&[b"batch", &series, key.as_bytes(), bytes, &n])
        }
    }

    /// Remembers the checkpoint as this walk found it (`None`: absent), for the rollback check.
    pub fn expect_checkpoint(&self, key: &str, value: Option<Vec<u8>>) {
        *self.expected.borrow_mut() = Some((key.to_string(), value));
    }

    fn due(&self, now: i64) -> bool {
        now.saturating_sub(self.renewed_at.get()) >= (self.lease.ttl / 3).max(1)
    }

    fn extend(&self, now: i64) -> Result<(), LeaseError> {
        self.lease.extend(&mut **self.store.borrow_mut(), now)?;
        self.renewed_at.set(now);
        Ok(())
    }

    /// Before a sink write: the lease is still ours (always read), and renewed when due.
    pub fn confirm(&self) -> Result<(), LeaseError> {
        if let Some(e) = self.lost.borrow_mut().take() {
            return Err(e);
        }
        self.lease.confirm(&mut **self.store.borrow_mut())?;
        let now = self.clock.now_unix();
        if self.due(now) {
            self.extend(now)?;
        }
        Ok(())
    }

    /// Before writing checkpoint `key`: the lease is ours and the stored checkpoint is the one
    /// this walk expects.
    pub fn before_save(&self, key: &str) -> Result<(), ClaimError> {
        self.confirm().map_err(ClaimError::Lease)?;
        if let Some((k, expected)) = &*self.expected.borrow() {
            if k == key {
                let stored = self
                    .store
                    .borrow_mut()
                    .get(key)
                    .map_err(|e| ClaimError::Lease(LeaseError::Store(e)))?;
                if &stored != expected {
                    return Err(ClaimError::CheckpointMoved {
                        key: key.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// After checkpoint `key` was written with `value`: the lease lasts from now, and `value` is
    /// what the next save expects to find.
    pub fn after_save(&self, key: &str, value: &[u8]) -> Result<(), LeaseError> {
        let mut expected = self.expected.borrow_mut();
        if expected.as_ref().is_some_and(|(k, _)| k == key) {
            *expected = Some((key.to_string(), Some(value.to_vec())));
            self.batches_since_save.set(0);
        }
        drop(expected);
        // Confirmed just before the checkpoint write.
        self.extend(self.clock.now_unix())
    }

    /// During a wait: renews the lease when due. A lease found lost is remembered, and the
    /// walk's next write stops it (the wait itself cannot fail).
    pub fn keep_alive(&self) {
        let now = self.clock.now_unix();
        if !self.due(now) || self.lost.borrow().is_some() {
            return;
        }
        let store = &mut **self.store.borrow_mut();
        match self.lease.renew(store, now) {
            Ok(()) => self.renewed_at.set(now),
            Err(e) => *self.lost.borrow_mut() = Some(e),
        }
    }

    /// The longest stretch a wait may sleep before renewing.
    pub fn slice(&self) -> Duration {
        Duration::from_secs(u64::try_from((self.lease.ttl / 3).max(1)).unwrap_or(1))
    }
}

/// The walk's clock for its fetcher: sleeps (pacing, `Retry-After`, backoff) are cut into slices
/// a third of the lease long, with the lease renewed between them, so a long wait cannot let a
/// live walk's lease expire.
pub struct LeasedClock<'a> {
    pub inner: &'a dyn Clock,
    pub keeper: &'a LeaseKeeper<'a>,
}

impl Clock for LeasedClock<'_> {
    fn now_unix(&self) -> i64 {
        self.inner.now_unix()
    }
    fn monotonic(&self) -> Duration {
        self.inner.monotonic()
    }
    fn sleep(&self, d: Duration) {
        let slice = self.keeper.slice();
        let mut left = d;
        while !left.is_zero() {
            let step = left.min(slice);
            self.inner.sleep(step);
            left -= step;
            self.keeper.keep_alive();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{MemStore, TestClock};

    fn lease(owner: &str) -> Lease {
        Lease {
            key: crate::keys::walk_key(crate::Stream::Audit, None, WalkLeaf::Lease),
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
        let lease_key = |s, t| crate::keys::walk_key(s, t, WalkLeaf::Lease);
        assert!(is_lease_key(&lease_key(crate::Stream::Audit, None)));
        assert!(is_lease_key(&lease_key(
            crate::Stream::Access,
            Some("T123")
        )));
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
    fn owner_ids_carry_the_random_bytes() {
        assert_eq!(
            new_owner_id([0xab; 16]),
            format!("pass-{}", "ab".repeat(16))
        );
        assert_ne!(new_owner_id([1; 16]), new_owner_id([2; 16]));
    }

    #[test]
    fn the_default_lifetime_outlasts_one_request_and_is_at_least_30_s() {
        assert_eq!(default_ttl(20), 30);
        assert_eq!(default_ttl(5), 30);
        assert_eq!(default_ttl(120), 130);
    }

    #[test]
    fn a_long_wait_renews_the_lease_so_no_rival_can_take_it() {
        let mut inner = MemStore::default();
        let clock = TestClock::new(1000);
        let ours = Lease {
            ttl: 30,
            ..lease("a")
        };
        ours.claim(&mut inner, 1000).unwrap();
        let cell: RefCell<&mut dyn KvStore> = RefCell::new(&mut inner);
        let keeper = LeaseKeeper::new(&ours, &cell, &clock, 1000);
        // The test clock's wall time does not move with sleep: move it by hand in a wrapper.
        struct Walking<'c>(&'c TestClock);
        impl Clock for Walking<'_> {
            fn now_unix(&self) -> i64 {
                self.0.now_unix()
            }
            fn monotonic(&self) -> Duration {
                self.0.monotonic()
            }
            fn sleep(&self, d: Duration) {
                self.0.sleep(d);
                self.0.now.set(self.0.now.get() + d.as_secs() as i64);
            }
        }
        let walking = Walking(&clock);
        let leased = LeasedClock {
            inner: &walking,
            keeper: &keeper,
        };
        // A 120 s Retry-After: four times the lifetime.
        leased.sleep(Duration::from_secs(120));
        assert_eq!(clock.now_unix(), 1120);
        let rival = lease("b");
        assert!(
            matches!(
                rival.claim(&mut **cell.borrow_mut(), 1120),
                Err(LeaseError::Held { .. })
            ),
            "renewed during the wait"
        );
        keeper.confirm().unwrap();
        // Without the renewals the lease would have expired at 1030 and the rival would win.
        let mut plain = MemStore::default();
        ours.claim(&mut plain, 1000).unwrap();
        assert!(rival.claim(&mut plain, 1120).is_ok());
    }

    #[test]
    fn a_batch_offered_again_from_the_same_checkpoint_has_the_same_key() {
        let mut inner = MemStore::default();
        let clock = TestClock::new(1000);
        let ours = lease("a");
        ours.claim(&mut inner, 1000).unwrap();
        let cell: RefCell<&mut dyn KvStore> = RefCell::new(&mut inner);
        let first = LeaseKeeper::new(&ours, &cell, &clock, 1000);
        first.expect_checkpoint("cp", Some(b"v1".to_vec()));
        let k1 = first.next_batch_key();
        assert_eq!(k1.len(), 32);
        assert_ne!(
            first.next_batch_key(),
            k1,
            "a second batch before a save differs"
        );
        first.after_save("cp", b"v2").unwrap();
        let k2 = first.next_batch_key();
        assert_ne!(k2, k1, "after the save, from the new checkpoint");
        // A later pass (after a crash before "v2" was saved) starts from "v1" again.
        let again = LeaseKeeper::new(&ours, &cell, &clock, 1000);
        again.expect_checkpoint("cp", Some(b"v1".to_vec()));
        assert_eq!(again.next_batch_key(), k1);
        // The same bytes under another stream's key are another place.
        let other = LeaseKeeper::new(&ours, &cell, &clock, 1000);
        other.expect_checkpoint("cp-other", Some(b"v1".to_vec()));
        assert_ne!(other.next_batch_key(), k1);
        // A walk with a batch series names its batches apart from one without, or another.
        let series = |s: &[u8]| {
            let k = LeaseKeeper::new(&ours, &cell, &clock, 1000);
            k.expect_checkpoint("cp", Some(b"v1".to_vec()));
            k.set_batch_series(s.to_vec());
            k.next_batch_key()
        };
        assert_ne!(series(b"s1"), k1);
        assert_ne!(series(b"s1"), series(b"s2"));
        assert_eq!(series(b"s1"), series(b"s1"));
    }

    #[test]
    fn a_save_over_a_checkpoint_another_pass_wrote_is_refused() {
        let mut inner = MemStore::default();
        let clock = TestClock::new(1000);
        let ours = lease("a");
        ours.claim(&mut inner, 1000).unwrap();
        inner.set("cp", b"v1").unwrap();
        let cell: RefCell<&mut dyn KvStore> = RefCell::new(&mut inner);
        let keeper = LeaseKeeper::new(&ours, &cell, &clock, 1000);
        keeper.expect_checkpoint("cp", Some(b"v1".to_vec()));
        keeper.before_save("cp").unwrap();
        cell.borrow_mut().set("cp", b"v2").unwrap();
        keeper.after_save("cp", b"v2").unwrap();
        keeper.before_save("cp").unwrap();
        // A rival (its lease still reads as ours: it stalled between its check and its write)
        // writes a newer checkpoint: ours must not go over it.
        cell.borrow_mut().set("cp", b"rival-v3").unwrap();
        assert_eq!(
            keeper.before_save("cp"),
            Err(ClaimError::CheckpointMoved { key: "cp".into() })
        );
        // Other keys are not checked.
        keeper.before_save("other").unwrap();
    }
}
