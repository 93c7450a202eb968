//! The authentication log's indexes, by holder and by certificate, kept off the verification
//! path.
//!
//! Why: index rows were two random-keyed puts per entry inside the synced write that consumes
//! the nonces, two thirds of that write's puts; the settler waited for them on every batch.
//! Written after it, by a thread of their own, each row was still a random key inserted into a
//! memtable skip list of hundreds of thousands of rows: the largest part of the log's cost
//! (tuning.md §8). The entries themselves (one run per batch) are what the log must never lose,
//! and they stay in the synced write. The rows are derived data, so they take a cheaper road:
//!
//! - the settler queues each batch's rows to the indexer, which gathers them for 100 ms and
//!   adds them to the *tail*: two lists of rows in memory, by holder and by certificate, of
//!   the entries from the watermark on;
//! - every few seconds (and at close) the indexer writes the tail's rows, sorted, as one SST
//!   file per family and ingests it (no memtable, no skip list, no WAL: RocksDB makes the
//!   file durable before it is visible), then moves the watermark (`log_indexed_to` in
//!   `meta`) to the tail's end and empties the tail.
//!
//! Readers see every durable entry at once: rows in RocksDB below the tail's end, the tail's
//! rows, and the few entries past the tail (queued to the indexer) from their runs. At open,
//! whatever a crash left unindexed (entries from the watermark on) is indexed again from the
//! runs before the store serves; a watermark behind its rows only makes the same rows again.
//! Access records (an authority's read, rare) still write their rows in their own synced
//! write; a reader merges those with the tail's, once each.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use cyberid_engine::Error;
use cyberid_translog::{Record, StoredEntry};
use rocksdb::{
    Direction, IngestExternalFileOptions, IteratorMode, Options, SstFileWriter, WriteOptions,
};

use crate::Inner;
use crate::authlog::run_entries;
use crate::layout::{
    LOG_BY_CERTIFICATE, LOG_BY_HOLDER, LOG_ENTRIES, LOG_INDEXED_KEY, META, read_u64, store_error,
};

/// A `log_by_holder` row: the Web Number's bytes, then the entry's index (u64 BE), as
/// `authlog::index_key` makes them.
type HolderRow = [u8; 18];
/// A `log_by_certificate` row: the certificate id, then the entry's index.
type CertificateRow = [u8; 24];

/// The row of `index` under `by`.
fn row<const K: usize, const N: usize>(by: &[u8; K], index: u64) -> [u8; N] {
    const {
        assert!(
            N == K + 8,
            "a row is what it indexes by and 8 bytes of index"
        )
    };
    let mut row = [0u8; N];
    row[..K].copy_from_slice(by);
    row[K..].copy_from_slice(&index.to_be_bytes());
    row
}

/// The index of the entry a row points at.
fn row_index<const N: usize>(row: &[u8; N]) -> u64 {
    crate::layout::decode_u64(&row[N - 8..]).expect("8 bytes")
}

/// The index rows of settled entries, and the log size after them. Built on the settler from
/// the entries it staged: the indexer needs no more than these, and they are smaller to queue
/// than the records they came from.
#[derive(Debug, Default)]
pub(crate) struct IndexJob {
    by_holder: Vec<HolderRow>,
    by_certificate: Vec<CertificateRow>,
    pub(crate) end: u64,
}

impl IndexJob {
    /// Adds the rows of the record at `index`.
    pub(crate) fn push(&mut self, index: u64, record: &Record) {
        if let Some(holder) = record.holder() {
            self.by_holder.push(row(holder.as_bytes(), index));
        }
        if let Some(certificate) = record.certificate_id() {
            self.by_certificate.push(row(certificate.as_bytes(), index));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_holder.is_empty() && self.by_certificate.is_empty()
    }
}

/// The rows of the log's unwritten tail: entries `[from, end)`, whose rows are in memory only.
/// Below `from` every entry's rows are in RocksDB.
///
/// Why plain vectors in index order and not maps by holder and by certificate: adding a
/// settled batch is then a copy, with no hashing and no allocation per row, on the thread
/// that keeps pace with every verification; a reader (a holder's read, an authority's query:
/// rare) scans at most [`TAIL_ROWS`] rows, about a millisecond.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    from: u64,
    end: u64,
    by_holder: Vec<HolderRow>,
    by_certificate: Vec<CertificateRow>,
}

