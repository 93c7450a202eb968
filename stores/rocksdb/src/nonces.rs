//! Replay nonces: claimed in memory, made durable by one committer thread that group-commits
//! every waiting batch with one synced write, answered only after that write.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use cyberid_engine::{
    CertificateId, Error, NonceClaim, NonceOutcome, NonceStore, RequestKey, claim_in_memory,
};
use rocksdb::WriteBatch;

use crate::layout::{decode_u64, nonce_cf_name, store_error};
use crate::options::family_options;
use crate::{DurableStore, Inner, faults};

/// A nonce write waiting for its group commit.
pub(crate) struct NonceWrite {
    bucket: u64,
    certificate_id: CertificateId,
    retain_until: u64,
    request: Option<RequestKey>,
}

pub(crate) enum Command {
    Commit {
        writes: Vec<NonceWrite>,
        done: Sender<Result<(), Error>>,
    },
    Expire {
        now: u64,
        done: Sender<Result<usize, Error>>,
    },
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

pub(crate) fn start_committer(
    inner: &Arc<Inner>,
) -> Result<(Sender<Command>, JoinHandle<()>), Error> {
    let (commands, receiver) = crossbeam_channel::bounded(4096);
    let committer_inner = inner.clone();
    let committer = std::thread::Builder::new()
        .name("cyberid-commit".into())
        .spawn(move || committer_inner.run_committer(&receiver))
        .map_err(|e| Error::Store {
            context: "start committer",
            detail: e.to_string(),
        })?;
    Ok((commands, committer))
}

impl Inner {
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
        let result = faults::point("rocksdb::group")
            .and_then(|()| self.write_nonces(group.iter().flat_map(|(writes, _)| writes)));
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
                                self.poison("create bucket", &error);
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
                encode_value(write.retain_until, write.request),
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

impl DurableStore {
    /// Hands the batch's fresh claims to the committer and waits for their group commit.
    fn commit(&self, writes: Vec<NonceWrite>) -> Result<(), Error> {
        faults::point("rocksdb::enqueue")?;
        let (done, result) = crossbeam_channel::bounded(1);
        self.send(Command::Commit { writes, done })?;
        result.recv().map_err(|_| Error::Poisoned)??;
        faults::point("rocksdb::reply")
    }
}

impl NonceStore for DurableStore {
    fn consume_batch(&self, claims: &[NonceClaim]) -> Result<Vec<NonceOutcome>, Error> {
        self.inner.check_poisoned()?;
        faults::point("rocksdb::claim")?;
        let capacity = self.inner.options.max_live_nonces;
        if self.inner.nonces.len().saturating_add(claims.len()) > capacity {
            return Err(Error::NonceCapacity { capacity });
        }
        let history_begins = self.inner.history_begins.load(Ordering::SeqCst);
        // Claimed in memory first, so a concurrent duplicate is refused at once; answered only
        // after the group commit makes it durable.
        let outcomes: Vec<NonceOutcome> = claims
            .iter()
            .map(|claim| claim_in_memory(&self.inner.nonces, history_begins, claim))
            .collect();
        // Fresh claims are written; so are repeats of a request, so that a retry is answered
        // only once the first claim's write is durable too (it is in this group or an earlier
        // one; the put rewrites the same value).
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
        if writes.is_empty() {
            return Ok(outcomes);
        }
        if let Err(error) = self.commit(writes) {
            // None of these was answered: release the claims this batch made, so that the
            // error does not use up their certificates. (Whether a failed write reached the
            // disk anyway is what the poisoned store cannot tell; docs/store.md says what a
            // restart then finds, and a retry with the same request key is answered valid.)
            for (claim, _) in claims
                .iter()
                .zip(&outcomes)
                .filter(|(_, outcome)| **outcome == NonceOutcome::Fresh)
            {
                self.inner
                    .nonces
                    .remove(&claim.certificate_id, claim.expires_at);
            }
            return Err(error);
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
