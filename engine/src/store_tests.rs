//! One contract for every store implementation, run against the in-memory and the RocksDB
//! stores alike; then what only the durable store promises: surviving a close and reopen, and
//! refusing bad data directories.

use std::sync::{Arc, Barrier};

use tempfile::TempDir;

use crate::*;

const NOW: u64 = 1_790_000_000;

/// A store under test, with whatever keeps it alive.
struct Subject<S> {
    store: Arc<S>,
    _dir: Option<TempDir>,
}

fn memory() -> Subject<MemoryNonceStore> {
    Subject {
        store: Arc::new(MemoryNonceStore::new(NOW)),
        _dir: None,
    }
}

fn memory_revocations() -> Subject<MemoryRevocationSet> {
    Subject {
        store: Arc::new(MemoryRevocationSet::new()),
        _dir: None,
    }
}

fn durable() -> Subject<DurableStore> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let store = DurableStore::open(dir.path(), StoreOptions::default(), clock).unwrap();
    Subject {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

fn claim(n: u8, expires_at: u64) -> NonceClaim {
    NonceClaim {
        certificate_id: CertificateId::from_bytes([n; 16]),
        usable_from: NOW,
        expires_at,
        retain_until: expires_at + 30,
    }
}

fn record(change: RevocationChange) -> RevocationRecord {
    RevocationRecord {
        change,
        reason: "stolen-device".into(),
        authority: "mps:110000".into(),
        at: NOW,
    }
}

fn web_number(text: &str) -> WebNumber {
    text.parse().unwrap()
}

/// Runs each contract test against both implementations.
macro_rules! contract {
    ($kind:ident: $($name:ident),* $(,)?) => {
        mod $kind {
            $(
                #[test]
                fn $name() {
                    super::$name(super::$kind());
                }
            )*
        }
    };
}

contract!(memory: first_use_is_fresh_then_replayed, duplicates_in_one_batch, certificates_from_before_history_are_refused, concurrent_claims_yield_exactly_one_fresh, expiry_drops_whole_buckets_by_the_clock);
contract!(durable: first_use_is_fresh_then_replayed, duplicates_in_one_batch, certificates_from_before_history_are_refused, concurrent_claims_yield_exactly_one_fresh, expiry_drops_whole_buckets_by_the_clock);
contract!(memory_revocations: standing_moves_through_suspend_revoke_reinstate, certificates_and_keys_are_revoked, history_pages_in_order, bad_records_are_refused_and_not_recorded, batches_apply_in_order_all_or_nothing);
contract!(durable_revocations: standing_moves_through_suspend_revoke_reinstate, certificates_and_keys_are_revoked, history_pages_in_order, bad_records_are_refused_and_not_recorded, batches_apply_in_order_all_or_nothing);

fn durable_revocations() -> Subject<DurableStore> {
    durable()
}

fn first_use_is_fresh_then_replayed<S: NonceStore>(subject: Subject<S>) {
    let store = &subject.store;
    let expires = NOW + 200;
    assert_eq!(
        store.consume(claim(1, expires)).unwrap(),
        NonceOutcome::Fresh
    );
    assert_eq!(
        store.consume(claim(1, expires)).unwrap(),
        NonceOutcome::Replayed
    );
    assert_eq!(
        store.consume(claim(2, expires)).unwrap(),
        NonceOutcome::Fresh
    );
    assert_eq!(store.live_nonces(), 2);
}

fn duplicates_in_one_batch<S: NonceStore>(subject: Subject<S>) {
    let outcomes = subject
        .store
        .consume_batch(&[
            claim(1, NOW + 200),
            claim(2, NOW + 200),
            claim(1, NOW + 200),
            claim(3, NOW + 260),
        ])
        .unwrap();
    use NonceOutcome::*;
    assert_eq!(outcomes, [Fresh, Fresh, Replayed, Fresh]);
}

fn certificates_from_before_history_are_refused<S: NonceStore>(subject: Subject<S>) {
    let store = &subject.store;
    assert_eq!(store.history_begins(), NOW);
    let early = NonceClaim {
        usable_from: NOW - 1,
        ..claim(9, NOW + 150)
    };
    assert_eq!(store.consume(early).unwrap(), NonceOutcome::BeforeHistory);
    assert_eq!(
        store.consume(early).unwrap(),
        NonceOutcome::BeforeHistory,
        "not consumed"
    );
    assert_eq!(store.live_nonces(), 0);
}

fn concurrent_claims_yield_exactly_one_fresh<S: NonceStore + 'static>(subject: Subject<S>) {
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (store, barrier) = (subject.store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..20u8)
                    .filter(|n| store.consume(claim(*n, NOW + 200)).unwrap() == NonceOutcome::Fresh)
                    .count()
            })
        })
        .collect();
    let fresh: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(
        fresh, 20,
        "each of 20 nonces fresh exactly once over {threads} threads"
    );
}

