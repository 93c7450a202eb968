//! The log's index families use tiered (universal) compaction (`src/options.rs`); stores made
//! before it kept them leveled. Such a store opens as it is, its rows are found, and so are
//! the rows written after it, whose ingested files are merged with the leveled runs.

mod common;

use common::{open, settle_logged};
use cyberid_engine::contract::{NOW, claim};
use cyberid_engine::{CertificateId, NonceClaim, WebNumber};
use cyberid_store_rocksdb::DurableStore;
use cyberid_translog::LogStore;

const INDEX_FAMILIES: [&str; 2] = ["log_by_holder", "log_by_certificate"];

/// The holders the entries are logged for, in turn.
const HOLDERS: [&str; 5] = [
    "7K3MQ9XZ2P",
    "H4TJ8W2NQR",
    "2PXQ7K3M9Z",
    "W2NQRH4TJ8",
    "Q9XZ7K3M2P",
];

fn holder(n: usize) -> WebNumber {
    HOLDERS[n % HOLDERS.len()].parse().unwrap()
}

/// The certificate id of entry `n`: spread over the whole key space, so that the rows of any
/// few hundred entries overlap those of any others (as random ids do) and every ingested file
/// overlaps the family.
fn certificate(n: u16) -> CertificateId {
    let mut id = [0x5A; 16];
    id[0] = (n as u8).wrapping_mul(37);
    id[1..3].copy_from_slice(&n.to_be_bytes());
    CertificateId::from_bytes(id)
}

/// Settles entries `first..first + n`, entry `i` logged for `holder(i)` with
/// `certificate(i)`.
fn settle(store: &DurableStore, first: u16, n: u16) {
    let claims: Vec<NonceClaim> = (first..first + n)
        .map(|i| NonceClaim {
            certificate_id: certificate(i),
            ..claim(0, NOW + 200)
        })
        .collect();
    settle_logged(store, &claims, |i| holder(usize::from(first) + i));
}

/// Opens the closed store's files with RocksDB's default options (leveled compaction, as the
/// index families had before) and hands the database and its index families to `f`.
fn with_leveled(dir: &std::path::Path, f: impl FnOnce(&rocksdb::DB)) {
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir, &families).unwrap();
    f(&db);
}

#[test]
fn a_store_whose_index_families_were_leveled_opens_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    settle(&store, 0, 500);
    drop(store);
    // The index families as a leveled store has them: every row compacted out of level 0
    // by leveled compaction.
    with_leveled(dir.path(), |db| {
        for family in INDEX_FAMILIES {
            let handle = db.cf_handle(family).unwrap();
            db.compact_range_cf(&handle, None::<&[u8]>, None::<&[u8]>);
            let level0 = db
                .property_int_value_cf(&handle, "rocksdb.num-files-at-level0")
                .unwrap();
            assert_eq!(level0, Some(0), "{family} compacted out of level 0");
        }
    });

    // Opened with tiered compaction again and again, each close ingesting one more file that
    // overlaps all the others: more sorted runs than the four at which tiered compaction
    // merges them.
    for round in 1..=6u16 {
        let store = open(dir.path());
        settle(&store, round * 500, 500);
        drop(store);
    }

    let store = open(dir.path());
    for (n, name) in HOLDERS.iter().enumerate() {
        let entries = store
            .entries_of_holder(&name.parse().unwrap(), 0, 10_000)
            .unwrap();
        assert_eq!(
            entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            (n as u64..3500)
                .step_by(HOLDERS.len())
                .collect::<Vec<u64>>(),
            "{name}"
        );
    }
    for n in (0..3500u16).step_by(53) {
        let found = store.entries_of_certificate(&certificate(n)).unwrap();
        assert_eq!(found.len(), 1, "certificate {n}");
        assert_eq!(found[0].index, u64::from(n));
    }
    drop(store);
    // Each row once on disk, wherever compaction left it.
    with_leveled(dir.path(), |db| {
        for family in INDEX_FAMILIES {
            let handle = db.cf_handle(family).unwrap();
            let rows = db
                .iterator_cf(&handle, rocksdb::IteratorMode::Start)
                .count();
            assert_eq!(rows, 3500, "{family}");
        }
    });
}