impl Tail {
    fn add(&mut self, job: IndexJob) {
        self.by_holder.extend_from_slice(&job.by_holder);
        self.by_certificate.extend_from_slice(&job.by_certificate);
        self.end = self.end.max(job.end);
    }

    fn rows(&self) -> usize {
        self.by_holder.len() + self.by_certificate.len()
    }

    /// The tail's entries whose rows in `family` start with `by`, in index order.
    fn indexes(&self, family: &str, by: &[u8]) -> Vec<u64> {
        fn matching<const N: usize>(rows: &[[u8; N]], by: &[u8]) -> Vec<u64> {
            if by.len() + 8 != N {
                return Vec::new();
            }
            rows.iter()
                .filter(|row| row.starts_with(by))
                .map(row_index)
                .collect()
        }
        match family {
            LOG_BY_HOLDER => matching(&self.by_holder, by),
            LOG_BY_CERTIFICATE => matching(&self.by_certificate, by),
            _ => Vec::new(),
        }
    }

    /// The rows of one family from `retained_from` on, sorted, as the file that holds them
    /// must have them.
    fn sorted<const N: usize>(rows: &[[u8; N]], retained_from: u64) -> Vec<[u8; N]> {
        let mut sorted: Vec<[u8; N]> = rows
            .iter()
            // An entry already past retention is gone with its run: no row for it.
            .filter(|row| row_index(row) >= retained_from)
            .copied()
            .collect();
        sorted.sort_unstable();
        sorted
    }
}

/// How long the indexer gathers queued batches before adding them to the tail: one wake-up
/// per window rather than per settled batch. Readers find entries past the tail in their runs:
/// at most this much of the log.
const GATHER: Duration = Duration::from_millis(100);

/// The tail is written once it holds this many rows, or is this old, whichever comes first.
/// Larger makes fewer and larger files (each ingested file is one more for compaction to
/// merge); smaller keeps less in memory and less to index again after a crash.
const TAIL_ROWS: usize = 1 << 18;
const TAIL_AGE: Duration = Duration::from_secs(5);

/// At most this many queued batches: past it the settler waits (the indexer is behind by
/// seconds of verifications, and memory must stay bounded). A window holds one batch per
/// settled batch, however small the batches are at low load.
pub(crate) const QUEUE: usize = 8192;

/// The directory (inside the store's) where the indexer writes its files before ingesting
/// them. Emptied at open: a file there was never ingested.
fn ingest_dir(store: &std::path::Path) -> PathBuf {
    store.join("index-ingest")
}

/// Starts the index writer; the sender stops it (after it has written what is queued).
pub(crate) fn start(inner: &Arc<Inner>) -> Result<(Sender<()>, JoinHandle<()>), Error> {
    let jobs = inner
        .index_receiver
        .lock()
        .map_err(|_| Error::Poisoned)?
        .take()
        .ok_or(Error::Config("the log indexer is already running"))?;
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let indexer = inner.clone();
    std::thread::Builder::new()
        .name("cyberid-log-index".into())
        .spawn(move || indexer.run_indexer(&jobs, &stopped))
        .map(|thread| (stop, thread))
        .map_err(|e| Error::Store {
            context: "start the log indexer",
            detail: e.to_string(),
        })
}

