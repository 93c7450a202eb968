//! Which store a node keeps its state in, behind one trait, so that the rest of the server
//! (the pipeline, the admin routes, readiness, metrics) never names a storage engine.

use std::path::Path;
use std::sync::Arc;

use cyberid_engine::{Clock, Error, NonceStore, Observer, RevocationSet};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};

/// What a node needs of its store: both halves of the state, and whether it can serve.
pub(crate) trait NodeStore: NonceStore + RevocationSet + std::fmt::Debug {
    /// A stable code saying why the store cannot serve now, if it cannot; `/readyz` reports it.
    fn not_ready(&self) -> Option<&'static str>;
}

impl NodeStore for DurableStore {
    fn not_ready(&self) -> Option<&'static str> {
        self.poisoned().map(|_| "store_poisoned")
    }
}

/// Opens the embedded store in the data directory.
pub(crate) fn open_embedded(
    path: &Path,
    options: StoreOptions,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn Observer>,
) -> Result<Arc<dyn NodeStore>, Error> {
    let store = DurableStore::open(path, options, clock)?;
    store.set_observer(observer);
    Ok(Arc::new(store))
}
