//! The embedded cyberid store: the revocation set and the replay nonces in lock-free memory
//! maps, backed by RocksDB so that nothing acknowledged is lost. One node, one data directory,
//! no services: the default store of `cyberid serve`.
//!
//! [`DurableStore`] implements the engine's [`NonceStore`] and [`RevocationSet`] and the
//! issuing side's `Registry` of enrollments, and passes their shared contract suites. Lookups never touch the disk; every write is synced before it
//! is acknowledged; nonce writes from concurrent callers share one fsync (RocksDB's write group).
//!
//! ```
//! use std::sync::Arc;
//! use cyberid_engine::{
//!     CertificateId, ManualClock, NonceClaim, NonceOutcome, NonceStore, RevocationChange,
//!     RevocationRecord, RevocationSet, Standing,
//! };
//! use cyberid_store_rocksdb::{DurableStore, StoreOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let clock = Arc::new(ManualClock::new(1_790_000_000));
//! let store = DurableStore::open(dir.path(), StoreOptions::default(), clock.clone())?;
//!
//! // A certificate's nonce is consumed once, durably, before the answer.
//! let claim = NonceClaim {
//!     certificate_id: CertificateId::from_bytes([7; 16]),
//!     usable_from: 1_790_000_000,
//!     expires_at: 1_790_000_180,
//!     retain_until: 1_790_000_210,
//!     request: None,
//! };
//! assert_eq!(store.consume(claim)?, NonceOutcome::Fresh);
//!
//! // An authority's revocation is durable and visible before it is acknowledged.
//! let holder = "7K3MQ9XZ2P".parse()?;
//! store.apply(RevocationRecord {
//!     change: RevocationChange::WebNumber { web_number: holder, standing: Standing::Suspended },
//!     reason: "lost device".into(),
//!     authority: "mps".into(),
//!     at: 1_790_000_001,
//! })?;
//!
//! // Both survive a restart.
//! drop(store);
//! let store = DurableStore::open(dir.path(), StoreOptions::default(), clock)?;
//! assert_eq!(store.consume(claim)?, NonceOutcome::Replayed);
//! assert_eq!(store.standing(&holder), Standing::Suspended);
//! # Ok::<(), cyberid_engine::Error>(())
//! ```
//!
//! The guarantees under each fault (crash, power loss, full disk, I/O error, the memory bound)
//! and the test behind each are in `docs/store.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authlog;
mod faults;
mod layout;
mod log_index;
mod nonces;
mod open;
mod options;
mod registry;
mod revocations;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Sender;
use cyberid_engine::{Clock, Error, NonceMap, Observer, RevocationMaps};
use rocksdb::WriteBatch;

pub use layout::STORE_FORMAT_VERSION;
pub use options::StoreOptions;

/// The failpoint names, in path order, for the fault-injection tests; not a stable API.
#[doc(hidden)]
pub use faults::{NONCE_STEPS, REVOCATION_STEPS};

use layout::{Db, HISTORY_BEGINS_KEY, META, store_error};
/// What the callers and the expiry thread share.
struct Inner {
    db: Db,
    path: PathBuf,
    nonces: NonceMap,
    revocations: RevocationMaps,
    /// Serialises revocation writes so the log order, the disk state and the maps agree; holds
    /// the last sequence number written.
    revocation_seq: Mutex<u64>,
    /// Nonce writes hold it shared, expiry exclusively: a bucket's column family is never
    /// dropped while a write into it is being built.
    buckets: RwLock<()>,
    /// Serialises the creation of a bucket's column family.
    creating: Mutex<()>,
    history_begins: AtomicU64,
    /// The authentication log's right edge. Held from taking indexes until the write carrying
    /// those entries is synced, so entries reach the disk in index order.
    log: Mutex<cyberid_translog::Frontier>,
    /// Entries durably in the log (readers never wait for the lock above).
    log_size: AtomicU64,
    /// Entries below this index are past retention.
    log_retained_from: AtomicU64,
    /// The rows of the log's unwritten tail, in memory (`log_index.rs`).
    log_tail: RwLock<log_index::Tail>,
    /// Settled batches' index rows, in index order, to the indexer.
    index_jobs: Sender<log_index::IndexJob>,
    /// The indexer's end, until it starts.
    index_receiver: Mutex<Option<crossbeam_channel::Receiver<log_index::IndexJob>>>,
    /// Set by the first failed write: from then on the store can no longer vouch for what is
    /// durable, so it refuses everything until reopened (RocksDB replays the WAL at open).
    poisoned: OnceLock<String>,
    options: StoreOptions,
    clock: Arc<dyn Clock>,
    observer: OnceLock<Arc<dyn Observer>>,
}

