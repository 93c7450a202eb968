//! The durable store: the revocation set and the replay nonces in lock-free memory maps, backed
//! by RocksDB so that nothing acknowledged is lost.
//!
//! Layout (one RocksDB instance, one column family per concern):
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | `format_version`, `history_begins`, `bucket_seconds`, `created_at` | big-endian integers |
//! | `revocation_state` | `w`+Web Number, `c`+certificate id, `k`+key id | standing byte (Web Numbers), empty |
//! | `revocation_log` | sequence number, u64 BE | the record as JSON |
//! | `nonces-<bucket>` | certificate id (16 bytes) | `retain_until`, u64 BE |
//!
//! Nonces live in one column family per expiry bucket (`bucket_seconds` wide, fixed when the
//! store is created): when a bucket's certificates have all expired, the whole column family is
//! dropped, with no scan and no compaction debt.
//!
//! Every write is synced to the WAL before it is acknowledged. Nonce writes from concurrent
//! callers are group-committed by one committer thread: one write batch and one fsync for all
//! requests waiting while the previous fsync ran (bounded by `group_commit_max_keys`, optionally
//! held open for `group_commit_wait`). A failed write poisons the store: it refuses all further
//! work until reopened, because it can no longer vouch for what is durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rocksdb::{
    ColumnFamilyDescriptor, DBWithThreadMode, MultiThreaded, Options, WriteBatch, WriteOptions,
};

use crate::nonce_map::NonceMap;
use crate::store::{RevocationMaps, validate_record};
use crate::{
    CertificateId, Clock, Error, KeyId, NonceClaim, NonceOutcome, NonceStore, Observer,
    RevocationChange, RevocationCounts, RevocationRecord, RevocationSet, Standing, WebNumber,
};

type Db = DBWithThreadMode<MultiThreaded>;

/// The on-disk format this build reads and writes. A store written by another format version
/// is refused at open, never silently reinterpreted.
pub const STORE_FORMAT_VERSION: u32 = 1;

const META: &str = "meta";
const REVOCATION_STATE: &str = "revocation_state";
const REVOCATION_LOG: &str = "revocation_log";
const NONCES_PREFIX: &str = "nonces-";

const FORMAT_KEY: &[u8] = b"format_version";
const HISTORY_BEGINS_KEY: &[u8] = b"history_begins";
const BUCKET_SECONDS_KEY: &[u8] = b"bucket_seconds";
const CREATED_AT_KEY: &[u8] = b"created_at";

/// Settings of the durable store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most nonces written in one group commit (one write batch, one fsync).
    pub group_commit_max_keys: usize,
    /// How long the committer holds a group open for more requests after the first arrives.
    /// Zero (the default) adds no latency: requests that arrive during one fsync form the next
    /// group by themselves.
    pub group_commit_wait: Duration,
    /// Width of a nonce expiry bucket in seconds, for a new store (an existing store keeps the
    /// width it was created with).
    pub bucket_seconds: u64,
    /// Bound on live nonces in memory; past it, verifications fail with an error rather than
    /// forget a live nonce.
    pub max_live_nonces: usize,
    /// How often the committer thread drops expired buckets on its own.
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
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            group_commit_max_keys: 1024,
            group_commit_wait: Duration::ZERO,
            bucket_seconds: 60,
            max_live_nonces: 50_000_000,
            expiry_interval: Duration::from_secs(10),
            memtable_bytes: 16 << 20,
            history_begins: None,
        }
    }
}

/// A nonce write waiting for its group commit.
struct NonceWrite {
    bucket: u64,
    certificate_id: CertificateId,
    retain_until: u64,
}

enum Command {
    Commit {
        writes: Vec<NonceWrite>,
        done: Sender<Result<(), Error>>,
    },
    Expire {
        now: u64,
        done: Sender<Result<usize, Error>>,
    },
}

struct Inner {
    db: Db,
    path: PathBuf,
    nonces: NonceMap,
    revocations: RevocationMaps,
    /// Serialises revocation writes so the log order, the disk state and the maps agree; holds
    /// the last sequence number written.
    revocation_seq: Mutex<u64>,
    history_begins: AtomicU64,
    poisoned: OnceLock<String>,
    options: StoreOptions,
    clock: Arc<dyn Clock>,
    observer: OnceLock<Arc<dyn Observer>>,
}

