//! The revocation set: the cluster holds the truth (state keys, an ordered log, a sequence
//! counter); every node holds the whole set in memory for lookups, fed by a watch on the log,
//! and proves its copy current with a linearizable read several times a second.
//!
//! # Order
//!
//! A write compares the counter `<p>/r/seq` (on its mod revision) and, in the same
//! transaction, advances it and appends its records to the log under the next sequence
//! numbers: writers from every node are totally ordered, and a writer that lost the race reads
//! the new state and checks its batch again (a Web Number revoked meanwhile stays revoked).
//!
//! A node applies log entries strictly in sequence order, whoever delivers them: the watch,
//! its own writes, or a catch-up read of the log. So its maps are always exactly the cluster's
//! state at some sequence number, and "current" means that number is the cluster's latest.
//!
//! # Freshness
//!
//! Every `freshness_interval` a background task reads the counter linearizably (sending the
//! read at `t`); once the node has applied up to the value read (catching up from the log if
//! the watch is behind), every revocation acknowledged before `t` is in its maps, and `t`
//! becomes the last proof. `check_current` fails while the last proof is older than
//! `max_staleness`: a node cut off from its cluster stops answering `valid` within that time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use cyberid_engine::{
    CertificateId, Error, KeyId, RevocationCounts, RevocationMaps, RevocationRecord, RevocationSet,
    Standing, WebNumber,
};
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, GetResponse, Txn, TxnOp, WatchOptions,
};

use crate::calls::{Failure, backoff};
use crate::layout::{LogEntry, WriteId, decode_decimal};
use crate::registry::Guard;
use crate::stats::Counters;
use crate::{EtcdStore, Shared};

/// Most log entries or state keys read in one request.
const PAGE: i64 = 1000;
/// Most times a revocation write reads the state again after losing a race for the counter.
const MAX_CONFLICTS: u32 = 64;

/// This node's copy of the set.
#[derive(Debug)]
pub(crate) struct View {
    /// Replaced whole only by a reload; otherwise changed in place, in sequence order.
    maps: ArcSwap<RevocationMaps>,
    applied: Mutex<Applied>,
    /// When the read behind the last proof was sent, nanoseconds after `epoch` (0: never).
    proof: AtomicU64,
    epoch: Instant,
}

#[derive(Debug, Default, Clone, Copy)]
struct Applied {
    /// The last log entry applied to the maps.
    seq: u64,
    /// The etcd revision the maps are known to reflect; the watch resumes after it.
    revision: i64,
}

/// Entries skipped a sequence number: the log must be read from `expected`.
#[derive(Debug)]
struct Gap;

impl View {
    pub(crate) fn new() -> Self {
        Self {
            maps: ArcSwap::from_pointee(RevocationMaps::default()),
            applied: Mutex::new(Applied::default()),
            proof: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn applied(&self) -> MutexGuard<'_, Applied> {
        // Two numbers, each written in one step: a panic elsewhere leaves them meaningful.
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn applied_seq(&self) -> u64 {
        self.applied().seq
    }

    /// Applies entries in sequence order, skipping those already applied.
    fn apply(&self, entries: &[(u64, RevocationRecord)], revision: i64) -> Result<(), Gap> {
        let mut applied = self.applied();
        let maps = self.maps.load();
        for (seq, record) in entries {
            if *seq <= applied.seq {
                continue;
            }
            if *seq != applied.seq + 1 {
                return Err(Gap);
            }
            maps.apply(&record.change);
            applied.seq = *seq;
        }
        applied.revision = applied.revision.max(revision);
        Ok(())
    }

    /// Records that everything acknowledged before `sent` is applied.
    fn proved(&self, sent: Instant) {
        let nanos = sent.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.proof.fetch_max(nanos.max(1), Ordering::SeqCst);
    }

    /// How long ago the read behind the last proof was sent (`None`: never proved).
    pub(crate) fn proof_age(&self) -> Option<Duration> {
        match self.proof.load(Ordering::SeqCst) {
            0 => None,
            nanos => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(nanos)),
            ),
        }
    }
}

impl Shared {
    /// The counter: the cluster's last sequence number and the counter key's mod revision
    /// (0 when no revocation was ever written), read linearizably.
    async fn read_seq(&self) -> Result<(u64, i64, i64), Failure> {
        let key = self.keys.seq.clone();
        let answer = self
            .call(|mut client| {
                let key = key.clone();
                async move { client.get(key, None).await }
            })
            .await?;
        let revision = answer.header().map_or(0, |header| header.revision());
        match answer.kvs().first() {
            None => Ok((0, 0, revision)),
            Some(kv) => Ok((
                decode_decimal(&self.keys.seq, kv.value())
                    .map_err(|error| Failure::Refused(error.to_string()))?,
                kv.mod_revision(),
                revision,
            )),
        }
    }

