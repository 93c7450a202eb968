//! The server's shared state: configuration, credentials, keys, and the engine once its store
//! is open.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};
use cyberid_engine::{Clock, Issuer, KeyId, KeyRegistry, Pipeline, SystemClock, Verifier};

mod log;
mod metrics;
pub(crate) mod store;

pub(crate) use self::log::{LogService, Lookup, PAGE_LIMIT, ProvenEntry};
use self::metrics::{Metrics, Sizes};
use self::store::NodeStore;
use crate::auth::Credentials;
use crate::{Error, ServeConfig};
use cyberid_datadir::{DataDir, IdentityKeys, LoadedKey};
use cyberid_identity::{IdentityService, ServiceConfig, SubjectKey};

/// The engine of a node whose store is open. Field order is drop order: the pipeline answers
/// what it queued before the store closes.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) pipeline: Pipeline,
    /// Enrollment and holder-bound issuance, where the store keeps enrollments.
    pub(crate) identity: Option<Arc<IdentityService>>,
    /// The authentication log, when it is on.
    pub(crate) log: Option<LogService>,
    pub(crate) store: Arc<dyn NodeStore>,
}

/// Whether the node serves verifications, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    StoreOpening,
    StoreFailed,
    /// The store is open but cannot serve; the code says why (`store_poisoned`, ...).
    StoreNotReady(&'static str),
    ShuttingDown,
}

impl Readiness {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::StoreOpening => "store_opening",
            Readiness::StoreFailed => "store_failed",
            Readiness::StoreNotReady(code) => code,
            Readiness::ShuttingDown => "shutting_down",
        }
    }
}

