//! The etcd store against real 3-member etcd clusters on loopback: several nodes on one
//! cluster, and the cluster failing under them. One test binary; the tests that break a cluster
//! start their own, the others share one.

mod failover;
mod split;
mod two_nodes;

use std::sync::Arc;

use cyberid_engine::{CertificateId, NonceClaim, SystemClock};
use cyberid_store_etcd::testing::Cluster;
use cyberid_store_etcd::{EtcdOptions, EtcdStore};

/// A node on `options`, on the system clock.
fn node(options: &EtcdOptions, name: &str) -> EtcdStore {
    EtcdStore::connect(
        EtcdOptions {
            node_id: name.into(),
            ..options.clone()
        },
        Arc::new(SystemClock),
    )
    .unwrap()
}

/// Two nodes of one deployment (the same prefix) on `cluster`, whose history began an hour
/// ago.
fn two_nodes(cluster: &Cluster, name: &str) -> (EtcdStore, EtcdStore) {
    let options = EtcdOptions {
        history_begins: Some(now() - 3600),
        ..cluster.options(&cyberid_store_etcd::testing::unique_name(name))
    };
    (node(&options, "node-a"), node(&options, "node-b"))
}

fn now() -> u64 {
    cyberid_engine::Clock::now(&SystemClock)
}

/// A claim of certificate `(round, index)`, usable now and for five minutes.
fn claim(store: &EtcdStore, round: u32, index: u16) -> NonceClaim {
    use cyberid_engine::NonceStore;
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&round.to_be_bytes());
    id[4..6].copy_from_slice(&index.to_be_bytes());
    let now = now();
    NonceClaim {
        certificate_id: CertificateId::from_bytes(id),
        usable_from: store.history_begins(),
        expires_at: now + 300,
        retain_until: now + 330,
        request: None,
    }
}
