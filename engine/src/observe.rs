//! Measurements the engine's threads report, for a server's metrics. The engine keeps no
//! metrics library of its own: whoever runs it implements [`Observer`] over theirs.

use std::time::Duration;

/// Receives measurements from the pipeline and the durable store as they happen. Called on the
/// engine's hot threads, so implementations record and return (an atomic add, not a lock held
/// across I/O). Every method defaults to doing nothing.
pub trait Observer: Send + Sync {
    /// The pipeline checked the signatures of a batch of `size` requests in `took`.
    fn batch_checked(&self, size: usize, took: Duration) {
        let _ = (size, took);
    }

    /// The durable store wrote and synced a batch (a group of nonces or a revocation) in `took`.
    fn store_synced(&self, took: Duration) {
        let _ = took;
    }
}
