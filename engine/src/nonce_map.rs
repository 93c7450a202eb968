//! The in-memory half of every nonce store: certificate ids in time buckets.
//!
//! A certificate id always lands in the bucket of its certificate's expiry, which is signed and
//! so the same for every presentation of that certificate: insert-if-absent in that one bucket
//! is insert-if-absent overall. A bucket is dropped whole once every certificate in it has
//! expired, so expiry never scans, and memory is bounded by the live window, not by history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::CertificateId;

/// One time bucket: the ids of certificates expiring in `[index * width, (index + 1) * width)`.
#[derive(Debug)]
pub(crate) struct Bucket {
    ids: DashMap<CertificateId, ()>,
    /// The latest `retain_until` of any id in the bucket: the bucket may go after it.
    retain_until: AtomicU64,
}

impl Bucket {
    fn new() -> Self {
        Self {
            ids: DashMap::new(),
            retain_until: AtomicU64::new(0),
        }
    }
}

/// Certificate ids by expiry bucket. Lookups and inserts take no global lock: the bucket list is
/// swapped atomically when a bucket is created or dropped (about once per bucket width).
#[derive(Debug)]
pub(crate) struct NonceMap {
    width: u64,
    buckets: ArcSwap<BTreeMap<u64, Arc<Bucket>>>,
    live: AtomicUsize,
}

impl NonceMap {
    /// A map with buckets `width` seconds wide (at least 1).
    pub(crate) fn new(width: u64) -> Self {
        Self {
            width: width.max(1),
            buckets: ArcSwap::default(),
            live: AtomicUsize::new(0),
        }
    }

    /// The bucket index for a certificate expiring at `expires_at`.
    pub(crate) fn bucket_of(&self, expires_at: u64) -> u64 {
        expires_at / self.width
    }

    fn bucket(&self, index: u64) -> Arc<Bucket> {
        if let Some(bucket) = self.buckets.load().get(&index) {
            return bucket.clone();
        }
        let mut created = None;
        self.buckets.rcu(|buckets| {
            let mut buckets = BTreeMap::clone(buckets);
            let bucket = buckets
                .entry(index)
                .or_insert_with(|| Arc::new(Bucket::new()));
            created = Some(bucket.clone());
            buckets
        });
        created.unwrap_or_else(|| Arc::new(Bucket::new()))
    }

    /// Inserts the id unless present; true if it was inserted.
    pub(crate) fn insert_if_absent(
        &self,
        id: CertificateId,
        expires_at: u64,
        retain_until: u64,
    ) -> bool {
        let bucket = self.bucket(self.bucket_of(expires_at));
        match bucket.ids.entry(id) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(());
                bucket
                    .retain_until
                    .fetch_max(retain_until, Ordering::Relaxed);
                self.live.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// Puts an id read back from disk into its bucket.
    pub(crate) fn load(&self, index: u64, id: CertificateId, retain_until: u64) {
        let bucket = self.bucket(index);
        if bucket.ids.insert(id, ()).is_none() {
            bucket
                .retain_until
                .fetch_max(retain_until, Ordering::Relaxed);
            self.live.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the id is present.
    #[cfg(test)]
    pub(crate) fn contains(&self, id: &CertificateId, expires_at: u64) -> bool {
        self.buckets
            .load()
            .get(&self.bucket_of(expires_at))
            .is_some_and(|bucket| bucket.ids.contains_key(id))
    }

    /// Drops every bucket whose ids all had to be kept only until before `now`; returns the
    /// indexes dropped.
    pub(crate) fn expire(&self, now: u64) -> Vec<u64> {
        let mut dropped = Vec::new();
        self.buckets.rcu(|buckets| {
            dropped.clear();
            let mut kept = BTreeMap::clone(buckets);
            kept.retain(|index, bucket| {
                // A bucket still filling has retain_until in the future; its end bounds it too.
                let end = (index + 1).saturating_mul(self.width);
                let done = bucket.retain_until.load(Ordering::Relaxed) < now && end <= now;
                if done {
                    dropped.push(*index);
                }
                !done
            });
            kept
        });
        // Count after the swap: inserts racing into a dropped bucket were for certificates
        // already expired, and are forgotten with it.
        let buckets = self.buckets.load();
        let live = buckets.values().map(|bucket| bucket.ids.len()).sum();
        self.live.store(live, Ordering::Relaxed);
        dropped
    }

    /// Ids held.
    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Indexes of the buckets held, oldest first.
    pub(crate) fn bucket_indexes(&self) -> Vec<u64> {
        self.buckets.load().keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> CertificateId {
        CertificateId::from_bytes([n; 16])
    }

    #[test]
    fn insert_if_absent_is_first_writer_wins() {
        let map = NonceMap::new(60);
        assert!(map.insert_if_absent(id(1), 100, 130));
        assert!(!map.insert_if_absent(id(1), 100, 130));
        assert!(map.contains(&id(1), 100));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn buckets_expire_whole_after_their_retention() {
        let map = NonceMap::new(60);
        map.insert_if_absent(id(1), 100, 130); // bucket 1: [60, 120)
        map.insert_if_absent(id(2), 130, 160); // bucket 2: [120, 180)
        assert_eq!(map.bucket_indexes(), [1, 2]);
        assert!(
            map.expire(130).is_empty(),
            "retention of id 1 runs to 130 inclusive"
        );
        assert_eq!(map.expire(131), [1]);
        assert!(!map.contains(&id(1), 100));
        assert!(map.contains(&id(2), 130));
        assert_eq!(map.len(), 1);
        assert_eq!(map.expire(181), [2]);
        assert_eq!(map.len(), 0);
    }
}
