//! The cluster failing under two nodes: a leader killed or frozen while both nodes claim the
//! same certificates, the whole cluster frozen, a member back after a compaction.
//!
//! The invariant throughout: no certificate is ever `Fresh` twice, and every certificate that
//! was `Fresh` is `Replayed` afterwards on every node. Claims during an election may fail (a
//! retryable error); they may never succeed twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cyberid_engine::{
    CertificateId, Fault, NonceClaim, NonceOutcome, NonceStore, RevocationChange, RevocationRecord,
    RevocationSet,
};
use cyberid_store_etcd::testing::{Cluster, unique_name};
use cyberid_store_etcd::{EtcdOptions, EtcdStore};

use crate::{claim, node, two_nodes};

/// What one node's batch got, and when it was sent.
struct Answer {
    node: usize,
    sent: Instant,
    claims: Vec<NonceClaim>,
    outcomes: Result<Vec<NonceOutcome>, cyberid_engine::Error>,
}

/// Both nodes claim the same certificates (batches of 32, round after round) while `fault`
/// runs; then checks the invariant and returns the certificates that were fresh.
fn claims_through(
    cluster: &Cluster,
    a: &Arc<EtcdStore>,
    b: &Arc<EtcdStore>,
    fault: impl FnOnce(&Cluster),
) -> Vec<NonceClaim> {
    let stop = Arc::new(AtomicBool::new(false));
    let claimers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(node, store)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                for round in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let claims: Vec<NonceClaim> =
                        (0..32).map(|index| claim(&store, round, index)).collect();
                    let sent = Instant::now();
                    let outcomes = store.consume_batch(&claims);
                    answers.push(Answer {
                        node,
                        sent,
                        claims,
                        outcomes,
                    });
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let fault_began = Instant::now();
    fault(cluster);
    stop.store(true, Ordering::SeqCst);
    let answers: Vec<Answer> = claimers
        .into_iter()
        .flat_map(|claimer| claimer.join().unwrap())
        .collect();

    let mut fresh: HashMap<CertificateId, (usize, NonceClaim)> = HashMap::new();
    let (mut batches, mut failed, mut answered_after_fault) = (0, 0, 0);
    for answer in &answers {
        batches += 1;
        let outcomes = match &answer.outcomes {
            Ok(outcomes) => outcomes,
            Err(error) => {
                assert_eq!(error.code(), "store", "{error}");
                assert_eq!(error.fault(), Fault::Retry);
                failed += 1;
                continue;
            }
        };
        if answer.sent > fault_began {
            answered_after_fault += 1;
        }
        for (claim, outcome) in answer.claims.iter().zip(outcomes) {
            assert!(
                matches!(outcome, NonceOutcome::Fresh | NonceOutcome::Replayed),
                "{outcome:?}"
            );
            if *outcome == NonceOutcome::Fresh {
                let earlier = fresh.insert(claim.certificate_id, (answer.node, *claim));
                assert!(
                    earlier.is_none(),
                    "{:?} was fresh twice (nodes {} and {})",
                    claim.certificate_id,
                    earlier.map_or(0, |(node, _)| node),
                    answer.node
                );
            }
        }
    }
    eprintln!(
        "{batches} batches of 32: {failed} failed (retryable), {answered_after_fault} answered \
         after the fault began, {} certificates fresh once",
        fresh.len()
    );
    assert!(answered_after_fault > 0, "the cluster never served again");
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    let fresh: Vec<NonceClaim> = fresh.into_values().map(|(_, claim)| claim).collect();
    for store in [a, b] {
        assert_replayed(store, &fresh);
    }
    fresh
}

fn assert_replayed(store: &EtcdStore, claims: &[NonceClaim]) {
    // The cluster is healthy, but the client may still be finding its way back to the
    // members it lost: a retryable error is tried again, as a platform would.
    let mut outcomes = store.consume_batch(claims);
    for _ in 0..60 {
        match &outcomes {
            Err(error) if error.fault() == Fault::Retry => {
                std::thread::sleep(Duration::from_millis(500));
                outcomes = store.consume_batch(claims);
            }
            _ => break,
        }
    }
    let outcomes = outcomes.unwrap_or_else(|error| panic!("{error}; {:?}", store.stats()));
    assert!(
        outcomes
            .iter()
            .all(|outcome| *outcome == NonceOutcome::Replayed)
    );
}

#[test]
fn killing_the_leader_never_makes_a_certificate_fresh_twice() {
    let cluster = Cluster::start_for_test().unwrap();
    let (a, b) = two_nodes(&cluster, "kill");
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut killed = None;
    let fresh = claims_through(&cluster, &a, &b, |cluster| {
        let leader = cluster.leader().expect("a leader");
        cluster.kill(leader);
        killed = Some(leader);
        std::thread::sleep(Duration::from_secs(4));
    });
    // The killed member comes back with its data and knows every fresh certificate.
    let killed = killed.unwrap();
    cluster.restart(killed).unwrap();
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    let alone = node(
        &EtcdOptions {
            endpoints: vec![cluster.endpoint(killed)],
            ..a.options().clone()
        },
        "node-c",
    );
    assert_replayed(&alone, &fresh);
}

