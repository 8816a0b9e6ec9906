//! The keys of a tie larger than the checkpoint holds: rows delivered at exactly the position's
//! value (see the module docs of `access`, "The position") beyond the latest
//! [`MAX_TIE_KEYS`](super::MAX_TIE_KEYS), which the checkpoint keeps inline.
//!
//! Older keys move out of the checkpoint into parts of at most [`PART_KEYS`] keys (64 KB) under
//! `slack-logs/v1/access/<team>/tie/<field>/<part>`, written before the checkpoint that counts
//! them, so every stored value stays far below the portable 400 KB limit however many rows share a
//! second, and a re-read of the tie from its start (when Slack offers no way to resume inside it)
//! skips every row delivered, not only the latest. A part starts with the value its keys were
//! delivered at: a part left by an earlier tie of the same walk is never taken for this one.
//!
//! Not the audit ledger: that one is keyed by time buckets and pruned by the look-back; these
//! keys belong to one value of one walk and are dropped when the position moves below it.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::env::{KvStore, StoreError};
use crate::key_parts;

/// Keys per stored part: 64 KB.
pub const PART_KEYS: usize = 8192;
/// Marks a part's format, so a value that is not one is noticed.
const MAGIC: &[u8; 4] = b"SLT1";

/// The field of the position a spill belongs to; it names the part keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TieField {
    DateFirst,
    DateLast,
}

impl TieField {
    pub fn name(self) -> &'static str {
        match self {
            TieField::DateFirst => "date_first",
            TieField::DateLast => "date_last",
        }
    }
}

/// The keys moved out of the checkpoint for one field, oldest first. The checkpoint stores only
/// how many there are; [`Spill::load`] reads them back when a walk resumes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "u64", into = "u64")]
pub struct Spill {
    /// Keys in the store (what the checkpoint counts).
    stored: usize,
    /// The keys once loaded or written (shared: a walk's position is cloned every page).
    keys: Arc<SpillKeys>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SpillKeys {
    order: Vec<u64>,
    set: HashSet<u64>,
}

impl From<u64> for Spill {
    fn from(stored: u64) -> Spill {
        Spill {
            stored: usize::try_from(stored).unwrap_or(usize::MAX),
            keys: Arc::default(),
        }
    }
}

impl From<Spill> for u64 {
    fn from(s: Spill) -> u64 {
        s.stored as u64
    }
}

/// A store error, or a part the checkpoint counts that is missing or not one.
#[derive(Debug)]
pub enum LoadError {
    Store(StoreError),
    /// The keys it counted are forgotten; the message is for the log.
    Lost {
        forgotten: u64,
        message: String,
    },
}

impl Spill {
    pub fn is_empty(&self) -> bool {
        self.stored == 0
    }

    pub fn len(&self) -> usize {
        self.stored
    }

    pub fn contains(&self, key: u64) -> bool {
        self.keys.set.contains(&key)
    }

    /// Whether the keys the checkpoint counts are in memory.
    fn loaded(&self) -> bool {
        self.keys.order.len() == self.stored
    }