pub(crate) struct App {
    pub(crate) config: ServeConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) dir: DataDir,
    credentials: ArcSwap<Credentials>,
    keys: Arc<KeyRegistry>,
    /// Taken when the store opens, into the identity service.
    identity_keys: std::sync::Mutex<Option<IdentityKeys>>,
    /// The pairwise subjects' key: every valid answer to a platform not entitled to Web
    /// Numbers names the holder with it.
    pub(crate) subject_key: SubjectKey,
    issuer: ArcSwapOption<Issuer>,
    engine: ArcSwapOption<Engine>,
    store_failure: OnceLock<cyberid_engine::Error>,
    shutting_down: AtomicBool,
    pub(crate) connections: AtomicUsize,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("data_dir", &self.dir.root())
            .field("readiness", &self.readiness())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Reads keys and credentials from the data directory; the store opens separately
    /// ([`App::open_store`]) because it can take seconds.
    pub(crate) fn new(config: ServeConfig, dir: DataDir) -> Result<Self, Error> {
        let identity_keys = dir.identity_keys()?;
        let app = Self {
            credentials: ArcSwap::from_pointee(Credentials::load(&dir, config.rate_limit)?),
            keys: Arc::new(KeyRegistry::new()),
            subject_key: identity_keys.subject.clone(),
            identity_keys: std::sync::Mutex::new(Some(identity_keys)),
            issuer: ArcSwapOption::empty(),
            engine: ArcSwapOption::empty(),
            store_failure: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            metrics: Metrics::new(config.store != "rocksdb"),
            clock: Arc::new(SystemClock),
            config,
            dir,
        };
        app.reload_keys()?;
        Ok(app)
    }

    /// Opens the store and starts the pipeline. Blocking: run it off the async workers.
    pub(crate) fn open_store(&self) -> Result<(), cyberid_engine::Error> {
        let result = (|| -> Result<Engine, cyberid_engine::Error> {
            let store = store::open(
                &self.config,
                &self.dir,
                self.clock.clone(),
                self.metrics.clone(),
            )?;
            let log = if self.config.auth_log {
                let Some(log) = store.clone().log().filter(|_| store.keeps_log()) else {
                    return Err(cyberid_engine::Error::Config(
                        "this store keeps no authentication log: run with --auth-log false",
                    ));
                };
                let key = self
                    .dir
                    .log_key()
                    .map_err(|error| cyberid_engine::Error::Store {
                        context: "read the log key",
                        detail: error.to_string(),
                    })?;
                Some(LogService::start(log, key, self.clock.clone())?)
            } else {
                None
            };
            let verifier = Arc::new(Verifier::new(
                self.keys.clone(),
                store.clone(),
                store.clone(),
                self.config.verifier(),
            ));
            let pipeline = Pipeline::start_observed(
                verifier,
                self.config.pipeline(),
                Some(self.metrics.clone()),
            )?;
            let keys = self
                .identity_keys
                .lock()
                .map_err(|_| cyberid_engine::Error::Poisoned)?
                .take();
            let identity = match (store.clone().identity(), keys) {
                (Some(registry), Some(keys)) => Some(Arc::new(IdentityService::new(
                    registry,
                    store.clone(),
                    Arc::new(keys.vault),
                    keys.index,
                    ServiceConfig::default(),
                ))),
                _ => None,
            };
            Ok(Engine {
                pipeline,
                identity,
                log,
                store,
            })
        })();
        match result {
            Ok(engine) => {
                self.engine.store(Some(Arc::new(engine)));
                Ok(())
            }
            Err(error) => {
                let _ = self.store_failure.set(error.clone());
                Err(error)
            }
        }
    }

    pub(crate) fn opened_engine(&self) -> Option<Arc<Engine>> {
        if self.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        self.engine.load_full()
    }

    /// Takes the engine out for shutdown: requests still in flight keep their reference, and
    /// the engine closes when the last one finishes.
    pub(crate) fn take_engine(&self) -> Option<Arc<Engine>> {
        self.shutting_down.store(true, Ordering::Release);
        self.engine.swap(None)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub(crate) fn readiness(&self) -> Readiness {
        if self.shutting_down.load(Ordering::Acquire) {
            return Readiness::ShuttingDown;
        }
        match self.engine.load().as_ref() {
            Some(engine) => engine
                .store
                .not_ready()
                .map_or(Readiness::Ready, Readiness::StoreNotReady),
            None if self.store_failure.get().is_some() => Readiness::StoreFailed,
            None => Readiness::StoreOpening,
        }
    }

    pub(crate) fn credentials(&self) -> arc_swap::Guard<Arc<Credentials>> {
        self.credentials.load()
    }

    pub(crate) fn issuer(&self) -> Option<Arc<Issuer>> {
        self.issuer.load_full()
    }

    /// Whether this node trusts an issuer key with this id (active or retired).
    pub(crate) fn key_registered(&self, key_id: &KeyId) -> bool {
        self.keys.get(key_id).is_some()
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Re-reads `credentials.toml`. On error the credentials in force stay.
    pub(crate) fn reload_credentials(&self) -> Result<(), Error> {
        let credentials = Credentials::load(&self.dir, self.config.rate_limit)?;
        self.credentials.store(Arc::new(credentials));
        Ok(())
    }

    /// Brings the key registry and the issuing key in line with `keys.toml`. On error nothing
    /// changes.
    pub(crate) fn reload_keys(&self) -> Result<(), Error> {
        let (manifest, loaded) = self.dir.load_keys()?;
        let mut issuing = None;
        for LoadedKey {
            entry,
            public,
            private,
        } in loaded
        {
            if self.keys.get(&entry.id).is_none() {
                self.keys.insert(public)?;
            }
            if let Some(at) = entry.retired_at {
                self.keys.retire(&entry.id, at);
            }
            if manifest.issuing == Some(entry.id) {
                issuing = private;
            }
        }
        for registered in self.keys.list() {
            let id = registered.key.key_id();
            if !manifest.keys.iter().any(|entry| entry.id == id) {
                self.keys.remove(&id);
            }
        }
        let issuer = match issuing {
            Some(key) => Some(Arc::new(Issuer::new(key, self.config.issuer_policy())?)),
            None => None,
        };
        self.issuer.store(issuer);
        Ok(())
    }

    pub(crate) fn render_metrics(&self) -> String {
        let mut sizes = Sizes {
            connections: self.connections.load(Ordering::Relaxed),
            ready: self.readiness() == Readiness::Ready,
            ..Sizes::default()
        };
        if let Some(engine) = self.engine.load().as_ref() {
            let counts = engine.store.counts();
            sizes.queue_depth = engine.pipeline.queued();
            sizes.live_nonces = engine.store.live_nonces();
            sizes.revoked_web_numbers = counts.web_numbers;
            sizes.revoked_certificates = counts.certificates;
            sizes.revoked_keys = counts.keys;
            sizes.etcd = engine.store.etcd_stats();
        }
        self.metrics.render(sizes)
    }
}
