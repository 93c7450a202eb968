//! The authentication log on RocksDB: entries staged into the nonce batch's own write, so that
//! a verdict is acknowledged only with its entry durable and the log costs no fsync of its own.
//!
//! Appends hold the log lock from the moment they take their indexes until their write is
//! synced, so entries reach the disk in index order and a crash can never leave a gap: the
//! tree on disk is always a prefix of the tree anybody was shown. (Writes that carry no log
//! entries, revocations and enrollments, still share RocksDB's write group.)
//!
//! A batch's entries are one value (a *run*, keyed by its first index), and so are the tree
//! nodes it completes: two puts per batch instead of about four per entry (tuning.md §8). The
//! index rows by holder and by certificate, which find a holder's entries among billions, are
//! written after the synced write by the indexer (`log_index.rs`).

use std::sync::atomic::Ordering;

use cyberid_engine::{CertificateId, Error, LogItem, NonceOutcome, Receipt, WebNumber};
use cyberid_translog::{
    AccessEntry, ENTRY_SECRET_LEN, Error as LogError, Frontier, Hash, LogStore, Record,
    SignedTreeHead, StoredEntry, Subtrees, commitment, encode_entry, leaf_hash,
};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::layout::{
    LOG_BY_CERTIFICATE, LOG_BY_HOLDER, LOG_ENTRIES, LOG_HEADS, LOG_RETAINED_FROM_KEY, LOG_TREE,
    META, decode_u64, store_error,
};
use crate::log_index::IndexJob;
use crate::{DurableStore, Inner};

/// Bytes of one node in a tree run: level (1), index among that level's subtrees (u64 BE),
/// hash (32).
const NODE_LEN: usize = 1 + 8 + 32;

/// Appends a record to an entries run: its secret, its length (u16 BE), its binary form.
fn push_record(run: &mut Vec<u8>, secret: &[u8; ENTRY_SECRET_LEN], record: &[u8]) {
    run.extend_from_slice(secret);
    run.extend_from_slice(&(record.len() as u16).to_be_bytes());
    run.extend_from_slice(record);
}

/// The records of an entries run, in order: (secret, binary form).
fn run_records(run: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> + '_ {
    let mut rest = run;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let secret = rest.get(..ENTRY_SECRET_LEN)?;
            let len = usize::from(u16::from_be_bytes(
                rest.get(ENTRY_SECRET_LEN..ENTRY_SECRET_LEN + 2)?
                    .try_into()
                    .ok()?,
            ));
            let record = rest.get(ENTRY_SECRET_LEN + 2..ENTRY_SECRET_LEN + 2 + len)?;
            rest = &rest[ENTRY_SECRET_LEN + 2 + len..];
            Some((secret, record))
        })();
        if parsed.is_none() {
            rest = &[];
        }
        Some(parsed)
    })
}

fn push_node(run: &mut Vec<u8>, level: u32, index: u64, hash: &Hash) {
    run.push(level as u8);
    run.extend_from_slice(&index.to_be_bytes());
    run.extend_from_slice(&hash.0);
}

/// The nodes of a tree run: (level, index, hash).
fn run_nodes(run: &[u8]) -> impl Iterator<Item = (u32, u64, [u8; 32])> + '_ {
    run.chunks_exact(NODE_LEN).map(|node| {
        (
            u32::from(node[0]),
            u64::from_be_bytes(node[1..9].try_into().expect("8 bytes")),
            node[9..].try_into().expect("32 bytes"),
        )
    })
}

/// An index row's key: what it is indexed by, then the entry's index.
pub(crate) fn index_key(by: &[u8], index: u64) -> Vec<u8> {
    [by, &index.to_be_bytes()[..]].concat()
}

/// The first index of the run stored under `key`.
fn run_first(key: &[u8]) -> Result<u64, Error> {
    decode_u64(key).ok_or_else(|| Error::Corrupt("a log entries key is not 8 bytes".into()))
}

/// The entries of the run stored under `key`, with their indexes and secrets.
pub(crate) fn run_entries(key: &[u8], run: &[u8]) -> Result<Vec<StoredEntry>, Error> {
    let first = run_first(key)?;
    run_records(run)
        .enumerate()
        .map(|(position, record)| {
            let record =
                record.ok_or_else(|| Error::Corrupt(format!("log run {first} is damaged")))?;
            decode_stored(first + position as u64, record)
        })
        .collect()
}

fn log_error(error: Error) -> LogError {
    LogError::Store(error.to_string())
}

