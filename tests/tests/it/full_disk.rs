//! A full disk: the store fails with a clear error, poisons itself (no valid answer after an
//! unsynced write), and loses nothing it acknowledged before the failure.
//!
//! Needs root to mount a small tmpfs; CI runs as root. Elsewhere the test says why it did not
//! run, unless CI=true, where not running is a failure.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cyberid_engine::{
    CertificateId, Error, ManualClock, NonceClaim, NonceOutcome, NonceStore, RevocationChange,
    RevocationRecord, RevocationSet, Standing,
};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};

const NOW: u64 = 1_790_000_000;

struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

fn mount_tmpfs(at: &Path, megabytes: u32) -> Option<Mount<'_>> {
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
        .arg(at)
        .status()
        .ok()?;
    status.success().then_some(Mount(at))
}

fn claim(n: u64) -> NonceClaim {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    NonceClaim {
        certificate_id: CertificateId::from_bytes(id),
        usable_from: NOW,
        expires_at: NOW + 200,
        retain_until: NOW + 230,
        request: None,
    }
}

fn options() -> StoreOptions {
    // Small memtables make the WAL preallocation small, so the disk fills quickly.
    StoreOptions {
        memtable_bytes: 256 << 10,
        ..StoreOptions::default()
    }
}

#[test]
fn a_full_disk_poisons_the_store_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = mount_tmpfs(dir.path(), 8) else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must be able to mount a tmpfs (run as root)"
        );
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    let data = dir.path().join("data");
    let clock = Arc::new(ManualClock::new(NOW));
    let store = DurableStore::open(&data, options(), clock.clone()).unwrap();

    // One acknowledged batch before the disk fills, so that the bucket exists and the failure
    // comes from appending to the WAL.
    let first: Vec<_> = (0..64).map(claim).collect();
    store.consume_batch(&first).unwrap();

    // Fill the rest of the disk.
    let filler = dir.path().join("filler");
    let mut megabytes = 0;
    while std::fs::write(
        dir.path().join(format!("filler-{megabytes}")),
        vec![0u8; 1 << 20],
    )
    .is_ok()
    {
        megabytes += 1;
    }
    let _ = std::fs::write(&filler, vec![0u8; 64 << 10]);

    let mut acknowledged = 64u64;
    let failure = loop {
        let batch: Vec<_> = (acknowledged..acknowledged + 64).map(claim).collect();
        match store.consume_batch(&batch) {
            Ok(outcomes) => {
                assert!(
                    outcomes
                        .iter()
                        .all(|outcome| *outcome == NonceOutcome::Fresh)
                );
                acknowledged += 64;
            }
            Err(error) => break error,
        }
        assert!(acknowledged < 10_000_000, "the disk never filled");
    };
    eprintln!("disk full after {acknowledged} acknowledged nonces: {failure}");
    assert_eq!(failure.code(), "store", "{failure}");
    assert!(!failure.is_caller_fault());
    assert!(
        store.poisoned().is_some(),
        "a failed write poisons the store"
    );

    // Nothing is answered after the failure, not even for certificates never seen.
    assert_eq!(store.consume(claim(u64::MAX)), Err(Error::Poisoned));
    let revocation = RevocationRecord {
        change: RevocationChange::WebNumber {
            web_number: "7K3MQ9XZ2P".parse().unwrap(),
            standing: Standing::Revoked,
        },
        reason: "test".into(),
        authority: "test".into(),
        at: NOW,
    };
    assert_eq!(store.apply(revocation), Err(Error::Poisoned));
    drop(store);

    // Free the disk and reopen: everything acknowledged is still consumed.
    for index in 0..megabytes {
        std::fs::remove_file(dir.path().join(format!("filler-{index}"))).unwrap();
    }
    let _ = std::fs::remove_file(&filler);
    let store = DurableStore::open(&data, options(), clock).unwrap();
    let claims: Vec<_> = (0..acknowledged).map(claim).collect();
    let outcomes = store.consume_batch(&claims).unwrap();
    let lost = outcomes
        .iter()
        .filter(|outcome| **outcome != NonceOutcome::Replayed)
        .count();
    assert_eq!(lost, 0, "{lost} of {acknowledged} acknowledged nonces lost");
}
