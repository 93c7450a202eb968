//! The in-memory half of every nonce store: certificate ids in time buckets.
//!
//! A certificate id always lands in the bucket of its certificate's expiry, which is signed and
//! so the same for every presentation of that certificate: insert-if-absent in that one bucket
//! is insert-if-absent overall. A bucket is dropped whole once every certificate in it has
//! expired, so expiry never scans, and memory is bounded by the live window, not by history.
//!
//! # Why a claim can never outlive its bucket unnoticed
//!
//! A verifier checks a certificate's expiry at one moment and claims its nonce a little later;
//! in between, [`NonceMap::expire`] may drop the certificate's bucket. Two rules close that gap:
//!
//! 1. **The horizon.** `expire(now)` first raises `horizon` to `now`; a claim whose
//!    `retain_until` is below the horizon is refused as [`Inserted::Expired`], whether or not its
//!    bucket still exists. Every id in a dropped bucket had `retain_until < horizon`, so a
//!    replay of it after the drop is refused, never taken for a first use.
//! 2. **The gate.** An insert holds its bucket's gate for reading from the horizon check to the
//!    end of its `retain_until` update; `expire` takes the gate for writing, then decides from
//!    `retain_until` whether to drop, and marks the bucket dead. So an insert either finishes
//!    before the decision (and its `retain_until` counts in it) or finds the bucket dead and
//!    retries in a new bucket, where rule 1 applies.
//!
//! `concurrent_claims_racing_expiry_never_give_two_fresh` below drives both sides at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::{CertificateId, RequestKey};

/// What an insert found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The id was absent and is now held.
    Fresh,
    /// The id was already held (by another request, or by a claim that named none).
    Present,
    /// The id was already held by a claim with the same request key: the same request, retried.
    Repeated,
    /// The claim's retention ended before the map's expiry horizon: its certificate is expired
    /// and its bucket may be gone, so the map cannot vouch for a first use. Nothing was held.
    Expired,
}

/// One time bucket: the ids of certificates expiring in `[index * width, (index + 1) * width)`.
#[derive(Debug)]
struct Bucket {
    /// Each id with the request key that claimed it (0: none).
    ids: DashMap<CertificateId, u64>,
    /// The latest `retain_until` of any id in the bucket: the bucket may go after it.
    retain_until: AtomicU64,
    /// Read-held by inserts, write-held by the expiry decision; `true` once dropped.
    gate: RwLock<bool>,
}

impl Bucket {
    fn new() -> Self {
        Self {
            ids: DashMap::new(),
            retain_until: AtomicU64::new(0),
            gate: RwLock::new(false),
        }
    }
}

/// Certificate ids by expiry bucket, for nonce stores to keep their live nonces in memory.
/// Lookups and inserts take no global lock: the bucket list is swapped atomically when a bucket
/// is created or dropped (about once per bucket width).
#[derive(Debug)]
pub struct NonceMap {
    width: u64,
    buckets: ArcSwap<BTreeMap<u64, Arc<Bucket>>>,
    live: AtomicUsize,
    /// The latest `now` any expiry ran at: claims retained only until before it are refused.
    horizon: AtomicU64,
}

impl NonceMap {
    /// A map with buckets `width` seconds wide (at least 1).
    pub fn new(width: u64) -> Self {
        Self {
            width: width.max(1),
            buckets: ArcSwap::default(),
            live: AtomicUsize::new(0),
            horizon: AtomicU64::new(0),
        }
    }

    /// The bucket index for a certificate expiring at `expires_at`.
    pub fn bucket_of(&self, expires_at: u64) -> u64 {
        expires_at / self.width
    }

    /// The bucket `index` as listed, created if missing. It may be dead (its drop under way):
    /// inserts find that under its gate and ask [`live_bucket`](Self::live_bucket) instead.
    fn bucket(&self, index: u64) -> Arc<Bucket> {
        match self.buckets.load().get(&index) {
            Some(bucket) => bucket.clone(),
            None => self.live_bucket(index),
        }
    }

    /// The live bucket `index`: created if missing, and a dead one still listed replaced.
    fn live_bucket(&self, index: u64) -> Arc<Bucket> {
        let dead = |bucket: &Bucket| *bucket.gate.read().unwrap_or_else(|e| e.into_inner());
        let mut created = None;
        self.buckets.rcu(|buckets| {
            let mut buckets = BTreeMap::clone(buckets);
            let slot = buckets
                .entry(index)
                .or_insert_with(|| Arc::new(Bucket::new()));
            if dead(slot) {
                *slot = Arc::new(Bucket::new());
            }
            created = Some(slot.clone());
            buckets
        });
        created.unwrap_or_else(|| Arc::new(Bucket::new()))
    }