/// The size of the log on disk: one past the last leaf of the last tree run.
pub(crate) fn load_size(inner: &Inner) -> Result<u64, Error> {
    let tree = inner.cf(LOG_TREE)?;
    let mut iterator = inner.db.raw_iterator_cf(&tree);
    iterator.seek_to_last();
    iterator
        .status()
        .map_err(|e| store_error("load the log", &e))?;
    let (Some(key), Some(value)) = (iterator.key(), iterator.value()) else {
        return Ok(0);
    };
    let corrupt = || Error::Corrupt("a log tree run is damaged".into());
    let first = decode_u64(key).ok_or_else(corrupt)?;
    if value.len() % NODE_LEN != 0 {
        return Err(corrupt());
    }
    let leaves = run_nodes(value).filter(|(level, _, _)| *level == 0).count() as u64;
    Ok(first + leaves)
}

/// Rebuilds the log's frontier from the subtrees on disk.
pub(crate) fn restore(inner: &Inner) -> Result<Frontier, Error> {
    let size = load_size(inner)?;
    Frontier::restore(inner, size)
        .map_err(|error| Error::Corrupt(format!("the authentication log's tree: {error}")))
}

impl Subtrees for Inner {
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, LogError> {
        let missing = LogError::Missing { level, index };
        // A node is completed by its last leaf, so it is in the run holding that leaf.
        let last = index
            .checked_add(1)
            .and_then(|end| end.checked_shl(level))
            .filter(|end| level < 64 && end.trailing_zeros() >= level)
            .map(|end| end - 1)
            .ok_or(missing)?;
        let tree = self.cf(LOG_TREE).map_err(log_error)?;
        let mut iterator = self.db.raw_iterator_cf(&tree);
        iterator.seek_for_prev(last.to_be_bytes());
        iterator
            .status()
            .map_err(|e| LogError::Store(e.to_string()))?;
        let run = iterator.value().ok_or(LogError::Missing { level, index })?;
        run_nodes(run)
            .find(|(l, i, _)| *l == level && *i == index)
            .map(|(_, _, hash)| Hash(hash))
            .ok_or(LogError::Missing { level, index })
    }
}

impl Inner {
    /// Adds the finalised log items to `batch`: one run of entries with fresh secrets and one
    /// run of the tree nodes they complete. Returns the frontier after them, one receipt per
    /// item, and the job that indexes them once they are durable.
    pub(crate) fn stage_log(
        &self,
        frontier: &Frontier,
        items: &[LogItem],
        outcomes: &[NonceOutcome],
        batch: &mut WriteBatch,
    ) -> Result<(Frontier, Vec<Option<Receipt>>, IndexJob), Error> {
        let mut secrets = vec![0u8; items.len() * ENTRY_SECRET_LEN];
        getrandom::fill(&mut secrets).map_err(|_| Error::Random)?;
        let mut index_job = IndexJob::default();
        let mut frontier = frontier.clone();
        let first = frontier.size();
        let mut entries_run = Vec::with_capacity(items.len() * (ENTRY_SECRET_LEN + 2 + 55));
        let mut tree_run = Vec::with_capacity(items.len() * 2 * NODE_LEN);
        let mut receipts = Vec::with_capacity(items.len());
        for (item, secret) in items.iter().zip(secrets.chunks_exact(ENTRY_SECRET_LEN)) {
            let Some(entry) = item.finalise(outcomes) else {
                receipts.push(None);
                continue;
            };
            let secret: &[u8; ENTRY_SECRET_LEN] = secret.try_into().expect("chunk of 16");
            let index = frontier.size();
            let encoded = encode_entry(&entry);
            let commitment = commitment(secret, &encoded);
            push_record(&mut entries_run, secret, &encoded);
            // The tree's leaf is the commitment's leaf hash, SM3(0x00 || commitment).
            for node in frontier.append(leaf_hash(&commitment.0)) {
                push_node(&mut tree_run, node.level, node.index, &node.hash);
            }
            index_job.push(index, &Record::Verification(entry));
            receipts.push(Some(Receipt {
                index,
                commitment: commitment.0,
            }));
        }
        if frontier.size() > first {
            batch.put_cf(&self.cf(LOG_ENTRIES)?, first.to_be_bytes(), entries_run);
            batch.put_cf(&self.cf(LOG_TREE)?, first.to_be_bytes(), tree_run);
        }
        index_job.end = frontier.size();
        Ok((frontier, receipts, index_job))
    }

