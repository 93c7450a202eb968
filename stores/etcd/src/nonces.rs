//! Replay nonces: compare-and-create in etcd, one transaction per batch, keys deleted by the
//! cluster itself through one lease per expiry bucket.
//!
//! A batch becomes one transaction of nested transactions, one per certificate:
//! `if create_revision(<p>/n/<id>) == 0 then put(value, lease) else get`. etcd applies the
//! whole transaction at one revision, so of all the claims of one certificate on every node,
//! exactly one meets an absent key. The value names the write (a [`WriteId`] per batch), so
//! that a transaction sent again after its answer was lost recognises the keys its first
//! attempt created: they are still this batch's `Fresh`, never its `Replayed`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use cyberid_engine::{CertificateId, Error, NonceClaim, NonceOutcome, NonceStore, RequestKey};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};

use crate::calls::Failure;
use crate::layout::{NonceValue, WriteId, shard_of};
use crate::stats::Counters;
use crate::{EtcdStore, Shared};

/// A lease's scope: a nonce cluster's place and an expiry bucket. Leases belong to one
/// cluster, so each cluster's share of a bucket has its own.
type Slot = (usize, u64);

/// One expiry bucket as this node knows it (on one nonce cluster): the lease its keys are written with, and what
/// this node wrote into it.
#[derive(Debug, Default)]
struct Bucket {
    lease: Option<Lease>,
    /// The latest `retain_until` this node wrote into the bucket.
    retain_until: u64,
    /// Keys this node created in the bucket.
    written: usize,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    id: i64,
    /// When etcd deletes the lease's keys, Unix seconds by this node's clock (at the latest
    /// then: a new leader extends leases, never shortens them).
    deadline: u64,
}

/// The node's view of its nonces: leases, counts and the expiry horizon. The nonces
/// themselves are only in etcd.
#[derive(Debug)]
pub(crate) struct Nonces {
    pub(crate) history_begins: AtomicU64,
    /// The latest `now` any expiry ran at: claims retained only until before it are answered
    /// `Expired` without asking etcd, whose lease may have deleted their first use.
    horizon: AtomicU64,
    buckets: Mutex<BTreeMap<Slot, Bucket>>,
    live: AtomicUsize,
    /// Held while granting a lease, so that concurrent batches wanting the same bucket's
    /// lease wait for one grant rather than each make their own.
    grant: tokio::sync::Mutex<()>,
    /// Random, per store instance: two processes never share a write id.
    instance: u64,
    writes: AtomicU64,
}

/// What etcd found for one claim sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// The key was absent; this attempt created it.
    Created,
    /// The key holds this batch's own write: an earlier attempt of this same batch created
    /// it, and its answer was lost.
    Ours,
    /// Someone else's claim, with the request key it named (`None` also for a value this
    /// build cannot read).
    Held(Option<RequestKey>),
}

impl Nonces {
    pub(crate) fn new() -> Result<Self, Error> {
        let mut instance = [0; 8];
        getrandom::fill(&mut instance).map_err(|_| Error::Random)?;
        Ok(Self {
            history_begins: AtomicU64::new(0),
            horizon: AtomicU64::new(0),
            buckets: Mutex::new(BTreeMap::new()),
            live: AtomicUsize::new(0),
            grant: tokio::sync::Mutex::new(()),
            instance: u64::from_ne_bytes(instance),
            writes: AtomicU64::new(0),
        })
    }

