//! Two nodes of one deployment on one healthy cluster.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cyberid_engine::{
    Context, Error, Input, IssueRequest, Issuer, IssuerPolicy, IssuerSigningKey, KeyRegistry,
    NonceOutcome, NonceStore, Reason, RevocationChange, RevocationRecord, RevocationSet, Standing,
    Verdict, Verifier, VerifierConfig, WebNumber,
};
use cyberid_store_etcd::EtcdOptions;
use cyberid_store_etcd::testing::{shared_cluster, unique_name};

use crate::{claim, node, two_nodes};

fn record(change: RevocationChange) -> RevocationRecord {
    RevocationRecord {
        change,
        reason: "stolen device".into(),
        authority: "mps".into(),
        at: 1_790_000_000,
    }
}

/// Both nodes claim the same 64 certificates at the same moment, in opposite orders, twenty
/// times: each certificate is fresh on exactly one node and replayed on the other.
#[test]
fn the_same_certificates_claimed_on_two_nodes_at_once_are_fresh_once() {
    let (a, b) = two_nodes(shared_cluster(), "concurrent");
    let (a, b) = (Arc::new(a), Arc::new(b));
    let barrier = Arc::new(Barrier::new(2));
    let rounds = 20;
    let claimers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(node, store)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                (0..rounds)
                    .map(|round| {
                        let mut batch: Vec<_> =
                            (0..64).map(|index| claim(&store, round, index)).collect();
                        if node == 1 {
                            batch.reverse();
                        }
                        barrier.wait();
                        let mut outcomes = store.consume_batch(&batch).unwrap();
                        if node == 1 {
                            outcomes.reverse();
                        }
                        outcomes
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<Vec<NonceOutcome>>> =
        claimers.into_iter().map(|c| c.join().unwrap()).collect();
    for (round, (on_a, on_b)) in results[0].iter().zip(&results[1]).enumerate() {
        for (index, pair) in on_a.iter().zip(on_b).enumerate() {
            let pair = [*pair.0, *pair.1];
            assert!(
                pair == [NonceOutcome::Fresh, NonceOutcome::Replayed]
                    || pair == [NonceOutcome::Replayed, NonceOutcome::Fresh],
                "round {round} certificate {index}: {pair:?}"
            );
        }
    }
    let fresh = |node: usize| {
        results[node]
            .iter()
            .flatten()
            .filter(|outcome| **outcome == NonceOutcome::Fresh)
            .count()
    };
    assert_eq!(fresh(0) + fresh(1), 64 * rounds as usize);
    assert_eq!(a.live_nonces() + b.live_nonces(), 64 * rounds as usize);
    let stats = a.stats();
    assert_eq!(stats.txns, u64::from(rounds), "one transaction per batch");
    assert_eq!(stats.max_keys_per_txn, 64);
}

/// A certificate revoked through node A is refused by node B within a second (B learns it
/// from its watch), end to end through B's verifier; A's verifier already refuses it.
#[test]
fn a_revocation_through_one_node_is_refused_by_the_other_within_a_second() {
    let (a, b) = two_nodes(shared_cluster(), "revocation");
    let (a, b) = (Arc::new(a), Arc::new(b));
    let issuer = Issuer::new(
        IssuerSigningKey::generate().unwrap(),
        IssuerPolicy::default(),
    )
    .unwrap();
    let keys = Arc::new(KeyRegistry::new());
    keys.insert(issuer.key().public_key().clone()).unwrap();
    let verifier = |store: &Arc<cyberid_store_etcd::EtcdStore>| {
        Verifier::new(
            keys.clone(),
            store.clone(),
            store.clone(),
            VerifierConfig::default(),
        )
    };
    let (verifier_a, verifier_b) = (verifier(&a), verifier(&b));
    let now = crate::now();
    let context = Context {
        platform: Some("shop.example".parse().unwrap()),
        now: now + 5,
        request: None,
        disclose: cyberid_engine::Attributes::NONE,
    };
    let holder = WebNumber::generate().unwrap();

    // One verification, whichever node: the second node answers replayed.
    let used = issuer.issue(&IssueRequest::new(holder), now).unwrap();
    let used = used.to_text();
    assert!(matches!(
        verifier_a.verify(Input::Text(&used), &context).unwrap(),
        Verdict::Valid(_)
    ));
    assert_eq!(
        verifier_b
            .verify(Input::Text(&used), &context)
            .unwrap()
            .reason(),
        Some(Reason::Replayed)
    );

    let certificate = issuer.issue(&IssueRequest::new(holder), now).unwrap();
    let certificate_id = certificate.fields().certificate_id;
    let started = Instant::now();
    a.apply(record(RevocationChange::Certificate { certificate_id }))
        .unwrap();
    assert!(
        a.certificate_revoked(&certificate_id),
        "visible on A when acknowledged"
    );
    while !b.certificate_revoked(&certificate_id) {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "node B did not learn the revocation within a second"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen = started.elapsed();
    assert!(seen < Duration::from_secs(1), "seen after {seen:?}");
    let text = certificate.to_text();
    assert_eq!(
        verifier_b
            .verify(Input::Text(&text), &context)
            .unwrap()
            .reason(),
        Some(Reason::Revoked)
    );
    assert_eq!(
        verifier_a
            .verify(Input::Text(&text), &context)
            .unwrap()
            .reason(),
        Some(Reason::Revoked)
    );
    b.check_current().unwrap();
}

/// Sequence numbers are the cluster's, whichever node writes; a Web Number revoked through one
/// node cannot be reinstated or suspended through another, even before the other's watch
/// delivered the revocation.
#[test]
fn sequence_numbers_and_final_revocation_hold_across_nodes() {
    let (a, b) = two_nodes(shared_cluster(), "sequence");
    let holder: WebNumber = "7K3MQ9XZ2P".parse().unwrap();
    let standing = |standing| {
        record(RevocationChange::WebNumber {
            web_number: holder,
            standing,
        })
    };
    assert_eq!(a.apply(standing(Standing::Suspended)).unwrap(), 1);
    assert_eq!(b.apply(standing(Standing::Active)).unwrap(), 2);
    assert_eq!(a.apply(standing(Standing::Revoked)).unwrap(), 3);
    for refused in [Standing::Active, Standing::Suspended] {
        assert_eq!(b.apply(standing(refused)), Err(Error::RevocationFinal));
    }
    assert_eq!(b.standing(&holder), Standing::Revoked);
    let history_a = a.history(0, 10).unwrap();
    assert_eq!(history_a, b.history(0, 10).unwrap());
    assert_eq!(
        history_a.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // Concurrent writers on both nodes: every write gets its own number, none is lost.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let writers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                (0..10u8)
                    .map(|n| {
                        let certificate_id = cyberid_engine::CertificateId::from_bytes([n; 16]);
                        store
                            .apply(record(RevocationChange::Certificate { certificate_id }))
                            .unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = writers
        .into_iter()
        .flat_map(|writer| writer.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (4..=23).collect::<Vec<u64>>());
    assert_eq!(a.history(0, 100).unwrap().len(), 23);
    assert_eq!(a.counts(), b.counts());
}

/// The deployment's history begins once, with the first node to connect; later nodes adopt it
/// whatever their own options say.
#[test]
fn the_history_start_is_the_deployments() {
    let options = EtcdOptions {
        history_begins: Some(1_790_000_000),
        ..shared_cluster().options(&unique_name("history"))
    };
    let first = node(&options, "first");
    let later = node(
        &EtcdOptions {
            history_begins: Some(1_790_000_500),
            ..options.clone()
        },
        "later",
    );
    assert_eq!(first.history_begins(), 1_790_000_000);
    assert_eq!(later.history_begins(), 1_790_000_000);
    let fresh = node(&shared_cluster().options(&unique_name("history")), "now");
    let now = cyberid_engine::Clock::now(&cyberid_engine::SystemClock);
    assert!(fresh.history_begins().abs_diff(now) <= 2);
}

/// The server calls stores from `spawn_blocking` inside its own tokio runtime: the store blocks
/// on its own runtime there without complaint.
#[test]
fn the_store_may_be_called_from_spawn_blocking() {
    let (a, _b) = two_nodes(shared_cluster(), "blocking");
    let a = Arc::new(a);
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let outcome = server
        .block_on(async move {
            tokio::task::spawn_blocking(move || {
                a.check_current()?;
                a.consume(claim(&a, 0, 0))
            })
            .await
        })
        .unwrap()
        .unwrap();
    assert_eq!(outcome, NonceOutcome::Fresh);
}
