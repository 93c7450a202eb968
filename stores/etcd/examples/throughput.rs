//! Claims per second through `consume_batch` on a 3-member etcd cluster on loopback (started
//! here, data on the temp directory's disk), and the latency of each batch (one transaction).
//!
//! ```sh
//! cargo run --release -p cyberid-store-etcd --features testing --example throughput -- 64 10 1,4,16 1
//! ```
//!
//! Arguments: claims per batch (64), seconds per run (10), caller threads per run (1,4,16),
//! nonce clusters (1; with 2 or more the claims are split over that many clusters by
//! certificate id). Each run claims certificates never seen before (random ids), from its own
//! callers on one node, after a one-second warm-up that is not counted. At the end: the first
//! cluster's database size per claim, before and after compaction and defragmentation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cyberid_engine::{CertificateId, NonceClaim, NonceOutcome, NonceStore, SystemClock};
use cyberid_store_etcd::testing::{Cluster, unique_name};
use cyberid_store_etcd::{EtcdOptions, EtcdStore};
use hdrhistogram::Histogram;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let batch: usize = arguments.first().map_or(Ok(64), |a| a.parse())?;
    let seconds: u64 = arguments.get(1).map_or(Ok(10), |a| a.parse())?;
    let threads: Vec<usize> = arguments
        .get(2)
        .map_or("1,4,16", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let clusters: usize = arguments.get(3).map_or(Ok(1), |a| a.parse())?;

    let cluster = Cluster::start()?;
    let further: Vec<Cluster> = (1..clusters)
        .map(|_| Cluster::start())
        .collect::<Result<_, _>>()?;
    println!(
        "etcd: {clusters} cluster(s) of 3 members on loopback, the first's data in {}",
        cluster.dir().display()
    );
    let size_before: i64 = cluster.db_sizes()?.into_iter().max().unwrap_or(0);
    let mut total_claims = 0u64;
    for &callers in &threads {
        let store = Arc::new(EtcdStore::connect(
            EtcdOptions {
                nonce_clusters: further.iter().map(Cluster::endpoints).collect(),
                ..cluster.options(&unique_name("throughput"))
            },
            Arc::new(SystemClock),
        )?);
        let now = store.history_begins();
        let counter = Arc::new(AtomicU64::new(0));
        let counting = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..callers)
            .map(|_| {
                let (store, counter, counting, stop) = (
                    store.clone(),
                    counter.clone(),
                    counting.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    let mut latencies = Histogram::<u64>::new(3).expect("3 significant digits");
                    let mut claims = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let claims_now: Vec<NonceClaim> = (0..batch)
                            .map(|_| {
                                counter.fetch_add(1, Ordering::Relaxed);
                                NonceClaim {
                                    certificate_id: CertificateId::generate().expect("random"),
                                    usable_from: now,
                                    expires_at: now + 300,
                                    retain_until: now + 330,
                                    request: None,
                                }
                            })
                            .collect();
                        let started = Instant::now();
                        let outcomes = store.consume_batch(&claims_now).expect("a healthy cluster");
                        let took = started.elapsed();
                        assert!(outcomes.iter().all(|o| *o == NonceOutcome::Fresh));
                        if counting.load(Ordering::Relaxed) {
                            latencies.record(took.as_micros() as u64).expect("in range");
                            claims += batch as u64;
                        }
                    }
                    (claims, latencies)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        let before = store.stats();
        counting.store(true, Ordering::Relaxed);
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(seconds));
        counting.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let after = store.stats();
        stop.store(true, Ordering::Relaxed);
        let mut latencies = Histogram::<u64>::new(3)?;
        let mut claims = 0;
        for worker in workers {
            let (count, histogram) = worker.join().expect("worker");
            claims += count;
            latencies.add(histogram)?;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        println!(
            "batch {batch}, {callers:>2} caller(s): {:>8.0} claims/s, {:>6.0} txns/s; txn latency \
             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.1} claims per txn; {} retries",
            claims as f64 / elapsed.as_secs_f64(),
            latencies.len() as f64 / elapsed.as_secs_f64(),
            ms(latencies.value_at_quantile(0.50)),
            ms(latencies.value_at_quantile(0.99)),
            ms(latencies.max()),
            (after.keys - before.keys) as f64 / (after.txns - before.txns).max(1) as f64,
            after.retries - before.retries,
        );
        total_claims += counter.load(Ordering::Relaxed);
    }
    // Every claim is a revision of its own; the keys live until their leases end (retention
    // plus the lease margin), so none has expired yet here.
    let per_claim = |bytes: i64| (bytes - size_before) as f64 / total_claims.max(1) as f64;
    let size_after: i64 = cluster.db_sizes()?.into_iter().max().unwrap_or(0);
    cluster.compact()?;
    cluster.defragment()?;
    let size_compacted: i64 = cluster.db_sizes()?.into_iter().max().unwrap_or(0);
    let mib = |bytes: i64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "first cluster's database: {:.1} MiB before, {:.1} MiB after {total_claims} claims \
         ({:.0} B per claim, {clusters} cluster(s)); {:.1} MiB after compaction and \
         defragmentation ({:.0} B per live key)",
        mib(size_before),
        mib(size_after),
        per_claim(size_after),
        mib(size_compacted),
        per_claim(size_compacted),
    );
    Ok(())
}
