//! The store's settings and the RocksDB options they become.

use std::time::Duration;

use rocksdb::{DBCompactionStyle, DBRecoveryMode, Options, UniversalCompactOptions, WriteOptions};

/// Settings of the durable store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Width of a nonce expiry bucket in seconds, for a new store (an existing store keeps the
    /// width it was created with).
    pub bucket_seconds: u64,
    /// Bound on live nonces in memory; a batch that could pass it is refused whole with
    /// `nonce_store_full` (503) and consumes nothing, rather than forget a live nonce.
    pub max_live_nonces: usize,
    /// How often the expiry thread drops expired buckets on its own.
    pub expiry_interval: Duration,
    /// Memtable size per column family, bytes. RocksDB also preallocates each WAL file at about
    /// 1.1 times this. Smaller bounds memory (about ten column families are live); larger
    /// flushes less often.
    pub memtable_bytes: usize,
    /// For a new store only: when its history begins. `None` (the default) is the moment it is
    /// created, which is always safe. An earlier time asserts that no certificate was verified
    /// anywhere before it: true for a deployment's first node whose issuer keys are new, and
    /// false for a node joining or replacing one that already served. An existing store keeps
    /// its own history.
    pub history_begins: Option<u64>,
    /// How long the authentication log keeps an entry openable, seconds; `None` keeps every
    /// entry. Past it the expiry thread deletes the entry with its secret and its index rows;
    /// its leaf stays in the tree, so heads and proofs stay checkable.
    pub log_retention: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            bucket_seconds: 60,
            max_live_nonces: 50_000_000,
            expiry_interval: Duration::from_secs(10),
            memtable_bytes: 16 << 20,
            history_begins: None,
            log_retention: None,
        }
    }
}

pub(crate) fn family_options(options: &StoreOptions) -> Options {
    let mut family = Options::default();
    family.set_write_buffer_size(options.memtable_bytes);
    family
}

/// Options of the log's two index families (`log_by_holder`, `log_by_certificate`).
///
/// Why tiered (universal) compaction: nearly all they receive is one ingested file every few
/// seconds of rows with random keys (`log_index.rs`), and each such file overlaps the whole
/// family. Leveled compaction merges every four of them into all of level 1, rewriting it
/// each time: about 2 µs of CPU per verification in the log's cost (tuning.md §8), growing
/// with the family. Tiered compaction merges sorted runs of similar size, so a row is
/// rewritten about log(size) times. The price is more runs to look in on a read; these
/// families are read only by a holder's read of their log and an authority's query. A store
/// made with leveled families opens as it is: each level is one sorted run to it.
pub(crate) fn index_family_options(options: &StoreOptions) -> Options {
    let mut family = family_options(options);
    family.set_compaction_style(DBCompactionStyle::Universal);
    let mut universal = UniversalCompactOptions::default();
    // Runs merge when the younger ones add up to the next one's size (ratio 1%, the
    // default); at most 200% of the data in younger runs before all are merged (default).
    universal.set_size_ratio(1);
    universal.set_max_size_amplification_percent(200);
    family.set_universal_compaction_options(&universal);
    family
}

pub(crate) fn db_options(store: &StoreOptions) -> Options {
    let mut options = family_options(store);
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // Check every block read against its checksum, and stop at the first sign of damage
    // rather than serve from a store that may have lost acknowledged writes.
    options.set_paranoid_checks(true);
    // Every acknowledged write was synced, so a torn last WAL record (a crash or power loss
    // in the middle of a write) holds only unacknowledged writes: recovery drops it and the
    // node starts. Damage anywhere before the tail is refused as corruption, because records
    // after it were acknowledged. `AbsoluteConsistency` would refuse to start after a torn
    // tail; `PointInTime` would silently drop acknowledged records after a damaged one. The
    // torn-tail test (tests/torn_tail.rs) checks both halves.
    options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    options.increase_parallelism(2);
    options
}

pub(crate) fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}
