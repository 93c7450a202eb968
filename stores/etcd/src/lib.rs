//! The clustered cyberid store: many nodes share one replay domain and one revocation set on
//! an etcd cluster, so that a certificate is answered `valid` at most once, ever, whichever
//! node it reaches and whichever etcd member fails.
//!
//! [`EtcdStore`] implements the engine's [`NonceStore`](cyberid_engine::NonceStore) and
//! [`RevocationSet`](cyberid_engine::RevocationSet) and passes their
//! shared contract suite against a real 3-member cluster. A batch of nonces is one etcd
//! transaction of compare-and-create; a revocation is acknowledged once the cluster committed
//! it; every node serves lookups from its own full copy of the revocation set, kept current by
//! a watch and proven current by a linearizable read several times a second.
//!
//! ```
//! use std::sync::Arc;
//! use cyberid_engine::{
//!     CertificateId, NonceClaim, NonceOutcome, NonceStore, RevocationChange, RevocationRecord,
//!     RevocationSet, Standing, SystemClock,
//! };
//! use cyberid_store_etcd::EtcdStore;
//! use cyberid_store_etcd::testing::{Cluster, unique_name};
//!
//! // Three etcd members on loopback (the `testing` feature); a deployment names its own.
//! let cluster = Cluster::start()?;
//! let options = cluster.options(&unique_name("tour"));
//! let node_a = EtcdStore::connect(options.clone(), Arc::new(SystemClock))?;
//! let node_b = EtcdStore::connect(options, Arc::new(SystemClock))?;
//!
//! // A certificate's nonce is consumed once, across every node.
//! let now = node_a.history_begins();
//! let claim = NonceClaim {
//!     certificate_id: CertificateId::from_bytes([7; 16]),
//!     usable_from: now,
//!     expires_at: now + 180,
//!     retain_until: now + 210,
//!     request: None,
//! };
//! assert_eq!(node_a.consume(claim)?, NonceOutcome::Fresh);
//! assert_eq!(node_b.consume(claim)?, NonceOutcome::Replayed);
//!
//! // A revocation acknowledged on one node is checked against the cluster's state by every
//! // other: revoking a Web Number is final everywhere.
//! let holder = "7K3MQ9XZ2P".parse()?;
//! let change = |standing| RevocationRecord {
//!     change: RevocationChange::WebNumber { web_number: holder, standing },
//!     reason: "stolen device".into(),
//!     authority: "mps".into(),
//!     at: now,
//! };
//! node_a.apply(change(Standing::Revoked))?;
//! assert_eq!(node_b.apply(change(Standing::Active)), Err(cyberid_engine::Error::RevocationFinal));
//! assert_eq!(node_b.standing(&holder), Standing::Revoked);
//! node_b.check_current()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The store's methods block on a small tokio runtime of its own: call them from plain threads
//! (the engine's pipeline threads, `spawn_blocking`), never from async code, where tokio
//! refuses to block. The guarantees under each fault, the key layout and what the cluster
//! needs (`--max-txn-ops`, compaction, quotas) are in `docs/store.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod calls;
mod layout;
mod nonces;
mod options;
mod registry;
mod revocations;
mod stats;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use cyberid_engine::{Clock, Error, Observer};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp, TxnOpResponse};

pub use options::EtcdOptions;
pub use stats::EtcdStats;

use crate::layout::{FORMAT, Keys, decode_decimal};
use crate::nonces::Nonces;
use crate::revocations::View;
use crate::stats::Counters;

