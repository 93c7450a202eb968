//! Nonces split over two clusters: a batch is all or nothing across them, and the list of
//! clusters is fixed for the life of a deployment.

use std::sync::Arc;
use std::time::Duration;

use cyberid_engine::{
    CertificateId, Fault, NonceClaim, NonceOutcome, NonceStore, PlatformId, RequestKey, SystemClock,
};
use cyberid_store_etcd::testing::{Cluster, shared_cluster, unique_name};
use cyberid_store_etcd::{EtcdOptions, EtcdStore};

use crate::now;

/// Claims of `count` random certificates (so both clusters get a share), usable now.
fn random_claims(store: &EtcdStore, count: usize) -> Vec<NonceClaim> {
    let now = now();
    (0..count)
        .map(|_| NonceClaim {
            certificate_id: CertificateId::generate().unwrap(),
            usable_from: store.history_begins(),
            expires_at: now + 300,
            retain_until: now + 330,
            request: None,
        })
        .collect()
}

#[test]
fn a_batch_is_all_or_nothing_across_clusters() {
    let second = Cluster::start_for_test().unwrap();
    let options = EtcdOptions {
        history_begins: Some(now() - 3600),
        nonce_clusters: vec![second.endpoints()],
        // The batch gives up on the frozen cluster at its deadline, while each request has
        // time enough on a loaded machine: the first cluster's share must get a definite
        // answer, and its release must go through, for the test to say what it says. (A
        // 500 ms request timeout failed here in CI: the healthy cluster's share timed out
        // too, and an unanswered share rightly stays consumed.)
        call_deadline: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..shared_cluster().options(&unique_name("split"))
    };
    let store = EtcdStore::connect(options, Arc::new(SystemClock)).unwrap();

    let claims = random_claims(&store, 64);
    let outcomes = store.consume_batch(&claims).unwrap();
    assert!(outcomes.iter().all(|o| *o == NonceOutcome::Fresh));
    assert!(store.stats().txns >= 2, "both clusters took a share");

    // With the second cluster frozen, a batch fails whole, and the first cluster's share is
    // released: after the thaw those certificates are valid again. Half
    // the claims name a request key: theirs are kept (a concurrent retry may have been
    // answered from them) and the retry is answered `Repeated`.
    let shop: PlatformId = "shop.example".parse().unwrap();
    let mut claims = random_claims(&store, 64);
    for (index, claim) in claims.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
        claim.request = Some(RequestKey::derive(
            &shop,
            format!("order-{index}").as_bytes(),
        ));
    }
    for member in 0..3 {
        second.pause(member);
    }
    let error = store.consume_batch(&claims).unwrap_err();
    assert_eq!(error.fault(), Fault::Retry, "{error}");
    for member in 0..3 {
        second.resume(member);
    }
    second.wait_healthy(Duration::from_secs(30)).unwrap();
    let mut outcomes = store.consume_batch(&claims);
    for _ in 0..60 {
        if outcomes.is_ok() {
            break;
        }
        // The client may still hold its connections to the thawed members as broken.
        std::thread::sleep(Duration::from_millis(500));
        outcomes = store.consume_batch(&claims);
    }
    let outcomes = outcomes.unwrap();
    for (claim, outcome) in claims.iter().zip(&outcomes) {
        // The second cluster's share went unanswered: a frozen member processes the request
        // waiting in its socket when it thaws, so those claims may or may not have been
        // consumed (docs/store.md). The first cluster's share had a definite answer and was
        // released. With two clusters, the first holds the ids whose first bit is 0.
        let on_first = claim.certificate_id.as_bytes()[0] < 0x80;
        match claim.request {
            None if on_first => assert_eq!(*outcome, NonceOutcome::Fresh),
            None => assert!(
                matches!(outcome, NonceOutcome::Fresh | NonceOutcome::Replayed),
                "{outcome:?}"
            ),
            Some(_) => assert!(
                matches!(outcome, NonceOutcome::Fresh | NonceOutcome::Repeated),
                "{outcome:?}"
            ),
        }
    }
    assert_eq!(store.stats().release_failures, 0);
    let unkeyed: Vec<NonceClaim> = claims
        .iter()
        .filter(|c| c.request.is_none())
        .copied()
        .collect();
    let again = store.consume_batch(&unkeyed).unwrap();
    assert!(again.iter().all(|o| *o == NonceOutcome::Replayed));
}

#[test]
fn a_node_that_lists_the_clusters_otherwise_is_refused() {
    let second = Cluster::start_for_test().unwrap();
    let options = EtcdOptions {
        nonce_clusters: vec![second.endpoints()],
        ..shared_cluster().options(&unique_name("listing"))
    };
    let first = EtcdStore::connect(options.clone(), Arc::new(SystemClock)).unwrap();
    drop(first);
    let fewer = EtcdOptions {
        nonce_clusters: Vec::new(),
        ..options.clone()
    };
    let error = EtcdStore::connect(fewer, Arc::new(SystemClock)).unwrap_err();
    assert_eq!(error.code(), "config", "{error}");
    let swapped = EtcdOptions {
        endpoints: second.endpoints(),
        nonce_clusters: vec![shared_cluster().endpoints()],
        ..options.clone()
    };
    let error = EtcdStore::connect(swapped, Arc::new(SystemClock)).unwrap_err();
    assert_eq!(error.code(), "config", "{error}");
    // The deployment's own listing still connects.
    EtcdStore::connect(options, Arc::new(SystemClock)).unwrap();
}