    /// Reads the parts the checkpoint counts. A part that is missing, foreign, of another value
    /// or short (deleted or changed by hand) loses what it and the parts after it held: the keys
    /// before it stay, and the error says how many are forgotten, which the walk treats as a
    /// checkpoint of an older format (see `reread_once`).
    pub fn load(
        &mut self,
        value: i64,
        store: &mut dyn KvStore,
        key_of: &dyn Fn(usize) -> String,
    ) -> Result<(), LoadError> {
        if self.loaded() {
            return Ok(());
        }
        let mut keys = SpillKeys::default();
        let mut lost = None;
        for part in 0..self.stored.div_ceil(PART_KEYS) {
            let key = key_of(part);
            let bytes = store.get(&key).map_err(LoadError::Store)?;
            let body = bytes
                .as_deref()
                .and_then(|b| key_parts::decode(MAGIC, 8, b))
                .filter(|(header, _)| *header == value.to_le_bytes());
            let Some((_, body)) = body else {
                let why = if bytes.is_none() {
                    "missing"
                } else {
                    "not a part of this tie"
                };
                lost = Some(format!(
                    "the access tie part {key} the checkpoint counts is {why}"
                ));
                break;
            };
            let want = self.stored.saturating_sub(keys.order.len()).min(PART_KEYS);
            let before = keys.order.len();
            for k in body.take(want) {
                if keys.set.insert(k) {
                    keys.order.push(k);
                }
            }
            if keys.order.len() - before < want {
                lost = Some(format!(
                    "the access tie part {key} holds fewer keys than the checkpoint counts"
                ));
                break;
            }
        }
        // What the parts before a lost one hold stays known; the rest is forgotten, so a re-read
        // offers those rows again only once (see `reread_once`).
        let forgotten = (self.stored - keys.order.len()) as u64;
        self.stored = keys.order.len();
        self.keys = Arc::new(keys);
        match lost {
            Some(what) if forgotten > 0 => Err(LoadError::Lost {
                forgotten,
                message: format!(
                    "{what}; the {forgotten} keys it and the parts after it held are forgotten"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Stores `moved` (the window's oldest keys) after the keys already stored: writes the parts
    /// they fall in, then takes them. On an error nothing is taken and the caller keeps them in
    /// its window.
    pub fn store(
        &mut self,
        value: i64,
        moved: &[u64],
        store: &mut dyn KvStore,
        key_of: &dyn Fn(usize) -> String,
    ) -> Result<(), StoreError> {
        if !self.loaded() {
            // A spill is loaded as its walk resumes; writing a part without the keys before it
            // would drop them.
            return Err(StoreError(
                "access tie keys were not loaded before new ones were stored".into(),
            ));
        }
        let mut order = self.keys.order.clone();
        order.extend(moved.iter().copied().filter(|k| !self.keys.set.contains(k)));
        let first_dirty = self.stored / PART_KEYS;
        for (part, chunk) in order.chunks(PART_KEYS).enumerate().skip(first_dirty) {
            store.set(
                &key_of(part),
                &key_parts::encode(MAGIC, &value.to_le_bytes(), chunk),
            )?;
        }
        let keys = Arc::make_mut(&mut self.keys);
        keys.set.extend(order[keys.order.len()..].iter().copied());
        keys.order = order;
        self.stored = keys.order.len();
        Ok(())
    }

    /// How many parts hold the stored keys.
    pub fn parts(&self) -> usize {
        self.stored.div_ceil(PART_KEYS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MemStore;

    fn key_of(part: usize) -> String {
        format!("t/{part}")
    }

    #[test]
    fn keys_round_trip_through_parts_and_the_count() {
        let mut store = MemStore::default();
        let mut s = Spill::default();
        let keys: Vec<u64> = (0..20_000).collect();
        for chunk in keys.chunks(3_000) {
            s.store(7, chunk, &mut store, &key_of).unwrap();
        }
        assert_eq!(s.len(), 20_000);
        assert_eq!(s.parts(), 3);
        for part in 0..3 {
            let v = store.get(&key_of(part)).unwrap().unwrap();
            assert!(v.len() <= 4 + 8 + PART_KEYS * 8, "part {part}: {}", v.len());
        }
        // What a checkpoint keeps, and what a resumed walk reads back.
        let counted: u64 = s.clone().into();
        let mut again = Spill::from(counted);
        assert!(!again.contains(5), "not loaded yet");
        again.load(7, &mut store, &key_of).unwrap();
        assert!(again.contains(0) && again.contains(19_999) && !again.contains(20_000));
        assert_eq!(again, s);
        // More keys after a load go on where the stored ones end.
        again.store(7, &[20_000, 5], &mut store, &key_of).unwrap();
        assert_eq!(again.len(), 20_001, "a key stored twice counts once");
    }

    #[test]
    fn a_part_of_another_value_or_missing_is_forgotten_not_taken() {
        let mut store = MemStore::default();
        let mut s = Spill::default();
        s.store(7, &(0..100).collect::<Vec<_>>(), &mut store, &key_of)
            .unwrap();
        let counted: u64 = s.into();
        let mut other = Spill::from(counted);
        match other.load(8, &mut store, &key_of) {
            Err(LoadError::Lost { forgotten, message }) => {
                assert_eq!(forgotten, 100);
                assert!(message.contains("not a part of this tie"), "{message}");
            }
            e => panic!("{e:?}"),
        }
        assert!(other.is_empty() && !other.contains(3));
        store.delete(&key_of(0)).unwrap();
        let mut gone = Spill::from(counted);
        assert!(matches!(
            gone.load(7, &mut store, &key_of),
            Err(LoadError::Lost { forgotten: 100, .. })
        ));
    }

    /// A lost or short part after complete ones: the keys before it stay known, the rest count as
    /// forgotten, and storing goes on where the known keys end.
    #[test]
    fn keys_before_a_lost_or_short_part_stay_known() {
        let mut store = MemStore::default();
        let mut s = Spill::default();
        let keys: Vec<u64> = (0..(PART_KEYS as u64 + 500)).collect();
        s.store(7, &keys, &mut store, &key_of).unwrap();
        let counted: u64 = s.into();
        // Part 1 cut short (a pass that lost its lease rewrote it with fewer keys).
        let short = key_parts::encode(MAGIC, &7i64.to_le_bytes(), &keys[PART_KEYS..PART_KEYS + 10]);
        store.set(&key_of(1), &short).unwrap();
        let mut again = Spill::from(counted);
        match again.load(7, &mut store, &key_of) {
            Err(LoadError::Lost { forgotten, message }) => {
                assert_eq!(forgotten, 490);
                assert!(
                    message.contains("fewer keys than the checkpoint counts"),
                    "{message}"
                );
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(again.len(), PART_KEYS + 10);
        assert!(again.contains(0) && again.contains(PART_KEYS as u64 + 9));
        assert!(!again.contains(PART_KEYS as u64 + 10));
        again.store(7, &[u64::MAX], &mut store, &key_of).unwrap();
        assert_eq!(again.len(), PART_KEYS + 11);
        store.delete(&key_of(1)).unwrap();
        let mut gone = Spill::from(counted);
        assert!(matches!(
            gone.load(7, &mut store, &key_of),
            Err(LoadError::Lost { forgotten: 500, .. })
        ));
        assert_eq!(gone.len(), PART_KEYS, "part 0 stays known");
    }

    #[test]
    fn storing_into_an_unloaded_spill_is_refused() {
        let mut store = MemStore::default();
        let mut s = Spill::from(10);
        assert!(s.store(7, &[1], &mut store, &key_of).is_err());
        assert!(store.get(&key_of(0)).unwrap().is_none(), "nothing written");
    }
}