fn expiry_drops_whole_buckets_by_the_clock<S: NonceStore>(subject: Subject<S>) {
    let store = &subject.store;
    let soon = NOW + 100;
    let later = NOW + 400;
    store
        .consume_batch(&[claim(1, soon), claim(2, soon), claim(3, later)])
        .unwrap();
    assert_eq!(store.live_nonces(), 3);
    assert_eq!(
        store.expire(soon).unwrap(),
        0,
        "nothing is past its retention yet"
    );
    let dropped = store.expire(soon + 30 + 61).unwrap();
    assert!(dropped >= 1);
    assert_eq!(store.live_nonces(), 1);
    assert_eq!(
        store.consume(claim(3, later)).unwrap(),
        NonceOutcome::Replayed
    );
    store.expire(later + 30 + 61).unwrap();
    assert_eq!(store.live_nonces(), 0);
}

fn standing_moves_through_suspend_revoke_reinstate<S: RevocationSet>(subject: Subject<S>) {
    let set = &subject.store;
    let holder = web_number("7K3MQ9XZ2P");
    let other = web_number("0123456789");
    assert_eq!(set.standing(&holder), Standing::Active);
    for standing in [Standing::Suspended, Standing::Revoked, Standing::Active] {
        set.apply(record(RevocationChange::WebNumber {
            web_number: holder,
            standing,
        }))
        .unwrap();
        assert_eq!(set.standing(&holder), standing);
        assert_eq!(set.standing(&other), Standing::Active);
    }
    assert_eq!(set.counts().web_numbers, 0);
}

fn certificates_and_keys_are_revoked<S: RevocationSet>(subject: Subject<S>) {
    let set = &subject.store;
    let certificate_id = CertificateId::from_bytes([7; 16]);
    let key_id: KeyId = "0011223344556677".parse().unwrap();
    assert!(!set.certificate_revoked(&certificate_id));
    assert!(!set.key_revoked(&key_id));
    set.apply(record(RevocationChange::Certificate { certificate_id }))
        .unwrap();
    set.apply(record(RevocationChange::IssuerKey { key_id }))
        .unwrap();
    assert!(set.certificate_revoked(&certificate_id));
    assert!(set.key_revoked(&key_id));
    assert!(!set.certificate_revoked(&CertificateId::from_bytes([8; 16])));
    assert_eq!(
        set.counts(),
        RevocationCounts {
            web_numbers: 0,
            certificates: 1,
            keys: 1
        }
    );
}

fn history_pages_in_order<S: RevocationSet>(subject: Subject<S>) {
    let set = &subject.store;
    let holder = web_number("7K3MQ9XZ2P");
    let changes = [Standing::Suspended, Standing::Active, Standing::Revoked].map(|standing| {
        RevocationChange::WebNumber {
            web_number: holder,
            standing,
        }
    });
    let seqs: Vec<u64> = changes
        .iter()
        .map(|change| set.apply(record(*change)).unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    let all = set.history(0, 10).unwrap();
    assert_eq!(
        all.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(all[1].1, record(changes[1]));
    let page = set.history(1, 1).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].0, 2);
    assert!(set.history(3, 10).unwrap().is_empty());
}

fn bad_records_are_refused_and_not_recorded<S: RevocationSet>(subject: Subject<S>) {
    let set = &subject.store;
    let holder = web_number("7K3MQ9XZ2P");
    for (reason, authority) in [
        ("", "mps"),
        ("stolen", ""),
        ("has space", "mps"),
        ("x", &"a".repeat(65)),
    ] {
        let result = set.apply(RevocationRecord {
            reason: reason.into(),
            authority: authority.into(),
            ..record(RevocationChange::WebNumber {
                web_number: holder,
                standing: Standing::Revoked,
            })
        });
        assert_eq!(result.unwrap_err().code(), "config");
    }
    assert_eq!(set.standing(&holder), Standing::Active);
    assert!(set.history(0, 10).unwrap().is_empty());
}

fn batches_apply_in_order_all_or_nothing<S: RevocationSet>(subject: Subject<S>) {
    let set = &subject.store;
    let holder = web_number("7K3MQ9XZ2P");
    let suspend = record(RevocationChange::WebNumber {
        web_number: holder,
        standing: Standing::Suspended,
    });
    let reinstate = record(RevocationChange::WebNumber {
        web_number: holder,
        standing: Standing::Active,
    });
    let revoke = record(RevocationChange::WebNumber {
        web_number: holder,
        standing: Standing::Revoked,
    });
    assert_eq!(
        set.apply_batch(&[suspend.clone(), reinstate, revoke])
            .unwrap(),
        3
    );
    assert_eq!(
        set.standing(&holder),
        Standing::Revoked,
        "the last change in a batch wins"
    );
    let invalid = RevocationRecord {
        reason: String::new(),
        ..suspend
    };
    let other = web_number("0123456789");
    let first = record(RevocationChange::WebNumber {
        web_number: other,
        standing: Standing::Revoked,
    });
    assert!(set.apply_batch(&[first, invalid]).is_err());
    assert_eq!(
        set.standing(&other),
        Standing::Active,
        "a refused batch changes nothing"
    );
    assert_eq!(set.history(0, 10).unwrap().len(), 3);
    assert_eq!(set.apply_batch(&[]).unwrap(), 3);
}

// What only the durable store promises.

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
        db.put_cf(&meta, b"format_version", 2u64.to_be_bytes())
            .unwrap();
    }
    let error = open(dir.path(), NOW).unwrap_err();
    assert_eq!(
        error,
        Error::IncompatibleFormat {
            found: 2,
            supported: STORE_FORMAT_VERSION
        }
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