    /// Inserts the id unless present or expired (see the module documentation).
    pub fn insert_if_absent(
        &self,
        id: CertificateId,
        expires_at: u64,
        retain_until: u64,
        request: Option<RequestKey>,
    ) -> Inserted {
        // Checked again under the gate below; this first check only saves creating a bucket
        // for a claim that is refused anyway.
        if retain_until < self.horizon.load(Ordering::SeqCst) {
            return Inserted::Expired;
        }
        let index = self.bucket_of(expires_at);
        let mut bucket = self.bucket(index);
        loop {
            // A poisoned gate only means a thread panicked while holding it; the flag it guards
            // is a plain bool and stays meaningful.
            let dead = bucket.gate.read().unwrap_or_else(|e| e.into_inner());
            if *dead {
                drop(dead);
                bucket = self.live_bucket(index);
                continue;
            }
            if retain_until < self.horizon.load(Ordering::SeqCst) {
                return Inserted::Expired;
            }
            let request = request.map_or(0, RequestKey::get);
            return match bucket.ids.entry(id) {
                Entry::Occupied(held) if request != 0 && *held.get() == request => {
                    Inserted::Repeated
                }
                Entry::Occupied(_) => Inserted::Present,
                Entry::Vacant(slot) => {
                    slot.insert(request);
                    bucket
                        .retain_until
                        .fetch_max(retain_until, Ordering::SeqCst);
                    self.live.fetch_add(1, Ordering::Relaxed);
                    Inserted::Fresh
                }
            };
        }
    }

