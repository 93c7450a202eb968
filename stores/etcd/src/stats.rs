//! Counters of what the store asked of the cluster, for operators and measurements (a metrics
//! exporter can read them; wiring one is the server's business).

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Requests sent again after no definite answer (timeout, no leader, lost connection).
    pub retries: u64,
    /// `consume_batch` or `apply_batch` calls that failed with a store error.
    pub failed_calls: u64,
    /// Leases granted for expiry buckets.
    pub leases_granted: u64,
    /// Revocation writes that lost a race for the sequence counter and were tried again.
    pub revocation_conflicts: u64,
    /// Times the whole revocation set was read again (at connect, after a compacted watch or
    /// a gap in the log).
    pub reloads: u64,
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
    pub(crate) retries: AtomicU64,
    pub(crate) failed_calls: AtomicU64,
    pub(crate) leases_granted: AtomicU64,
    pub(crate) revocation_conflicts: AtomicU64,
    pub(crate) reloads: AtomicU64,
}

impl Counters {
    pub(crate) fn txn(&self, keys: usize) {
        let keys = keys as u64;
        self.txns.fetch_add(1, Ordering::Relaxed);
        self.keys.fetch_add(keys, Ordering::Relaxed);
        self.max_keys_per_txn.fetch_max(keys, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> EtcdStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        EtcdStats {
            txns: read(&self.txns),
            keys: read(&self.keys),
            max_keys_per_txn: read(&self.max_keys_per_txn),
            retries: read(&self.retries),
            failed_calls: read(&self.failed_calls),
            leases_granted: read(&self.leases_granted),
            revocation_conflicts: read(&self.revocation_conflicts),
            reloads: read(&self.reloads),
        }
    }
}
