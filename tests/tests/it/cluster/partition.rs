//! A node cut off from its etcd cluster by the network (a proxy that stops passing bytes but
//! keeps the connections open, as a partition looks from the node) while another node, on the
//! cluster's side, goes on serving and takes a revocation.

use std::time::{Duration, Instant};

use cyberid_engine::{Clock, SystemClock, WebNumber};
use cyberid_tests::cluster::{Load, Outcome, Proxy, Targets, send, start_cluster, store_url};
use cyberid_tests::node::{Node, SHOP};
use hyper::Method;

/// How old a node's proof of its revocation view may be before it answers no `valid` (the
/// store's default `max_staleness`).
const MAX_STALENESS: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_from_its_cluster_stops_answering_valid_within_a_second() {
    let cluster = start_cluster().await;
    let mut proxies = Vec::new();
    for endpoint in cluster.endpoints() {
        proxies.push(Proxy::start(&endpoint).await);
    }
    let url_a = store_url(&cluster.endpoints(), "partition");
    let prefix = &url_a[url_a.find("/test/").unwrap()..];
    let hosts: Vec<String> = proxies
        .iter()
        .map(|proxy| proxy.endpoint().trim_start_matches("http://").to_owned())
        .collect();
    let url_b = format!("etcd://{}{prefix}", hosts.join(","));
    let begins = SystemClock.now() - 100;
    let a = Node::start(|config| {
        config.store.clone_from(&url_a);
        config.auth_log = false;
        config.etcd_history_begins = begins;
    })
    .await;
    let b = a
        .start_sibling(|config| {
            config.store.clone_from(&url_b);
            config.auth_log = false;
            config.etcd_history_begins = begins;
        })
        .await;
    let shop = a.prepared.shop_key.clone();
    let load = Load::start(
        Targets::new(&[a.address, b.address]),
        &shop,
        a.prepared.issuer.clone(),
        4,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cut = Instant::now();
    for proxy in &proxies {
        proxy.cut();
    }
    // While B is cut off, a Web Number is suspended through A.
    let holder = WebNumber::generate().unwrap();
    a.suspend(holder).await;
    // B tells its load balancer it cannot serve.
    let mut probe = b.client().await;
    let mut unready = None;
    for _ in 0..100 {
        let (status, body) = probe
            .call(Method::GET, "/readyz", None, None)
            .await
            .unwrap();
        if status.as_u16() == 503 {
            unready = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unready = unready.expect("B stays ready while cut off");
    assert!(
        unready.to_string().contains("store_unreachable"),
        "{unready}"
    );
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(cut.elapsed())).await;

    let healed = Instant::now();
    for proxy in &proxies {
        proxy.heal();
    }
    // Once B vouches for its view again, it has the suspension: its first verification of
    // the holder's certificate is refused, with no window in which it is valid.
    let mut client = None;
    let mut first = Outcome::Unavailable;
    for _ in 0..200 {
        let text = b.certificate(holder, Some(SHOP));
        first = send(&mut client, b.address, &shop, &text).await;
        if !matches!(first, Outcome::Unavailable | Outcome::Lost) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        first,
        Outcome::Revoked,
        "B's first answer for the suspended holder"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answers = load.stop().await;
    eprintln!("partition: {}", answers.summary());

    answers.valid_once();
    let b_valid_while_cut = answers
        .answers
        .iter()
        .filter(|x| x.node == 1 && x.outcome == Outcome::Valid)
        .filter(|x| x.answered > cut + MAX_STALENESS && x.answered < healed)
        .count();
    assert_eq!(
        b_valid_while_cut, 0,
        "B answered valid while it could not vouch for its view"
    );
    let a_valid_while_cut = answers
        .answers
        .iter()
        .filter(|x| x.node == 0 && x.outcome == Outcome::Valid)
        .filter(|x| x.sent > cut && x.answered < healed)
        .count();
    assert!(
        a_valid_while_cut > 0,
        "A stopped serving while B was cut off"
    );
    assert!(
        answers.count(Outcome::Unavailable, Some(1)) > 0,
        "B never answered 503"
    );
    assert!(
        answers.valid_sent_after(healed, Some(1)) > 0,
        "B never served again"
    );
}