/// What the callers' threads and the background tasks share.
struct Shared {
    /// The first cluster: the deployment's meta keys, the revocation set, nonce place 0.
    client: Client,
    /// Every nonce cluster by place, the first cluster's client at 0.
    nonce_clients: Vec<Client>,
    options: EtcdOptions,
    keys: Keys,
    clock: Arc<dyn Clock>,
    nonces: Nonces,
    view: View,
    stats: Counters,
    /// Told the latency of every nonce transaction (the server's metrics).
    observer: OnceLock<Arc<dyn Observer>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("options", &self.options)
            .field("nonces", &self.nonces)
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

/// A node's connection to the shared state on an etcd cluster. Implements both
/// [`RevocationSet`](cyberid_engine::RevocationSet) and
/// [`NonceStore`](cyberid_engine::NonceStore).
#[derive(Debug)]
pub struct EtcdStore {
    shared: Arc<Shared>,
    /// Runs the requests the callers block on, the watch and the freshness proofs. Two
    /// workers: the store is one client among the node's threads, not a server. Taken only
    /// by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
}

impl EtcdStore {
    /// Connects to the cluster, reads (or, for a new deployment, writes) the deployment's
    /// format and history start, loads the whole revocation set, and starts following it.
    ///
    /// Fails with a retryable `store` error when the cluster does not answer, `store_format`
    /// when the prefix holds another layout, `store_corrupt` when it holds unreadable keys.
    pub fn connect(options: EtcdOptions, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        options.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cyberid-etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::Store {
                context: "start etcd client runtime",
                detail: e.to_string(),
            })?;
        let connect = |endpoints: &[String]| {
            let settings = ConnectOptions::new()
                .with_connect_timeout(options.request_timeout)
                // HTTP/2 pings find a frozen member (SIGSTOP, a stalled machine) within two
                // seconds, so that the balancer stops sending to it.
                .with_keep_alive(std::time::Duration::from_secs(1), options.request_timeout)
                .with_keep_alive_while_idle(true)
                // A member cut off from its leader refuses at once instead of serving stale
                // answers or holding a watch that will never see a write.
                .with_require_leader(true);
            runtime
                .block_on(Client::connect(endpoints, Some(settings)))
                .map_err(|e| Error::Store {
                    context: "connect to etcd",
                    detail: e.to_string(),
                })
        };
        let client = connect(&options.endpoints)?;
        let mut nonce_clients = vec![client.clone()];
        for endpoints in &options.nonce_clusters {
            nonce_clients.push(connect(endpoints)?);
        }
        let shared = Arc::new(Shared {
            client,
            nonce_clients,
            keys: Keys::new(&options.prefix),
            options,
            clock,
            nonces: Nonces::new()?,
            view: View::new(),
            stats: Counters::default(),
            observer: OnceLock::new(),
        });
        runtime.block_on(async {
            shared.open_deployment().await?;
            shared.check_nonce_clusters().await?;
            shared.reload().await?;
            shared.prove_current().await
        })?;
        runtime.spawn(shared.clone().run_watch());
        runtime.spawn(shared.clone().run_prover());
        runtime.spawn(shared.clone().run_expiry());
        Ok(Self {
            shared,
            runtime: Some(runtime),
        })
    }

    /// Runs `future` to completion on the store's runtime, blocking this thread.
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime is taken only by drop")
            .block_on(future)
    }

    /// What the store asked of the cluster so far.
    pub fn stats(&self) -> EtcdStats {
        self.shared.stats.snapshot(self.shared.view.proof_age())
    }

    /// Reports the latency of every nonce transaction to `observer` from now on (as
    /// [`Observer::store_synced`]: etcd acknowledges after a majority's fsync). Only the first
    /// observer set is kept.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        let _ = self.shared.observer.set(observer);
    }

    /// The options the store runs with.
    pub fn options(&self) -> &EtcdOptions {
        &self.shared.options
    }
}

