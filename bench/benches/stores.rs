//! The stores: nonce insert-if-absent in memory and durably (group commit at several batch
//! sizes, concurrent single callers sharing fsyncs, and a batch with and without its
//! authentication log entries), and revocation lookups.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cyberid_bench::{NOW, claim, web_number};
use cyberid_engine::{
    LogEntry, LogItem, LogOutcome, ManualClock, MemoryNonceStore, NonceStore, PlatformId,
    RevocationChange, RevocationRecord, RevocationSet, Standing,
};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};

fn durable_store(dir: &tempfile::TempDir) -> DurableStore {
    DurableStore::open(
        dir.path(),
        StoreOptions::default(),
        Arc::new(ManualClock::new(NOW)),
    )
    .expect("open")
}

fn nonce_memory(c: &mut Criterion) {
    let store = MemoryNonceStore::with_capacity(0, usize::MAX);
    let mut group = c.benchmark_group("nonce/memory");
    group.throughput(Throughput::Elements(1));
    let mut next = 0u64;
    group.bench_function("insert_fresh", |b| {
        b.iter(|| {
            next += 1;
            store.consume(black_box(claim(next))).expect("memory")
        })
    });
    group.bench_function("replayed", |b| {
        b.iter(|| store.consume(black_box(claim(1))).expect("memory"))
    });
    group.finish();
}

fn nonce_durable(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = durable_store(&dir);
    let mut next = 0u64;
    let mut group = c.benchmark_group("nonce/durable_batch");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    for batch in [1u64, 16, 64, 256] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let claims: Vec<_> = (0..batch).map(|i| claim(next + i)).collect();
                next += batch;
                store.consume_batch(&claims).expect("durable")
            })
        });
    }
    group.finish();

    // Eight callers each consuming one nonce at a time: the committer folds the requests that
    // arrive during one fsync into the next, so they share fsyncs without batching upstream.
    let store = Arc::new(store);
    let counter = Arc::new(AtomicU64::new(next));
    let mut group = c.benchmark_group("nonce/durable_concurrent_singles");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let threads = 8u64;
    group.throughput(Throughput::Elements(threads * 64));
    group.bench_function(BenchmarkId::from_parameter(threads), |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        let (store, counter) = (store.clone(), counter.clone());
                        std::thread::spawn(move || {
                            for _ in 0..64 {
                                let n = counter.fetch_add(1, Ordering::Relaxed);
                                store.consume(claim(n)).expect("durable");
                            }
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .for_each(|handle| handle.join().expect("thread"));
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn revocation_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = durable_store(&dir);
    let revoked = 1_000_000u64;
    let records: Vec<_> = (0..revoked)
        .map(|n| RevocationRecord {
            change: RevocationChange::WebNumber {
                web_number: web_number(n),
                standing: Standing::Suspended,
            },
            reason: "bench".into(),
            authority: "bench".into(),
            at: NOW,
        })
        .collect();
    for chunk in records.chunks(50_000) {
        store.apply_batch(chunk).expect("apply");
    }
    let mut group = c.benchmark_group("revocation/lookup_1m");
    group.throughput(Throughput::Elements(1));
    let hit = web_number(revoked / 2);
    let miss = web_number(revoked * 3);
    group.bench_function("hit", |b| b.iter(|| store.standing(black_box(&hit))));
    group.bench_function("miss", |b| b.iter(|| store.standing(black_box(&miss))));
    group.finish();
}

/// What the authentication log adds to a settled batch of 64 on the embedded store: the same
/// synced write with and without the batch's log entries (issue #16's cost), measured in turn.
fn nonce_logged(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = durable_store(&dir);
    let mut next = 0u64;
    let mut group = c.benchmark_group("nonce/durable_64");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(64));
    let platform: PlatformId = "shop.example".parse().expect("platform id");
    for logged in [false, true] {
        let name = if logged { "logged" } else { "unlogged" };
        group.bench_function(name, |b| {
            b.iter(|| {
                let claims: Vec<_> = (0..64).map(|i| claim(next + i)).collect();
                next += 64;
                if !logged {
                    return store.consume_batch(&claims).expect("durable").len();
                }
                let items: Vec<LogItem> = claims
                    .iter()
                    .enumerate()
                    .map(|(position, claim)| LogItem {
                        entry: LogEntry {
                            at_ms: NOW * 1000,
                            platform,
                            web_number: web_number(next + position as u64),
                            certificate_id: claim.certificate_id,
                            outcome: LogOutcome::Valid,
                            disclosed: 0,
                        },
                        claim: Some(position),
                    })
                    .collect();
                store
                    .consume_logged(&claims, &items)
                    .expect("durable")
                    .1
                    .len()
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    nonce_memory,
    nonce_durable,
    nonce_logged,
    revocation_lookup
);
criterion_main!(benches);
