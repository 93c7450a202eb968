//! Counters of what the store asked of the cluster, for operators and measurements. The
//! server exports them as Prometheus metrics (`cyberid_etcd_*`); each transaction's latency
//! also goes to the engine's [`Observer`](cyberid_engine::Observer), if one is set.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the store has asked of the cluster since it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct EtcdStats {
    /// Nonce transactions that committed (a retried one counts once).
    pub txns: u64,
    /// Claims carried by those transactions: `keys / txns` is the mean batch per transaction.
    pub keys: u64,
    /// The most claims one transaction carried.
    pub max_keys_per_txn: u64,
    /// Total time of those transactions, from first send to definite answer, microseconds.
    pub txn_micros: u64,
    /// Requests sent again after no definite answer (timeout, no leader, lost connection).
    pub retries: u64,
    /// `consume_batch` or `apply_batch` calls that failed with a store error.
    pub failed_calls: u64,
    /// Stalls: times a call failed after the previous one had succeeded (an election, a
    /// partition, a lost quorum). Each ends at the next call that succeeds.
    pub stalls: u64,
    /// Total length of the ended stalls, microseconds.
    pub stalled_micros: u64,
    /// Whether the last call failed (a stall is under way).
    pub stalled: bool,
    /// Nonce keys created by a batch that then failed elsewhere and that could not be
    /// deleted again (their certificates stay consumed; see `docs/store.md`).
    pub release_failures: u64,
    /// Leases granted for expiry buckets.
    pub leases_granted: u64,
    /// Revocation writes that lost a race for the sequence counter and were tried again.
    pub revocation_conflicts: u64,
    /// Times the whole revocation set was read again (at connect, after a compacted watch or
    /// a gap in the log).
    pub reloads: u64,
    /// Revocations this node's view lacked at its last freshness proof (applied by the proof
    /// itself, not yet by the watch): how far the watch trails the cluster.
    pub revocation_lag: u64,
    /// The cluster's revision at the last freshness proof.
    pub revision: i64,
    /// Time since the read behind the last freshness proof was sent (`None`: never proved).
    /// Over the store's `max_staleness`, the node answers no `valid`.
    pub view_age: Option<Duration>,
}

impl EtcdStats {
    /// Mean claims per nonce transaction.
    pub fn mean_keys_per_txn(&self) -> f64 {
        if self.txns == 0 {
            0.0
        } else {
            self.keys as f64 / self.txns as f64
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    txns: AtomicU64,
    keys: AtomicU64,
    max_keys_per_txn: AtomicU64,
    txn_micros: AtomicU64,
    pub(crate) retries: AtomicU64,
    failed_calls: AtomicU64,
    stalls: AtomicU64,
    stalled_micros: AtomicU64,
    /// When the current stall began.
    stalled_since: Mutex<Option<Instant>>,
    pub(crate) release_failures: AtomicU64,
    pub(crate) leases_granted: AtomicU64,
    pub(crate) revocation_conflicts: AtomicU64,
    pub(crate) reloads: AtomicU64,
    pub(crate) revocation_lag: AtomicU64,
    pub(crate) revision: std::sync::atomic::AtomicI64,
}

impl Counters {
    pub(crate) fn txn(&self, keys: usize, took: Duration) {
        let keys = keys as u64;
        self.txns.fetch_add(1, Ordering::Relaxed);
        self.keys.fetch_add(keys, Ordering::Relaxed);
        self.max_keys_per_txn.fetch_max(keys, Ordering::Relaxed);
        self.txn_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn stall(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // One instant, written in one step: a panic elsewhere leaves it meaningful.
        self.stalled_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call (nonces or revocations) failed with a store error.
    pub(crate) fn call_failed(&self) {
        Self::bump(&self.failed_calls);
        let mut since = self.stall();
        if since.is_none() {
            *since = Some(Instant::now());
            Self::bump(&self.stalls);
        }
    }

    /// A call succeeded: any stall is over.
    pub(crate) fn call_succeeded(&self) {
        let mut since = self.stall();
        if let Some(began) = since.take() {
            self.stalled_micros
                .fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, view_age: Option<Duration>) -> EtcdStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        EtcdStats {
            txns: read(&self.txns),
            keys: read(&self.keys),
            max_keys_per_txn: read(&self.max_keys_per_txn),
            txn_micros: read(&self.txn_micros),
            retries: read(&self.retries),
            failed_calls: read(&self.failed_calls),
            stalls: read(&self.stalls),
            stalled_micros: read(&self.stalled_micros),
            stalled: self.stall().is_some(),
            release_failures: read(&self.release_failures),
            leases_granted: read(&self.leases_granted),
            revocation_conflicts: read(&self.revocation_conflicts),
            reloads: read(&self.reloads),
            revocation_lag: read(&self.revocation_lag),
            revision: self.revision.load(Ordering::Relaxed),
            view_age,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_runs_from_the_first_failure_to_the_next_success() {
        let counters = Counters::default();
        counters.call_succeeded();
        counters.call_failed();
        counters.call_failed();
        let during = counters.snapshot(None);
        assert_eq!(
            (during.failed_calls, during.stalls, during.stalled),
            (2, 1, true)
        );
        std::thread::sleep(Duration::from_millis(5));
        counters.call_succeeded();
        let after = counters.snapshot(None);
        assert_eq!((after.stalls, after.stalled), (1, false));
        assert!(after.stalled_micros >= 5_000, "{after:?}");
        counters.txn(10, Duration::from_micros(300));
        counters.txn(30, Duration::from_micros(100));
        let txns = counters.snapshot(None);
        assert_eq!(
            (txns.txns, txns.keys, txns.max_keys_per_txn, txns.txn_micros),
            (2, 40, 30, 400)
        );
        assert!((txns.mean_keys_per_txn() - 20.0).abs() < 1e-9);
    }
}
