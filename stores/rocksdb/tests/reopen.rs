//! What only the durable store promises: surviving a close and reopen, and refusing bad data
//! directories. (The behaviour every store shares is the engine's contract suite, run in
//! `src/lib.rs`.)

use std::sync::Arc;

use cyberid_engine::contract::{NOW, claim, record, web_number};
use cyberid_engine::{
    CertificateId, Error, ManualClock, NonceOutcome, NonceStore, RevocationChange, RevocationSet,
    Standing,
};
use cyberid_store_rocksdb::{DurableStore, STORE_FORMAT_VERSION, StoreOptions};

fn open(dir: &std::path::Path, now: u64) -> Result<DurableStore, Error> {
    DurableStore::open(
        dir,
        StoreOptions::default(),
        Arc::new(ManualClock::new(now)),
    )
}

#[test]
fn everything_acknowledged_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let holder = web_number("7K3MQ9XZ2P");
    let certificate_id = CertificateId::from_bytes([5; 16]);
    {
        let store = open(dir.path(), NOW).unwrap();
        store
            .consume_batch(&[claim(1, NOW + 200), claim(2, NOW + 300)])
            .unwrap();
        store
            .apply(record(RevocationChange::WebNumber {
                web_number: holder,
                standing: Standing::Suspended,
            }))
            .unwrap();
        store
            .apply(record(RevocationChange::Certificate { certificate_id }))
            .unwrap();
    }
    let store = open(dir.path(), NOW + 10).unwrap();
    assert_eq!(
        store.history_begins(),
        NOW,
        "history start is the store's, not the process's"
    );
    assert_eq!(store.live_nonces(), 2);
    assert_eq!(
        store.consume(claim(1, NOW + 200)).unwrap(),
        NonceOutcome::Replayed
    );
    assert_eq!(
        store.consume(claim(2, NOW + 300)).unwrap(),
        NonceOutcome::Replayed
    );
    assert_eq!(store.standing(&holder), Standing::Suspended);
    assert!(store.certificate_revoked(&certificate_id));
    assert_eq!(store.history(0, 10).unwrap().len(), 2);
    assert_eq!(
        store
            .apply(record(RevocationChange::WebNumber {
                web_number: holder,
                standing: Standing::Active
            }))
            .unwrap(),
        3,
        "sequence numbers continue after a reopen"
    );
    store.expire(NOW + 1000).unwrap();
    drop(store);
    // Nonces whose retention ended before the reopen are not loaded, and a late presentation
    // of their certificate is refused as expired, never taken for a first use.
    let store = open(dir.path(), NOW + 400).unwrap();
    assert_eq!(store.live_nonces(), 0);
    assert_eq!(
        store.consume(claim(1, NOW + 200)).unwrap(),
        NonceOutcome::Expired
    );
}

#[test]
fn reopening_late_loads_only_live_nonces_and_drops_dead_buckets() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), NOW).unwrap();
        store
            .consume_batch(&[claim(1, NOW + 100), claim(2, NOW + 1000)])
            .unwrap();
        assert_eq!(store.nonce_buckets().len(), 2);
    }
    let store = open(dir.path(), NOW + 500).unwrap();
    assert_eq!(store.live_nonces(), 1);
    assert_eq!(store.nonce_buckets(), [(NOW + 1000) / 60]);
    drop(store);
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
    let buckets: Vec<_> = families
        .iter()
        .filter(|name| name.starts_with("nonces-"))
        .collect();
    assert_eq!(
        buckets.len(),
        1,
        "the dead bucket's column family is gone: {families:?}"
    );
}

#[test]
fn expiry_removes_buckets_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), NOW).unwrap();
        store.consume(claim(1, NOW + 100)).unwrap();
        assert_eq!(store.expire(NOW + 1000).unwrap(), 1);
    }
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
    assert!(
        !families.iter().any(|name| name.starts_with("nonces-")),
        "{families:?}"
    );
}

