//! The authentication log's indexes, by holder and by certificate, kept off the verification
//! path.
//!
//! Why: index rows were two random-keyed puts per entry inside the synced write that consumes
//! the nonces, two thirds of that write's puts; the settler waited for them on every batch
//! (tuning.md §8). The entries themselves (one run per batch) are what the log must never lose,
//! and they stay in the synced write. The rows are derived data: a thread writes them after
//! the entries are durable, unsynced, together with a watermark (`log_indexed_to` in `meta`)
//! in the same batch, so that on disk the watermark never runs ahead of its rows.
//!
//! Readers see every durable entry at once: rows answer below the watermark, and the few
//! entries above it are found by reading their runs. At open, whatever a crash left unindexed
//! (entries from the watermark on) is indexed again from the runs before the store serves.
//! Access records (an authority's read, rare) still write their rows in their own synced
//! write; the watermark only ever moves over entries that are indexed one way or the other.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use cyberid_engine::Error;
use cyberid_translog::{Record, StoredEntry};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::Inner;
use crate::authlog::run_entries;
use crate::layout::{
    LOG_BY_CERTIFICATE, LOG_BY_HOLDER, LOG_ENTRIES, LOG_INDEXED_KEY, META, read_u64, store_error,
};

/// The index rows of settled entries, as the keys they become, and the log size after them.
/// Built on the settler from the entries it staged: the indexer needs no more than these keys,
/// and a key is smaller to queue than the record it came from.
#[derive(Debug, Default)]
pub(crate) struct IndexJob {
    by_holder: Vec<HolderKey>,
    by_certificate: Vec<CertificateKey>,
    pub(crate) end: u64,
}

/// A row of `log_by_holder`: the Web Number, then the entry's index (as `authlog::index_key`).
type HolderKey = [u8; 10 + 8];
/// A row of `log_by_certificate`: the certificate id, then the entry's index.
type CertificateKey = [u8; 16 + 8];