    pub(crate) fn next_write(&self) -> WriteId {
        WriteId::new(self.instance, self.writes.fetch_add(1, Ordering::Relaxed))
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, BTreeMap<Slot, Bucket>> {
        // The map holds plain numbers: a panic elsewhere cannot leave it inconsistent.
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached lease of `bucket` that keeps keys at least until `until`.
    fn cached_lease(&self, slot: Slot, until: u64) -> Option<i64> {
        self.buckets()
            .get(&slot)
            .and_then(|b| b.lease)
            .filter(|lease| lease.deadline >= until)
            .map(|lease| lease.id)
    }

    fn store_lease(&self, slot: Slot, lease: Lease) {
        let mut buckets = self.buckets();
        let slot = &mut buckets.entry(slot).or_default().lease;
        if slot.is_none_or(|held| held.deadline < lease.deadline) {
            *slot = Some(lease);
        }
    }

    fn forget_leases(&self, slots: impl IntoIterator<Item = Slot>) {
        let mut held = self.buckets();
        for slot in slots {
            if let Some(bucket) = held.get_mut(&slot) {
                bucket.lease = None;
            }
        }
    }

    fn count_written(&self, slot: Slot, retain_until: u64) {
        let mut buckets = self.buckets();
        let entry = buckets.entry(slot).or_default();
        entry.written += 1;
        entry.retain_until = entry.retain_until.max(retain_until);
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    fn expire(&self, now: u64, width: u64) -> usize {
        self.horizon.fetch_max(now, Ordering::SeqCst);
        let mut buckets = self.buckets();
        let before = buckets.len();
        // The same rule as the engine's `NonceMap`: a bucket goes once its time range and
        // every retention written into it have passed. Its keys stay in etcd until their
        // lease ends; only this node's record of them goes.
        buckets.retain(|&(_, index), bucket| {
            (index + 1).saturating_mul(width) > now || bucket.retain_until >= now
        });
        self.live.store(
            buckets.values().map(|bucket| bucket.written).sum(),
            Ordering::Relaxed,
        );
        before - buckets.len()
    }
}

impl Shared {
    fn bucket_of(&self, claim: &NonceClaim) -> u64 {
        claim.expires_at / self.options.bucket_seconds
    }

    /// The nonce cluster that holds `claim`'s certificate.
    fn place_of(&self, claim: &NonceClaim) -> usize {
        shard_of(&claim.certificate_id, self.nonce_clients.len())
    }

    /// Leases on the cluster at `place` for the buckets of the claims sent: cached, or
    /// granted now.
    async fn leases(
        &self,
        place: usize,
        claims: &[&NonceClaim],
        deadline: Instant,
    ) -> Result<HashMap<u64, i64>, Failure> {
        let margin = self.options.lease_margin;
        // Each bucket's lease must keep its keys at least half the margin past the latest
        // retention asked for; a new lease is granted for the full margin.
        let mut needed: BTreeMap<u64, u64> = BTreeMap::new();
        for claim in claims {
            let until = needed.entry(self.bucket_of(claim)).or_default();
            *until = (*until).max(claim.retain_until);
        }
        let mut leases = HashMap::with_capacity(needed.len());
        for (bucket, retain_until) in needed {
            let until = retain_until.saturating_add(margin / 2);
            if let Some(id) = self.nonces.cached_lease((place, bucket), until) {
                leases.insert(bucket, id);
                continue;
            }
            let _granting = self.nonces.grant.lock().await;
            if let Some(id) = self.nonces.cached_lease((place, bucket), until) {
                leases.insert(bucket, id);
                continue;
            }
            let bucket_end = (bucket + 1).saturating_mul(self.options.bucket_seconds);
            let expires = bucket_end.max(retain_until).saturating_add(margin);
            let ttl = expires
                .saturating_sub(self.clock.now())
                .clamp(1, i64::MAX as u64) as i64;
            // A grant whose answer is lost leaves an unused lease, which etcd drops at its TTL.
            let granted = self
                .call_until(
                    &self.nonce_clients[place],
                    Some(deadline),
                    |mut client| async move { client.lease_grant(ttl, None).await },
                )
                .await?;
            Counters::bump(&self.stats.leases_granted);
            self.nonces.store_lease(
                (place, bucket),
                Lease {
                    id: granted.id(),
                    deadline: expires,
                },
            );
            leases.insert(bucket, granted.id());
        }
        Ok(leases)
    }

    /// One transaction for `claims` (at most `claims_per_txn`, all on the cluster at
    /// `place`), sent until it has a definite answer. Every attempt carries the same write id.
    async fn claim_chunk(
        &self,
        place: usize,
        claims: &[&NonceClaim],
        leases: &HashMap<u64, i64>,
        write: WriteId,
        deadline: Instant,
    ) -> Result<Vec<Found>, Failure> {
        let operations: Vec<TxnOp> = claims
            .iter()
            .map(|claim| {
                let key = self.keys.nonce(&claim.certificate_id);
                let value = self.nonce_value(claim, write);
                let lease = leases.get(&self.bucket_of(claim)).copied().unwrap_or(0);
                TxnOp::txn(
                    Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(
                            key.clone(),
                            value,
                            Some(PutOptions::new().with_lease(lease)),
                        )])
                        .or_else([TxnOp::get(key, None)]),
                )
            })
            .collect();
        let txn = Txn::new().and_then(operations);
        let started = Instant::now();
        let answer = self
            .call_until(&self.nonce_clients[place], Some(deadline), |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        let found = read_answer(&answer, claims.len(), write)?;
        let took = started.elapsed();
        self.stats.txn(claims.len(), took);
        if let Some(observer) = self.observer.get() {
            observer.store_synced(took);
        }
        Ok(found)
    }

    fn nonce_value(&self, claim: &NonceClaim, write: WriteId) -> Vec<u8> {
        NonceValue {
            write,
            request: claim.request,
        }
        .encode(&self.options.node_id)
    }

    /// The claims of one nonce cluster, in as few transactions as etcd accepts.
    async fn claim_place(
        &self,
        place: usize,
        claims: &[&NonceClaim],
        write: WriteId,
        deadline: Instant,
    ) -> (Vec<Found>, Result<(), Failure>) {
        let mut found = Vec::with_capacity(claims.len());
        for chunk in claims.chunks(self.options.claims_per_txn()) {
            let answer = async {
                let leases = self.leases(place, chunk, deadline).await?;
                match self
                    .claim_chunk(place, chunk, &leases, write, deadline)
                    .await
                {
                    Err(Failure::LeaseNotFound) => {
                        // The cluster lost a lease this node still held (restored from a
                        // backup, or a lease that outlived its deadline): grant new ones and
                        // send again. Nothing was written: etcd refused the whole transaction.
                        self.nonces
                            .forget_leases(leases.keys().map(|&bucket| (place, bucket)));
                        let leases = self.leases(place, chunk, deadline).await?;
                        self.claim_chunk(place, chunk, &leases, write, deadline)
                            .await
                    }
                    answer => answer,
                }
            };
            match answer.await {
                Ok(chunk_found) => found.extend(chunk_found),
                Err(failure) => return (found, Err(failure)),
            }
        }
        (found, Ok(()))
    }

    /// Every claim of `claims`, each on its cluster, the clusters in parallel. All or
    /// nothing: when any transaction fails, the keys the others created are deleted again
    /// (only if they still hold this write), so that an error consumes no certificate.
    ///
    /// The whole call ends by `deadline`: a node that cannot get a definite answer in time
    /// answers 503 rather than hold its queue (and its revocation check) for the length of
    /// an election.
    async fn claim_all(
        &self,
        claims: &[&NonceClaim],
        write: WriteId,
        deadline: Instant,
    ) -> Result<Vec<Found>, Error> {
        let places = self.nonce_clients.len();
        let mut by_place: Vec<Vec<usize>> = vec![Vec::new(); places];
        for (index, claim) in claims.iter().enumerate() {
            by_place[self.place_of(claim)].push(index);
        }
        let answers =
            futures_util::future::join_all(by_place.iter().enumerate().map(|(place, indices)| {
                let mine: Vec<&NonceClaim> = indices.iter().map(|&i| claims[i]).collect();
                async move { self.claim_place(place, &mine, write, deadline).await }
            }))
            .await;
        let failure = answers
            .iter()
            .find_map(|(_, result)| result.as_ref().err())
            .cloned();
        if let Some(failure) = failure {
            self.release(claims, &by_place, &answers, write).await;
            return Err(failure.into_error("claim nonces"));
        }
        let mut found = vec![Found::Held(None); claims.len()];
        for (indices, (place_found, _)) in by_place.iter().zip(answers) {
            for (&index, outcome) in indices.iter().zip(place_found) {
                found[index] = outcome;
            }
        }
        Ok(found)
    }

    /// Deletes the keys this write created, where it is known to have created them, for
    /// claims that named no request key. A claim with a request key keeps its key: a
    /// concurrent retry of the same request may already have been answered `valid` from it
    /// (`Repeated`), and deleting it would let the certificate be fresh once more; the
    /// platform's retry with that key is answered `valid` anyway. A transaction without a
    /// definite answer may also have created keys; those stay consumed (see `docs/store.md`).
    async fn release(
        &self,
        claims: &[&NonceClaim],
        by_place: &[Vec<usize>],
        answers: &[(Vec<Found>, Result<(), Failure>)],
        write: WriteId,
    ) {
        for (place, (indices, (found, _))) in by_place.iter().zip(answers).enumerate() {
            let operations: Vec<TxnOp> = indices
                .iter()
                .zip(found)
                .filter(|(index, found)| {
                    matches!(found, Found::Created | Found::Ours)
                        && claims[**index].request.is_none()
                })
                .map(|(&index, _)| {
                    let claim = claims[index];
                    let key = self.keys.nonce(&claim.certificate_id);
                    TxnOp::txn(
                        Txn::new()
                            .when([Compare::value(
                                key.clone(),
                                CompareOp::Equal,
                                self.nonce_value(claim, write),
                            )])
                            .and_then([TxnOp::delete(key, None)]),
                    )
                })
                .collect();
            for chunk in operations.chunks(self.options.claims_per_txn()) {
                let txn = Txn::new().and_then(chunk.to_vec());
                // Safe to send again: a key deleted by the first attempt no longer holds
                // this write's value.
                let released = self
                    .call_on(&self.nonce_clients[place], |mut client| {
                        let txn = txn.clone();
                        async move { client.txn(txn).await }
                    })
                    .await;
                if released.is_err() {
                    Counters::bump(&self.stats.release_failures);
                }
            }
        }
    }
}

impl Shared {
    /// Expires on the clock every `expiry_interval`, as the embedded store's committer does,
    /// so that the live count and the horizon move without the server's help.
    pub(crate) async fn run_expiry(self: std::sync::Arc<Self>) {
        let mut ticks = tokio::time::interval(self.options.expiry_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.nonces
                .expire(self.clock.now(), self.options.bucket_seconds);
        }
    }
}

/// The outcome of each nested transaction, in order.
fn read_answer(
    answer: &TxnResponse,
    expected: usize,
    write: WriteId,
) -> Result<Vec<Found>, Failure> {
    let inconsistent =
        |what: &str| Failure::Refused(format!("unexpected transaction answer: {what}"));
    let responses = answer.op_responses();
    if responses.len() != expected {
        return Err(inconsistent("wrong number of results"));
    }
    responses
        .iter()
        .map(|response| {
            let TxnOpResponse::Txn(nested) = response else {
                return Err(inconsistent("not a nested transaction"));
            };
            if nested.succeeded() {
                return Ok(Found::Created);
            }
            let held = nested.op_responses();
            let Some(TxnOpResponse::Get(get)) = held.first() else {
                return Err(inconsistent("no read of the existing key"));
            };
            let kv = get
                .kvs()
                .first()
                .ok_or_else(|| inconsistent("the existing key is missing"))?;
            Ok(match NonceValue::decode(kv.value()) {
                Some(value) if value.write == write => Found::Ours,
                Some(value) => Found::Held(value.request),
                None => Found::Held(None),
            })
        })
        .collect()
}

impl NonceStore for EtcdStore {
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error> {
        let shared = &*self.shared;
        let capacity = shared.options.max_live_nonces;
        if shared
            .nonces
            .live
            .load(Ordering::Relaxed)
            .saturating_add(claims.len())
            > capacity
        {
            return Err(Error::NonceCapacity { capacity });
        }
        let history_begins = shared.nonces.history_begins.load(Ordering::SeqCst);
        let horizon = shared.nonces.horizon.load(Ordering::SeqCst);
        // Decided here: the history rule and the horizon (never sent), and repeats of a
        // certificate within the batch (sent once: a transaction may not name a key twice).
        let mut outcomes: Vec<Option<NonceOutcome>> = vec![None; claims.len()];
        let mut first: HashMap<CertificateId, usize> = HashMap::new();
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        let mut sent: Vec<usize> = Vec::new();
        for (index, claim) in claims.iter().enumerate() {
            if claim.usable_from < history_begins {
                outcomes[index] = Some(NonceOutcome::BeforeHistory);
            } else if claim.retain_until < horizon {
                outcomes[index] = Some(NonceOutcome::Expired);
            } else if let Some(&earlier) = first.get(&claim.certificate_id) {
                repeats.push((index, earlier));
            } else {
                first.insert(claim.certificate_id, index);
                sent.push(index);
            }
        }
        if !sent.is_empty() {
            let to_send: Vec<&NonceClaim> = sent.iter().map(|&index| &claims[index]).collect();
            let write = shared.nonces.next_write();
            let found = self
                .block_on(shared.claim_all(
                    &to_send,
                    write,
                    Instant::now() + shared.options.call_deadline,
                ))
                .inspect(|_| shared.stats.call_succeeded())
                .inspect_err(|_| shared.stats.call_failed())?;
            // The request key now holding each sent certificate, for its repeats below.
            let mut holders: HashMap<CertificateId, Option<RequestKey>> = HashMap::new();
            for (&index, found) in sent.iter().zip(found) {
                let claim = &claims[index];
                let (outcome, holder) = match found {
                    Found::Created | Found::Ours => {
                        shared.nonces.count_written(
                            (shared.place_of(claim), shared.bucket_of(claim)),
                            claim.retain_until,
                        );
                        (NonceOutcome::Fresh, claim.request)
                    }
                    Found::Held(held) if held.is_some() && held == claim.request => {
                        (NonceOutcome::Repeated, held)
                    }
                    Found::Held(held) => (NonceOutcome::Replayed, held),
                };
                outcomes[index] = Some(outcome);
                holders.insert(claim.certificate_id, holder);
            }
            for (index, earlier) in repeats {
                let claim = &claims[index];
                let holder = holders
                    .get(&claim.certificate_id)
                    .copied()
                    .unwrap_or_else(|| claims[earlier].request);
                outcomes[index] = Some(if holder.is_some() && holder == claim.request {
                    NonceOutcome::Repeated
                } else {
                    NonceOutcome::Replayed
                });
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.ok_or(Error::Store {
                    context: "claim nonces",
                    detail: "a claim was left without an outcome".into(),
                })
            })
            .collect()
    }

    fn history_begins(&self) -> u64 {
        self.shared.nonces.history_begins.load(Ordering::SeqCst)
    }

    fn live_nonces(&self) -> usize {
        self.shared.nonces.live.load(Ordering::Relaxed)
    }

    fn expire(&self, now: u64) -> Result<usize, Error> {
        Ok(self
            .shared
            .nonces
            .expire(now, self.shared.options.bucket_seconds))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cyberid_engine::contract::NOW;
    use cyberid_engine::{ManualClock, PlatformId};

    use super::*;
    use crate::testing::shared_cluster;

    fn claim(n: u8, request: Option<RequestKey>) -> NonceClaim {
        NonceClaim {
            certificate_id: CertificateId::from_bytes([n; 16]),
            usable_from: NOW,
            expires_at: NOW + 200,
            retain_until: NOW + 230,
            request,
        }
    }

    fn soon() -> Instant {
        Instant::now() + std::time::Duration::from_secs(5)
    }

    /// A transaction sent again after its answer was lost finds the keys its first attempt
    /// created and answers them `Fresh`; another batch's write finds them `Replayed`.
    #[test]
    fn a_resent_transaction_recognises_its_own_keys() {
        let store = EtcdStore::connect(
            shared_cluster().options("resend"),
            Arc::new(ManualClock::new(NOW)),
        )
        .unwrap();
        let shared = &*store.shared;
        let shop: PlatformId = "shop.example".parse().unwrap();
        let key = Some(RequestKey::derive(&shop, b"order-1"));
        let claims = [claim(1, None), claim(2, key)];
        let claims: Vec<&NonceClaim> = claims.iter().collect();
        let write = shared.nonces.next_write();
        let first = store
            .block_on(shared.claim_all(&claims, write, soon()))
            .unwrap();
        assert_eq!(first, [Found::Created, Found::Created]);
        let again = store
            .block_on(shared.claim_all(&claims, write, soon()))
            .unwrap();
        assert_eq!(again, [Found::Ours, Found::Ours], "the same write, resent");
        let other = store
            .block_on(shared.claim_all(&claims, shared.nonces.next_write(), soon()))
            .unwrap();
        assert_eq!(other, [Found::Held(None), Found::Held(key)]);
    }

    /// One lease per bucket while it covers the claims' retention by half the margin; a claim
    /// retained longer gets a lease of its own; etcd holds each key on its bucket's lease with
    /// the TTL the deadline asks for.
    #[test]
    fn one_lease_per_bucket_covers_retention_plus_margin() {
        let store = EtcdStore::connect(
            shared_cluster().options(&crate::testing::unique_name("leases")),
            Arc::new(ManualClock::new(NOW)),
        )
        .unwrap();
        let at = |n: u8, expires_at: u64, retain: u64| NonceClaim {
            expires_at,
            retain_until: expires_at + retain,
            ..claim(n, None)
        };
        let bucket_end = (NOW + 200) / 60 * 60 + 60;
        store
            .consume_batch(&[at(1, NOW + 200, 30), at(2, NOW + 201, 30)])
            .unwrap();
        assert_eq!(store.stats().leases_granted, 1, "one bucket, one lease");
        store.consume(at(3, NOW + 202, 30)).unwrap();
        assert_eq!(store.stats().leases_granted, 1, "reused");
        store.consume(at(4, NOW + 203, 400)).unwrap();
        assert_eq!(
            store.stats().leases_granted,
            2,
            "retained past the lease's cover"
        );
        store.consume(at(5, NOW + 500, 30)).unwrap();
        assert_eq!(store.stats().leases_granted, 3, "another bucket");

        let shared = &*store.shared;
        let ttl_of = |n: u8| {
            let key = shared.keys.nonce(&CertificateId::from_bytes([n; 16]));
            store.block_on(async {
                let mut client = shared.client.clone();
                let lease = client.get(key, None).await.unwrap().kvs()[0].lease();
                client
                    .lease_time_to_live(lease, None)
                    .await
                    .unwrap()
                    .granted_ttl()
            })
        };
        let margin = shared.options.lease_margin;
        // The batch's latest retention (NOW + 231) is past the bucket's end (NOW + 220).
        assert_eq!(bucket_end, NOW + 220);
        assert_eq!(ttl_of(1), (NOW + 201 + 30 + margin - NOW) as i64);
        assert_eq!(ttl_of(3), ttl_of(1));
        assert_eq!(ttl_of(4), (NOW + 203 + 400 + margin - NOW) as i64);
    }

    #[test]
    fn expiry_forgets_buckets_by_their_time_and_retention() {
        let nonces = Nonces::new().unwrap();
        nonces.count_written((0, 1), 130); // bucket 1 of width 60: [60, 120)
        nonces.count_written((1, 2), 160);
        assert_eq!(nonces.expire(130, 60), 0, "retention runs to 130 inclusive");
        assert_eq!(nonces.expire(131, 60), 1);
        assert_eq!(nonces.live.load(Ordering::Relaxed), 1);
        assert_eq!(nonces.expire(181, 60), 1);
        assert_eq!(nonces.live.load(Ordering::Relaxed), 0);
    }
}