    /// Forgets an id this caller inserted a moment ago and could not make durable, so that its
    /// certificate is not used up by a failure. No-op if absent.
    pub fn remove(&self, id: &CertificateId, expires_at: u64) {
        if let Some(bucket) = self.buckets.load().get(&self.bucket_of(expires_at))
            && bucket.ids.remove(id).is_some()
        {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Puts an id read back from disk into its bucket, with the request key that claimed it.
    pub fn load(
        &self,
        index: u64,
        id: CertificateId,
        retain_until: u64,
        request: Option<RequestKey>,
    ) {
        let bucket = self.bucket(index);
        if bucket
            .ids
            .insert(id, request.map_or(0, RequestKey::get))
            .is_none()
        {
            bucket
                .retain_until
                .fetch_max(retain_until, Ordering::SeqCst);
            self.live.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Raises the horizon to `now` without dropping anything: a store that did not load the
    /// ids retained only until before `now` calls this so that they count as expired.
    pub fn raise_horizon(&self, now: u64) {
        self.horizon.fetch_max(now, Ordering::SeqCst);
    }

    /// Whether the id is present.
    pub fn contains(&self, id: &CertificateId, expires_at: u64) -> bool {
        self.buckets
            .load()
            .get(&self.bucket_of(expires_at))
            .is_some_and(|bucket| bucket.ids.contains_key(id))
    }

    /// Drops every bucket whose ids all had to be kept only until before `now`; returns the
    /// indexes dropped.
    pub fn expire(&self, now: u64) -> Vec<u64> {
        // Rule 1 first: from here on no claim retained only until before `now` is taken.
        self.raise_horizon(now);
        let mut dropped = Vec::new();
        for (index, bucket) in self.buckets.load().iter() {
            // A bucket still filling has retain_until in the future; its end bounds it too.
            let end = (index + 1).saturating_mul(self.width);
            if end > now {
                break;
            }
            // Rule 2: decide under the write gate, so every insert into this bucket has either
            // counted its retain_until already or will find the bucket dead.
            let mut dead = bucket.gate.write().unwrap_or_else(|e| e.into_inner());
            if !*dead && bucket.retain_until.load(Ordering::SeqCst) < now {
                *dead = true;
                dropped.push((*index, bucket.clone()));
            }
        }
        if !dropped.is_empty() {
            self.buckets.rcu(|buckets| {
                let mut kept = BTreeMap::clone(buckets);
                for (index, bucket) in &dropped {
                    if kept
                        .get(index)
                        .is_some_and(|held| Arc::ptr_eq(held, bucket))
                    {
                        kept.remove(index);
                    }
                }
                kept
            });
        }
        let live = self
            .buckets
            .load()
            .values()
            .map(|bucket| bucket.ids.len())
            .sum();
        self.live.store(live, Ordering::Relaxed);
        dropped.into_iter().map(|(index, _)| index).collect()
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Indexes of the buckets held, oldest first.
    pub fn bucket_indexes(&self) -> Vec<u64> {
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
        assert_eq!(map.insert_if_absent(id(1), 100, 130, None), Inserted::Fresh);
        assert_eq!(
            map.insert_if_absent(id(1), 100, 130, None),
            Inserted::Present
        );
        assert!(map.contains(&id(1), 100));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn buckets_expire_whole_after_their_retention() {
        let map = NonceMap::new(60);
        map.insert_if_absent(id(1), 100, 130, None); // bucket 1: [60, 120)
        map.insert_if_absent(id(2), 130, 160, None); // bucket 2: [120, 180)
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

    #[test]
    fn a_claim_behind_the_horizon_is_refused_even_in_a_new_bucket() {
        let map = NonceMap::new(60);
        assert_eq!(map.insert_if_absent(id(1), 100, 130, None), Inserted::Fresh);
        assert_eq!(map.expire(131), [1]);
        // The certificate's first use was forgotten with its bucket: a replay checked for
        // expiry before the drop must not be taken for a first use after it.
        assert_eq!(
            map.insert_if_absent(id(1), 100, 130, None),
            Inserted::Expired
        );
        assert!(
            map.bucket_indexes().is_empty(),
            "nothing was created for it"
        );
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn a_late_claim_within_retention_revives_its_bucket_and_is_kept() {
        let map = NonceMap::new(60);
        map.insert_if_absent(id(1), 100, 110, None); // bucket 1 holds retention up to 110
        assert_eq!(map.expire(120), [1]);
        // Expired at 100 but retained (skew) until 125: still acceptable at 120.
        assert_eq!(map.insert_if_absent(id(2), 100, 125, None), Inserted::Fresh);
        assert_eq!(
            map.insert_if_absent(id(2), 100, 125, None),
            Inserted::Present
        );
        assert!(map.expire(125).is_empty());
        assert_eq!(map.expire(126), [1]);
    }

    #[test]
    fn remove_releases_a_claim() {
        let map = NonceMap::new(60);
        map.insert_if_absent(id(1), 100, 130, None);
        map.remove(&id(1), 100);
        assert_eq!(map.len(), 0);
        assert_eq!(map.insert_if_absent(id(1), 100, 130, None), Inserted::Fresh);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Threads claim ids (each with its own expiry and retention past it, as a verifier's
        /// skew makes them), checking expiry against the clock first as the verifier does, while
        /// another thread expires at a rising clock. However they interleave, no id is ever
        /// Fresh twice: a replay that passed its expiry check just before the drop of the
        /// first use's bucket meets the horizon.
        #[test]
        fn concurrent_claims_racing_expiry_never_give_two_fresh(
            claims in proptest::collection::vec(0u8..24, 1..200),
            width in 1u64..4,
        ) {
            let map = Arc::new(NonceMap::new(width));
            let clock = Arc::new(AtomicU64::new(0));
            let fresh = Arc::new(DashMap::<u8, u32>::new());
            let expirer = {
                let (map, clock) = (map.clone(), clock.clone());
                std::thread::spawn(move || {
                    for now in 0..12 {
                        clock.store(now, Ordering::SeqCst);
                        map.expire(now);
                        std::thread::yield_now();
                    }
                })
            };
            let workers: Vec<_> = claims.chunks(claims.len().div_ceil(3)).map(|chunk| {
                let (map, clock, fresh) = (map.clone(), clock.clone(), fresh.clone());
                let chunk = chunk.to_vec();
                std::thread::spawn(move || {
                    for n in chunk {
                        // Ids are certificates: the same id always has the same times.
                        let expires_at = 2 + u64::from(n % 4);
                        let retain_until = expires_at + u64::from(n % 3);
                        // The verifier's expiry check, then the claim, as in the pipeline.
                        if clock.load(Ordering::SeqCst) > retain_until {
                            continue;
                        }
                        if map.insert_if_absent(id(n), expires_at, retain_until, None) == Inserted::Fresh {
                            *fresh.entry(n).or_insert(0) += 1;
                        }
                    }
                })
            }).collect();
            for worker in workers {
                worker.join().unwrap();
            }
            expirer.join().unwrap();
            for entry in fresh.iter() {
                proptest::prop_assert_eq!(*entry.value(), 1, "id {} was fresh twice", entry.key());
            }
        }
    }
}

#[cfg(test)]
mod request_tests {
    use super::*;
    use crate::PlatformId;

    #[test]
    fn only_the_same_request_key_is_a_repeat() {
        let map = NonceMap::new(60);
        let shop: PlatformId = "shop.example".parse().unwrap();
        let first = Some(RequestKey::derive(&shop, b"k1"));
        let id = CertificateId::from_bytes([1; 16]);
        assert_eq!(map.insert_if_absent(id, 100, 130, first), Inserted::Fresh);
        assert_eq!(
            map.insert_if_absent(id, 100, 130, first),
            Inserted::Repeated
        );
        let other = Some(RequestKey::derive(&shop, b"k2"));
        assert_eq!(map.insert_if_absent(id, 100, 130, other), Inserted::Present);
        assert_eq!(map.insert_if_absent(id, 100, 130, None), Inserted::Present);
        // A claim without a key is never repeated, even by another claim without one.
        let bare = CertificateId::from_bytes([2; 16]);
        assert_eq!(map.insert_if_absent(bare, 100, 130, None), Inserted::Fresh);
        assert_eq!(
            map.insert_if_absent(bare, 100, 130, None),
            Inserted::Present
        );
        assert_eq!(map.len(), 2);
    }
}
