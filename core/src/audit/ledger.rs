//! The ids the audit stream delivered recently, kept so nothing is delivered twice when Slack
//! shows an event again: on a resume inside a same-second burst of any size, in the look-back
//! re-scan that collects events Slack indexed late, and for events Slack returns outside the
//! requested range.
//!
//! Ids are kept as 64-bit digests (FNV-1a of the id: audit ids are Slack's, not chosen by users,
//! so a fast hash serves; a collision would need two of Slack's ids in one bucket to agree in
//! 64 bits), grouped in buckets of [`BUCKET_SECONDS`] of `date_create`. A bucket is stored as
//! parts of at most [`PART_DIGESTS`] digests (64 KB) under
//! `slack-logs/v1/audit/org/ledger/<bucket start>/<part>`, so every value stays far below the
//! portable 400 KB limit however large a burst is, and a page rewrites only the last part of the
//! buckets it touched. The checkpoint holds the index (bucket → digests stored) and `complete_from`,
//! the `date_create` from which every delivered id is in the ledger; the parts are written before
//! the checkpoint that counts them.
//!
//! Bounded: buckets below the look-back span are dropped, and past [`MAX_DIGESTS`] in all (a
//! million ids an hour is beyond the busiest org's audit volume) the oldest buckets go first and
//! the look-back shortens, which is logged.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::env::{KvStore, StoreError};
use crate::key_parts;
use crate::record::fnv1a64;

/// Width of a bucket, in seconds of `date_create`.
pub const BUCKET_SECONDS: i64 = 600;
/// Digests per stored part: 64 KB.
pub const PART_DIGESTS: usize = 8192;
/// Digests kept in all; beyond it the oldest buckets are dropped.
pub const MAX_DIGESTS: usize = 1_000_000;
/// Marks a part's format, so a value that is not one is noticed.
const MAGIC: &[u8; 4] = b"SLD1";

/// What the checkpoint records about the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerIndex {
    /// Every id delivered with `date_create >= complete_from` is in the ledger.
    #[serde(default)]
    pub complete_from: i64,
    /// Bucket start → digests stored for it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub buckets: BTreeMap<i64, u32>,
}

pub fn bucket_of(t: i64) -> i64 {
    t.div_euclid(BUCKET_SECONDS) * BUCKET_SECONDS
}

pub use crate::keys::ledger_part_key as part_key;

/// The digest of an audit id.
pub fn digest(id: &str) -> u64 {
    fnv1a64(&[id.as_bytes()])
}

#[derive(Debug, Default)]
struct Bucket {
    /// In the order added: part `n` is `order[n * PART_DIGESTS ..]`.
    order: Vec<u64>,
    set: HashSet<u64>,
    /// How many of `order` are in the store.
    stored: usize,
}

/// The ledger in memory.
#[derive(Debug, Default)]
pub struct Ledger {
    buckets: BTreeMap<i64, Bucket>,
    pub complete_from: i64,
    /// Buckets dropped since the last save, whose parts are deleted after it.
    dropped: Vec<(i64, usize)>,
}

impl Ledger {
    /// Reads the parts the index names; a store error is an error. Only the digests the index
    /// counts are taken: more in a part were written by a pass that stopped before its checkpoint,
    /// and the next pass offers that batch again — whole, so a sink that names objects by the
    /// batch key overwrites the earlier copy with the same records, not fewer. A part that is missing or not a ledger part (deleted or changed
    /// by hand) loses what it knew: the ledger then counts as complete only above its bucket, so
    /// the look-back does not deliver that bucket again, and a resume there may repeat the
    /// batch at the boundary. Each such part comes back as a warning for the log — a stream
    /// that repeats a few records beats one that stops.
    pub fn load(
        store: &mut dyn KvStore,
        index: &LedgerIndex,
    ) -> Result<(Ledger, Vec<String>), StoreError> {
        let mut ledger = Ledger {
            complete_from: index.complete_from,
            ..Ledger::default()
        };
        let mut warnings = Vec::new();
        for (&start, &count) in &index.buckets {
            let count = count as usize;
            let mut bucket = Bucket::default();
            for part in 0..count.div_ceil(PART_DIGESTS) {
                let key = part_key(start, part);
                let bytes = store.get(&key)?;
                let body = bytes
                    .as_deref()
                    .and_then(|b| key_parts::decode(MAGIC, 0, b));
                let Some((_, body)) = body else {
                    warnings.push(format!(
                        "the audit ledger part {key} the checkpoint names is {}; the ids it held are forgotten \
                         (at worst a few events are delivered twice)",
                        if bytes.is_none() { "missing" } else { "not a ledger part" }
                    ));
                    ledger.complete_from = ledger.complete_from.max(start + BUCKET_SECONDS);
                    continue;
                };
                let room = count.saturating_sub(bucket.order.len());
                for d in body.take(room) {
                    if bucket.set.insert(d) {
                        bucket.order.push(d);
                    }
                }
            }
            bucket.stored = bucket.order.len();
            ledger.buckets.insert(start, bucket);
        }
        Ok((ledger, warnings))
    }