#[test]
fn reset_history_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), NOW).unwrap();
        store.reset_history(NOW + 50).unwrap();
        assert_eq!(store.history_begins(), NOW + 50);
    }
    let store = open(dir.path(), NOW + 60).unwrap();
    assert_eq!(store.history_begins(), NOW + 50);
    assert_eq!(
        store.consume(claim(1, NOW + 200)).unwrap(),
        NonceOutcome::BeforeHistory
    );
}

#[test]
fn a_first_node_may_declare_an_earlier_history_start_only_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let first_node = StoreOptions {
        history_begins: Some(NOW - 1000),
        ..StoreOptions::default()
    };
    let clock = Arc::new(ManualClock::new(NOW));
    {
        let store = DurableStore::open(dir.path(), first_node, clock.clone()).unwrap();
        assert_eq!(store.history_begins(), NOW - 1000);
        assert_eq!(
            store.consume(claim(1, NOW + 200)).unwrap(),
            NonceOutcome::Fresh
        );
    }
    // Reopening keeps the recorded start, whatever the options say.
    let later = StoreOptions {
        history_begins: Some(0),
        ..StoreOptions::default()
    };
    let store = DurableStore::open(dir.path(), later, clock).unwrap();
    assert_eq!(store.history_begins(), NOW - 1000);
    // A start in the future is clamped to the moment of creation.
    let other = tempfile::tempdir().unwrap();
    let future = StoreOptions {
        history_begins: Some(NOW + 10),
        ..StoreOptions::default()
    };
    let store = DurableStore::open(other.path(), future, Arc::new(ManualClock::new(NOW))).unwrap();
    assert_eq!(store.history_begins(), NOW);
}

#[test]
fn a_missing_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/data");
    let store = open(&nested, NOW).unwrap();
    assert_eq!(store.path(), nested);
    assert!(nested.join("CURRENT").exists());
}

#[test]
fn a_foreign_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a store").unwrap();
    assert_eq!(
        open(dir.path(), NOW).unwrap_err().code(),
        "not_a_data_directory"
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);

    // A RocksDB database that is not a cyberid store.
    let other = tempfile::tempdir().unwrap();
    drop(rocksdb::DB::open_default(other.path()).unwrap());
    assert_eq!(
        open(other.path(), NOW).unwrap_err().code(),
        "not_a_data_directory"
    );
}

#[test]
fn another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), NOW).unwrap());
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(false);
        let families = rocksdb::DB::list_cf(&options, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&options, dir.path(), &families).unwrap();
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(
            &meta,
            b"format_version",
            (u64::from(STORE_FORMAT_VERSION) + 1).to_be_bytes(),
        )
        .unwrap();
    }
    let error = open(dir.path(), NOW).unwrap_err();
    assert_eq!(
        error,
        Error::IncompatibleFormat {
            found: u64::from(STORE_FORMAT_VERSION) + 1,
            supported: STORE_FORMAT_VERSION
        }
    );
}

#[test]
fn a_version_1_store_is_upgraded_in_place_and_keeps_its_nonces() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), NOW).unwrap();
        store.consume(claim(1, NOW + 200)).unwrap();
    }
    let set_format = |version: u64| {
        let options = rocksdb::Options::default();
        let families = rocksdb::DB::list_cf(&options, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&options, dir.path(), &families).unwrap();
        let meta = db.cf_handle("meta").unwrap();
        let before = db.get_cf(&meta, b"format_version").unwrap().unwrap();
        db.put_cf(&meta, b"format_version", version.to_be_bytes())
            .unwrap();
        u64::from_be_bytes(before.try_into().unwrap())
    };
    assert_eq!(set_format(1), u64::from(STORE_FORMAT_VERSION));
    let store = open(dir.path(), NOW).unwrap();
    assert_eq!(
        store.consume(claim(1, NOW + 200)).unwrap(),
        NonceOutcome::Replayed
    );
    drop(store);
    assert_eq!(
        set_format(2),
        u64::from(STORE_FORMAT_VERSION),
        "the upgrade was written"
    );
}

