//! A node killed (SIGKILL) in the middle of a load: the other node goes on answering, and the
//! killed one, started again on its data directory, answers correctly from its first request.

use std::time::{Duration, Instant};

use cyberid_engine::{Clock, SystemClock};
use cyberid_tests::cluster::{
    Load, Outcome, Targets, assert_spent, send, start_cluster, store_url,
};
use cyberid_tests::node::Node;
use cyberid_tests::process::{self, KillOnDrop, wait_ready};

const BINARY: &str = env!("CARGO_BIN_EXE_cyberid_node");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_load_loses_nothing_it_acknowledged() {
    let cluster = start_cluster().await;
    let url = store_url(&cluster.endpoints(), "node-killed");
    let begins = (SystemClock.now() - 100).to_string();
    let a = Node::start(|config| {
        config.store.clone_from(&url);
        config.auth_log = false;
        config.etcd_history_begins = begins.parse().unwrap();
    })
    .await;
    let shop = a.prepared.shop_key.clone();
    let b_dir = a.sibling_dir();
    let serve_b = {
        let (dir, url, begins) = (b_dir.path().to_owned(), url.clone(), begins.clone());
        move || {
            let args = [
                "--store",
                &url,
                "--auth-log",
                "false",
                "--node-id",
                "node-b",
                "--etcd-history-begins",
                &begins,
            ];
            let (child, address) = process::serve(BINARY, &dir, &args);
            (KillOnDrop(child), address)
        }
    };
    let (mut b, b_address) = tokio::task::spawn_blocking(serve_b.clone()).await.unwrap();
    wait_ready(b_address).await;

    let targets = Targets::new(&[a.address, b_address]);
    let load = Load::start(targets.clone(), &shop, a.prepared.issuer.clone(), 6);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    tokio::task::spawn_blocking(move || {
        process::signal(&mut b.0, "KILL");
        b
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (restarted_b, address) = tokio::task::spawn_blocking(serve_b).await.unwrap();
    wait_ready(address).await;
    let restarted = Instant::now();
    targets.set(1, address);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answers = load.stop().await;
    eprintln!("node killed: {}", answers.summary());

    let valid = answers.valid_once();
    let a_while_b_was_down = answers
        .answers
        .iter()
        .filter(|x| x.node == 0 && x.outcome == Outcome::Valid)
        .filter(|x| x.sent > killed && x.answered < restarted)
        .count();
    assert!(
        a_while_b_was_down > 0,
        "node A stopped when node B was killed"
    );
    assert!(
        answers.valid_sent_after(restarted, Some(1)) > 0,
        "the restarted node answered nothing valid"
    );
    // From its first request, the restarted node knows what both nodes acknowledged,
    // before and after the kill: no 503 to wait out, no second `valid`.
    let spent: Vec<String> = valid
        .iter()
        .map(|&index| answers.certificates[index].clone())
        .collect();
    let mut client = None;
    for text in spent.iter().take(50) {
        assert_eq!(
            send(&mut client, address, &shop, text).await,
            Outcome::Replayed
        );
    }
    for node in [a.address, address] {
        assert_spent(node, &shop, spent.clone()).await;
    }
    drop(restarted_b);
}
