//! A crash or power cut in the middle of a write leaves the WAL's last record torn. Every
//! acknowledged write was synced before its answer, so a torn tail holds only the write that
//! was never acknowledged: the store must open and keep everything acknowledged. Damage before
//! the tail would lose acknowledged writes, so it must be refused, never silently skipped.
//! These tests chose the WAL recovery mode (src/options.rs, docs/store.md).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cyberid_engine::{CertificateId, ManualClock, NonceClaim, NonceOutcome, NonceStore};
use cyberid_store_rocksdb::{DurableStore, StoreOptions};

const NOW: u64 = 1_790_000_000;
const WRITES: u32 = 20;

fn claim(n: u32) -> NonceClaim {
    let mut id = [0xa5; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    NonceClaim {
        certificate_id: CertificateId::from_bytes(id),
        usable_from: NOW,
        expires_at: NOW + 300,
        retain_until: NOW + 330,
        request: None,
    }
}

fn open(dir: &Path) -> Result<DurableStore, cyberid_engine::Error> {
    DurableStore::open(
        dir,
        StoreOptions::default(),
        Arc::new(ManualClock::new(NOW)),
    )
}

/// The newest WAL file.
fn wal(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a WAL file")
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().is_some_and(|name| name != "LOCK") {
            fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// Acknowledged writes one at a time, then the data directory as a crash would leave it (the
/// store still open); returns the WAL's length after each acknowledgement.
fn crash_image(image: &Path) -> Vec<u64> {
    let live = tempfile::tempdir().unwrap();
    let store = open(live.path()).unwrap();
    let mut lengths = Vec::new();
    for n in 0..WRITES {
        assert_eq!(store.consume(claim(n)).unwrap(), NonceOutcome::Fresh);
        lengths.push(fs::metadata(wal(live.path())).unwrap().len());
    }
    copy_dir(live.path(), image);
    drop(store);
    lengths
}

/// Opens a copy of `image` after `damage`; returns how many of the writes are still there, or
/// the error code.
fn reopen_after(image: &Path, damage: impl FnOnce(&Path)) -> Result<u32, &'static str> {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(image, copy.path());
    damage(&wal(copy.path()));
    let store = open(copy.path()).map_err(|error| error.code())?;
    let kept = (0..WRITES)
        .filter(|n| store.consume(claim(*n)).unwrap() == NonceOutcome::Replayed)
        .count();
    Ok(u32::try_from(kept).unwrap())
}

fn truncate(path: &Path, length: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(length)
        .unwrap();
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn a_torn_last_record_loses_only_that_write_at_every_cut() {
    let image = tempfile::tempdir().unwrap();
    let lengths = crash_image(image.path());
    let (before_last, full) = (lengths[lengths.len() - 2], lengths[lengths.len() - 1]);
    assert!(
        full > before_last + 20,
        "one nonce write is a record of some bytes"
    );
    // Cut the last record at every byte: a write torn anywhere, header or payload.
    for cut in before_last..full {
        let kept = reopen_after(image.path(), |wal| truncate(wal, cut));
        assert_eq!(
            kept,
            Ok(WRITES - 1),
            "cut at {cut} of {before_last}..{full}"
        );
    }
    assert_eq!(reopen_after(image.path(), |_| {}), Ok(WRITES));
}

#[test]
fn garbage_after_the_last_record_is_ignored() {
    let image = tempfile::tempdir().unwrap();
    crash_image(image.path());
    // What a crash can leave past the last synced record: zeros (preallocated or unwritten
    // blocks) and stale bytes.
    for tail in [
        vec![0u8; 7],
        vec![0u8; 4096],
        vec![0xff; 13],
        b"garbage tail".to_vec(),
    ] {
        let kept = reopen_after(image.path(), |wal| append(wal, &tail));
        assert_eq!(kept, Ok(WRITES), "tail {tail:?}");
    }
}

#[test]
fn damage_before_the_tail_is_refused_not_skipped() {
    let image = tempfile::tempdir().unwrap();
    let lengths = crash_image(image.path());
    // A flipped byte inside an acknowledged record that has acknowledged records after it:
    // opening would lose those, so the store refuses to open.
    let middle = lengths[WRITES as usize / 2] - 3;
    let result = reopen_after(image.path(), |wal| {
        let mut bytes = fs::read(wal).unwrap();
        bytes[usize::try_from(middle).unwrap()] ^= 0x40;
        fs::write(wal, bytes).unwrap();
    });
    assert_eq!(result, Err("store_corrupt"));
}