/// The durable revocation set and nonce store on one RocksDB instance. Implements both
/// [`RevocationSet`] and [`NonceStore`].
///
/// ```
/// use std::sync::Arc;
/// use cyberid_engine::{DurableStore, ManualClock, NonceStore, StoreOptions};
///
/// let dir = tempfile::tempdir().unwrap();
/// let clock = Arc::new(ManualClock::new(1_790_000_000));
/// let store = DurableStore::open(dir.path(), StoreOptions::default(), clock.clone())?;
/// assert_eq!(store.history_begins(), 1_790_000_000);
/// # Ok::<(), cyberid_engine::Error>(())
/// ```
pub struct DurableStore {
    inner: Arc<Inner>,
    commands: Option<Sender<Command>>,
    committer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field("path", &self.inner.path)
            .field("live_nonces", &self.inner.nonces.len())
            .field("poisoned", &self.inner.poisoned.get())
            .finish_non_exhaustive()
    }
}

fn store_error(context: &'static str, error: &rocksdb::Error) -> Error {
    match error.kind() {
        rocksdb::ErrorKind::Corruption => Error::Corrupt(error.to_string()),
        rocksdb::ErrorKind::IOError if error.to_string().to_ascii_lowercase().contains("lock") => {
            Error::Locked(error.to_string())
        }
        _ => Error::Store {
            context,
            detail: error.to_string(),
        },
    }
}

fn nonce_cf_name(bucket: u64) -> String {
    format!("{NONCES_PREFIX}{bucket:012}")
}

fn family_options(options: &StoreOptions) -> Options {
    let mut family = Options::default();
    family.set_write_buffer_size(options.memtable_bytes);
    family
}

fn db_options(store: &StoreOptions) -> Options {
    let mut options = family_options(store);
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // Check every block read against its checksum, and stop at the first sign of damage
    // rather than serve from a store that may have lost acknowledged writes.
    options.set_paranoid_checks(true);
    options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
    options.increase_parallelism(2);
    options
}

fn read_u64(db: &Db, cf: &str, key: &[u8]) -> Result<Option<u64>, Error> {
    let handle = db
        .cf_handle(cf)
        .ok_or_else(|| Error::Corrupt(format!("column family {cf} is missing")))?;
    let value = db
        .get_cf(&handle, key)
        .map_err(|e| store_error("read meta", &e))?;
    value
        .map(|bytes| {
            <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| {
                    Error::Corrupt(format!(
                        "meta value {} is not 8 bytes",
                        String::from_utf8_lossy(key)
                    ))
                })
        })
        .transpose()
}

