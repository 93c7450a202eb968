//! Replay nonces: claimed in memory, then written by the caller itself with one synced write
//! per batch, answered only after that write.
//!
//! There is no committer thread between the pipeline and the disk: the pipeline's batch is the
//! write batch. Callers that write at the same moment (several settlers, or revocations) join
//! RocksDB's own write group, which makes one WAL append and one fsync for the whole group,
//! so grouping still happens where it pays, without a hand-off and a reply per batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use cyberid_engine::{
    CertificateId, Error, LogItem, NonceClaim, NonceOutcome, NonceStore, Receipt, RequestKey,
    claim_in_memory,
};
use rocksdb::WriteBatch;

use crate::layout::{decode_u64, nonce_cf_name, store_error};
use crate::options::family_options;
use crate::{DurableStore, Inner, faults};

/// A nonce to write.
struct NonceWrite {
    bucket: u64,
    certificate_id: CertificateId,
    retain_until: u64,
    request: Option<RequestKey>,
}

/// A nonce's value on disk: until when it must be kept (u64 BE), then the request key that
/// claimed it (u64 BE) if there was one.
fn encode_value(retain_until: u64, request: Option<RequestKey>) -> Vec<u8> {
    let mut value = retain_until.to_be_bytes().to_vec();
    if let Some(request) = request {
        value.extend_from_slice(&request.get().to_be_bytes());
    }
    value
}

pub(crate) fn decode_value(value: &[u8]) -> Option<(u64, Option<RequestKey>)> {
    match value.len() {
        8 => Some((decode_u64(value)?, None)),
        16 => Some((
            decode_u64(&value[..8])?,
            Some(RequestKey::from_u64(decode_u64(&value[8..])?)?),
        )),
        _ => None,
    }
}

/// Starts the thread that drops expired buckets every `expiry_interval`, so that memory and
/// disk shrink without the server's help. It stops when `stop` is dropped.
pub(crate) fn start_expiry(inner: &Arc<Inner>) -> Result<(Sender<()>, JoinHandle<()>), Error> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let expiry_inner = inner.clone();
    let thread = std::thread::Builder::new()
        .name("cyberid-expiry".into())
        .spawn(move || expiry_inner.run_expiry(&stopped))
        .map_err(|e| Error::Store {
            context: "start expiry",
            detail: e.to_string(),
        })?;
    Ok((stop, thread))
}