impl IndexJob {
    /// Adds the rows of the record at `index`.
    pub(crate) fn push(&mut self, index: u64, record: &Record) {
        if let Some(holder) = record.holder() {
            self.by_holder.push(fixed_key(holder.as_bytes(), index));
        }
        if let Some(certificate) = record.certificate_id() {
            self.by_certificate
                .push(fixed_key(certificate.as_bytes(), index));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_holder.is_empty() && self.by_certificate.is_empty()
    }

    fn rows(&self) -> usize {
        self.by_holder.len() + self.by_certificate.len()
    }

    /// Takes `later`'s rows and end (a job of entries after this one's).
    fn append(&mut self, mut later: IndexJob) {
        self.by_holder.append(&mut later.by_holder);
        self.by_certificate.append(&mut later.by_certificate);
        self.end = later.end;
    }
}

/// How long the indexer gathers rows before writing them. Sorted before they go in, a large
/// batch of rows lands in the memtable's skip list close to its predecessor, where a batch's
/// worth of random keys costs a full descent each (the skip list's search was half the
/// indexer's time, tuning.md §8). The indexer sleeps through the window and then takes what
/// queued, rather than waking for every settled batch (a wake-up each was an eighth of its
/// time). Readers pay for the wait: entries above the watermark are found in their runs, at
/// most this much of the log.
const GATHER: Duration = Duration::from_millis(100);

/// At most this many queued batches: past it the settler waits (the indexer is behind by
/// seconds of verifications, and memory must stay bounded). A window holds one batch per
/// settled batch, however small the batches are at low load.
pub(crate) const QUEUE: usize = 8192;

/// Most rows the indexer takes from its queue at once.
const MAX_ROWS: usize = 1 << 17;

/// Rows per write of the indexer: about half a millisecond of memtable inserts.
const CHUNK: usize = 512;

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

/// An index row's key (as `authlog::index_key` makes it) in an array of its exact size.
fn fixed_key<const N: usize, const K: usize>(by: &[u8; K], index: u64) -> [u8; N] {
    const {
        assert!(
            N == K + 8,
            "a key is what it indexes by and 8 bytes of index"
        )
    };
    let mut key = [0u8; N];
    key[..K].copy_from_slice(by);
    key[K..].copy_from_slice(&index.to_be_bytes());
    key
}

impl Inner {
    fn run_indexer(&self, jobs: &Receiver<IndexJob>, stopped: &Receiver<()>) {
        loop {
            crossbeam_channel::select! {
                recv(jobs) -> job => match job {
                    Ok(mut job) => {
                        // The window, cut short by a stop (a clean close leaves the indexes
                        // complete: what queued is written below either way).
                        let stop = !matches!(
                            stopped.recv_timeout(GATHER),
                            Err(RecvTimeoutError::Timeout)
                        );
                        // Bounded, so that a backlog is written in pieces of a few megabytes;
                        // what is left waits for the next window.
                        while job.rows() < MAX_ROWS {
                            match jobs.try_recv() {
                                Ok(later) => job.append(later),
                                Err(_) => break,
                            }
                        }
                        // A failure poisons the store (as any failed write does); until it is
                        // reopened, readers still find every entry above the watermark from
                        // the runs.
                        let _ = self.write_index(job);
                        if stop {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                recv(stopped) -> _ => {
                    let mut rest = IndexJob::default();
                    for later in jobs.try_iter() {
                        rest.append(later);
                    }
                    if !rest.is_empty() {
                        let _ = self.write_index(rest);
                    }
                    return;
                }
            }
        }
    }

    /// Writes the rows of `job` and moves the watermark to its end, unsynced: a later synced
    /// write, or the next open's catch-up, makes them durable.
    pub(crate) fn write_index(&self, mut job: IndexJob) -> Result<(), Error> {
        self.check_poisoned()?;
        crate::faults::point("rocksdb::index")?;
        let (holders, certificates, meta) = (
            self.cf(LOG_BY_HOLDER)?,
            self.cf(LOG_BY_CERTIFICATE)?,
            self.cf(META)?,
        );
        // In key order: each insert starts its skip-list search where the last one ended.
        job.by_holder.sort_unstable();
        job.by_certificate.sort_unstable();
        // In writes of CHUNK rows: RocksDB's write group makes the settler's synced write wait
        // for the memtable inserts of any write grouped with it, and a whole window's rows at
        // once held it for milliseconds. The watermark goes with the last write, so it never
        // precedes a row on disk (the writes reach the WAL in this order).
        let rows = (job.by_holder.iter().map(|key| (&holders, &key[..]))).chain(
            job.by_certificate
                .iter()
                .map(|key| (&certificates, &key[..])),
        );
        let mut batch = WriteBatch::default();
        for (family, key) in rows {
            batch.put_cf(family, key, []);
            if batch.len() == CHUNK {
                self.write_index_rows(std::mem::take(&mut batch))?;
            }
        }
        batch.put_cf(&meta, LOG_INDEXED_KEY, job.end.to_be_bytes());
        drop((holders, certificates, meta));
        self.write_index_rows(batch)?;
        self.log_indexed.fetch_max(job.end, Ordering::AcqRel);
        Ok(())
    }

    /// One unsynced write of the indexer; a failure poisons the store.
    fn write_index_rows(&self, batch: WriteBatch) -> Result<(), Error> {
        let mut unsynced = WriteOptions::default();
        unsynced.set_sync(false);
        self.db.write_opt(batch, &unsynced).map_err(|error| {
            let error = store_error("write the log index", &error);
            self.poison("write the log index", &error);
            error
        })
    }

    /// Indexes what a crash left above the watermark, before the store serves. A store of an
    /// earlier format, which indexed every entry in its synced write, has no watermark: all of
    /// its log is indexed.
    pub(crate) fn catch_up_index(&self) -> Result<(), Error> {
        let size = self.log_size.load(Ordering::Acquire);
        let from = read_u64(&self.db, META, LOG_INDEXED_KEY)?.unwrap_or(size);
        self.log_indexed.store(from, Ordering::Release);
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
        self.write_index(job)
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