impl Shared {
    /// Creates the deployment's meta keys if none exist (the first node), else reads them.
    async fn open_deployment(&self) -> Result<(), Error> {
        let history_begins = self
            .options
            .history_begins
            .unwrap_or_else(|| self.clock.now());
        let (format, begins) = (self.keys.format.clone(), self.keys.history_begins.clone());
        let txn = Txn::new()
            .when([
                Compare::create_revision(format.clone(), CompareOp::Equal, 0),
                Compare::create_revision(begins.clone(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(format.clone(), FORMAT, None),
                TxnOp::put(begins.clone(), history_begins.to_string(), None),
            ])
            .or_else([TxnOp::get(format, None), TxnOp::get(begins, None)]);
        // Safe to send again: a second attempt finds what the first created.
        let answer = self
            .call(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await
            .map_err(|failure| failure.into_error("open deployment"))?;
        if answer.succeeded() {
            self.nonces
                .history_begins
                .store(history_begins, Ordering::SeqCst);
            return Ok(());
        }
        let values: Vec<Option<Vec<u8>>> = answer
            .op_responses()
            .into_iter()
            .map(|response| match response {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            .collect();
        let (Some(Some(format)), Some(Some(begins))) = (values.first(), values.get(1)) else {
            return Err(Error::Corrupt(format!(
                "{}/meta is incomplete in etcd",
                self.options.prefix
            )));
        };
        if format.as_slice() != FORMAT.as_bytes() {
            let found = decode_decimal(&self.keys.format, format)?;
            return Err(Error::IncompatibleFormat {
                found,
                supported: 1,
            });
        }
        let begins = decode_decimal(&self.keys.history_begins, begins)?;
        self.nonces.history_begins.store(begins, Ordering::SeqCst);
        Ok(())
    }
}

impl Shared {
    /// Creates `key` with `value` on `client`'s cluster unless it exists; the value it holds.
    async fn create_or_read(
        &self,
        client: &Client,
        key: &str,
        value: &str,
    ) -> Result<Vec<u8>, Error> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        // Safe to send again: a second attempt reads what the first created.
        let answer = self
            .call_on(client, |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await
            .map_err(|failure| failure.into_error("open deployment"))?;
        if answer.succeeded() {
            return Ok(value.as_bytes().to_vec());
        }
        match answer.op_responses().into_iter().next() {
            Some(TxnOpResponse::Get(get)) => match get.kvs().first() {
                Some(kv) => Ok(kv.value().to_vec()),
                None => Err(Error::Corrupt(format!("{key} vanished while it was read"))),
            },
            _ => Err(Error::Corrupt(format!("unexpected answer reading {key}"))),
        }
    }

    /// Records the nonce clusters on first use and refuses a node that lists them otherwise:
    /// a certificate's cluster is a function of its id and of the list, so another count or
    /// order would look for its nonce in the wrong place and answer a replay `valid`.
    async fn check_nonce_clusters(&self) -> Result<(), Error> {
        let count = self.nonce_clients.len();
        let recorded = self
            .create_or_read(&self.client, &self.keys.nonce_clusters, &count.to_string())
            .await?;
        if decode_decimal(&self.keys.nonce_clusters, &recorded)? != count as u64 {
            return Err(Error::Config(
                "this node lists another number of nonce clusters than the deployment",
            ));
        }
        for (place, client) in self.nonce_clients.iter().enumerate() {
            let expected = format!("{place}/{count}");
            let recorded = self
                .create_or_read(client, &self.keys.nonce_shard, &expected)
                .await?;
            if recorded != expected.as_bytes() {
                return Err(Error::Config(
                    "a nonce cluster is listed in another place than the deployment gave it",
                ));
            }
        }
        Ok(())
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Not `Runtime::drop`, which waits for the worker threads (and panics when dropped
        // inside another runtime): the watch and the proofs are simply abandoned.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod contract {
    use std::sync::Arc;

    use cyberid_engine::ManualClock;
    use cyberid_engine::contract::{NOW, Setup, Subject};

    use crate::testing::{shared_cluster, unique_name};
    use crate::{EtcdOptions, EtcdStore};

    fn etcd(setup: Setup) -> Subject<EtcdStore> {
        let options = EtcdOptions {
            history_begins: Some(setup.history_begins),
            max_live_nonces: setup.max_live_nonces,
            ..shared_cluster().options(&unique_name("contract"))
        };
        let store = EtcdStore::connect(options, Arc::new(ManualClock::new(NOW))).unwrap();
        Subject::new(store, ())
    }

    cyberid_engine::nonce_store_contract!(etcd);
    cyberid_engine::revocation_set_contract!(etcd);
    cyberid_identity::registry_contract!(etcd);

    /// The same contract with the nonces split over two clusters.
    mod split {
        use super::*;
        use crate::testing::shared_second_cluster;

        fn etcd_split(setup: Setup) -> Subject<EtcdStore> {
            let options = EtcdOptions {
                history_begins: Some(setup.history_begins),
                max_live_nonces: setup.max_live_nonces,
                nonce_clusters: vec![shared_second_cluster().endpoints()],
                ..shared_cluster().options(&unique_name("split"))
            };
            let store = EtcdStore::connect(options, Arc::new(ManualClock::new(NOW))).unwrap();
            Subject::new(store, ())
        }

        cyberid_engine::nonce_store_contract!(etcd_split);
    }
}