    fn decode_log(&self, answer: &GetResponse) -> Result<Vec<(u64, LogEntry)>, Error> {
        answer
            .kvs()
            .iter()
            .map(|kv| {
                let seq = self.keys.log_seq(kv.key()).ok_or_else(|| {
                    Error::Corrupt("unreadable revocation log key in etcd".into())
                })?;
                Ok((seq, LogEntry::decode(kv.value())?))
            })
            .collect()
    }

    /// Log entries from `from` (inclusive) up to `to` (inclusive), at most one page.
    async fn read_log(&self, from: u64, to: u64) -> Result<Vec<(u64, LogEntry)>, Error> {
        let start = self.keys.log_entry(from);
        let end = match to.checked_add(1) {
            Some(next) => self.keys.log_entry(next).into_bytes(),
            None => self.keys.log_end(),
        };
        let answer = self
            .call(|mut client| {
                let (start, end) = (start.clone(), end.clone());
                async move {
                    let options = GetOptions::new().with_range(end).with_limit(PAGE);
                    client.get(start, Some(options)).await
                }
            })
            .await
            .map_err(|failure| failure.into_error("read revocation log"))?;
        self.decode_log(&answer)
    }

    /// Applies the log up to `target`; reloads the whole set if the log has a gap.
    pub(crate) async fn catch_up(&self, target: u64) -> Result<(), Error> {
        loop {
            let from = self.view.applied_seq() + 1;
            if from > target {
                return Ok(());
            }
            let entries = self.read_log(from, target).await?;
            let entries: Vec<(u64, RevocationRecord)> = entries
                .into_iter()
                .map(|(seq, entry)| (seq, entry.record))
                .collect();
            let complete = entries.first().is_some_and(|(seq, _)| *seq <= from);
            if !complete || self.view.apply(&entries, 0).is_err() {
                // Entries the counter promises are missing from the log: only a full read of
                // the state can make this node current.
                return self.reload().await;
            }
        }
    }

    /// Reads the whole set at one revision and replaces this node's copy with it, unless
    /// the copy is already further along.
    pub(crate) async fn reload(&self) -> Result<(), Error> {
        Counters::bump(&self.stats.reloads);
        let (seq, _, revision) = self
            .read_seq()
            .await
            .map_err(|failure| failure.into_error("load revocations"))?;
        let maps = RevocationMaps::default();
        let end = self.keys.state_end();
        let mut start = self.keys.state.clone().into_bytes();
        loop {
            let answer = self
                .call(|mut client| {
                    let (start, end) = (start.clone(), end.clone());
                    async move {
                        let options = GetOptions::new()
                            .with_range(end)
                            .with_revision(revision)
                            .with_limit(PAGE);
                        client.get(start, Some(options)).await
                    }
                })
                .await
                .map_err(|failure| failure.into_error("load revocations"))?;
            for kv in answer.kvs() {
                self.keys.load_state(&maps, kv.key(), kv.value())?;
            }
            match answer.kvs().last() {
                Some(last) if answer.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        let mut applied = self.view.applied();
        if seq >= applied.seq {
            self.view.maps.store(Arc::new(maps));
            *applied = Applied { seq, revision };
        }
        Ok(())
    }

    /// One freshness proof: read the counter, catch up to it, and record the time the read
    /// was sent.
    pub(crate) async fn prove_current(&self) -> Result<(), Error> {
        let sent = Instant::now();
        let (seq, _, revision) = self
            .read_seq()
            .await
            .map_err(|failure| failure.into_error("prove revocations current"))?;
        self.stats.revision.store(revision, Ordering::Relaxed);
        self.stats.revocation_lag.store(
            seq.saturating_sub(self.view.applied_seq()),
            Ordering::Relaxed,
        );
        self.catch_up(seq).await?;
        if self.view.applied_seq() >= seq {
            self.view.proved(sent);
        }
        Ok(())
    }

    /// Proves the view current every `freshness_interval`, each proof in its own task so
    /// that one request stuck on a paused member does not hold up the next.
    pub(crate) async fn run_prover(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.options.freshness_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let shared = self.clone();
            let limit = self.options.max_staleness;
            tokio::spawn(async move {
                // A proof slower than the staleness bound is worthless; a failed one is
                // simply not recorded, and `check_current` notices.
                let _ = tokio::time::timeout(limit, shared.prove_current()).await;
            });
        }
    }

    /// Follows the log from the last applied revision; after a compaction made that
    /// revision unreadable, reloads the whole set and follows on from there.
    pub(crate) async fn run_watch(self: Arc<Self>) {
        let mut pause = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            let ended = self.watch_once().await;
            if matches!(ended, WatchEnd::Compacted) {
                let _ = self.reload().await;
            }
            if started.elapsed() > Duration::from_secs(5) {
                pause = Duration::from_millis(50);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    async fn watch_once(&self) -> WatchEnd {
        let start = self.view.applied().revision + 1;
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let key = self.keys.log.clone();
        let opened = self
            .attempt(self.options.request_timeout, async {
                self.client.clone().watch(key, Some(options)).await
            })
            .await;
        let Ok(mut stream) = opened else {
            return WatchEnd::Failed;
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) | Err(_) => return WatchEnd::Failed,
            };
            if response.compact_revision() > 0 {
                return WatchEnd::Compacted;
            }
            if response.canceled() {
                return WatchEnd::Failed;
            }
            let mut entries = Vec::new();
            let mut revision = 0;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                revision = revision.max(kv.mod_revision());
                if event.event_type() != EventType::Put {
                    continue;
                }
                let (Some(seq), Ok(entry)) =
                    (self.keys.log_seq(kv.key()), LogEntry::decode(kv.value()))
                else {
                    continue;
                };
                entries.push((seq, entry.record));
            }
            if entries.is_empty() {
                continue;
            }
            if self.view.apply(&entries, revision).is_err() {
                // An entry the watch did not deliver: read it from the log.
                let last = entries.last().map_or(0, |(seq, _)| *seq);
                if self.catch_up(last).await.is_err() {
                    return WatchEnd::Failed;
                }
                let _ = self.view.apply(&entries, revision);
            }
        }
    }