#[test]
fn a_version_2_store_gains_the_enrollment_families_and_keeps_its_revocations() {
    use cyberid_engine::{RevocationChange, RevocationRecord, RevocationSet, Standing};
    use cyberid_identity::Registry;
    let dir = tempfile::tempdir().unwrap();
    let holder = "7K3MQ9XZ2P".parse().unwrap();
    {
        let store = open(dir.path(), NOW).unwrap();
        store
            .apply(RevocationRecord {
                change: RevocationChange::WebNumber {
                    web_number: holder,
                    standing: Standing::Suspended,
                },
                reason: "lost".into(),
                authority: "mps".into(),
                at: NOW,
            })
            .unwrap();
    }
    // Make it what a version 2 build left: no enrollment families, format 2.
    {
        let options = rocksdb::Options::default();
        let families = rocksdb::DB::list_cf(&options, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&options, dir.path(), &families).unwrap();
        db.drop_cf("enrollment_index").unwrap();
        db.drop_cf("enrollments").unwrap();
        let meta = db.cf_handle("meta").unwrap();
        db.put_cf(&meta, b"format_version", 2u64.to_be_bytes())
            .unwrap();
    }
    let store = open(dir.path(), NOW).unwrap();
    assert_eq!(store.standing(&holder), Standing::Suspended);
    assert_eq!(store.holder(&holder).unwrap(), None);
    drop(store);
    let options = rocksdb::Options::default();
    let families = rocksdb::DB::list_cf(&options, dir.path()).unwrap();
    assert!(
        families.iter().any(|name| name == "enrollments"),
        "{families:?}"
    );
    let db = rocksdb::DB::open_cf(&options, dir.path(), &families).unwrap();
    let meta = db.cf_handle("meta").unwrap();
    let format = db.get_cf(&meta, b"format_version").unwrap().unwrap();
    assert_eq!(
        u64::from_be_bytes(format.try_into().unwrap()),
        u64::from(STORE_FORMAT_VERSION)
    );
}

#[test]
fn a_store_open_elsewhere_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), NOW).unwrap();
    assert_eq!(open(dir.path(), NOW).unwrap_err().code(), "store_locked");
}

#[test]
fn a_corrupt_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), NOW).unwrap();
        store.consume(claim(1, NOW + 200)).unwrap();
    }
    // Damage the manifest the CURRENT file points at.
    let current = std::fs::read_to_string(dir.path().join("CURRENT")).unwrap();
    let manifest = dir.path().join(current.trim());
    let mut bytes = std::fs::read(&manifest).unwrap();
    for byte in bytes.iter_mut().skip(16).step_by(7) {
        *byte ^= 0x5a;
    }
    std::fs::write(&manifest, bytes).unwrap();
    let error = open(dir.path(), NOW).unwrap_err();
    assert_eq!(error.code(), "store_corrupt", "{error}");
}

#[test]
fn standing_consents_and_withdrawals_survive_a_reopen() {
    use cyberid_engine::{Attribute, Attributes};
    use cyberid_identity::{Purpose, Registry, StandingConsent};
    let dir = tempfile::tempdir().unwrap();
    let holder = web_number("7K3MQ9XZ2P");
    let consent = |platform: &str| StandingConsent {
        platform: platform.parse().unwrap(),
        attributes: Attributes::of(&[Attribute::Name]),
        purpose: Purpose::of("account opening"),
        given_at: NOW,
    };
    {
        let store = open(dir.path(), NOW).unwrap();
        store
            .put_consent(&holder, &consent("bank.example"))
            .unwrap();
        store
            .put_consent(&holder, &consent("shop.example"))
            .unwrap();
        assert!(
            store
                .withdraw_consent(&holder, &"shop.example".parse().unwrap())
                .unwrap()
        );
    }
    let store = open(dir.path(), NOW + 10).unwrap();
    assert_eq!(
        store.consents(&holder).unwrap(),
        vec![consent("bank.example")]
    );
}
