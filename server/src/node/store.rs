//! Which store a node keeps its state in, behind one trait, so that the rest of the server
//! (the pipeline, the admin routes, readiness, metrics) never names a storage engine.
//!
//! - `rocksdb` (the default): [`DurableStore`], embedded in the data directory. One node.
//! - `etcd://...`: [`EtcdStore`], an etcd cluster shared by every node of a deployment, so any
//!   node can answer any certificate and it is still valid once.

use std::sync::Arc;

use cyberid_engine::{Clock, Error, NonceStore, RevocationSet};
use cyberid_identity::IdentityStore;
use cyberid_store_etcd::{EtcdStats, EtcdStore};
use cyberid_store_rocksdb::DurableStore;
use cyberid_translog::LogStore;

use super::metrics::Metrics;
use crate::{Error as ServerError, ServeConfig};
use cyberid_datadir::DataDir;

/// What a node needs of its store: both halves of the state, and whether it can serve.
pub(crate) trait NodeStore: NonceStore + RevocationSet + std::fmt::Debug {
    /// A stable code saying why the store cannot serve now, if it cannot; `/readyz` reports it.
    fn not_ready(&self) -> Option<&'static str>;

    /// The etcd store's counters, for `/metrics`; `None` for other stores.
    fn etcd_stats(&self) -> Option<EtcdStats> {
        None
    }

    /// The registry of enrollments, where this store keeps one.
    fn identity(self: Arc<Self>) -> Option<Arc<dyn IdentityStore>> {
        None
    }

    /// The authentication log, where this store keeps one ([`NonceStore::keeps_log`]).
    fn log(self: Arc<Self>) -> Option<Arc<dyn LogStore>> {
        None
    }
}

impl NodeStore for DurableStore {
    fn not_ready(&self) -> Option<&'static str> {
        self.poisoned().map(|_| "store_poisoned")
    }

    fn identity(self: Arc<Self>) -> Option<Arc<dyn IdentityStore>> {
        Some(self)
    }

    fn log(self: Arc<Self>) -> Option<Arc<dyn LogStore>> {
        Some(self)
    }
}

impl NodeStore for EtcdStore {
    /// A node that cannot prove its revocation view current answers no `valid` (the verifier
    /// checks the same before every batch); a load balancer should send its traffic elsewhere.
    fn not_ready(&self) -> Option<&'static str> {
        self.check_current().err().map(|_| "store_unreachable")
    }

    fn etcd_stats(&self) -> Option<EtcdStats> {
        Some(self.stats())
    }

    fn identity(self: Arc<Self>) -> Option<Arc<dyn IdentityStore>> {
        Some(self)
    }
}

/// Creates the embedded store of `dir` with its history beginning at `history_begins` (see
/// `StoreOptions::history_begins`); returns the start recorded. Refuses if a store exists: its
/// history stays as recorded.
pub fn create_store(dir: &DataDir, history_begins: u64) -> Result<u64, ServerError> {
    use cyberid_engine::SystemClock;
    use cyberid_store_rocksdb::StoreOptions;
    if dir.store_path().exists() {
        return Err(ServerError::Exists(format!(
            "{} already holds a store, whose history stays as recorded",
            dir.store_path().display()
        )));
    }
    let options = StoreOptions {
        history_begins: Some(history_begins),
        ..StoreOptions::default()
    };
    let store = DurableStore::open(&dir.store_path(), options, Arc::new(SystemClock))?;
    Ok(store.history_begins())
}

/// Opens the store the configuration names. Blocking (the etcd store connects to its cluster
/// and loads the revocation set): call it off the async workers.
pub(crate) fn open(
    config: &ServeConfig,
    dir: &DataDir,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn NodeStore>, Error> {
    // The configuration was validated when the server started, so this cannot fail here.
    match config
        .etcd()
        .map_err(|_| Error::Config("invalid store setting"))?
    {
        Some(options) => {
            let store = EtcdStore::connect(options, clock)?;
            store.set_observer(metrics);
            Ok(Arc::new(store))
        }
        None => {
            let store = DurableStore::open(&dir.store_path(), config.store(), clock)?;
            store.set_observer(metrics);
            Ok(Arc::new(store))
        }
    }
}