impl DurableStore {
    /// Opens the store in `path`, creating it (and the directory) if missing.
    ///
    /// A new store's history begins now: it refuses certificates that could have been used
    /// before. A directory that holds something other than a cyberid store, a store of another
    /// format version, a corrupt store, or one locked by another process is an error; the store
    /// never silently starts afresh.
    pub fn open(path: &Path, options: StoreOptions, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        if options.bucket_seconds == 0 || options.group_commit_max_keys == 0 {
            return Err(Error::Config(
                "bucket_seconds and group_commit_max_keys must be positive",
            ));
        }
        let exists = path.join("CURRENT").exists();
        if !exists {
            let occupied = std::fs::read_dir(path).map(|mut entries| entries.next().is_some());
            match occupied {
                Ok(true) => return Err(Error::NotADataDirectory(path.display().to_string())),
                Ok(false) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(path).map_err(|e| Error::Store {
                        context: "create data directory",
                        detail: e.to_string(),
                    })?;
                }
                Err(error) => {
                    return Err(Error::Store {
                        context: "read data directory",
                        detail: error.to_string(),
                    });
                }
            }
        }
        let db_options = db_options(&options);
        let existing = if exists {
            Db::list_cf(&db_options, path).map_err(|e| store_error("list column families", &e))?
        } else {
            Vec::new()
        };
        if exists && !existing.iter().any(|name| name == META) {
            return Err(Error::NotADataDirectory(path.display().to_string()));
        }
        let mut families: Vec<String> = [META, REVOCATION_STATE, REVOCATION_LOG]
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        families.extend(
            existing
                .into_iter()
                .filter(|name| name.starts_with(NONCES_PREFIX)),
        );
        let descriptors = families
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, family_options(&options)));
        let db = Db::open_cf_descriptors(&db_options, path, descriptors)
            .map_err(|e| store_error("open", &e))?;

        let now = clock.now();
        let format = read_u64(&db, META, FORMAT_KEY)?;
        let (history_begins, bucket_seconds) = match format {
            None if !exists => {
                let history_begins = options.history_begins.unwrap_or(now).min(now);
                let meta = db
                    .cf_handle(META)
                    .ok_or(Error::Corrupt("meta column family missing".into()))?;
                let mut batch = WriteBatch::default();
                batch.put_cf(
                    &meta,
                    FORMAT_KEY,
                    u64::from(STORE_FORMAT_VERSION).to_be_bytes(),
                );
                batch.put_cf(&meta, HISTORY_BEGINS_KEY, history_begins.to_be_bytes());
                batch.put_cf(
                    &meta,
                    BUCKET_SECONDS_KEY,
                    options.bucket_seconds.to_be_bytes(),
                );
                batch.put_cf(&meta, CREATED_AT_KEY, now.to_be_bytes());
                drop(meta);
                db.write_opt(batch, &synced())
                    .map_err(|e| store_error("initialise", &e))?;
                (history_begins, options.bucket_seconds)
            }
            None => return Err(Error::Corrupt("format version missing".into())),
            Some(found) if found != u64::from(STORE_FORMAT_VERSION) => {
                return Err(Error::IncompatibleFormat {
                    found,
                    supported: STORE_FORMAT_VERSION,
                });
            }
            Some(_) => (
                read_u64(&db, META, HISTORY_BEGINS_KEY)?
                    .ok_or(Error::Corrupt("history start missing".into()))?,
                read_u64(&db, META, BUCKET_SECONDS_KEY)?
                    .filter(|width| *width > 0)
                    .ok_or(Error::Corrupt("bucket width missing".into()))?,
            ),
        };

        let inner = Inner {
            db,
            path: path.to_path_buf(),
            nonces: NonceMap::new(bucket_seconds),
            revocations: RevocationMaps::default(),
            revocation_seq: Mutex::new(0),
            history_begins: AtomicU64::new(history_begins),
            poisoned: OnceLock::new(),
            options,
            clock,
            observer: OnceLock::new(),
        };
        inner.load_revocations()?;
        inner.load_nonces(&families, now)?;

        let inner = Arc::new(inner);
        let (commands, receiver) = crossbeam_channel::bounded(4096);
        let committer_inner = inner.clone();
        let committer = std::thread::Builder::new()
            .name("cyberid-commit".into())
            .spawn(move || committer_inner.run_committer(&receiver))
            .map_err(|e| Error::Store {
                context: "start committer",
                detail: e.to_string(),
            })?;
        Ok(Self {
            inner,
            commands: Some(commands),
            committer: Some(committer),
        })
    }

    /// Declares that this store's history is incomplete from now on (for example after it was
    /// restored from a backup, which lacks every nonce consumed after the backup was taken).
    /// Durable before it returns; certificates that could have been used before now are refused
    /// with `history_unavailable`.
    pub fn reset_history(&self, now: u64) -> Result<(), Error> {
        self.inner.check_poisoned()?;
        let meta = self.inner.cf(META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(&meta, HISTORY_BEGINS_KEY, now.to_be_bytes());
        drop(meta);
        self.inner.write(batch, "reset history")?;
        self.inner.history_begins.fetch_max(now, Ordering::SeqCst);
        Ok(())
    }

    /// Why the store is poisoned, if it is. A poisoned store answers every request with
    /// [`Error::Poisoned`]; readiness checks report this.
    pub fn poisoned(&self) -> Option<&str> {
        self.inner.poisoned.get().map(String::as_str)
    }

    /// Reports every synced write to `observer` from now on. Only the first observer set is kept.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        let _ = self.inner.observer.set(observer);
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Nonce expiry buckets currently held (column families on disk and maps in memory).
    pub fn nonce_buckets(&self) -> Vec<u64> {
        self.inner.nonces.bucket_indexes()
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.commands
            .as_ref()
            .ok_or(Error::Poisoned)?
            .send(command)
            .map_err(|_| Error::Poisoned)
    }
}

fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

impl Inner {
    fn check_poisoned(&self) -> Result<(), Error> {
        match self.poisoned.get() {
            Some(_) => Err(Error::Poisoned),
            None => Ok(()),
        }
    }

