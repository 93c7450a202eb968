//! The log's indexes are written after the entries (`src/log_index.rs`): a holder or an
//! authority finds every durable entry whether or not its index rows are written yet, and an
//! open after a crash that lost rows (or the watermark) writes them again from the entries.
//! One test per process: it pauses the indexer through a failpoint, which is global.

mod common;

use common::{open, settle_logged};
use cyberid_engine::contract::{NOW, claim};
use cyberid_engine::{CertificateId, NonceClaim, WebNumber};
use cyberid_store_rocksdb::DurableStore;
use cyberid_translog::LogStore;

/// Settles `n` fresh claims from id `first`, each logged for `holder`; their certificate ids.
fn settle(store: &DurableStore, holder: WebNumber, first: u8, n: u8) -> Vec<CertificateId> {
    let claims: Vec<_> = (first..first + n).map(|i| claim(i, NOW + 200)).collect();
    settle_claims(store, holder, &claims)
}

/// Settles `claims`, each logged for `holder`; their certificate ids, in log order.
fn settle_claims(
    store: &DurableStore,
    holder: WebNumber,
    claims: &[NonceClaim],
) -> Vec<CertificateId> {
    settle_logged(store, claims, |_| holder);
    claims.iter().map(|c| c.certificate_id).collect()
}

fn indexes_of(store: &DurableStore, holder: &WebNumber) -> Vec<u64> {
    let entries = store.entries_of_holder(holder, 0, 1000).unwrap();
    entries.iter().map(|e| e.index).collect()
}

/// Rows in an index family, and the watermark, read from the closed store's files.
fn on_disk(dir: &std::path::Path) -> (usize, usize, Option<u64>) {
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir).unwrap();
    let db =
        rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), dir, &families, false)
            .unwrap();
    let count = |name: &str| {
        db.iterator_cf(&db.cf_handle(name).unwrap(), rocksdb::IteratorMode::Start)
            .count()
    };
    let watermark = db
        .get_cf(&db.cf_handle("meta").unwrap(), b"log_indexed_to")
        .unwrap()
        .map(|bytes| u64::from_be_bytes(bytes.try_into().unwrap()));
    (
        count("log_by_holder"),
        count("log_by_certificate"),
        watermark,
    )
}

#[test]
fn every_durable_entry_is_found_before_and_after_its_rows_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob): (WebNumber, WebNumber) =
        ("7K3MQ9XZ2P".parse().unwrap(), "H4TJ8W2NQR".parse().unwrap());
    let store = open(dir.path());
    let before = settle(&store, alice, 1, 3);
    // The indexer stops before writing anything more.
    fail::cfg("rocksdb::index", "pause").unwrap();
    let during = settle(&store, alice, 10, 4);
    settle(&store, bob, 20, 2);
    assert_eq!(indexes_of(&store, &alice), vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(indexes_of(&store, &bob), vec![7, 8]);
    let by_certificate = store.entries_of_certificate(&during[1]).unwrap();
    assert_eq!(
        by_certificate.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(
        store.entries_of_certificate(&before[0]).unwrap()[0].index,
        0
    );
    // Paging from inside the unindexed part.
    let page = store.entries_of_holder(&alice, 5, 1).unwrap();
    assert_eq!(page.iter().map(|e| e.index).collect::<Vec<_>>(), vec![5]);
    fail::cfg("rocksdb::index", "off").unwrap();
    drop(store);
    // A clean close wrote everything queued.
    assert_eq!(on_disk(dir.path()), (9, 9, Some(9)));

    // A crash that lost the last rows and moved the watermark back: the open writes them again.
    {
        let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), &families).unwrap();
        for family in ["log_by_holder", "log_by_certificate"] {
            let handle = db.cf_handle(family).unwrap();
            let keys: Vec<Box<[u8]>> = db
                .iterator_cf(&handle, rocksdb::IteratorMode::Start)
                .map(|row| row.unwrap().0)
                .filter(|key| u64::from_be_bytes(key[key.len() - 8..].try_into().unwrap()) >= 2)
                .collect();
            for key in keys {
                db.delete_cf(&handle, key).unwrap();
            }
        }
        db.put_cf(
            &db.cf_handle("meta").unwrap(),
            b"log_indexed_to",
            2u64.to_be_bytes(),
        )
        .unwrap();
    }
    assert_eq!(on_disk(dir.path()), (2, 2, Some(2)));
    let store = open(dir.path());
    assert_eq!(indexes_of(&store, &alice), vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(indexes_of(&store, &bob), vec![7, 8]);
    drop(store);
    assert_eq!(on_disk(dir.path()), (9, 9, Some(9)));

    // Many rows at once (the indexer writes them in several writes, the watermark with the
    // last): every one is found through the rows after a close.
    let store = open(dir.path());
    let certificates = settle_many(&store, bob, 2000);
    drop(store);
    assert_eq!(on_disk(dir.path()), (2009, 2009, Some(2009)));
    let store = open(dir.path());
    assert_eq!(store.entries_of_holder(&bob, 0, 5000).unwrap().len(), 2002);
    for (n, certificate) in certificates.iter().enumerate().step_by(97) {
        let found = store.entries_of_certificate(certificate).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].index, 9 + n as u64);
    }
}

/// Settles `n` fresh claims with distinct certificate ids, each logged for `holder`; their
/// certificate ids, in log order.
fn settle_many(store: &DurableStore, holder: WebNumber, n: u16) -> Vec<CertificateId> {
    let claims: Vec<_> = (0..n)
        .map(|i| {
            let mut id = [0xA5; 16];
            id[..2].copy_from_slice(&i.to_be_bytes());
            NonceClaim {
                certificate_id: CertificateId::from_bytes(id),
                ..claim(0, NOW + 200)
            }
        })
        .collect();
    settle_claims(store, holder, &claims)
}