    /// Writes `records` after the cluster's last sequence number, all or none, and applies
    /// them to this node's maps before returning.
    async fn write_revocations(&self, records: &[RevocationRecord]) -> Result<u64, Error> {
        match self.write_guarded(records, None).await? {
            Ok(seq) => Ok(seq),
            // Only a guard can fail its condition.
            Err(Race) => Err(Error::Store {
                context: "write revocations",
                detail: "an unguarded write lost a guard's race".into(),
            }),
        }
    }

    /// [`write_revocations`](Self::write_revocations), in the same transaction as a guarded
    /// write (an enrollment): both or neither, and [`Race`] without writing anything when the
    /// guard's condition no longer holds.
    pub(crate) async fn write_guarded(
        &self,
        records: &[RevocationRecord],
        guard: Option<&Guard>,
    ) -> Result<Result<u64, Race>, Error> {
        let write = self.nonces.next_write();
        // Sequence numbers an earlier attempt may have taken if its answer was lost.
        let mut unanswered: Vec<u64> = Vec::new();
        for _ in 0..MAX_CONFLICTS {
            let (seq, seq_revision, _) = self
                .read_seq()
                .await
                .map_err(|failure| failure.into_error("read revocation counter"))?;
            self.catch_up(seq).await?;
            for &base in &unanswered {
                let recognised = match guard {
                    // A guarded write recognises its own by the value it put, unique per
                    // attempt (a sealed record's fresh nonce).
                    Some(guard) => guard.written(self).await?,
                    None => {
                        seq >= base + records.len() as u64
                            && self
                                .read_log(base + 1, base + 1)
                                .await?
                                .first()
                                .is_some_and(|(_, entry)| entry.written_by(write))
                    }
                };
                if recognised {
                    self.catch_up(base + records.len() as u64).await?;
                    return Ok(Ok(base + records.len() as u64));
                }
            }
            if let Some(guard) = guard
                && !guard.holds(self).await?
            {
                return Ok(Err(Race));
            }
            // Checked against the state at `seq`; the compare below makes sure it still is.
            self.view.maps.load().check_batch(records)?;
            if records.is_empty() && guard.is_none() {
                return Ok(Ok(seq));
            }
            let (mut compares, mut operations) =
                self.revocation_txn(records, seq, seq_revision, write)?;
            if let Some(guard) = guard {
                compares.extend(guard.compares());
                operations.extend(guard.operations());
                if operations.len() > self.options.max_txn_ops {
                    return Err(Error::Config(
                        "too many operations in one etcd transaction (max_txn_ops)",
                    ));
                }
            }
            let txn = Txn::new().when(compares).and_then(operations);
            match self
                .attempt(self.options.request_timeout, self.client.clone().txn(txn))
                .await
            {
                Ok(answer) if answer.succeeded() => {
                    let entries: Vec<(u64, RevocationRecord)> =
                        (seq + 1..).zip(records.iter().cloned()).collect();
                    let revision = answer.header().map_or(0, |header| header.revision());
                    if self.view.apply(&entries, revision).is_err() {
                        self.catch_up(seq + records.len() as u64).await?;
                    }
                    return Ok(Ok(seq + records.len() as u64));
                }
                Ok(_) => Counters::bump(&self.stats.revocation_conflicts),
                Err(Failure::Unanswered(_)) => {
                    Counters::bump(&self.stats.retries);
                    unanswered.push(seq);
                    if unanswered.len() >= self.options.attempts as usize {
                        return Err(Error::Store {
                            context: "write revocations",
                            detail: format!(
                                "no definite answer from etcd after {} attempts",
                                unanswered.len()
                            ),
                        });
                    }
                    tokio::time::sleep(backoff(unanswered.len() as u32)).await;
                }
                Err(failure) => return Err(failure.into_error("write revocations")),
            }
        }
        Err(Error::Store {
            context: "write revocations",
            detail: format!("lost the race for the sequence counter {MAX_CONFLICTS} times"),
        })
    }