impl Inner {
    fn run_indexer(&self, jobs: &Receiver<IndexJob>, stopped: &Receiver<()>) {
        let mut written = Instant::now();
        loop {
            let mut stop = false;
            crossbeam_channel::select! {
                recv(jobs) -> job => match job {
                    Ok(job) => {
                        // The window, cut short by a stop.
                        stop = !matches!(
                            stopped.recv_timeout(GATHER),
                            Err(RecvTimeoutError::Timeout)
                        );
                        if !self.add_to_tail(job, jobs) {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                recv(stopped) -> _ => stop = true,
                default(TAIL_AGE) => {}
            }
            if stop {
                // A clean close leaves the indexes complete.
                if self.add_to_tail(IndexJob::default(), jobs) {
                    let _ = self.write_tail();
                }
                return;
            }
            let due = self
                .log_tail
                .read()
                .map(|tail| {
                    tail.rows() >= TAIL_ROWS
                        || (tail.end > tail.from && written.elapsed() >= TAIL_AGE)
                })
                .unwrap_or(false);
            if due {
                // A failure poisons the store (as any failed write does); until it is
                // reopened, readers still find every entry in the tail or in the runs.
                let _ = self.write_tail();
                written = Instant::now();
            }
        }
    }

    /// Adds `first` and whatever else is queued to the tail; false if its lock is poisoned.
    fn add_to_tail(&self, first: IndexJob, jobs: &Receiver<IndexJob>) -> bool {
        let Ok(mut tail) = self.log_tail.write() else {
            return false;
        };
        tail.add(first);
        for job in jobs.try_iter() {
            tail.add(job);
        }
        true
    }

    /// Writes the tail's rows as one ingested file per family, moves the watermark to the
    /// tail's end and empties the tail.
    pub(crate) fn write_tail(&self) -> Result<(), Error> {
        self.check_poisoned()?;
        crate::faults::point("rocksdb::index")?;
        // Only this thread (or the open, before it starts) changes the tail: what is read here
        // is what is emptied below. Readers go on meanwhile, and between the ingest and the
        // emptying find the rows in both places (they merge them).
        let retained_from = self.log_retained_from.load(Ordering::Acquire);
        let (by_holder, by_certificate, end) = {
            let tail = self.log_tail.read().map_err(|_| Error::Poisoned)?;
            if tail.end <= tail.from {
                return Ok(());
            }
            (
                Tail::sorted(&tail.by_holder, retained_from),
                Tail::sorted(&tail.by_certificate, retained_from),
                tail.end,
            )
        };
        self.ingest(LOG_BY_HOLDER, &by_holder)?;
        self.ingest(LOG_BY_CERTIFICATE, &by_certificate)?;
        // After the files: a crash between leaves the watermark behind rows that exist, and
        // the open makes the same rows again. Unsynced: the next synced write carries it.
        let mut unsynced = WriteOptions::default();
        unsynced.set_sync(false);
        self.db
            .put_cf_opt(
                &self.cf(META)?,
                LOG_INDEXED_KEY,
                end.to_be_bytes(),
                &unsynced,
            )
            .map_err(|error| self.failed("write the log index", &error))?;
        let mut tail = self.log_tail.write().map_err(|_| Error::Poisoned)?;
        *tail = Tail {
            from: end,
            end,
            ..Tail::default()
        };
        Ok(())
    }

    /// Writes `keys` (sorted, each once) as an SST file of `family`'s rows and ingests it.
    fn ingest<const N: usize>(&self, family: &str, keys: &[[u8; N]]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let path = ingest_dir(self.db.path()).join(format!("{family}.sst"));
        let options = Options::default();
        let mut writer = SstFileWriter::create(&options);
        let written = writer.open(&path).and_then(|()| {
            keys.iter().try_for_each(|key| writer.put(key, []))?;
            writer.finish()
        });
        written.map_err(|error| self.failed("write the log index", &error))?;
        let mut ingest = IngestExternalFileOptions::default();
        // Linked into the store rather than copied; the name here is free for the next file.
        ingest.set_move_files(true);
        let ingested =
            self.db
                .ingest_external_file_cf_opts(&self.cf(family)?, &ingest, vec![&path]);
        let _ = std::fs::remove_file(&path);
        ingested.map_err(|error| self.failed("ingest the log index", &error))
    }

    /// A failed write of the index: poisons the store, as any failed write does.
    fn failed(&self, context: &'static str, error: &rocksdb::Error) -> Error {
        let error = store_error(context, error);
        self.poison(context, &error);
        error
    }

    /// Indexes what a crash left above the watermark, before the store serves. A store of an
    /// earlier format, which indexed every entry in its synced write, has no watermark: all of
    /// its log is indexed.
    pub(crate) fn catch_up_index(&self) -> Result<(), Error> {
        let dir = ingest_dir(self.db.path());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Store {
            context: "create the log index's ingest directory",
            detail: e.to_string(),
        })?;
        let size = self.log_size.load(Ordering::Acquire);
        let from = read_u64(&self.db, META, LOG_INDEXED_KEY)?.unwrap_or(size);
        {
            let mut tail = self.log_tail.write().map_err(|_| Error::Poisoned)?;
            *tail = Tail {
                from,
                end: from,
                ..Tail::default()
            };
            if from >= size {
                return Ok(());
            }
            let mut job = IndexJob {
                end: size,
                ..IndexJob::default()
            };
            for stored in self.entries_between(from, size, |_| true)? {
                job.push(stored.index, &stored.record);
            }
            tail.add(job);
        }
        self.write_tail()
    }

    /// The indexes of entries whose rows in `family` start with `by`, from index `from`, the
    /// first `limit` of them, and the log's index from which entries are not yet in the rows
    /// or the tail (the caller reads those from their runs).
    pub(crate) fn indexed(
        &self,
        family: &str,
        by: &[u8],
        from: u64,
        limit: usize,
    ) -> Result<(Vec<u64>, u64), Error> {
        let tail = self.log_tail.read().map_err(|_| Error::Poisoned)?;
        let mut found = BTreeSet::new();
        // Rows in RocksDB: the indexer's below the tail, and access records' anywhere.
        let rows = self.cf(family)?;
        let start = crate::authlog::index_key(by, from);
        for row in self
            .db
            .iterator_cf(&rows, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, _) = row.map_err(|e| store_error("read the log index", &e))?;
            if found.len() >= limit || !key.starts_with(by) || key.len() != by.len() + 8 {
                break;
            }
            let index = crate::layout::decode_u64(&key[by.len()..]).expect("8 bytes");
            if index >= tail.end {
                break;
            }
            found.insert(index);
        }
        found.extend(
            tail.indexes(family, by)
                .into_iter()
                .filter(|index| *index >= from)
                .take(limit),
        );
        Ok((found.into_iter().take(limit).collect(), tail.end))
    }

    /// The entries with indexes in `[from, to)` that `wanted` accepts, from their runs.
    pub(crate) fn entries_between(
        &self,
        from: u64,
        to: u64,
        wanted: impl Fn(&StoredEntry) -> bool,
    ) -> Result<Vec<StoredEntry>, Error> {
        let mut found = Vec::new();
        if from >= to {
            return Ok(found);
        }
        let entries = self.cf(LOG_ENTRIES)?;
        // The run holding `from` starts at or before it.
        let mut iterator = self.db.raw_iterator_cf(&entries);
        iterator.seek_for_prev(from.to_be_bytes());
        let start = iterator.key().map(<[u8]>::to_vec).unwrap_or_default();
        let mode = if start.is_empty() {
            IteratorMode::Start
        } else {
            IteratorMode::From(&start, Direction::Forward)
        };
        for run in self.db.iterator_cf(&entries, mode) {
            let (key, run) = run.map_err(|e| store_error("read the log", &e))?;
            for stored in run_entries(&key, &run)? {
                if stored.index >= to {
                    return Ok(found);
                }
                if stored.index >= from && wanted(&stored) {
                    found.push(stored);
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(rows: &[(u8, u8, u64)], end: u64) -> IndexJob {
        IndexJob {
            by_holder: rows.iter().map(|(h, _, i)| row(&[*h; 10], *i)).collect(),
            by_certificate: rows.iter().map(|(_, c, i)| row(&[*c; 16], *i)).collect(),
            end,
        }
    }

    #[test]
    fn the_tail_finds_rows_by_family_and_writes_them_sorted_from_retention_on() {
        let mut tail = Tail::default();
        tail.add(job(&[(b'B', 1, 0), (b'A', 2, 1)], 2));
        tail.add(job(&[(b'B', 3, 2)], 3));
        assert_eq!((tail.end, tail.rows()), (3, 6));
        assert_eq!(tail.indexes(LOG_BY_HOLDER, &[b'B'; 10]), [0, 2]);
        assert_eq!(tail.indexes(LOG_BY_CERTIFICATE, &[3; 16]), [2]);
        assert!(
            tail.indexes(LOG_BY_HOLDER, &[3; 16]).is_empty(),
            "wrong length"
        );
        assert!(tail.indexes(LOG_BY_CERTIFICATE, &[b'B'; 10]).is_empty());
        assert!(
            tail.indexes(LOG_BY_HOLDER, &[b'B'; 9]).is_empty(),
            "a prefix of a Web Number is not one"
        );
        let sorted = Tail::sorted(&tail.by_holder, 1);
        assert_eq!(
            sorted,
            [row(&[b'A'; 10], 1), row(&[b'B'; 10], 2)],
            "sorted, and entry 0 (past retention) left out"
        );
        assert_eq!(row_index(&sorted[1]), 2);
    }
}