    pub fn contains(&self, t: i64, digest: u64) -> bool {
        self.buckets
            .get(&bucket_of(t))
            .is_some_and(|b| b.set.contains(&digest))
    }

    /// Adds a delivered id; `false` if it was there.
    pub fn insert(&mut self, t: i64, digest: u64) -> bool {
        let b = self.buckets.entry(bucket_of(t)).or_default();
        let new = b.set.insert(digest);
        if new {
            b.order.push(digest);
        }
        new
    }

    pub fn len(&self) -> usize {
        self.buckets.values().map(|b| b.order.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the buckets wholly below `from`, except `keep` (the bucket of a window's boundary
    /// second, which a resume needs); `complete_from` rises to `from`'s bucket.
    pub fn prune_below(&mut self, from: i64, keep: Option<i64>) {
        let cut = bucket_of(from);
        let keep = keep.map(bucket_of);
        let doomed: Vec<i64> = self
            .buckets
            .range(..cut)
            .map(|(&s, _)| s)
            .filter(|&s| Some(s) != keep)
            .collect();
        for s in doomed {
            self.drop_bucket(s);
        }
        self.complete_from = self.complete_from.max(cut);
    }

    /// Keeps the ledger under [`MAX_DIGESTS`] by dropping its oldest buckets (never `keep`);
    /// returns the new `complete_from` when it had to.
    pub fn enforce_cap(&mut self, keep: Option<i64>) -> Option<i64> {
        let keep = keep.map(bucket_of);
        let mut total = self.len();
        let mut raised = None;
        while total > MAX_DIGESTS {
            let Some(oldest) = self.buckets.keys().copied().find(|&s| Some(s) != keep) else {
                break;
            };
            total -= self.buckets.get(&oldest).map_or(0, |b| b.order.len());
            self.drop_bucket(oldest);
            self.complete_from = self.complete_from.max(oldest + BUCKET_SECONDS);
            raised = Some(self.complete_from);
        }
        raised
    }

    fn drop_bucket(&mut self, start: i64) {
        if let Some(b) = self.buckets.remove(&start) {
            self.dropped.push((start, b.stored.div_ceil(PART_DIGESTS)));
        }
    }

    /// Writes the parts that changed since the last save (the last part of each bucket that
    /// grew, and any new parts). Call after the sink accepted what they record and before the
    /// checkpoint that counts them.
    pub fn write_parts(&mut self, store: &mut dyn KvStore) -> Result<(), StoreError> {
        for (&start, b) in self.buckets.iter_mut() {
            if b.stored == b.order.len() {
                continue;
            }
            let first_dirty = b.stored / PART_DIGESTS;
            for (part, chunk) in b.order.chunks(PART_DIGESTS).enumerate().skip(first_dirty) {
                store.set(
                    &part_key(start, part),
                    &key_parts::encode(MAGIC, &[], chunk),
                )?;
            }
            b.stored = b.order.len();
        }
        Ok(())
    }

    /// The index the checkpoint stores.
    pub fn index(&self) -> LedgerIndex {
        LedgerIndex {
            complete_from: self.complete_from,
            buckets: self
                .buckets
                .iter()
                .map(|(&s, b)| (s, u32::try_from(b.stored).unwrap_or(u32::MAX)))
                .collect(),
        }
    }

    /// Deletes the parts of dropped buckets; call after the checkpoint that no longer names them.
    /// Best effort: a part left behind is never read again (the index does not name it) and is
    /// overwritten if its bucket comes back.
    pub fn delete_dropped(&mut self, store: &mut dyn KvStore) {
        for (start, parts) in std::mem::take(&mut self.dropped) {
            for part in 0..parts {
                let key = part_key(start, part);
                if store.delete(&key).is_err() {
                    let _ = store.set(&key, MAGIC);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MemStore;

    #[test]
    fn a_burst_of_any_size_is_stored_in_parts_under_the_value_limit() {
        let mut store = MemStore::default();
        let mut ledger = Ledger::default();
        let t = 1_700_000_000;
        for i in 0..25_000 {
            assert!(ledger.insert(t, digest(&format!("id-{i}"))));
        }
        assert!(!ledger.insert(t, digest("id-7")), "known");
        ledger.write_parts(&mut store).unwrap();
        let index = ledger.index();
        assert_eq!(index.buckets[&bucket_of(t)], 25_000);
        // 4 parts of at most 64 KB, each within the portable limit (MemStore enforces it).
        for part in 0..4 {
            let v = &store.map[&part_key(bucket_of(t), part)];
            assert!(v.len() <= 4 + PART_DIGESTS * 8);
        }
        let (again, warnings) = Ledger::load(&mut store, &index).unwrap();
        assert!(warnings.is_empty());
        assert!(again.contains(t, digest("id-24999")));
        assert!(!again.contains(t, digest("id-25000")));
        assert!(
            !again.contains(t + BUCKET_SECONDS, digest("id-1")),
            "other bucket"
        );
    }

    #[test]
    fn only_changed_parts_are_rewritten() {
        let mut store = MemStore::default();
        let mut ledger = Ledger::default();
        for i in 0..(PART_DIGESTS + 10) {
            ledger.insert(0, i as u64);
        }
        ledger.write_parts(&mut store).unwrap();
        let sets = store.sets;
        ledger.insert(0, u64::MAX);
        ledger.write_parts(&mut store).unwrap();
        assert_eq!(store.sets, sets + 1, "only the last part");
        ledger.write_parts(&mut store).unwrap();
        assert_eq!(store.sets, sets + 1, "nothing changed");
    }

    #[test]
    fn pruning_keeps_the_boundary_bucket_and_raises_complete_from() {
        let mut store = MemStore::default();
        let mut ledger = Ledger::default();
        for t in [0, 600, 1200, 1800] {
            ledger.insert(t, t as u64);
        }
        ledger.write_parts(&mut store).unwrap();
        ledger.prune_below(1250, Some(5));
        assert!(ledger.contains(5, 0), "boundary bucket kept");
        assert!(!ledger.contains(600, 600));
        assert!(ledger.contains(1200, 1200));
        assert_eq!(ledger.complete_from, 1200);
        let index = ledger.index();
        ledger.delete_dropped(&mut store);
        assert!(!store.map.contains_key(&part_key(600, 0)));
        assert!(store.map.contains_key(&part_key(0, 0)));
        assert_eq!(
            index.buckets.keys().copied().collect::<Vec<_>>(),
            vec![0, 1200, 1800]
        );
    }

    #[test]
    fn the_cap_drops_the_oldest_buckets() {
        let mut ledger = Ledger::default();
        let per = MAX_DIGESTS / 2 + 1;
        for i in 0..per {
            ledger.insert(0, i as u64);
            ledger.insert(BUCKET_SECONDS, i as u64);
        }
        assert_eq!(ledger.enforce_cap(None), Some(BUCKET_SECONDS));
        assert!(!ledger.contains(0, 1));
        assert!(ledger.contains(BUCKET_SECONDS, 1));
    }

    #[test]
    fn a_missing_or_foreign_part_is_forgotten_with_a_warning_and_uncounted_digests_are_not_taken() {
        let mut store = MemStore::default();
        let mut index = LedgerIndex::default();
        index.buckets.insert(0, 1);
        let (ledger, warnings) = Ledger::load(&mut store, &index).unwrap();
        assert!(warnings[0].contains("missing"), "{warnings:?}");
        assert_eq!(
            ledger.complete_from, BUCKET_SECONDS,
            "the look-back stays above what was forgotten"
        );
        store.set(&part_key(0, 0), b"{\"json\":1}").unwrap();
        let (_, warnings) = Ledger::load(&mut store, &index).unwrap();
        assert!(warnings[0].contains("not a ledger part"), "{warnings:?}");
        let mut ledger = Ledger::default();
        ledger.insert(0, 1);
        ledger.insert(0, 2);
        ledger.write_parts(&mut store).unwrap();
        // The index counts one (the checkpoint after the second was never written): the second
        // is not taken, so its batch is offered again whole.
        let (loaded, warnings) = Ledger::load(&mut store, &index).unwrap();
        assert!(warnings.is_empty());
        assert!(loaded.contains(0, 1));
        assert!(!loaded.contains(0, 2));
    }
}