    fn cf(&self, name: &str) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>, Error> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Corrupt(format!("column family {name} is missing")))
    }

    /// Writes and syncs a batch; a failure poisons the store.
    fn write(&self, batch: WriteBatch, context: &'static str) -> Result<(), Error> {
        self.check_poisoned()?;
        let started = Instant::now();
        self.db.write_opt(batch, &synced()).map_err(|error| {
            let error = store_error(context, &error);
            let _ = self.poisoned.set(format!("{context}: {error}"));
            error
        })?;
        if let Some(observer) = self.observer.get() {
            observer.store_synced(started.elapsed());
        }
        Ok(())
    }

    fn load_revocations(&self) -> Result<(), Error> {
        let state = self.cf(REVOCATION_STATE)?;
        let mut iterator = self.db.raw_iterator_cf(&state);
        iterator.seek_to_first();
        while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
            let change = decode_state(key, value)
                .ok_or_else(|| Error::Corrupt("undecodable revocation state entry".into()))?;
            self.revocations.apply(&change);
            iterator.next();
        }
        iterator
            .status()
            .map_err(|e| store_error("load revocations", &e))?;
        let log = self.cf(REVOCATION_LOG)?;
        let mut iterator = self.db.raw_iterator_cf(&log);
        iterator.seek_to_last();
        iterator
            .status()
            .map_err(|e| store_error("load revocation log", &e))?;
        if let Some(key) = iterator.key() {
            let seq = <[u8; 8]>::try_from(key)
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupt("revocation log key is not 8 bytes".into()))?;
            *self.revocation_seq.lock().map_err(|_| Error::Poisoned)? = seq;
        }
        Ok(())
    }

    /// Rebuilds the nonce buckets that are still live and drops those that are not.
    fn load_nonces(&self, families: &[String], now: u64) -> Result<(), Error> {
        for name in families {
            let Some(bucket) = name
                .strip_prefix(NONCES_PREFIX)
                .and_then(|index| index.parse::<u64>().ok())
            else {
                continue;
            };
            let mut live = 0usize;
            {
                let handle = self.cf(name)?;
                let mut iterator = self.db.raw_iterator_cf(&handle);
                iterator.seek_to_first();
                while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
                    let id = <[u8; 16]>::try_from(key).map_err(|_| {
                        Error::Corrupt(format!("nonce key in {name} is not 16 bytes"))
                    })?;
                    let retain_until =
                        <[u8; 8]>::try_from(value)
                            .map(u64::from_be_bytes)
                            .map_err(|_| {
                                Error::Corrupt(format!("nonce value in {name} is not 8 bytes"))
                            })?;
                    if retain_until >= now {
                        self.nonces
                            .load(bucket, CertificateId::from_bytes(id), retain_until);
                        live += 1;
                    }
                    iterator.next();
                }
                iterator
                    .status()
                    .map_err(|e| store_error("load nonces", &e))?;
            }
            if live == 0 {
                self.db
                    .drop_cf(name)
                    .map_err(|e| store_error("drop expired bucket", &e))?;
            }
        }
        Ok(())
    }

    fn run_committer(&self, commands: &Receiver<Command>) {
        let interval = self.options.expiry_interval.max(Duration::from_millis(10));
        let mut next_expiry = Instant::now() + interval;
        loop {
            let command = match commands
                .recv_timeout(next_expiry.saturating_duration_since(Instant::now()))
            {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match command {
                Some(Command::Commit { writes, done }) => self.commit_group(commands, writes, done),
                Some(Command::Expire { now, done }) => {
                    let _ = done.send(self.expire(now));
                }
                None => {}
            }
            if Instant::now() >= next_expiry {
                // A failure here is not fatal: an undropped bucket only holds disk space, and
                // the next open drops it.
                let _ = self.expire(self.clock.now());
                next_expiry = Instant::now() + interval;
            }
        }
    }

    /// Writes the first request and everything queued behind it, up to the group bound, as one
    /// synced batch, then answers every request in the group.
    fn commit_group(
        &self,
        commands: &Receiver<Command>,
        writes: Vec<NonceWrite>,
        done: Sender<Result<(), Error>>,
    ) {
        let mut keys = writes.len();
        let mut group = vec![(writes, done)];
        let deadline = Instant::now() + self.options.group_commit_wait;
        let mut deferred = Vec::new();
        while keys < self.options.group_commit_max_keys {
            let next = if self.options.group_commit_wait.is_zero() {
                commands.try_recv().ok()
            } else {
                commands.recv_deadline(deadline).ok()
            };
            match next {
                Some(Command::Commit { writes, done }) => {
                    keys += writes.len();
                    group.push((writes, done));
                }
                Some(expire @ Command::Expire { .. }) => deferred.push(expire),
                None => break,
            }
        }
        let result = self.write_nonces(group.iter().flat_map(|(writes, _)| writes));
        for (_, done) in group {
            let _ = done.send(result.clone());
        }
        for command in deferred {
            if let Command::Expire { now, done } = command {
                let _ = done.send(self.expire(now));
            }
        }
    }

    fn write_nonces<'a>(&self, writes: impl Iterator<Item = &'a NonceWrite>) -> Result<(), Error> {
        self.check_poisoned()?;
        let mut batch = WriteBatch::default();
        let mut handles: Vec<(u64, Arc<rocksdb::BoundColumnFamily<'_>>)> = Vec::new();
        for write in writes {
            let position = match handles
                .iter()
                .position(|(bucket, _)| *bucket == write.bucket)
            {
                Some(position) => position,
                None => {
                    let name = nonce_cf_name(write.bucket);
                    if self.db.cf_handle(&name).is_none() {
                        self.db
                            .create_cf(&name, &family_options(&self.options))
                            .map_err(|error| {
                                let error = store_error("create bucket", &error);
                                let _ = self.poisoned.set(format!("create bucket: {error}"));
                                error
                            })?;
                    }
                    handles.push((write.bucket, self.cf(&name)?));
                    handles.len() - 1
                }
            };
            batch.put_cf(
                &handles[position].1,
                write.certificate_id.as_bytes(),
                write.retain_until.to_be_bytes(),
            );
        }
        drop(handles);
        self.write(batch, "commit nonces")
    }

    /// Drops expired buckets from memory, then from disk. Runs on the committer thread only,
    /// so a bucket is never dropped while a write into it is being built.
    fn expire(&self, now: u64) -> Result<usize, Error> {
        let dropped = self.nonces.expire(now);
        for bucket in &dropped {
            let name = nonce_cf_name(*bucket);
            if self.db.cf_handle(&name).is_some() {
                self.db
                    .drop_cf(&name)
                    .map_err(|e| store_error("drop expired bucket", &e))?;
            }
        }
        Ok(dropped.len())
    }
}

