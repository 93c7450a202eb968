//! Vault scale figures for tuning.md §6: enrollments per second into the embedded store (each
//! one synced write: blind index, sealed record, device key, audit record) from several
//! concurrent agents, and the bytes on disk per enrolled person, extrapolated to 1.4 billion.
//!
//! Run (a bench target without criterion, so that it shares the benches' release build of
//! RocksDB): `VAULT_SCALE_COUNT=200000 VAULT_SCALE_THREADS=8 cargo bench -p cyberid
//! -p cyberid-loadtest -p cyberid-bench --bench vault_scale` (defaults: 200,000 enrollments
//! from 8 threads). Device keys are drawn from a pool of 64:
//! generating one per person would measure the phones, not the service, and a stored device
//! key is the same 65 bytes whichever it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cyberid_bench::{ISSUING_NOW, identity_store, synthetic_document};
use cyberid_identity::{
    DeviceSigningKey, EnrollmentRequest, IdentityService, IndexKey, ServiceConfig, Vault, VaultKey,
};

/// People of the national plan.
const NATIONAL: f64 = 1.4e9;

fn bytes_under(path: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            bytes_under(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setting = |name: &str, default: u64| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(std::env::var(name).map_or(Ok(default), |value| value.parse())?)
    };
    let count = setting("VAULT_SCALE_COUNT", 200_000)?;
    let threads = setting("VAULT_SCALE_THREADS", 8)?;
    let temp = tempfile::tempdir()?;
    let path = temp.path().join("store");
    let store = identity_store(&path);
    let master = VaultKey::generate(1)?;
    let vault = Vault::open(&master, &[master.wrap(&VaultKey::generate(1)?)?])?;
    let service = IdentityService::new(
        store.clone(),
        store.clone(),
        Arc::new(vault),
        IndexKey::generate()?,
        ServiceConfig::default(),
    );
    let devices: Vec<String> = (0..64)
        .map(|_| DeviceSigningKey::generate()?.public_key().to_spki_pem())
        .collect::<Result<_, _>>()?;
    println!(
        "{count} enrollments from {threads} threads into {}",
        path.display()
    );

    let next = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let serial = next.fetch_add(1, Ordering::Relaxed);
                    if serial >= count {
                        return;
                    }
                    let request = EnrollmentRequest {
                        document: synthetic_document(serial),
                        device_key: devices[(serial % 64) as usize].clone(),
                        guardian_consent: None,
                    };
                    let enrolled = service
                        .enroll(request, "agent", ISSUING_NOW)
                        .expect("enroll");
                    assert!(!enrolled.re_enrolled, "serial {serial} enrolled twice");
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    drop(service);
    drop(store);
    let bytes = bytes_under(&path)?;
    let per_person = bytes as f64 / count as f64;
    println!(
        "enrolled {count} in {seconds:.1} s: {:.0} enrollments/s",
        count as f64 / seconds
    );
    println!(
        "store on disk after close: {:.1} MiB, {per_person:.0} bytes per enrolled person (WAL, \
         uncompressed SST files and the audit records included); 1.4 billion people: {:.0} GiB",
        bytes as f64 / (1 << 20) as f64,
        per_person * NATIONAL / (1u64 << 30) as f64
    );
    Ok(())
}