/// The durable revocation set and nonce store on one RocksDB instance. Implements both
/// [`RevocationSet`](cyberid_engine::RevocationSet) and
/// [`NonceStore`](cyberid_engine::NonceStore).
pub struct DurableStore {
    inner: Arc<Inner>,
    /// Dropped to stop the expiry thread.
    stop_expiry: Option<Sender<()>>,
    expiry: Option<JoinHandle<()>>,
    /// Dropped to stop the log indexer, which first writes what is queued.
    stop_indexer: Option<Sender<()>>,
    indexer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field("path", &self.inner.path)
            .field("live_nonces", &self.inner.nonces.len())
            .field("poisoned", &self.inner.poisoned.get())
            .finish_non_exhaustive()
    }
}

impl DurableStore {
    /// Opens the store in `path`, creating it (and the directory) if missing.
    ///
    /// A new store's history begins now: it refuses certificates that could have been used
    /// before. A directory that holds something other than a cyberid store, a store of another
    /// format version, a corrupt store, or one locked by another process is an error; the store
    /// never silently starts afresh.
    pub fn open(path: &Path, options: StoreOptions, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        let inner = Arc::new(open::open(path, options, clock)?);
        let (stop_expiry, expiry) = nonces::start_expiry(&inner)?;
        let (stop_indexer, indexer) = log_index::start(&inner)?;
        Ok(Self {
            inner,
            stop_expiry: Some(stop_expiry),
            expiry: Some(expiry),
            stop_indexer: Some(stop_indexer),
            indexer: Some(indexer),
        })
    }

    /// Declares that this store's history is incomplete from now on (for example after it was
    /// restored from a backup, which lacks every nonce consumed after the backup was taken).
    /// Durable before it returns; certificates that could have been used before now are refused
    /// with `history_unavailable`.
    pub fn reset_history(&self, now: u64) -> Result<(), Error> {
        self.inner.check_poisoned()?;
        let meta = self.inner.cf(META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(&meta, HISTORY_BEGINS_KEY, now.to_be_bytes());
        drop(meta);
        self.inner.write(batch, "reset history")?;
        self.inner.history_begins.fetch_max(now, Ordering::SeqCst);
        Ok(())
    }

    /// Why the store is poisoned, if it is. A poisoned store answers every request with
    /// [`Error::Poisoned`]; readiness checks report this.
    pub fn poisoned(&self) -> Option<&str> {
        self.inner.poisoned.get().map(String::as_str)
    }

    /// Reports every synced write to `observer` from now on. Only the first observer set is kept.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        let _ = self.inner.observer.set(observer);
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Nonce expiry buckets currently held (column families on disk and maps in memory).
    pub fn nonce_buckets(&self) -> Vec<u64> {
        self.inner.nonces.bucket_indexes()
    }
}

impl Inner {
    fn check_poisoned(&self) -> Result<(), Error> {
        match self.poisoned.get() {
            Some(_) => Err(Error::Poisoned),
            None => Ok(()),
        }
    }

    fn poison(&self, context: &str, error: &Error) {
        let _ = self.poisoned.set(format!("{context}: {error}"));
    }

    fn cf(&self, name: &str) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>, Error> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Corrupt(format!("column family {name} is missing")))
    }

    /// Writes and syncs a batch; a failure poisons the store.
    fn write(&self, batch: WriteBatch, context: &'static str) -> Result<(), Error> {
        self.check_poisoned()?;
        let started = Instant::now();
        let written = faults::point("rocksdb::write").and_then(|()| {
            self.db
                .write_opt(batch, &options::synced())
                .map_err(|error| store_error(context, &error))
        });
        if let Err(error) = written {
            self.poison(context, &error);
            return Err(error);
        }
        if let Some(observer) = self.observer.get() {
            observer.store_synced(started.elapsed());
        }
        faults::point("rocksdb::synced")
    }
}

impl Drop for DurableStore {
    fn drop(&mut self) {
        self.stop_expiry.take();
        if let Some(expiry) = self.expiry.take() {
            let _ = expiry.join();
        }
        self.stop_indexer.take();
        if let Some(indexer) = self.indexer.take() {
            let _ = indexer.join();
        }
    }
}

#[cfg(test)]
mod contract {
    use std::sync::Arc;

    use cyberid_engine::ManualClock;
    use cyberid_engine::contract::{NOW, Setup, Subject};

    use crate::{DurableStore, StoreOptions};

    fn durable(setup: Setup) -> Subject<DurableStore> {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_live_nonces: setup.max_live_nonces,
            history_begins: Some(setup.history_begins),
            ..StoreOptions::default()
        };
        let store =
            DurableStore::open(dir.path(), options, Arc::new(ManualClock::new(NOW))).unwrap();
        Subject::new(store, dir)
    }

    cyberid_engine::nonce_store_contract!(durable);
    cyberid_engine::revocation_set_contract!(durable);
    cyberid_identity::registry_contract!(durable);
}
