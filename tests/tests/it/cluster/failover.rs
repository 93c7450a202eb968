//! The etcd cluster failing under two nodes and a steady load over HTTP: its leader killed,
//! its leader frozen, a follower left behind and then the leader killed.
//!
//! Throughout: no certificate is ever answered `valid` twice (on one node or across both),
//! every answer is a verdict or a 503 with Retry-After (never a 500, never `valid` without a
//! definite commit), and afterwards every certificate acknowledged `valid` is `replayed` on
//! every node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cyberid_engine::WebNumber;
use cyberid_store_etcd::testing::Cluster;
use cyberid_tests::cluster::{
    Load, Outcome, Targets, assert_spent, send, start_cluster, store_url, two_nodes,
};
use cyberid_tests::node::SHOP;

/// Runs `fault` on a cluster under two nodes and a load, then checks the invariant.
async fn under_load(name: &str, fault: impl FnOnce(&Cluster) + Send + 'static) {
    let cluster = Arc::new(start_cluster().await);
    let (a, b) = two_nodes(&store_url(&cluster.endpoints(), name)).await;
    let shop = a.prepared.shop_key.clone();
    let targets = Targets::new(&[a.address, b.address]);
    let load = Load::start(targets.clone(), &shop, a.prepared.issuer.clone(), 6);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let began = Instant::now();
    let broken = cluster.clone();
    tokio::task::spawn_blocking(move || {
        fault(&broken);
        broken.wait_healthy(Duration::from_secs(30)).unwrap();
    })
    .await
    .unwrap();
    // Both nodes serve again (a probe certificate each, under the same load), then the load
    // stops.
    for node in [&a, &b] {
        let mut client = None;
        let mut served = false;
        for _ in 0..300 {
            let probe = node.certificate(WebNumber::generate().unwrap(), Some(SHOP));
            if send(&mut client, node.address, &shop, &probe).await == Outcome::Valid {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            served,
            "{} never served again after the fault",
            node.address
        );
    }
    let answers = load.stop().await;
    eprintln!("{name}: {}", answers.summary());

    let valid = answers.valid_once();
    assert!(
        answers.valid_sent_after(began, None) > 0,
        "nothing valid after the fault began"
    );
    let spent: Vec<String> = valid
        .iter()
        .map(|&index| answers.certificates[index].clone())
        .collect();
    for node in [&a, &b] {
        assert_spent(node.address, &shop, spent.clone()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_under_load() {
    under_load("kill-leader", |cluster| {
        let leader = cluster.leader().expect("a leader");
        cluster.kill(leader);
        std::thread::sleep(Duration::from_secs(2));
        cluster.restart(leader).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_frozen_under_load() {
    under_load("pause-leader", |cluster| {
        let leader = cluster.leader().expect("a leader");
        cluster.pause(leader);
        std::thread::sleep(Duration::from_secs(3));
        cluster.resume(leader);
    })
    .await;
}

/// A follower frozen long enough to fall behind, thawed, and the leader killed at once: the
/// cluster must elect the member that has every acknowledged write, never the laggard.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_follower_then_the_leader_killed_under_load() {
    under_load("lag-then-kill", |cluster| {
        let leader = cluster.leader().expect("a leader");
        let follower = (leader + 1) % 3;
        cluster.pause(follower);
        std::thread::sleep(Duration::from_secs(2));
        cluster.resume(follower);
        cluster.kill(leader);
        std::thread::sleep(Duration::from_secs(2));
        cluster.restart(leader).unwrap();
    })
    .await;
}
