//! The authentication log on RocksDB: entries staged into the nonce batch's own write, so that
//! a verdict is acknowledged only with its entry durable and the log costs no fsync of its own.
//!
//! Appends hold the log lock from the moment they take their indexes until their write is
//! synced, so entries reach the disk in index order and a crash can never leave a gap: the
//! tree on disk is always a prefix of the tree anybody was shown. (Writes that carry no log
//! entries, revocations and enrollments, still share RocksDB's write group.)

use std::sync::atomic::Ordering;

use cyberid_engine::{CertificateId, Error, LogItem, NonceOutcome, Receipt, WebNumber};
use cyberid_translog::{
    AccessEntry, ENTRY_SECRET_LEN, Error as LogError, Frontier, Hash, LogStore, Record,
    SignedTreeHead, StoredEntry, Subtrees, VERIFICATION_ENTRY_LEN, encode_entry, entry_commitment,
    leaf_hash,
};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::layout::{
    LOG_BY_CERTIFICATE, LOG_BY_HOLDER, LOG_ENTRIES, LOG_HEADS, LOG_RETAINED_FROM_KEY, LOG_TREE,
    META, decode_u64, store_error,
};
use crate::{DurableStore, Inner};

/// A tree node's key: its level (one byte), then its index among that level's subtrees.
fn tree_key(level: u32, index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = level as u8;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

/// An index row's key: what it is indexed by, then the entry's index.
fn index_key(by: &[u8], index: u64) -> Vec<u8> {
    [by, &index.to_be_bytes()[..]].concat()
}

fn log_error(error: Error) -> LogError {
    LogError::Store(error.to_string())
}

/// The size of the log on disk: one past the last leaf.
pub(crate) fn load_size(inner: &Inner) -> Result<u64, Error> {
    let tree = inner.cf(LOG_TREE)?;
    let mut iterator = inner.db.raw_iterator_cf(&tree);
    iterator.seek_for_prev(tree_key(0, u64::MAX));
    iterator
        .status()
        .map_err(|e| store_error("load the log", &e))?;
    match iterator.key() {
        Some(key) if key.first() == Some(&0) => {
            let index = decode_u64(&key[1..])
                .ok_or_else(|| Error::Corrupt("a log tree key is not 9 bytes".into()))?;
            Ok(index + 1)
        }
        _ => Ok(0),
    }
}

/// Rebuilds the log's frontier from the subtrees on disk.
pub(crate) fn restore(inner: &Inner) -> Result<Frontier, Error> {
    let size = load_size(inner)?;
    Frontier::restore(inner, size)
        .map_err(|error| Error::Corrupt(format!("the authentication log's tree: {error}")))
}

impl Subtrees for Inner {
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, LogError> {
        let tree = self.cf(LOG_TREE).map_err(log_error)?;
        let value = self
            .db
            .get_pinned_cf(&tree, tree_key(level, index))
            .map_err(|e| LogError::Store(e.to_string()))?
            .ok_or(LogError::Missing { level, index })?;
        let hash: [u8; 32] = value[..]
            .try_into()
            .map_err(|_| LogError::Encoding("a tree node is not 32 bytes"))?;
        Ok(Hash(hash))
    }
}

impl Inner {
    /// Adds the finalised log items to `batch`: entries with fresh secrets, every subtree they
    /// complete, and the index rows. Returns the frontier after them and one receipt per item.
    pub(crate) fn stage_log(
        &self,
        frontier: &Frontier,
        items: &[LogItem],
        outcomes: &[NonceOutcome],
        batch: &mut WriteBatch,
    ) -> Result<(Frontier, Vec<Option<Receipt>>), Error> {
        let mut secrets = vec![0u8; items.len() * ENTRY_SECRET_LEN];
        getrandom::fill(&mut secrets).map_err(|_| Error::Random)?;
        let (entries, tree, holders, certificates) = (
            self.cf(LOG_ENTRIES)?,
            self.cf(LOG_TREE)?,
            self.cf(LOG_BY_HOLDER)?,
            self.cf(LOG_BY_CERTIFICATE)?,
        );
        let mut frontier = frontier.clone();
        let mut receipts = Vec::with_capacity(items.len());
        for (item, secret) in items.iter().zip(secrets.chunks_exact(ENTRY_SECRET_LEN)) {
            let Some(entry) = item.finalise(outcomes) else {
                receipts.push(None);
                continue;
            };
            let secret: &[u8; ENTRY_SECRET_LEN] = secret.try_into().expect("chunk of 16");
            let index = frontier.size();
            let commitment = entry_commitment(&entry, secret);
            let mut value = [0u8; ENTRY_SECRET_LEN + VERIFICATION_ENTRY_LEN];
            value[..ENTRY_SECRET_LEN].copy_from_slice(secret);
            value[ENTRY_SECRET_LEN..].copy_from_slice(&encode_entry(&entry));
            batch.put_cf(&entries, index.to_be_bytes(), value);
            // The tree's leaf is the commitment's leaf hash, SM3(0x00 || commitment).
            for node in frontier.append(leaf_hash(&commitment.0)) {
                batch.put_cf(&tree, tree_key(node.level, node.index), node.hash.0);
            }
            batch.put_cf(&holders, index_key(entry.web_number.as_bytes(), index), []);
            batch.put_cf(
                &certificates,
                index_key(entry.certificate_id.as_bytes(), index),
                [],
            );
            receipts.push(Some(Receipt {
                index,
                commitment: commitment.0,
            }));
        }
        Ok((frontier, receipts))
    }

    /// Appends one record with its own synced write (an authority's access: rare, and never
    /// shown before it is durable).
    fn append_record(&self, record: &Record) -> Result<Receipt, Error> {
        self.check_poisoned()?;
        let mut secret = [0u8; ENTRY_SECRET_LEN];
        getrandom::fill(&mut secret).map_err(|_| Error::Random)?;
        let (entries, tree, holders, certificates) = (
            self.cf(LOG_ENTRIES)?,
            self.cf(LOG_TREE)?,
            self.cf(LOG_BY_HOLDER)?,
            self.cf(LOG_BY_CERTIFICATE)?,
        );
        let mut frontier = self.log.lock().map_err(|_| Error::Poisoned)?;
        let mut grown = frontier.clone();
        let index = grown.size();
        let commitment = record.commitment(&secret);
        let mut batch = WriteBatch::default();
        batch.put_cf(
            &entries,
            index.to_be_bytes(),
            [&secret[..], &record.encode()].concat(),
        );
        for node in grown.append(leaf_hash(&commitment.0)) {
            batch.put_cf(&tree, tree_key(node.level, node.index), node.hash.0);
        }
        if let Some(holder) = record.holder() {
            batch.put_cf(&holders, index_key(holder.as_bytes(), index), []);
        }
        if let Some(certificate) = record.certificate_id() {
            batch.put_cf(&certificates, index_key(certificate.as_bytes(), index), []);
        }
        drop((entries, tree, holders, certificates));
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
        let Some(value) = self
            .db
            .get_pinned_cf(&entries, index.to_be_bytes())
            .map_err(|e| store_error("read a log entry", &e))?
        else {
            return Ok(None);
        };
        decode_stored(index, &value).map(Some)
    }

    /// Entries whose index rows start with `by`, from index `from`, up to `limit`.
    fn entries_by(
        &self,
        family: &str,
        by: &[u8],
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, Error> {
        let rows = self.cf(family)?;
        let start = index_key(by, from);
        let mut found = Vec::new();
        for row in self
            .db
            .iterator_cf(&rows, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, _) = row.map_err(|e| store_error("read the log index", &e))?;
            if found.len() >= limit || !key.starts_with(by) || key.len() != by.len() + 8 {
                break;
            }
            let index = decode_u64(&key[by.len()..]).expect("8 bytes");
            // A row whose entry is past retention is being deleted with it.
            if let Some(entry) = self.read_entry(index)? {
                found.push(entry);
            }
        }
        Ok(found)
    }

    /// Deletes entries (their secrets with them) and their index rows older than
    /// `cutoff_ms`, keeping the tree. Returns how many went.
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
            let (key, value) = row.map_err(|e| store_error("read the log", &e))?;
            let index = decode_u64(&key)
                .ok_or_else(|| Error::Corrupt("a log entry key is not 8 bytes".into()))?;
            let stored = decode_stored(index, &value)?;
            // Entries are in index order, which is time order to within a batch.
            if stored.record.at_ms() >= cutoff_ms || next - from >= 10_000 {
                break;
            }
            batch.delete_cf(&entries, key);
            if let Some(holder) = stored.record.holder() {
                batch.delete_cf(&holders, index_key(holder.as_bytes(), index));
            }
            if let Some(certificate) = stored.record.certificate_id() {
                batch.delete_cf(&certificates, index_key(certificate.as_bytes(), index));
            }
            next = index + 1;
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

fn decode_stored(index: u64, value: &[u8]) -> Result<StoredEntry, Error> {
    let corrupt = || Error::Corrupt(format!("log entry {index} is not a secret and a record"));
    if value.len() <= ENTRY_SECRET_LEN {
        return Err(corrupt());
    }
    let record = Record::decode(&value[ENTRY_SECRET_LEN..]).map_err(|_| corrupt())?;
    Ok(StoredEntry {
        index,
        secret: value[..ENTRY_SECRET_LEN].try_into().expect("16 bytes"),
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
            .entries_by(LOG_BY_HOLDER, web_number.as_bytes(), from, limit)
            .map_err(log_error)
    }

    fn entries_of_certificate(
        &self,
        certificate_id: &CertificateId,
    ) -> Result<Vec<StoredEntry>, LogError> {
        self.inner
            .entries_by(LOG_BY_CERTIFICATE, certificate_id.as_bytes(), 0, usize::MAX)
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