    /// Appends one record with its own synced write (an authority's access: rare, and never
    /// shown before it is durable), as a run of one.
    fn append_record(&self, record: &Record) -> Result<Receipt, Error> {
        self.check_poisoned()?;
        let mut secret = [0u8; ENTRY_SECRET_LEN];
        getrandom::fill(&mut secret).map_err(|_| Error::Random)?;
        let mut frontier = self.log.lock().map_err(|_| Error::Poisoned)?;
        let mut grown = frontier.clone();
        let index = grown.size();
        let encoded = record.encode();
        let commitment = commitment(&secret, &encoded);
        let mut entries_run = Vec::new();
        push_record(&mut entries_run, &secret, &encoded);
        let mut tree_run = Vec::new();
        for node in grown.append(leaf_hash(&commitment.0)) {
            push_node(&mut tree_run, node.level, node.index, &node.hash);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(&self.cf(LOG_ENTRIES)?, index.to_be_bytes(), entries_run);
        batch.put_cf(&self.cf(LOG_TREE)?, index.to_be_bytes(), tree_run);
        if let Some(holder) = record.holder() {
            batch.put_cf(
                &self.cf(LOG_BY_HOLDER)?,
                index_key(holder.as_bytes(), index),
                [],
            );
        }
        if let Some(certificate) = record.certificate_id() {
            batch.put_cf(
                &self.cf(LOG_BY_CERTIFICATE)?,
                index_key(certificate.as_bytes(), index),
                [],
            );
        }
        self.write(batch, "append a log record")?;
        self.log_size.store(grown.size(), Ordering::Release);
        *frontier = grown;
        Ok(Receipt {
            index,
            commitment: commitment.0,
        })
    }

    fn read_entry(&self, index: u64) -> Result<Option<StoredEntry>, Error> {
        if index < self.log_retained_from.load(Ordering::Acquire) {
            return Ok(None);
        }
        let entries = self.cf(LOG_ENTRIES)?;
        let mut iterator = self.db.raw_iterator_cf(&entries);
        iterator.seek_for_prev(index.to_be_bytes());
        iterator
            .status()
            .map_err(|e| store_error("read a log entry", &e))?;
        let (Some(key), Some(run)) = (iterator.key(), iterator.value()) else {
            return Ok(None);
        };
        let first = decode_u64(key)
            .ok_or_else(|| Error::Corrupt("a log entries key is not 8 bytes".into()))?;
        let Some(position) = index.checked_sub(first) else {
            return Ok(None);
        };
        match run_records(run).nth(position as usize) {
            None => Ok(None),
            Some(None) => Err(Error::Corrupt(format!("log run {first} is damaged"))),
            Some(Some(record)) => decode_stored(index, record).map(Some),
        }
    }

    /// Entries whose index rows start with `by` (those `matches` accepts), from index `from`,
    /// up to `limit`: from the rows and the indexer's tail, then from the runs past the tail.
    fn entries_by(
        &self,
        family: &str,
        by: &[u8],
        matches: impl Fn(&Record) -> bool,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, Error> {
        // The rows and the tail first: every entry below `past` is found there; the size
        // after them covers every entry durable now.
        let (indexes, past) = self.indexed(family, by, from, limit)?;
        let size = self.log_size.load(Ordering::Acquire);
        let mut found = Vec::new();
        for index in indexes {
            // A row whose entry is past retention is being deleted with it.
            if let Some(entry) = self.read_entry(index)? {
                found.push(entry);
            }
        }
        if found.len() < limit {
            // Not below retention: the runs there are deleted, or being deleted.
            let from = from
                .max(past)
                .max(self.log_retained_from.load(Ordering::Acquire));
            let unindexed = self.entries_between(from, size, |stored| matches(&stored.record))?;
            found.extend(unindexed.into_iter().take(limit - found.len()));
        }
        Ok(found)
    }

    /// Deletes runs of entries (their secrets with them) whose every entry is older than
    /// `cutoff_ms`, and their index rows, keeping the tree. Returns how many entries went.
    pub(crate) fn apply_retention(&self, cutoff_ms: u64) -> Result<u64, Error> {
        // Under the log lock: no append is staged while the marker moves.
        let _log = self.log.lock().map_err(|_| Error::Poisoned)?;
        let from = self.log_retained_from.load(Ordering::Acquire);
        let (entries, holders, certificates, meta) = (
            self.cf(LOG_ENTRIES)?,
            self.cf(LOG_BY_HOLDER)?,
            self.cf(LOG_BY_CERTIFICATE)?,
            self.cf(META)?,
        );
        let mut batch = WriteBatch::default();
        let mut next = from;
        for row in self.db.iterator_cf(
            &entries,
            IteratorMode::From(&from.to_be_bytes(), Direction::Forward),
        ) {
            let (key, run) = row.map_err(|e| store_error("read the log", &e))?;
            let first = run_first(&key)?;
            let records = run_entries(&key, &run)?;
            // Runs are in index order, which is time order to within a batch: the first run
            // holding an entry inside retention ends the pass.
            if records
                .iter()
                .any(|stored| stored.record.at_ms() >= cutoff_ms)
                || next - from >= 10_000
            {
                break;
            }
            batch.delete_cf(&entries, &key);
            for stored in &records {
                if let Some(holder) = stored.record.holder() {
                    batch.delete_cf(&holders, index_key(holder.as_bytes(), stored.index));
                }
                if let Some(certificate) = stored.record.certificate_id() {
                    batch.delete_cf(
                        &certificates,
                        index_key(certificate.as_bytes(), stored.index),
                    );
                }
            }
            next = first + records.len() as u64;
        }
        if next == from {
            return Ok(0);
        }
        batch.put_cf(&meta, LOG_RETAINED_FROM_KEY, next.to_be_bytes());
        drop((entries, holders, certificates, meta));
        self.write(batch, "log retention")?;
        self.log_retained_from.store(next, Ordering::Release);
        Ok(next - from)
    }
}

fn decode_stored(index: u64, (secret, record): (&[u8], &[u8])) -> Result<StoredEntry, Error> {
    let record = Record::decode(record)
        .map_err(|_| Error::Corrupt(format!("log entry {index} is not a record")))?;
    Ok(StoredEntry {
        index,
        secret: secret.try_into().expect("16 bytes"),
        record,
    })
}

impl DurableStore {
    /// Applies the retention setting now (the expiry thread does so on its own every
    /// `expiry_interval`); returns how many entries went. Without a retention setting, none.
    pub fn apply_log_retention(&self) -> Result<u64, Error> {
        let Some(retention) = self.inner.options.log_retention else {
            return Ok(0);
        };
        let cutoff_ms = self
            .inner
            .clock
            .now()
            .saturating_sub(retention)
            .saturating_mul(1000);
        let mut total = 0;
        loop {
            let went = self.inner.apply_retention(cutoff_ms)?;
            total += went;
            if went == 0 {
                return Ok(total);
            }
        }
    }
}

impl Subtrees for DurableStore {
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, LogError> {
        self.inner.subtree(level, index)
    }
}

impl LogStore for DurableStore {
    fn size(&self) -> u64 {
        self.inner.log_size.load(Ordering::Acquire)
    }

    fn retained_from(&self) -> u64 {
        self.inner.log_retained_from.load(Ordering::Acquire)
    }

    fn entry(&self, index: u64) -> Result<Option<StoredEntry>, LogError> {
        if index >= self.size() {
            return Ok(None);
        }
        self.inner.read_entry(index).map_err(log_error)
    }

    fn entries_of_holder(
        &self,
        web_number: &WebNumber,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, LogError> {
        self.inner
            .entries_by(
                LOG_BY_HOLDER,
                web_number.as_bytes(),
                |record| record.holder() == Some(*web_number),
                from,
                limit,
            )
            .map_err(log_error)
    }

    fn entries_of_certificate(
        &self,
        certificate_id: &CertificateId,
    ) -> Result<Vec<StoredEntry>, LogError> {
        self.inner
            .entries_by(
                LOG_BY_CERTIFICATE,
                certificate_id.as_bytes(),
                |record| record.certificate_id() == Some(*certificate_id),
                0,
                usize::MAX,
            )
            .map_err(log_error)
    }

    fn append_access(&self, access: &AccessEntry) -> Result<Receipt, LogError> {
        access.validate()?;
        self.inner
            .append_record(&Record::Access(access.clone()))
            .map_err(log_error)
    }

    fn save_head(&self, head: &SignedTreeHead) -> Result<(), LogError> {
        let heads = self.inner.cf(LOG_HEADS).map_err(log_error)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(&heads, head.head.size.to_be_bytes(), head.encode());
        drop(heads);
        self.inner
            .write(batch, "save a tree head")
            .map_err(log_error)
    }

    fn latest_head(&self) -> Result<Option<SignedTreeHead>, LogError> {
        let heads = self.inner.cf(LOG_HEADS).map_err(log_error)?;
        let mut iterator = self.inner.db.raw_iterator_cf(&heads);
        iterator.seek_to_last();
        iterator
            .status()
            .map_err(|e| LogError::Store(e.to_string()))?;
        iterator.value().map(SignedTreeHead::decode).transpose()
    }

    fn heads(&self, from_size: u64, limit: usize) -> Result<Vec<SignedTreeHead>, LogError> {
        let heads = self.inner.cf(LOG_HEADS).map_err(log_error)?;
        let start = from_size.to_be_bytes();
        self.inner
            .db
            .iterator_cf(&heads, IteratorMode::From(&start, Direction::Forward))
            .take(limit)
            .map(|row| {
                let (_, value) = row.map_err(|e| LogError::Store(e.to_string()))?;
                SignedTreeHead::decode(&value)
            })
            .collect()
    }

    fn head_at(&self, size: u64) -> Result<Option<SignedTreeHead>, LogError> {
        let heads = self.inner.cf(LOG_HEADS).map_err(log_error)?;
        self.inner
            .db
            .get_pinned_cf(&heads, size.to_be_bytes())
            .map_err(|e| LogError::Store(e.to_string()))?
            .map(|value| SignedTreeHead::decode(&value))
            .transpose()
    }
}
