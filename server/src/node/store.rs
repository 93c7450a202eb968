//! Which store a node keeps its state in, behind one trait, so that the rest of the server
//! (the pipeline, the admin routes, readiness, metrics) never names a storage engine.
//!
//! - `rocksdb` (the default): [`DurableStore`], embedded in the data directory. One node.
//! - `etcd://...`: [`EtcdStore`], an etcd cluster shared by every node of a deployment, so any
//!   node can answer any certificate and it is still valid once.

use std::sync::Arc;

use cyberid_engine::{Clock, Error, NonceStore, RevocationSet};
use cyberid_store_etcd::{EtcdStats, EtcdStore};
use cyberid_store_rocksdb::DurableStore;

use super::metrics::Metrics;
use crate::ServeConfig;
use crate::datadir::DataDir;

/// What a node needs of its store: both halves of the state, and whether it can serve.
pub(crate) trait NodeStore: NonceStore + RevocationSet + std::fmt::Debug {
    /// A stable code saying why the store cannot serve now, if it cannot; `/readyz` reports it.
    fn not_ready(&self) -> Option<&'static str>;

    /// The etcd store's counters, for `/metrics`; `None` for other stores.
    fn etcd_stats(&self) -> Option<EtcdStats> {
        None
    }
}

impl NodeStore for DurableStore {
    fn not_ready(&self) -> Option<&'static str> {
        self.poisoned().map(|_| "store_poisoned")
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