fn encode_state(change: &RevocationChange) -> (Vec<u8>, Option<Vec<u8>>) {
    match change {
        RevocationChange::WebNumber {
            web_number,
            standing,
        } => {
            let key = [&[b'w'][..], web_number.as_bytes()].concat();
            let value = match standing {
                Standing::Active => None,
                Standing::Suspended => Some(vec![1]),
                Standing::Revoked => Some(vec![2]),
            };
            (key, value)
        }
        RevocationChange::Certificate { certificate_id } => (
            [&[b'c'][..], certificate_id.as_bytes()].concat(),
            Some(Vec::new()),
        ),
        RevocationChange::IssuerKey { key_id } => {
            ([&[b'k'][..], key_id.as_bytes()].concat(), Some(Vec::new()))
        }
    }
}

fn decode_state(key: &[u8], value: &[u8]) -> Option<RevocationChange> {
    let (tag, rest) = key.split_first()?;
    match (tag, value) {
        (b'w', [standing]) => Some(RevocationChange::WebNumber {
            web_number: WebNumber::parse(std::str::from_utf8(rest).ok()?).ok()?,
            standing: match standing {
                1 => Standing::Suspended,
                2 => Standing::Revoked,
                _ => return None,
            },
        }),
        (b'c', []) => Some(RevocationChange::Certificate {
            certificate_id: CertificateId::from_bytes(rest.try_into().ok()?),
        }),
        (b'k', []) => Some(RevocationChange::IssuerKey {
            key_id: KeyId::from_bytes(rest.try_into().ok()?),
        }),
        _ => None,
    }
}

