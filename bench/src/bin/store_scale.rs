//! Store scale figures for tuning.md: memory per live nonce, and the time and memory to reopen
//! a durable store holding millions of revocations and live nonces.
//!
//! Run: `cargo run --release -p cyberid-bench --bin store_scale -- [count] [data-dir]`
//! (count defaults to 10,000,000 of each; data-dir to a temporary directory), then
//! `... --bin store_scale -- reopen <data-dir>` to time a reopen in a fresh process: resident
//! memory is only meaningful there, since freed memory of earlier phases is reused.

use std::sync::Arc;
use std::time::Instant;

use cyberid_bench::{NOW, claim, resident_bytes, web_number};
use cyberid_engine::{
    ManualClock, MemoryNonceStore, NonceStore, RevocationChange, RevocationRecord, RevocationSet,
    Standing,
};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};

fn open(path: &std::path::Path) -> Result<(DurableStore, f64, u64), cyberid_engine::Error> {
    let before = resident_bytes();
    let start = Instant::now();
    let store = DurableStore::open(
        path,
        StoreOptions::default(),
        Arc::new(ManualClock::new(NOW)),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    Ok((store, seconds, resident_bytes().saturating_sub(before)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("reopen") {
        let path = std::env::args()
            .nth(2)
            .ok_or("usage: store_scale reopen <data-dir>")?;
        let baseline = resident_bytes();
        let (store, seconds, grown) = open(path.as_ref())?;
        let (revocations, nonces) = (store.counts().web_numbers, store.live_nonces());
        println!(
            "fresh-process reopen with {revocations} revocations and {nonces} live nonces: {seconds:.2} s; resident memory {:.0} MiB before, +{:.0} MiB after ({:.1} bytes per entry, RocksDB included)",
            baseline as f64 / (1 << 20) as f64,
            grown as f64 / (1 << 20) as f64,
            grown as f64 / (revocations + nonces).max(1) as f64
        );
        return Ok(());
    }
    let count: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(10_000_000), |arg| arg.parse())?;
    let temp = tempfile::tempdir()?;
    let path = std::env::args()
        .nth(2)
        .map_or_else(|| temp.path().join("store"), std::path::PathBuf::from);
    println!("count: {count} of each; data directory: {}", path.display());

    {
        let store = MemoryNonceStore::with_capacity(0, usize::MAX);
        let before = resident_bytes();
        let claims: Vec<_> = (0..count).map(claim).collect();
        let claims_bytes = resident_bytes().saturating_sub(before);
        for chunk in claims.chunks(8192) {
            store.consume_batch(chunk)?;
        }
        let held = resident_bytes().saturating_sub(before + claims_bytes);
        println!(
            "memory per live nonce (in-memory map alone): {:.1} bytes",
            held as f64 / count as f64
        );
    }

    let start = Instant::now();
    {
        let (store, _, _) = open(&path)?;
        let mut records = Vec::with_capacity(50_000);
        for n in 0..count {
            records.push(RevocationRecord {
                change: RevocationChange::WebNumber {
                    web_number: web_number(n),
                    standing: if n % 2 == 0 {
                        Standing::Suspended
                    } else {
                        Standing::Revoked
                    },
                },
                reason: "scale".into(),
                authority: "bench".into(),
                at: NOW,
            });
            if records.len() == records.capacity() {
                store.apply_batch(&records)?;
                records.clear();
            }
        }
        store.apply_batch(&records)?;
    }
    println!(
        "populated {count} revocations in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let revocations_only = {
        let (store, seconds, grown) = open(&path)?;
        println!(
            "reopen with {} revocations: {seconds:.2} s, resident memory +{:.0} MiB ({:.1} bytes per revocation, RocksDB included)",
            store.counts().web_numbers,
            grown as f64 / (1 << 20) as f64,
            grown as f64 / count as f64
        );
        grown
    };

    let start = Instant::now();
    {
        let (store, _, _) = open(&path)?;
        let claims: Vec<_> = (0..count).map(claim).collect();
        for chunk in claims.chunks(8192) {
            store.consume_batch(chunk)?;
        }
    }
    println!(
        "populated {count} live nonces in {:.1} s (8192 per group commit)",
        start.elapsed().as_secs_f64()
    );
    let (store, seconds, grown) = open(&path)?;
    println!(
        "reopen with {} revocations and {} live nonces: {seconds:.2} s, resident memory +{:.0} MiB ({:.1} bytes per live nonce beyond the revocations)",
        store.counts().web_numbers,
        store.live_nonces(),
        grown as f64 / (1 << 20) as f64,
        grown.saturating_sub(revocations_only) as f64 / count as f64
    );
    Ok(())
}