#[test]
fn freezing_the_leader_never_makes_a_certificate_fresh_twice() {
    let cluster = Cluster::start_for_test().unwrap();
    let (a, b) = two_nodes(&cluster, "pause");
    let (a, b) = (Arc::new(a), Arc::new(b));
    claims_through(&cluster, &a, &b, |cluster| {
        let leader = cluster.leader().expect("a leader");
        cluster.pause(leader);
        std::thread::sleep(Duration::from_secs(3));
        cluster.resume(leader);
        std::thread::sleep(Duration::from_secs(2));
    });
}

/// A node whose whole cluster is frozen stops vouching for its revocation view within about a
/// second and fails every write with a retryable error; it recovers when the cluster does.
#[test]
fn a_node_cut_off_from_its_cluster_answers_nothing_valid() {
    let cluster = Cluster::start_for_test().unwrap();
    let (a, _b) = two_nodes(&cluster, "cutoff");
    a.check_current().unwrap();
    assert_eq!(a.consume(claim(&a, 0, 0)).unwrap(), NonceOutcome::Fresh);
    for member in 0..3 {
        cluster.pause(member);
    }
    let frozen = Instant::now();
    while a.check_current().is_ok() {
        assert!(
            frozen.elapsed() < Duration::from_millis(1250),
            "still vouching for its view after {:?}",
            frozen.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stale_after = frozen.elapsed();
    let error = a.check_current().unwrap_err();
    assert_eq!((error.code(), error.fault()), ("store", Fault::Retry));

    let started = Instant::now();
    let error = a.consume_batch(&[claim(&a, 1, 0)]).unwrap_err();
    assert_eq!((error.code(), error.fault()), ("store", Fault::Retry));
    let claim_failed_after = started.elapsed();
    let revocation = RevocationRecord {
        change: RevocationChange::Certificate {
            certificate_id: CertificateId::from_bytes([9; 16]),
        },
        reason: "stolen".into(),
        authority: "mps".into(),
        at: 1,
    };
    assert_eq!(a.apply(revocation).unwrap_err().code(), "store");
    eprintln!(
        "check_current failed {stale_after:?} after the freeze; a claim failed after \
         {claim_failed_after:?}"
    );

    for member in 0..3 {
        cluster.resume(member);
    }
    let resumed = Instant::now();
    while a.check_current().is_err() {
        assert!(
            resumed.elapsed() < Duration::from_secs(15),
            "never current again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.consume(claim(&a, 2, 0)).unwrap(), NonceOutcome::Fresh);
}

/// A node whose member was down while the cluster compacted its history cannot resume its
/// watch where it stopped: it reads the whole set again and misses nothing.
#[test]
fn a_watch_resumed_after_a_compaction_reloads_the_set() {
    let cluster = Cluster::start_for_test().unwrap();
    let options = cluster.options(&unique_name("compaction"));
    let a = node(&options, "node-a");
    let b = node(
        &EtcdOptions {
            endpoints: vec![cluster.endpoint(2)],
            ..options.clone()
        },
        "node-b",
    );
    // An authority retries a write the store answered as retryable (503 over HTTP), as it
    // may right after a member died: on a slow machine the client's first attempts can all
    // land before it moves to a live member. Revoking a certificate twice changes nothing.
    let revoke = |n: u8| {
        for attempt in 0.. {
            let applied = a.apply(RevocationRecord {
                change: RevocationChange::Certificate {
                    certificate_id: CertificateId::from_bytes([n; 16]),
                },
                reason: "stolen".into(),
                authority: "mps".into(),
                at: 1,
            });
            match applied {
                Ok(sequence) => return sequence,
                Err(error) if error.fault() == Fault::Retry && attempt < 10 => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(error) => panic!("revocation {n}: {error}"),
            }
        }
        unreachable!()
    };
    let seen = |n: u8| b.certificate_revoked(&CertificateId::from_bytes([n; 16]));
    let wait = |n: u8, within: Duration| {
        let started = Instant::now();
        while !seen(n) {
            assert!(
                started.elapsed() < within,
                "node B never saw revocation {n}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    revoke(1);
    wait(1, Duration::from_secs(1));
    let reloads = b.stats().reloads;

    cluster.kill(2);
    // Member 2 may have led: wait for the others to elect a leader.
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    for n in 2..=6 {
        revoke(n);
    }
    cluster.compact().unwrap();
    cluster.restart(2).unwrap();
    wait(6, Duration::from_secs(20));
    assert!((2..=6).all(seen));
    assert_eq!(b.counts().certificates, 6);
    let started = Instant::now();
    while b.stats().reloads == reloads {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the compacted watch was never reloaded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.counts().certificates, 6);
}