impl NonceStore for DurableStore {
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error> {
        self.inner.check_poisoned()?;
        let history_begins = self.inner.history_begins.load(Ordering::SeqCst);
        let mut outcomes = Vec::with_capacity(claims.len());
        let mut writes = Vec::new();
        for claim in claims {
            if claim.usable_from < history_begins {
                outcomes.push(NonceOutcome::BeforeHistory);
                continue;
            }
            if self.inner.nonces.len() >= self.inner.options.max_live_nonces {
                return Err(Error::Store {
                    context: "nonce store",
                    detail: format!("full: {} live nonces", self.inner.options.max_live_nonces),
                });
            }
            // Claimed in memory first, so a concurrent duplicate is refused at once; answered
            // only after the group commit makes it durable.
            let fresh = self.inner.nonces.insert_if_absent(
                claim.certificate_id,
                claim.expires_at,
                claim.retain_until,
            );
            if fresh {
                writes.push(NonceWrite {
                    bucket: self.inner.nonces.bucket_of(claim.expires_at),
                    certificate_id: claim.certificate_id,
                    retain_until: claim.retain_until,
                });
                outcomes.push(NonceOutcome::Fresh);
            } else {
                outcomes.push(NonceOutcome::Replayed);
            }
        }
        if !writes.is_empty() {
            let (done, result) = crossbeam_channel::bounded(1);
            self.send(Command::Commit { writes, done })?;
            result.recv().map_err(|_| Error::Poisoned)??;
        }
        Ok(outcomes)
    }

    fn history_begins(&self) -> u64 {
        self.inner.history_begins.load(Ordering::SeqCst)
    }

    fn live_nonces(&self) -> usize {
        self.inner.nonces.len()
    }

    fn expire(&self, now: u64) -> Result<usize, Error> {
        let (done, result) = crossbeam_channel::bounded(1);
        self.send(Command::Expire { now, done })?;
        result.recv().map_err(|_| Error::Poisoned)?
    }
}

impl RevocationSet for DurableStore {
    fn standing(&self, web_number: &WebNumber) -> Standing {
        self.inner.revocations.standing(web_number)
    }

    fn certificate_revoked(&self, certificate_id: &CertificateId) -> bool {
        self.inner.revocations.certificate_revoked(certificate_id)
    }

    fn key_revoked(&self, key_id: &KeyId) -> bool {
        self.inner.revocations.key_revoked(key_id)
    }

    fn apply_batch(&self, records: &[RevocationRecord]) -> Result<u64, Error> {
        records.iter().try_for_each(validate_record)?;
        let mut seq = self
            .inner
            .revocation_seq
            .lock()
            .map_err(|_| Error::Poisoned)?;
        let state = self.inner.cf(REVOCATION_STATE)?;
        let log = self.inner.cf(REVOCATION_LOG)?;
        let mut batch = WriteBatch::default();
        for (offset, record) in (1..).zip(records) {
            match encode_state(&record.change) {
                (key, Some(value)) => batch.put_cf(&state, key, value),
                (key, None) => batch.delete_cf(&state, key),
            }
            let json = serde_json::to_vec(record).map_err(|e| Error::Store {
                context: "encode revocation",
                detail: e.to_string(),
            })?;
            batch.put_cf(&log, (*seq + offset).to_be_bytes(), json);
        }
        drop((state, log));
        self.inner.write(batch, "revocation")?;
        // Durable first, visible second, acknowledged last: an acknowledged revocation is
        // always both.
        for record in records {
            self.inner.revocations.apply(&record.change);
        }
        *seq += records.len() as u64;
        Ok(*seq)
    }

    fn history(&self, after: u64, limit: usize) -> Result<Vec<(u64, RevocationRecord)>, Error> {
        let log = self.inner.cf(REVOCATION_LOG)?;
        let mut iterator = self.inner.db.raw_iterator_cf(&log);
        iterator.seek(after.saturating_add(1).to_be_bytes());
        let mut records = Vec::new();
        while records.len() < limit {
            let (Some(key), Some(value)) = (iterator.key(), iterator.value()) else {
                break;
            };
            let seq = <[u8; 8]>::try_from(key)
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupt("revocation log key is not 8 bytes".into()))?;
            let record = serde_json::from_slice(value)
                .map_err(|_| Error::Corrupt("undecodable revocation log entry".into()))?;
            records.push((seq, record));
            iterator.next();
        }
        iterator
            .status()
            .map_err(|e| store_error("read revocation log", &e))?;
        Ok(records)
    }

    fn counts(&self) -> RevocationCounts {
        self.inner.revocations.counts()
    }
}

impl Drop for DurableStore {
    fn drop(&mut self) {
        // Closing the channel stops the committer after it answers what is queued.
        self.commands.take();
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}