impl Inner {
    fn run_expiry(&self, stopped: &Receiver<()>) {
        let interval = self.options.expiry_interval.max(Duration::from_millis(10));
        loop {
            match stopped.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {
                    // A failure here is not fatal: an undropped bucket only holds disk space,
                    // and the next run or the next open drops it.
                    let now = self.clock.now();
                    let _ = self.expire(now);
                    if let Some(retention) = self.options.log_retention {
                        let cutoff_ms = now.saturating_sub(retention).saturating_mul(1000);
                        // Bounded per pass; a backlog drains over the next passes.
                        let _ = self.apply_retention(cutoff_ms);
                    }
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Writes a batch of nonces, and the log items if there are any, with one synced write,
    /// creating the nonces' bucket column families first where needed. Returns one receipt
    /// per log item.
    fn write_nonces(
        &self,
        writes: &[NonceWrite],
        log: Option<(&[LogItem], &[NonceOutcome])>,
    ) -> Result<Vec<Option<Receipt>>, Error> {
        self.check_poisoned()?;
        // Shared: writes go on concurrently (and share RocksDB's write group); expiry, which
        // drops column families, waits for them and they for it.
        let _buckets = self.buckets.read().map_err(|_| Error::Poisoned)?;
        let mut batch = WriteBatch::default();
        let mut handles: Vec<(u64, Arc<rocksdb::BoundColumnFamily<'_>>)> = Vec::new();
        for write in writes {
            let position = match handles
                .iter()
                .position(|(bucket, _)| *bucket == write.bucket)
            {
                Some(position) => position,
                None => {
                    handles.push((write.bucket, self.bucket_family(write.bucket)?));
                    handles.len() - 1
                }
            };
            batch.put_cf(
                &handles[position].1,
                write.certificate_id.as_bytes(),
                encode_value(write.retain_until, write.request),
            );
        }
        drop(handles);
        let Some((items, outcomes)) = log else {
            faults::point("rocksdb::batch")?;
            self.write(batch, "commit nonces")?;
            return Ok(Vec::new());
        };
        // Held until the write is synced: the next batch's indexes follow these on disk too.
        let mut frontier = self.log.lock().map_err(|_| Error::Poisoned)?;
        let (grown, receipts, index) = self.stage_log(&frontier, items, outcomes, &mut batch)?;
        faults::point("rocksdb::batch")?;
        self.write(batch, "commit nonces and log entries")?;
        self.log_size.store(grown.size(), Ordering::Release);
        *frontier = grown;
        // Still under the lock, so the indexer receives batches in index order. A stopped
        // indexer loses nothing: readers and the next open find unindexed entries in the runs.
        if !index.is_empty() {
            let _ = self.index_jobs.send(index);
        }
        Ok(receipts)
    }

    /// The column family of `bucket`, created if missing. Two writers may miss it at once;
    /// the creation lock makes the second find the first's.
    fn bucket_family(&self, bucket: u64) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>, Error> {
        let name = nonce_cf_name(bucket);
        if self.db.cf_handle(&name).is_none() {
            let _creating = self.creating.lock().map_err(|_| Error::Poisoned)?;
            if self.db.cf_handle(&name).is_none() {
                self.db
                    .create_cf(&name, &family_options(&self.options))
                    .map_err(|error| {
                        let error = store_error("create bucket", &error);
                        self.poison("create bucket", &error);
                        error
                    })?;
            }
        }
        self.cf(&name)
    }

    /// Drops expired buckets from memory, then from disk. Holds the bucket lock exclusively,
    /// so a bucket is never dropped while a write into it is being built.
    fn expire(&self, now: u64) -> Result<usize, Error> {
        let _buckets = self.buckets.write().map_err(|_| Error::Poisoned)?;
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

impl DurableStore {
    /// Claims in memory, then writes the fresh claims (and the log items, if any) with one
    /// synced write; on failure releases the claims this call made.
    fn consume(
        &self,
        claims: &[NonceClaim],
        log: Option<&[LogItem]>,
    ) -> Result<(Vec<NonceOutcome>, Vec<Option<Receipt>>), Error> {
        self.inner.check_poisoned()?;
        faults::point("rocksdb::claim")?;
        let capacity = self.inner.options.max_live_nonces;
        if self.inner.nonces.len().saturating_add(claims.len()) > capacity {
            return Err(Error::NonceCapacity { capacity });
        }
        let history_begins = self.inner.history_begins.load(Ordering::SeqCst);
        // Claimed in memory first, so a concurrent duplicate is refused at once; answered only
        // after the synced write makes it durable.
        let outcomes: Vec<NonceOutcome> = claims
            .iter()
            .map(|claim| claim_in_memory(&self.inner.nonces, history_begins, claim))
            .collect();
        // Fresh claims are written; so are repeats of a request, so that a retry is answered
        // only once the first claim's write is durable too (a concurrent writer may still be
        // syncing it; the put rewrites the same value, and this write is synced after it).
        let writes: Vec<NonceWrite> = claims
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, NonceOutcome::Fresh | NonceOutcome::Repeated))
            .map(|(claim, _)| NonceWrite {
                bucket: self.inner.nonces.bucket_of(claim.expires_at),
                certificate_id: claim.certificate_id,
                retain_until: claim.retain_until,
                request: claim.request,
            })
            .collect();
        let log = log.filter(|items| !items.is_empty());
        if writes.is_empty() && log.is_none() {
            return Ok((outcomes, Vec::new()));
        }
        match self
            .inner
            .write_nonces(&writes, log.map(|items| (items, outcomes.as_slice())))
        {
            Ok(receipts) => Ok((outcomes, receipts)),
            Err(error) => {
                // None of these was answered: release the claims this batch made, so that the
                // error does not use up their certificates. (Whether a failed write reached
                // the disk anyway is what the poisoned store cannot tell; docs/store.md says
                // what a restart then finds, and a retry with the same request key is
                // answered valid.)
                for (claim, _) in claims
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, outcome)| **outcome == NonceOutcome::Fresh)
                {
                    self.inner
                        .nonces
                        .remove(&claim.certificate_id, claim.expires_at);
                }
                Err(error)
            }
        }
    }
}

impl NonceStore for DurableStore {
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error> {
        self.consume(claims, None).map(|(outcomes, _)| outcomes)
    }

    fn keeps_log(&self) -> bool {
        true
    }

    fn consume_logged(
        &self,
        claims: &[NonceClaim],
        log: &[LogItem],
    ) -> Result<(Vec<NonceOutcome>, Vec<Option<Receipt>>), Error> {
        let (outcomes, mut receipts) = self.consume(claims, Some(log))?;
        // An empty log wrote no receipts.
        receipts.resize(log.len(), None);
        Ok((outcomes, receipts))
    }

    fn history_begins(&self) -> u64 {
        self.inner.history_begins.load(Ordering::SeqCst)
    }

    fn live_nonces(&self) -> usize {
        self.inner.nonces.len()
    }

    fn expire(&self, now: u64) -> Result<usize, Error> {
        self.inner.expire(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_with_and_without_a_request_key() {
        let key = RequestKey::from_u64(0x0102_0304_0506_0708);
        assert_eq!(decode_value(&encode_value(77, None)), Some((77, None)));
        assert_eq!(decode_value(&encode_value(77, key)), Some((77, key)));
        assert_eq!(encode_value(77, None).len(), 8);
        assert_eq!(
            decode_value(&[0; 16]),
            None,
            "a zero request key is not written"
        );
        assert_eq!(decode_value(&[0; 9]), None);
    }
}