    /// The comparisons and operations that append `records` after `seq`.
    fn revocation_txn(
        &self,
        records: &[RevocationRecord],
        seq: u64,
        seq_revision: i64,
        write: WriteId,
    ) -> Result<(Vec<Compare>, Vec<TxnOp>), Error> {
        let last = seq + records.len() as u64;
        // A key may appear once per transaction: each state key gets the last change to it.
        let mut state: Vec<(String, Option<&'static str>)> = Vec::new();
        for record in records {
            let Some((key, value)) = self.keys.state_op(&record.change) else {
                continue;
            };
            match state.iter_mut().find(|(held, _)| *held == key) {
                Some(slot) => slot.1 = value,
                None => state.push((key, value)),
            }
        }
        let operations = 1 + records.len() + state.len();
        if operations > self.options.max_txn_ops {
            return Err(Error::Config(
                "too many revocations in one batch for one etcd transaction (max_txn_ops)",
            ));
        }
        let mut then = Vec::with_capacity(operations);
        then.push(TxnOp::put(self.keys.seq.clone(), last.to_string(), None));
        for (seq, record) in (seq + 1..).zip(records) {
            then.push(TxnOp::put(
                self.keys.log_entry(seq),
                LogEntry::encode(write, record)?,
                None,
            ));
        }
        for (key, value) in state {
            then.push(match value {
                Some(value) => TxnOp::put(key, value, None),
                None => TxnOp::delete(key, None),
            });
        }
        Ok((
            vec![Compare::mod_revision(
                self.keys.seq.clone(),
                CompareOp::Equal,
                seq_revision,
            )],
            then,
        ))
    }
}

/// A guarded write's condition no longer held; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Race;

enum WatchEnd {
    Failed,
    Compacted,
}

impl RevocationSet for EtcdStore {
    fn standing(&self, web_number: &WebNumber) -> Standing {
        self.shared.view.maps.load().standing(web_number)
    }

    fn certificate_revoked(&self, certificate_id: &CertificateId) -> bool {
        self.shared
            .view
            .maps
            .load()
            .certificate_revoked(certificate_id)
    }

    fn key_revoked(&self, key_id: &KeyId) -> bool {
        self.shared.view.maps.load().key_revoked(key_id)
    }

    fn apply_batch(&self, records: &[RevocationRecord]) -> Result<u64, Error> {
        // Bad text is refused before anything is asked of the cluster.
        for record in records {
            record.validate()?;
        }
        let stats = &self.shared.stats;
        self.block_on(self.shared.write_revocations(records))
            .inspect(|_| stats.call_succeeded())
            .inspect_err(|error| {
                if !error.is_caller_fault() {
                    stats.call_failed();
                }
            })
    }

    fn history(&self, after: u64, limit: usize) -> Result<Vec<(u64, RevocationRecord)>, Error> {
        let shared = &*self.shared;
        let mut records = Vec::new();
        let mut from = after.saturating_add(1);
        while records.len() < limit && after < u64::MAX {
            let page = self.block_on(shared.read_log(from, u64::MAX))?;
            let Some(&(last, _)) = page.last() else { break };
            let complete = page.len() < PAGE as usize;
            records.extend(
                page.into_iter()
                    .take(limit - records.len())
                    .map(|(seq, entry)| (seq, entry.record)),
            );
            match last.checked_add(1) {
                Some(next) if !complete => from = next,
                _ => break,
            }
        }
        Ok(records)
    }

    fn counts(&self) -> RevocationCounts {
        self.shared.view.maps.load().counts()
    }

    fn check_current(&self) -> Result<(), Error> {
        let limit = self.shared.options.max_staleness;
        match self.shared.view.proof_age() {
            Some(age) if age <= limit => Ok(()),
            age => Err(Error::Store {
                context: "revocation view",
                detail: match age {
                    Some(age) => format!(
                        "not proven current for {} ms (limit {} ms): the etcd cluster does not \
                         answer",
                        age.as_millis(),
                        limit.as_millis()
                    ),
                    None => "never proven current".into(),
                },
            }),
        }
    }
}
